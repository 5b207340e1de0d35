//! The server's metrics and its `/metrics` endpoint (Prometheus text, in the style of the
//! connect worker's): requests by API, bytes in and out, connections, and per partition the
//! log end offset and each group's lag.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use kafka_protocol::messages::ApiKey;
use logbrook_core::Broker;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// API keys go up to about 90; one counter each.
const API_KEYS: usize = 128;

/// Counters the connections update.
pub(crate) struct Metrics {
    requests: [AtomicU64; API_KEYS],
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) connections_open: AtomicI64,
    pub(crate) connections_total: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub(crate) fn request(&self, api: ApiKey) {
        if let Some(counter) = self.requests.get(api as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text of the counters, and of the log's partitions and groups.
    pub(crate) fn render(&self, broker: &Broker) -> String {
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP logbrook_serve_{name} {help}");
            let _ = writeln!(out, "# TYPE logbrook_serve_{name} {kind}");
        };
        family(
            &mut out,
            "requests_total",
            "counter",
            "Requests answered, by API.",
        );
        for key in 0..API_KEYS {
            let count = self.requests[key].load(Ordering::Relaxed);
            if let (true, Ok(api)) = (count > 0, ApiKey::try_from(key as i16)) {
                let _ = writeln!(
                    out,
                    "logbrook_serve_requests_total{{api=\"{api:?}\"}} {count}"
                );
            }
        }
        for (name, kind, help, value) in [
            (
                "bytes_in_total",
                "counter",
                "Request bytes read.",
                self.bytes_in.load(Ordering::Relaxed) as i64,
            ),
            (
                "bytes_out_total",
                "counter",
                "Response bytes written.",
                self.bytes_out.load(Ordering::Relaxed) as i64,
            ),
            (
                "connections",
                "gauge",
                "Open client connections.",
                self.connections_open.load(Ordering::Relaxed),
            ),
            (
                "connections_total",
                "counter",
                "Client connections accepted.",
                self.connections_total.load(Ordering::Relaxed) as i64,
            ),
        ] {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "logbrook_serve_{name} {value}");
        }
        let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut topics = broker.topic_names();
        topics.sort();
        family(
            &mut out,
            "log_end_offset",
            "gauge",
            "The next offset of each partition.",
        );
        for name in &topics {
            let Ok(topic) = broker.topic(name) else {
                continue;
            };
            for partition in topic.partitions() {
                let _ = writeln!(
                    out,
                    "logbrook_serve_log_end_offset{{topic=\"{}\",partition=\"{}\"}} {}",
                    escape(name),
                    partition.log().partition(),
                    partition.log().high_watermark()
                );
            }
        }
        family(
            &mut out,
            "group_lag_records",
            "gauge",
            "Records between a group's committed offset and the end, by partition.",
        );
        for group in broker.list_groups() {
            let Ok(description) = broker.describe_group(&group) else {
                continue;
            };
            for p in description.partitions {
                let _ = writeln!(
                    out,
                    "logbrook_serve_group_lag_records{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                    escape(&group),
                    escape(&p.topic_partition.topic),
                    p.topic_partition.partition,
                    p.lag
                );
            }
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub(crate) async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    broker: Broker,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(
                |State((metrics, broker)): State<(Arc<Metrics>, Broker)>| async move {
                    metrics.render(&broker)
                },
            ),
        )
        .with_state((metrics, broker));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
