//! Per-topic configuration, stored as `topic.json` beside the partitions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::TimestampType;

/// When appended data is fsynced, and so when an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FlushPolicy {
    /// Fsync before acknowledging; concurrent appends share one fsync (group commit).
    #[default]
    Always,
    /// Fsync every N milliseconds in the background; acknowledge once written to the page cache.
    Interval {
        /// Milliseconds between fsyncs.
        ms: u64,
    },
    /// Leave flushing to the OS; acknowledge once written to the page cache.
    Never,
}

impl FromStr for FlushPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidConfig {
            key: "flush",
            reason: format!("{s:?} is not one of always, never, interval:MS"),
        };
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => {
                let ms = s
                    .strip_prefix("interval:")
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?;
                if ms == 0 {
                    Err(bad())
                } else {
                    Ok(Self::Interval { ms })
                }
            }
        }
    }
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Never => f.write_str("never"),
            Self::Interval { ms } => write!(f, "interval:{ms}"),
        }
    }
}

impl TryFrom<String> for FlushPolicy {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<FlushPolicy> for String {
    fn from(p: FlushPolicy) -> String {
        p.to_string()
    }
}

/// What happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// Delete whole sealed segments past the retention limits.
    #[default]
    Delete,
    /// Keep the latest record per key in sealed segments (log compaction).
    Compact,
}

impl FromStr for CleanupPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "delete" => Ok(Self::Delete),
            "compact" => Ok(Self::Compact),
            _ => Err(Error::InvalidConfig {
                key: "cleanup_policy",
                reason: format!("{s:?} is not one of delete, compact"),
            }),
        }
    }
}

/// Configuration of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// Number of partitions.
    pub partitions: u32,
    /// Roll the active segment when it would exceed this many bytes.
    pub segment_bytes: u64,
    /// Roll the active segment when its first batch is older than this; `None` never.
    pub segment_ms: Option<u64>,
    /// Delete sealed segments whose newest record is older than this; `None` keeps them.
    pub retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while the partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// `delete` (retention) or `compact` (latest value per key).
    pub cleanup_policy: CleanupPolicy,
    /// How long a compacted topic keeps tombstones before the cleaner drops them.
    pub delete_retention_ms: u64,
    /// When appends are fsynced.
    pub flush: FlushPolicy,
    /// Create time or log-append time.
    pub timestamp_type: TimestampType,
    /// Reserve disk blocks ahead of the active segment's end.
    pub preallocate: bool,
}

/// Default segment size: 1 GiB, as Kafka.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: Some(7 * DAY_MS),
            retention_ms: Some(7 * DAY_MS),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DAY_MS,
            flush: FlushPolicy::Always,
            timestamp_type: TimestampType::CreateTime,
            preallocate: true,
        }
    }
}

impl TopicConfig {
    /// Checks ranges; pure.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key, reason: String| Err(Error::InvalidConfig { key, reason });
        if !(1..=10_000).contains(&self.partitions) {
            return bad(
                "partitions",
                format!("{} is not in 1..=10000", self.partitions),
            );
        }
        if !(4096..=i32::MAX as u64).contains(&self.segment_bytes) {
            return bad(
                "segment_bytes",
                format!("{} is not in 4096..={}", self.segment_bytes, i32::MAX),
            );
        }
        if self.segment_ms == Some(0) {
            return bad("segment_ms", "must be positive".into());
        }
        if let FlushPolicy::Interval { ms: 0 } = self.flush {
            return bad("flush", "interval must be positive".into());
        }
        Ok(())
    }
}
