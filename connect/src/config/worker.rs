//! The worker file (`--worker WORKER.toml`): settings shared by all connectors of a process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{Secrets, interpolate, read_config_file};
use crate::api::parse_typed;
use crate::error::{ConfigError, ConfigOrigin};

/// Worker settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Address the REST API listens on.
    #[serde(default = "default_rest_listen")]
    pub rest_listen: SocketAddr,
    /// Whether to serve the REST API at all.
    #[serde(default = "default_true")]
    pub rest_enabled: bool,
    /// How often sink tasks flush their sink and commit consumer offsets, and the longest a
    /// source batch waits before it is committed.
    #[serde(default = "default_offset_flush_interval_ms")]
    pub offset_flush_interval_ms: u64,
    /// Partitions of topics the worker creates (a source's missing topic, dead-letter topics).
    #[serde(default = "default_topic_partitions")]
    pub topic_partitions: u32,
    /// Data directory of the log; overrides `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// A Kafka-protocol cluster (`HOST:PORT[,HOST:PORT...]`) to run on instead of the data
    /// directory; `--bootstrap-server` overrides it.
    #[serde(alias = "bootstrap.servers")]
    pub bootstrap_servers: Option<String>,
    /// The Connect cluster's name, as Kafka Connect's `group.id`: source tasks' transactional
    /// ids start with it (`{group_id}-{connector}-{task}`).
    #[serde(default = "default_group_id", alias = "group.id")]
    pub group_id: String,
    /// Topic of connector configs (Kafka Connect's `config.storage.topic`). Default
    /// `connect-configs` on a cluster, `__connect_configs` on the embedded log.
    #[serde(alias = "config.storage.topic")]
    pub config_storage_topic: Option<String>,
    /// Topic of source offsets (`offset.storage.topic`). Default `connect-offsets` on a
    /// cluster, `__connect_offsets` on the embedded log.
    #[serde(alias = "offset.storage.topic")]
    pub offset_storage_topic: Option<String>,
    /// Sources on a cluster write each batch and its offsets in one Kafka transaction
    /// (Kafka Connect's `exactly.once.source.support`, here on by default). `false` for brokers
    /// without transactions: then offsets are written once the records are acknowledged
    /// (at-least-once: a crash can repeat the last batch).
    #[serde(default = "default_true")]
    pub exactly_once_source_support: bool,
    /// Topic of connector and task states (`status.storage.topic`), written on a cluster.
    /// Default `connect-status`.
    #[serde(alias = "status.storage.topic")]
    pub status_storage_topic: Option<String>,
}

fn default_group_id() -> String {
    "connect-cluster".into()
}

fn default_rest_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8083))
}

fn default_true() -> bool {
    true
}

fn default_offset_flush_interval_ms() -> u64 {
    1_000
}

fn default_topic_partitions() -> u32 {
    1
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            rest_listen: default_rest_listen(),
            rest_enabled: true,
            offset_flush_interval_ms: default_offset_flush_interval_ms(),
            topic_partitions: default_topic_partitions(),
            data_dir: None,
            bootstrap_servers: None,
            group_id: default_group_id(),
            config_storage_topic: None,
            offset_storage_topic: None,
            status_storage_topic: None,
            exactly_once_source_support: true,
        }
    }
}

impl WorkerConfig {
    /// Reads and validates a worker file.
    ///
    /// # Errors
    /// The file and the key of the first problem.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let origin = ConfigOrigin::File(path.to_path_buf());
        let mut value = Value::Object(read_config_file(path)?);
        let mut secrets = Secrets::default();
        interpolate(&mut value, &mut secrets).map_err(|issue| issue.at(&origin))?;
        let config: Self = parse_typed(&value).map_err(|issue| issue.at(&origin))?;
        if config.offset_flush_interval_ms == 0 {
            return Err(crate::error::ConfigIssue::new(
                "offset_flush_interval_ms",
                "must be at least 1",
            )
            .at(&origin));
        }
        if config.topic_partitions == 0 {
            return Err(
                crate::error::ConfigIssue::new("topic_partitions", "must be at least 1")
                    .at(&origin),
            );
        }
        Ok(config)
    }
}
