//! `s3-sink`: writes topics into S3 objects, JSON lines or Parquet, exactly once.
//!
//! ```toml
//! connector = "s3-sink"
//! topics = ["orders"]
//! bucket = "archive"
//! prefix = "topics"                  # objects go under topics/{topic}/...
//! region = "eu-west-1"
//! format = "parquet"                 # json (default) | parquet
//! compression = "zstd"               # parquet: snappy (default) | zstd | none
//! partitioner = "time"               # default | field | time
//! path_format = "dt=%Y-%m-%d/hour=%H"
//! flush_records = 100000             # an object holds at most this many records
//! flush_bytes = 67108864             # ... and about this many bytes
//! rotate_interval_ms = 600000        # ... and is at most this old
//! flush_idle_ms = 60000              # a partition idle this long is written out
//! ```
//!
//! How objects are cut and named, and why that is exactly once, is in `docs/connect.md` (and the
//! private `task` module).

mod encode;
mod parquet;
mod partitioner;
pub(crate) mod task;
mod upload;

use async_trait::async_trait;
use logbrook_connect::{ConfigIssue, Error, Result, Sink, SinkConnector, SinkContext};
use serde::{Deserialize, Serialize};

use crate::client::S3Location;
use partitioner::Partitioner;

/// The config of `s3-sink` (see the [module docs](self)).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3SinkConfig {
    /// The bucket.
    pub bucket: String,
    /// The key prefix objects go under (`archive/topics`); empty: the bucket's root.
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
    /// How records are written.
    #[serde(default)]
    pub format: Format,
    /// Compression of Parquet column chunks (default `snappy`); JSON objects are not
    /// compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Which directory an object goes to under `{prefix}/{topic}/`.
    #[serde(default)]
    pub partitioner: PartitionerKind,
    /// With `partitioner = "field"`: the value fields (dotted paths into nested objects) whose
    /// values name the directories, as `field=value/...`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_fields: Vec<String>,
    /// With `partitioner = "time"`: a strftime format over the record's timestamp, in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_format: Option<String>,
    /// The most records in one object.
    #[serde(default = "default_flush_records")]
    pub flush_records: u64,
    /// An object is written once it holds about this many bytes (encoded, before compression
    /// for Parquet's open row group).
    #[serde(default = "default_flush_bytes")]
    pub flush_bytes: u64,
    /// An object is written once its first record has waited this long.
    #[serde(default = "default_rotate_interval_ms")]
    pub rotate_interval_ms: u64,
    /// A partition without new records for this long has its object written.
    #[serde(default = "default_flush_idle_ms")]
    pub flush_idle_ms: u64,
    /// Objects above this size are uploaded in parts of this size (multipart upload), the
    /// first parts while the object is still being filled. At least 5 MiB (S3's minimum).
    #[serde(default = "default_part_bytes")]
    pub part_bytes: u64,
    /// Uploads (objects or parts) in flight at once per task.
    #[serde(default = "default_max_concurrent_uploads")]
    pub max_concurrent_uploads: usize,
    /// The most bytes a task holds in memory (objects being filled and being uploaded): past
    /// it, the largest open object is written out early, and `put` waits for uploads.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: u64,
}

/// How `s3-sink` writes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// JSON lines, each a whole record: topic, partition, offset, timestamp, key, value,
    /// headers (base64) and schemas. A topic restores from them exactly.
    #[default]
    Json,
    /// Parquet: the value's fields as columns, then the record's metadata columns.
    Parquet,
}

impl Format {
    /// The objects' file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Parquet => "parquet",
        }
    }
}

/// Compression of Parquet column chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// Snappy: fast, moderate ratio.
    Snappy,
    /// Zstandard (level 1): better ratio, a little slower.
    Zstd,
}

/// Which directory an object goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionerKind {
    /// `partition={partition}`: one directory per topic partition.
    #[default]
    Default,
    /// `field=value/...` from `partition_fields` of the record's value.
    Field,
    /// The record's timestamp formatted by `path_format`.
    Time,
}

/// The default `path_format` of the time partitioner.
pub const DEFAULT_PATH_FORMAT: &str = "year=%Y/month=%m/day=%d/hour=%H";
/// S3's smallest part (except the last).
const MIN_PART_BYTES: u64 = 5 << 20;

fn default_flush_records() -> u64 {
    100_000
}

fn default_flush_bytes() -> u64 {
    64 << 20
}

fn default_rotate_interval_ms() -> u64 {
    600_000
}

fn default_flush_idle_ms() -> u64 {
    60_000
}

fn default_part_bytes() -> u64 {
    8 << 20
}

fn default_max_concurrent_uploads() -> usize {
    8
}

fn default_max_buffered_bytes() -> u64 {
    256 << 20
}

impl std::fmt::Debug for S3SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3SinkConfig")
            .field("location", &self.location())
            .field("prefix", &self.prefix)
            .field("format", &self.format)
            .field("compression", &self.compression)
            .field("partitioner", &self.partitioner)
            .field("partition_fields", &self.partition_fields)
            .field("path_format", &self.path_format)
            .field("flush_records", &self.flush_records)
            .field("flush_bytes", &self.flush_bytes)
            .field("rotate_interval_ms", &self.rotate_interval_ms)
            .field("flush_idle_ms", &self.flush_idle_ms)
            .field("part_bytes", &self.part_bytes)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .finish()
    }
}

impl S3SinkConfig {
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

    /// The compression in effect.
    pub(crate) fn compression(&self) -> Compression {
        self.compression.unwrap_or(match self.format {
            Format::Json => Compression::None,
            Format::Parquet => Compression::Snappy,
        })
    }
}

#[async_trait]
impl SinkConnector for S3SinkConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        self.location().validate()?;
        if self.format == Format::Json && self.compression.is_some_and(|c| c != Compression::None) {
            return Err(ConfigIssue::new(
                "compression",
                "applies to format = \"parquet\" only",
            ));
        }
        Partitioner::new(self)?;
        for (key, value) in [
            ("flush_records", self.flush_records),
            ("flush_bytes", self.flush_bytes),
            ("rotate_interval_ms", self.rotate_interval_ms),
            ("flush_idle_ms", self.flush_idle_ms),
        ] {
            if value == 0 {
                return Err(ConfigIssue::new(key, "must be at least 1"));
            }
        }
        if self.part_bytes < MIN_PART_BYTES {
            return Err(ConfigIssue::new(
                "part_bytes",
                format!("must be at least {MIN_PART_BYTES} (5 MiB, S3's smallest part)"),
            ));
        }
        if self.max_buffered_bytes == 0 {
            return Err(ConfigIssue::new("max_buffered_bytes", "must be at least 1"));
        }
        if self.max_concurrent_uploads == 0 {
            return Err(ConfigIssue::new(
                "max_concurrent_uploads",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    async fn open(self, context: SinkContext) -> Result<Box<dyn Sink>> {
        self.validate()
            .map_err(|issue| Error::fatal(issue.to_string()))?;
        let sink = task::S3Sink::open(self, context).await?;
        Ok(Box::new(sink))
    }
}
