//! Where a client command's log is: the data directory (`--data-dir`), or a Kafka-protocol
//! cluster (`--bootstrap-server`, e.g. `logbrook serve`).

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use logbrook_client::{Client, Cluster};

/// Flags that point a command at a cluster instead of the data directory.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Work on the Kafka-protocol cluster at HOST:PORT[,HOST:PORT...] (e.g. `logbrook serve`)
    /// instead of the data directory.
    #[arg(
        long,
        global = true,
        env = "LOGBROOK_BOOTSTRAP_SERVER",
        value_name = "HOST:PORT"
    )]
    pub bootstrap_server: Option<String>,
    /// A librdkafka client property for the cluster (security settings, ...), repeatable;
    /// as kcat's `-X`.
    #[arg(
        short = 'X',
        long = "client-property",
        global = true,
        value_name = "KEY=VALUE",
        value_parser = parse_property
    )]
    pub properties: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// How a command uses the data directory when it is not on a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Without the writer lock, beside a writer process.
    ReadOnly,
    /// With the writer lock; the directory must exist.
    Write,
    /// With the writer lock, creating the directory if missing.
    Create,
}

impl ClusterArgs {
    /// The log the command works on.
    ///
    /// # Errors
    /// No broker answered at `--bootstrap-server`, or the data directory cannot be opened.
    pub async fn open(&self, data_dir: &Path, access: Access) -> Result<Client> {
        if let Some(bootstrap) = &self.bootstrap_server {
            let cluster = Cluster::connect(bootstrap, self.properties.clone())
                .await
                .with_context(|| format!("connecting to the cluster at {bootstrap}"))?;
            return Ok(Client::Cluster(cluster));
        }
        if !self.properties.is_empty() {
            anyhow::bail!("--client-property needs --bootstrap-server");
        }
        let broker = match access {
            Access::ReadOnly => crate::open_read_only(data_dir).await?,
            Access::Write => crate::open_writable(data_dir, false).await?,
            Access::Create => crate::open_writable(data_dir, true).await?,
        };
        Ok(Client::Embedded(broker))
    }
}
