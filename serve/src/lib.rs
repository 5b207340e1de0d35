//! `logbrook serve`: Kafka's wire protocol in front of the embedded log, so Kafka clients and
//! other processes share its topics.
//!
//! [`serve`] accepts connections; each [`connection`] reads size-prefixed requests, answers them
//! in order through [`api`], and closes only itself on anything malformed. Message codecs are the
//! `kafka-protocol` crate's; the handling is here. Batches are stored as clients produced them
//! (the log's format is Kafka's RecordBatch v2) and fetched as stored.

mod api;
mod connection;
mod groups;
mod metrics;
mod response;

use std::net::SocketAddr;
use std::sync::Arc;

use logbrook_core::Broker;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the server presents itself and what it accepts.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The address clients are told to connect to (Metadata's broker list).
    pub advertised: SocketAddr,
    /// The largest request accepted; a larger length prefix closes the connection.
    pub max_request_bytes: usize,
    /// The most request bytes held in memory over all connections at once.
    pub max_buffered_bytes: usize,
    /// Whether a Metadata request for an unknown topic creates it (Kafka's
    /// `auto.create.topics.enable`), with `num_partitions` partitions and default configs.
    pub auto_create_topics: bool,
    /// Partitions of an automatically created topic (Kafka's `num.partitions`).
    pub num_partitions: u32,
    /// How long an empty group's first rebalance waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`, 3 s), each new member adding as much again up to
    /// the rebalance timeout: members started together land in one generation.
    pub group_initial_rebalance_delay: std::time::Duration,
}

impl ServeConfig {
    /// Defaults for a server clients reach at `advertised`: requests up to 100 MiB (Kafka's
    /// `socket.request.max.bytes`), 512 MiB of requests in memory at once, unknown topics
    /// created with one partition when a client's Metadata request asks for them (as Kafka).
    pub fn new(advertised: SocketAddr) -> Self {
        Self {
            advertised,
            max_request_bytes: 100 << 20,
            max_buffered_bytes: 512 << 20,
            auto_create_topics: true,
            num_partitions: 1,
            group_initial_rebalance_delay: std::time::Duration::from_secs(3),
        }
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) broker: Broker,
    pub(crate) config: ServeConfig,
    /// Request bytes in memory, over all connections.
    pub(crate) memory: Semaphore,
    pub(crate) coordinator: groups::Coordinator,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) shutdown: CancellationToken,
}

/// Serves Kafka's protocol on `listener` (and `GET /metrics` on `http`, when given) until
/// `shutdown` is cancelled, then lets every connection finish the request it is handling and
/// returns.
///
/// # Errors
/// None today: failed accepts are logged and retried.
pub async fn serve(
    listener: TcpListener,
    http: Option<TcpListener>,
    broker: Broker,
    config: ServeConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = config.max_buffered_bytes.min(Semaphore::MAX_PERMITS);
    let coordinator = groups::Coordinator::new(config.group_initial_rebalance_delay);
    let shared = Arc::new(Shared {
        broker,
        config,
        memory: Semaphore::new(permits),
        coordinator,
        metrics: Arc::default(),
        shutdown: shutdown.clone(),
    });
    let connections = TaskTracker::new();
    if let Some(http) = http {
        let server = metrics::serve_http(
            http,
            shared.metrics.clone(),
            shared.broker.clone(),
            shutdown.clone(),
        );
        connections.spawn(async move {
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    // Session and rebalance timeouts are checked on a tick.
    let ticker = shared.clone();
    connections.spawn(async move {
        let mut tick = tokio::time::interval(groups::TICK);
        loop {
            tokio::select! {
                () = ticker.shutdown.cancelled() => {
                    ticker.coordinator.shut_down();
                    return;
                }
                _ = tick.tick() => ticker.coordinator.tick(),
            }
        }
    });
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(connection::run(stream, peer, shared.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves `broker` on an ephemeral loopback port, on a task of this process's runtime (for
/// tests and benchmarks that run clients against it): the address, and the token that stops
/// the server.
///
/// # Errors
/// No loopback port could be bound.
pub async fn spawn_on_loopback(
    broker: Broker,
    configure: impl FnOnce(ServeConfig) -> ServeConfig,
) -> std::io::Result<(SocketAddr, CancellationToken)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let config = configure(ServeConfig::new(addr));
    tokio::spawn(serve(listener, None, broker, config, shutdown.clone()));
    Ok((addr, shutdown))
}
