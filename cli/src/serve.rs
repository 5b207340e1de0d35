//! `logbrook serve`: the data directory behind Kafka's wire protocol.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use logbrook_serve::ServeConfig;
use tokio_util::sync::CancellationToken;

/// `logbrook serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "ADDR")]
    listen: SocketAddr,
    /// Address clients are told to connect to (default: the listening address).
    #[arg(long, value_name = "ADDR")]
    advertised_listener: Option<SocketAddr>,
    /// HTTP address of `GET /metrics` (Prometheus text); `off` for none.
    #[arg(long, default_value = "127.0.0.1:9644", value_name = "ADDR|off")]
    http_listen: String,
    /// Create an unknown topic when a client's Metadata request asks for it (Kafka's
    /// `auto.create.topics.enable`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    auto_create_topics: bool,
    /// Partitions of an automatically created topic (Kafka's `num.partitions`).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    num_partitions: u32,
    /// How long an empty consumer group's first rebalance waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`); 0 rebalances at the first join.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    group_initial_rebalance_delay_ms: u64,
    /// How long a transactional id with no open transaction is kept after its last use
    /// (Kafka's `transactional.id.expiration.ms`, 7 days).
    #[arg(long, default_value_t = 604_800_000, value_name = "MS")]
    transactional_id_expiration_ms: u64,
}

/// Serves until SIGINT or SIGTERM, then finishes in-flight requests, closes the log (fsync)
/// and releases the data dir.
///
/// # Errors
/// The data dir cannot be opened or is locked; the address cannot be bound.
pub async fn run(data_dir: &Path, args: ServeArgs) -> Result<()> {
    let broker = logbrook_core::Broker::open_with(logbrook_core::BrokerConfig {
        transactional_id_expiration: std::time::Duration::from_millis(
            args.transactional_id_expiration_ms,
        ),
        ..logbrook_core::BrokerConfig::new(data_dir)
    })
    .await?;
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            broker.close().await?;
            return Err(e).with_context(|| format!("cannot listen on {}", args.listen));
        }
    };
    let http = match args.http_listen.as_str() {
        "off" => None,
        addr => {
            let bound = async {
                let addr: SocketAddr = addr
                    .parse()
                    .with_context(|| format!("--http-listen {addr:?} is not ADDR:PORT or off"))?;
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for /metrics"))
            }
            .await;
            match bound {
                Ok(http) => Some(http),
                Err(e) => {
                    broker.close().await?;
                    return Err(e);
                }
            }
        }
    };
    let bound = listener.local_addr()?;
    let advertised = args.advertised_listener.unwrap_or(bound);
    if let Some(http) = &http {
        println!(
            "logbrook serve: metrics on http://{}/metrics",
            http.local_addr()?
        );
    }
    println!("logbrook serve: listening on {bound}");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(logbrook_serve::serve(
        listener,
        http,
        broker.clone(),
        ServeConfig {
            auto_create_topics: args.auto_create_topics,
            num_partitions: args.num_partitions,
            group_initial_rebalance_delay: std::time::Duration::from_millis(
                args.group_initial_rebalance_delay_ms,
            ),
            ..ServeConfig::new(advertised)
        },
        shutdown.clone(),
    ));
    crate::shutdown_signal().await;
    tracing::info!("stopping: finishing in-flight requests");
    shutdown.cancel();
    server.await.context("the server task")??;
    broker.close().await?;
    eprintln!("logbrook serve: stopped");
    Ok(())
}
