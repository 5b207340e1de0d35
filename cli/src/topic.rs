//! `logbrook topic`: create, list, describe and delete topics.

use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use logbrook_client::TopicInfo;
use logbrook_core::{CleanupPolicy, FlushPolicy, TimestampType, TopicConfig, kafka_config};

use crate::output::{self, Table};
use crate::target::{Access, ClusterArgs};

/// `logbrook topic` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names, one per line.
    List {
        /// Also list internal topics (`__consumer_offsets`, `__transactions`).
        #[arg(long)]
        include_internal: bool,
    },
    /// Show a topic's config and, per partition, its offsets, size and segments.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic, its data and the consumer groups' committed offsets for it.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// Arguments of `logbrook topic create`; unset options keep the defaults of `TopicConfig`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name: 1 to 249 characters of [a-zA-Z0-9._-].
    name: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Delete sealed segments older than this; `none` keeps them forever [default: 7 days].
    #[arg(long, value_name = "MS")]
    retention_ms: Option<Limit>,
    /// Delete the oldest sealed segments while a partition is larger than this [default: none].
    #[arg(long, value_name = "BYTES")]
    retention_bytes: Option<Limit>,
    /// Roll the active segment when it would exceed this size [default: 1 GiB].
    #[arg(long, value_name = "BYTES")]
    segment_bytes: Option<u64>,
    /// Roll the active segment when it is older than this; `none` never [default: 7 days].
    #[arg(long, value_name = "MS")]
    segment_ms: Option<Limit>,
    /// What happens to old data: delete (retention) or compact (latest value per key).
    #[arg(long, value_name = "delete|compact")]
    cleanup_policy: Option<CleanupPolicy>,
    /// When appends are fsynced: always, never or interval:MS.
    #[arg(long, value_name = "always|never|interval:MS")]
    flush: Option<FlushPolicy>,
    /// Which time records carry.
    #[arg(long, value_enum)]
    timestamp_type: Option<TimestampTypeArg>,
    /// The largest batch a producer may append, as stored [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    max_message_bytes: Option<u64>,
}

/// An optional limit on the command line: a number, or `none` (also `-1`, as in Kafka).
#[derive(Debug, Clone, Copy)]
pub struct Limit(Option<u64>);

impl FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "-1" => Ok(Self(None)),
            _ => s
                .parse()
                .map(|n| Self(Some(n)))
                .map_err(|_| format!("{s:?} is not a non-negative number or none")),
        }
    }
}

/// `--timestamp-type` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TimestampTypeArg {
    /// The producer's time.
    CreateTime,
    /// The time the log appended the record.
    LogAppendTime,
}

impl From<TimestampTypeArg> for TimestampType {
    fn from(arg: TimestampTypeArg) -> Self {
        match arg {
            TimestampTypeArg::CreateTime => Self::CreateTime,
            TimestampTypeArg::LogAppendTime => Self::LogAppendTime,
        }
    }
}

impl CreateArgs {
    fn config(&self) -> TopicConfig {
        let defaults = TopicConfig::default();
        TopicConfig {
            partitions: self.partitions,
            retention_ms: self.retention_ms.map_or(defaults.retention_ms, |l| l.0),
            retention_bytes: self
                .retention_bytes
                .map_or(defaults.retention_bytes, |l| l.0),
            segment_bytes: self.segment_bytes.unwrap_or(defaults.segment_bytes),
            segment_ms: self.segment_ms.map_or(defaults.segment_ms, |l| l.0),
            cleanup_policy: self.cleanup_policy.unwrap_or(defaults.cleanup_policy),
            flush: self.flush.unwrap_or(defaults.flush),
            timestamp_type: self
                .timestamp_type
                .map_or(defaults.timestamp_type, Into::into),
            max_message_bytes: self.max_message_bytes.unwrap_or(defaults.max_message_bytes),
            ..defaults
        }
    }
}

impl CreateArgs {
    /// The Kafka topic configs the flags set: only those, so a cluster keeps its own defaults
    /// for the rest (as the embedded log keeps `TopicConfig`'s).
    fn kafka_configs(&self) -> Vec<(&'static str, String)> {
        let set: Vec<&str> = [
            (self.retention_ms.is_some(), &["retention.ms"][..]),
            (self.retention_bytes.is_some(), &["retention.bytes"]),
            (self.segment_bytes.is_some(), &["segment.bytes"]),
            (self.segment_ms.is_some(), &["segment.ms"]),
            (self.cleanup_policy.is_some(), &["cleanup.policy"]),
            (self.flush.is_some(), &["flush.messages", "flush.ms"]),
            (self.timestamp_type.is_some(), &["message.timestamp.type"]),
            (self.max_message_bytes.is_some(), &["max.message.bytes"]),
        ]
        .into_iter()
        .filter(|(given, _)| *given)
        .flat_map(|(_, keys)| keys.iter().copied())
        .collect();
        kafka_config::configs(&self.config())
            .into_iter()
            .filter(|(key, _)| set.contains(key))
            .collect()
    }
}

/// Runs a `logbrook topic` subcommand.
///
/// # Errors
/// Bad names or configs, unknown topics, a locked or missing data dir, an unreachable cluster;
/// each names the culprit.
pub async fn run(data_dir: &Path, cluster: &ClusterArgs, command: TopicCommand) -> Result<()> {
    match command {
        TopicCommand::Create(args) => {
            let client = cluster.open(data_dir, Access::Create).await?;
            let created = client
                .create_topic(&args.name, args.partitions, &args.kafka_configs())
                .await
                .with_context(|| format!("creating topic {:?}", args.name));
            client.close().await?;
            let partitions = created?;
            output::print(&format!(
                "created topic {:?} with {partitions} partition(s)\n",
                args.name
            ))
        }
        TopicCommand::List { include_internal } => {
            let client = cluster.open(data_dir, Access::ReadOnly).await?;
            let mut text = String::new();
            for name in client.topic_names().await? {
                if include_internal || !name.starts_with("__") {
                    text.push_str(&name);
                    text.push('\n');
                }
            }
            output::print(&text)
        }
        TopicCommand::Describe { name } => {
            let client = cluster.open(data_dir, Access::ReadOnly).await?;
            output::print(&describe(&client.describe_topic(&name).await?))
        }
        TopicCommand::Delete { name } => {
            let client = cluster.open(data_dir, Access::Write).await?;
            let deleted = client
                .delete_topic(&name)
                .await
                .with_context(|| format!("deleting topic {name:?}"));
            client.close().await?;
            deleted?;
            output::print(&format!("deleted topic {name:?}\n"))
        }
    }
}

fn describe(description: &TopicInfo) -> String {
    let config = &description.config;
    let limit = |l: Option<u64>| l.map_or_else(|| "none".to_string(), |n| n.to_string());
    let timestamp_type = match config.timestamp_type {
        TimestampType::CreateTime => "create-time",
        TimestampType::LogAppendTime => "log-append-time",
    };
    let cleanup_policy = match config.cleanup_policy {
        CleanupPolicy::Delete => "delete",
        CleanupPolicy::Compact => "compact",
    };
    let mut settings = Table::new(&["topic", &description.name]);
    for (key, value) in [
        ("partitions", config.partitions.to_string()),
        ("cleanup_policy", cleanup_policy.to_string()),
        ("retention_ms", limit(config.retention_ms)),
        ("retention_bytes", limit(config.retention_bytes)),
        ("segment_bytes", config.segment_bytes.to_string()),
        ("segment_ms", limit(config.segment_ms)),
        (
            "delete_retention_ms",
            config.delete_retention_ms.to_string(),
        ),
        ("flush", config.flush.to_string()),
        ("timestamp_type", timestamp_type.to_string()),
        ("preallocate", config.preallocate.to_string()),
        ("max_message_bytes", config.max_message_bytes.to_string()),
    ] {
        settings.row(vec![key.to_string(), value]);
    }
    let mut partitions = Table::new(&[
        "PARTITION",
        "START OFFSET",
        "END OFFSET",
        "BYTES",
        "SEGMENTS",
    ]);
    for (partition, stats) in description.partitions.iter().enumerate() {
        partitions.row(vec![
            partition.to_string(),
            stats.log_start_offset.to_string(),
            stats.log_end_offset.to_string(),
            // A cluster does not say how it stores a partition.
            stats
                .size_bytes
                .map_or_else(|| "-".into(), |b| b.to_string()),
            stats.segments.map_or_else(|| "-".into(), |s| s.to_string()),
        ]);
    }
    let mut text = settings.render();
    let _ = write!(text, "\n{}", partitions.render());
    text
}
