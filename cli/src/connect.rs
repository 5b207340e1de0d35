//! `logbrook connect`: run connectors from config files, with Kafka Connect's REST API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use logbrook_client::{Client, Cluster};
use logbrook_connect::config::read_config_file;
use logbrook_connect::{ConfigOrigin, ConnectorConfig, ConnectorKind, Worker, WorkerConfig};
use serde_json::{Map, Value};

use crate::plugins::registry;
use crate::target::ClusterArgs;

/// `logbrook connect` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConnectCommand {
    /// Run connectors until SIGINT/SIGTERM, then stop sources, flush sinks, commit offsets and
    /// exit 0. Connectors created over the REST API are stored and run again at the next start.
    Run {
        /// Worker settings (REST address, flush interval, ...).
        #[arg(long, value_name = "WORKER.toml")]
        worker: Option<PathBuf>,
        /// Override the worker's `rest_listen` address (port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        rest_listen: Option<SocketAddr>,
        /// Connector files (TOML, or JSON when named `*.json`).
        #[arg(value_name = "CONNECTOR.toml")]
        connectors: Vec<PathBuf>,
        /// `--bootstrap-server` (or `bootstrap_servers` in the worker file) runs on a
        /// Kafka-protocol cluster instead of the data directory; connector files are then
        /// submitted to the cluster's `connect-configs` topic.
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Check connector files without running anything; exits non-zero on the first bad file.
    Validate {
        /// Connector files.
        #[arg(value_name = "CONNECTOR.toml", required = true)]
        connectors: Vec<PathBuf>,
    },
    /// List the connector types this binary can run.
    Plugins,
}

/// Runs a `logbrook connect` subcommand.
///
/// # Errors
/// Bad config files (naming file and key), a locked data dir, a REST address in use.
pub async fn run(data_dir: &Path, command: ConnectCommand) -> Result<()> {
    match command {
        ConnectCommand::Run {
            worker,
            rest_listen,
            connectors,
            cluster,
        } => {
            run_worker(
                data_dir,
                worker.as_deref(),
                rest_listen,
                &connectors,
                &cluster,
            )
            .await
        }
        ConnectCommand::Validate { connectors } => {
            for (path, _, config) in load_connectors(&connectors)? {
                println!(
                    "{}: ok ({} {:?}, {} task(s))",
                    path.display(),
                    config.plugin.name(),
                    config.name,
                    config.tasks
                );
            }
            Ok(())
        }
        ConnectCommand::Plugins => {
            let registry = registry();
            let mut table = crate::output::Table::new(&["TYPE", "KIND"]);
            for plugin in registry.plugins() {
                table.row(vec![plugin.name().to_string(), plugin.kind().to_string()]);
            }
            crate::output::print(&table.render())
        }
    }
}

/// A connector file: its path, its keys as written, and their validated form.
type ConnectorFile = (PathBuf, Map<String, Value>, ConnectorConfig);

/// Reads and validates every connector file before anything runs.
fn load_connectors(paths: &[PathBuf]) -> Result<Vec<ConnectorFile>> {
    let registry = registry();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut out = Vec::new();
    for path in paths {
        let raw = read_config_file(path)?;
        let config = ConnectorConfig::resolve(&raw, &ConfigOrigin::File(path.clone()), &registry)?;
        if let Some(first) = seen.insert(config.name.clone(), path.clone()) {
            bail!(
                "{}: key `name`: connector {:?} is also defined in {}",
                path.display(),
                config.name,
                first.display()
            );
        }
        out.push((path.clone(), raw, config));
    }
    Ok(out)
}

async fn run_worker(
    data_dir: &Path,
    worker_file: Option<&Path>,
    rest_listen: Option<SocketAddr>,
    connector_files: &[PathBuf],
    cluster: &ClusterArgs,
) -> Result<()> {
    let mut worker_config = match worker_file {
        Some(path) => WorkerConfig::from_file(path)?,
        None => WorkerConfig::default(),
    };
    if let Some(addr) = rest_listen {
        worker_config.rest_listen = addr;
    }
    // Every file is checked before the log is opened or anything starts.
    let connectors = load_connectors(connector_files)?;
    let listener = if worker_config.rest_enabled {
        let listener = tokio::net::TcpListener::bind(worker_config.rest_listen)
            .await
            .with_context(|| {
                format!(
                    "REST API cannot listen on {} (set rest_listen in the worker file, or --rest-listen)",
                    worker_config.rest_listen
                )
            })?;
        worker_config.rest_listen = listener.local_addr()?;
        Some(listener)
    } else {
        None
    };
    let bootstrap = cluster
        .bootstrap_server
        .clone()
        .or_else(|| worker_config.bootstrap_servers.clone());
    let log = match &bootstrap {
        Some(bootstrap) => Client::Cluster(
            Cluster::connect(bootstrap, cluster.properties.clone())
                .await
                .with_context(|| format!("connecting to the cluster at {bootstrap}"))?,
        ),
        None => {
            let data_dir = worker_config
                .data_dir
                .clone()
                .unwrap_or_else(|| data_dir.to_path_buf());
            Client::Embedded(crate::open_writable(&data_dir, true).await?)
        }
    };
    let worker = match Worker::start(log.clone(), registry(), worker_config.clone()).await {
        Ok(worker) => worker,
        Err(e) => {
            log.close().await?;
            return Err(e).context("starting the connect worker");
        }
    };
    // Sources first: they create their topics with the partitions they need (a restore's),
    // before a sink of the same topic would create it with the worker's default.
    let mut connectors = connectors;
    connectors.sort_by_key(|(_, _, config)| config.plugin.kind() == ConnectorKind::Sink);
    for (path, raw, _) in connectors {
        if let Err(e) = worker.run_file(raw, &ConfigOrigin::File(path)).await {
            worker.shutdown().await;
            log.close().await?;
            return Err(e.into());
        }
    }
    let names = worker.connector_names().await;
    let server = listener.map(|listener| {
        let token = worker.shutdown_token();
        tokio::spawn(logbrook_connect::rest::serve(
            worker.clone(),
            listener,
            async move { token.cancelled().await },
        ))
    });
    match &server {
        Some(_) => println!(
            "logbrook connect: {} connector(s) running [{}]; REST API on http://{}",
            names.len(),
            names.join(", "),
            worker_config.rest_listen
        ),
        None => println!(
            "logbrook connect: {} connector(s) running [{}]; REST API disabled",
            names.len(),
            names.join(", ")
        ),
    }
    crate::shutdown_signal().await;
    tracing::info!("stopping: sources stop, sinks flush and commit");
    worker.shutdown().await;
    if let Some(server) = server {
        let _ = server.await;
    }
    log.close().await?;
    println!("logbrook connect: stopped");
    Ok(())
}
