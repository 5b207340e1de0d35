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
}

/// Serves until SIGINT or SIGTERM, then finishes in-flight requests, closes the log (fsync)
/// and releases the data dir.
///
/// # Errors
/// The data dir cannot be opened or is locked; the address cannot be bound.
pub async fn run(data_dir: &Path, args: ServeArgs) -> Result<()> {
    let broker = crate::open_writable(data_dir, true).await?;
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            broker.close().await?;
            return Err(e).with_context(|| format!("cannot listen on {}", args.listen));
        }
    };
    let bound = listener.local_addr()?;
    let advertised = args.advertised_listener.unwrap_or(bound);
    println!("logbrook serve: listening on {bound}");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(logbrook_serve::serve(
        listener,
        broker.clone(),
        ServeConfig::new(advertised),
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
