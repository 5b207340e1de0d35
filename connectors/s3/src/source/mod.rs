//! `s3-source`: reads objects under a prefix, in order, into records.
//!
//! ```toml
//! connector = "s3-source"
//! bucket = "archive"
//! prefix = "topics/orders"
//! format = "json"            # json (lines) | csv | parquet
//! envelope = "record"        # objects s3-sink wrote: restore each record as it was
//! poll_interval_ms = 5000    # how often new objects are looked for
//! ```
//!
//! **Order.** Objects are read one at a time, by directory (the key up to its last `/`) and
//! by key within a directory, so the objects `s3-sink` writes for a topic partition
//! (`.../partition=3/orders+3+{offset:020}.json`) are read in offset order. New objects are
//! found by listing again every `poll_interval_ms`; within a directory, an object whose key
//! sorts before one already read is not read.
//!
//! **Offsets.** The source partition is the directory; the source offset is the object and
//! the position after the record in it (a byte position for JSON and CSV, a row for Parquet),
//! stored by the runtime with the records. A restarted task resumes at the next record.
//!
//! **Envelopes.** `value` (the default) makes each JSON line, CSV row (an object of the
//! header's names to string fields) or Parquet row (an object of its columns) a record value.
//! `record` reads objects `s3-sink` wrote and restores each record's key, value, headers,
//! timestamp, partition and schemas, and its topic unless the connector names one in `topic`;
//! JSON lines give back the original key and value bytes. A missing target topic is created
//! with the archive's partitions (see `partitions_needed`).

mod decode;
mod task;

use std::collections::BTreeMap;

use async_trait::async_trait;
pub use logbrook_connect::TaskShare;
use logbrook_connect::{ConfigIssue, Error, Result, Source, SourceConnector, SourceContext};
use serde::{Deserialize, Serialize};

use crate::client::S3Location;
use crate::layout::parse_object_name;

/// The config of `s3-source` (see the [module docs](self)).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3SourceConfig {
    /// The bucket.
    pub bucket: String,
    /// The key prefix to read under; empty: the whole bucket.
    #[serde(default)]
    pub prefix: String,
    /// The AWS region. Without it: `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's (never
    /// instance metadata); `us-east-1` with a custom `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A custom endpoint for S3-compatible stores (`http://127.0.0.1:9000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); default: true with an `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// The access key id; with `secret_access_key` static credentials are used, without both
    /// the standard AWS credential chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The secret access key; a secret, never logged or shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// The objects' format. Only objects with its extensions are read: `.json`, `.jsonl`,
    /// `.ndjson`; `.csv`; `.parquet`.
    #[serde(default)]
    pub format: SourceFormat,
    /// What an object holds: plain values, or records as `s3-sink` wrote them.
    #[serde(default)]
    pub envelope: Envelope,
    /// How often to list the prefix for new objects once everything listed is read.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The most records one poll returns.
    #[serde(default = "default_batch_records")]
    pub batch_records: usize,
    /// Set by the connector when it splits the directories among tasks. Not meant to be set
    /// by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_share: Option<TaskShare>,
}

/// The format of the objects `s3-source` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// JSON lines; blank lines are skipped, a line that does not parse goes to
    /// `errors.tolerance` as a string.
    #[default]
    Json,
    /// CSV with a header row: each row becomes an object of header name to string field.
    Csv,
    /// Parquet.
    Parquet,
}

impl SourceFormat {
    /// Whether a key has one of this format's extensions.
    pub fn matches(self, key: &str) -> bool {
        let extensions: &[&str] = match self {
            Self::Json => &[".json", ".jsonl", ".ndjson"],
            Self::Csv => &[".csv"],
            Self::Parquet => &[".parquet"],
        };
        extensions.iter().any(|e| key.ends_with(e))
    }
}

/// What an object's lines or rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    /// Each is a record's value.
    #[default]
    Value,
    /// Each is a whole record as `s3-sink` writes it (JSON or Parquet).
    Record,
}

fn default_poll_interval_ms() -> u64 {
    5_000
}

fn default_batch_records() -> usize {
    10_000
}

impl std::fmt::Debug for S3SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3SourceConfig")
            .field("location", &self.location())
            .field("prefix", &self.prefix)
            .field("format", &self.format)
            .field("envelope", &self.envelope)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .field("batch_records", &self.batch_records)
            .field("task_share", &self.task_share)
            .finish()
    }
}

impl S3SourceConfig {
    pub(crate) fn location(&self) -> S3Location {
        S3Location {
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            force_path_style: self.force_path_style,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }
}

#[async_trait]
impl SourceConnector for S3SourceConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        self.location().validate()?;
        if self.envelope == Envelope::Record && self.format == SourceFormat::Csv {
            return Err(ConfigIssue::new(
                "envelope",
                "\"record\" reads what s3-sink writes: format = \"json\" or \"parquet\"",
            ));
        }
        if self.poll_interval_ms == 0 {
            return Err(ConfigIssue::new("poll_interval_ms", "must be at least 1"));
        }
        if self.batch_records == 0 {
            return Err(ConfigIssue::new("batch_records", "must be at least 1"));
        }
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Self>> {
        let count = max_tasks.max(1);
        if count == 1 {
            return Ok(vec![self.clone()]);
        }
        Ok((0..count)
            .map(|index| Self {
                task_share: Some(TaskShare { index, count }),
                ..self.clone()
            })
            .collect())
    }

    fn names_own_topics(&self) -> bool {
        self.envelope == Envelope::Record
    }

    /// An archive's topics need the partitions its object names (`{topic}+{partition}+...`)
    /// carry, so a restore into a new topic puts every record back in its partition.
    async fn partitions_needed(&self, topic: &str) -> Result<Vec<(String, u32)>> {
        if self.envelope != Envelope::Record {
            return Ok(Vec::new());
        }
        let client = self.location().client().await;
        // By topic: the partitions needed and the object that needs the most, for the log.
        let mut needed: BTreeMap<String, (u32, String)> = BTreeMap::new();
        for key in task::list_keys(&client, self).await? {
            if let Some((archived, partition, _)) = parse_object_name(&key) {
                let name = if topic.is_empty() {
                    archived
                } else {
                    topic.to_string()
                };
                let entry = needed.entry(name).or_default();
                if partition >= entry.0 {
                    *entry = (partition.saturating_add(1), key);
                }
            }
        }
        Ok(needed
            .into_iter()
            .map(|(topic, (partitions, key))| {
                tracing::info!(
                    topic,
                    partitions,
                    object = key,
                    "the archive needs partitions"
                );
                (topic, partitions)
            })
            .collect())
    }

    async fn open(self, context: SourceContext) -> Result<Box<dyn Source>> {
        self.validate()
            .map_err(|issue| Error::fatal(issue.to_string()))?;
        Ok(Box::new(task::S3Source::open(self, context).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_pick_their_extensions() {
        assert!(SourceFormat::Json.matches("a/b.jsonl"));
        assert!(!SourceFormat::Json.matches("a/b.parquet"));
        assert!(SourceFormat::Parquet.matches("a/t+0+00000000000000000001.parquet"));
    }
}
