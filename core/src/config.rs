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
    /// The largest batch (as stored, compressed) an append may carry: Kafka's
    /// `max.message.bytes`, at most [`MAX_BATCH_BYTES`](crate::batch::MAX_BATCH_BYTES).
    pub max_message_bytes: u64,
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
            max_message_bytes: crate::batch::MAX_BATCH_BYTES as u64,
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
        let max_batch = crate::batch::MAX_BATCH_BYTES as u64;
        if !(crate::batch::HEADER_LEN as u64..=max_batch).contains(&self.max_message_bytes) {
            return bad(
                "max_message_bytes",
                format!(
                    "{} is not in {}..={max_batch}",
                    self.max_message_bytes,
                    crate::batch::HEADER_LEN
                ),
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

/// Kafka's names for the topic configs the log has, as a Kafka client or broker spells them.
pub mod kafka {
    use super::{CleanupPolicy, FlushPolicy, TopicConfig};
    use crate::error::{Error, Result};
    use crate::record::TimestampType;

    /// Kafka's "no limit" and "never" (`Long.MAX_VALUE` for the flush settings).
    const NEVER: i64 = i64::MAX;

    /// Every Kafka topic config that maps onto [`TopicConfig`].
    pub const KEYS: [&str; 11] = [
        "cleanup.policy",
        "retention.ms",
        "retention.bytes",
        "segment.bytes",
        "segment.ms",
        "delete.retention.ms",
        "flush.messages",
        "flush.ms",
        "message.timestamp.type",
        "preallocate",
        "max.message.bytes",
    ];

    /// `config` under Kafka's names, in [`KEYS`] order; -1 is "no limit", as in Kafka.
    /// `flush = always` is `flush.messages = 1` (fsync every batch), `interval:MS` is
    /// `flush.ms = MS`.
    #[must_use]
    pub fn configs(config: &TopicConfig) -> Vec<(&'static str, String)> {
        let limit = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
        let (flush_messages, flush_ms) = match config.flush {
            FlushPolicy::Always => (1, NEVER),
            FlushPolicy::Interval { ms } => (NEVER, i64::try_from(ms).unwrap_or(NEVER)),
            FlushPolicy::Never => (NEVER, NEVER),
        };
        vec![
            (
                "cleanup.policy",
                match config.cleanup_policy {
                    CleanupPolicy::Delete => "delete".into(),
                    CleanupPolicy::Compact => "compact".into(),
                },
            ),
            ("retention.ms", limit(config.retention_ms)),
            ("retention.bytes", limit(config.retention_bytes)),
            ("segment.bytes", config.segment_bytes.to_string()),
            // Kafka has no "never roll": the longest time stands for it.
            (
                "segment.ms",
                config
                    .segment_ms
                    .map_or(NEVER.to_string(), |v| v.to_string()),
            ),
            (
                "delete.retention.ms",
                config.delete_retention_ms.to_string(),
            ),
            ("flush.messages", flush_messages.to_string()),
            ("flush.ms", flush_ms.to_string()),
            (
                "message.timestamp.type",
                match config.timestamp_type {
                    TimestampType::CreateTime => "CreateTime".into(),
                    TimestampType::LogAppendTime => "LogAppendTime".into(),
                },
            ),
            ("preallocate", config.preallocate.to_string()),
            ("max.message.bytes", config.max_message_bytes.to_string()),
        ]
    }

    /// `base` with Kafka configs applied (a config not named keeps `base`'s value).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key: an unknown key, a value out of range, a
    /// `flush.messages` other than 1 (every batch) or never.
    pub fn apply<'a>(
        base: TopicConfig,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TopicConfig> {
        let mut config = base;
        let (mut flush_messages, mut flush_ms) = (None, None);
        for (key, value) in entries {
            let bad = |reason: String| Error::InvalidConfig {
                key: "topic config",
                reason: format!("{key} = {value:?}: {reason}"),
            };
            let number = || {
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| bad("not a number".into()))
            };
            // -1 is "no limit", as in Kafka.
            let limit = |n: i64| u64::try_from(n).ok();
            match key {
                "cleanup.policy" => {
                    config.cleanup_policy = match value {
                        "delete" => CleanupPolicy::Delete,
                        "compact" => CleanupPolicy::Compact,
                        _ => return Err(bad("delete or compact".into())),
                    }
                }
                "retention.ms" => config.retention_ms = limit(number()?),
                "retention.bytes" => config.retention_bytes = limit(number()?),
                "segment.bytes" => {
                    config.segment_bytes =
                        limit(number()?).ok_or_else(|| bad("must be positive".into()))?;
                }
                "segment.ms" => {
                    config.segment_ms = match number()? {
                        NEVER => None,
                        n => Some(limit(n).ok_or_else(|| bad("must be positive".into()))?),
                    }
                }
                "delete.retention.ms" => {
                    config.delete_retention_ms =
                        limit(number()?).ok_or_else(|| bad("must not be negative".into()))?;
                }
                "flush.messages" => flush_messages = Some(number()?),
                "flush.ms" => flush_ms = Some(number()?),
                "message.timestamp.type" => {
                    config.timestamp_type = match value {
                        "CreateTime" => TimestampType::CreateTime,
                        "LogAppendTime" => TimestampType::LogAppendTime,
                        _ => return Err(bad("CreateTime or LogAppendTime".into())),
                    }
                }
                "preallocate" => {
                    config.preallocate = value.parse().map_err(|_| bad("true or false".into()))?;
                }
                "max.message.bytes" => {
                    config.max_message_bytes =
                        limit(number()?).ok_or_else(|| bad("must be positive".into()))?;
                }
                _ => return Err(bad("not a topic config Logbrook has".into())),
            }
        }
        if flush_messages.is_some() || flush_ms.is_some() {
            config.flush = match (flush_messages, flush_ms) {
                (Some(1), _) => FlushPolicy::Always,
                (Some(n), _) if n != NEVER => {
                    return Err(Error::InvalidConfig {
                        key: "topic config",
                        reason: format!(
                            "flush.messages = {n}: Logbrook fsyncs every batch (1) or leaves it to flush.ms ({NEVER})"
                        ),
                    });
                }
                (_, Some(ms)) if ms != NEVER && ms > 0 => FlushPolicy::Interval { ms: ms as u64 },
                (_, Some(ms)) if ms != NEVER => {
                    return Err(Error::InvalidConfig {
                        key: "topic config",
                        reason: format!("flush.ms = {ms}: must be positive"),
                    });
                }
                // Both "never" (or the one given is): as Kafka's defaults, the OS flushes.
                _ => FlushPolicy::Never,
            };
        }
        config.validate()?;
        Ok(config)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_config_round_trips_through_kafkas_names() {
            for config in [
                TopicConfig::default(),
                TopicConfig {
                    partitions: 3,
                    segment_bytes: 1 << 20,
                    segment_ms: None,
                    retention_ms: None,
                    retention_bytes: Some(5 << 20),
                    cleanup_policy: CleanupPolicy::Compact,
                    delete_retention_ms: 60_000,
                    flush: FlushPolicy::Interval { ms: 250 },
                    timestamp_type: TimestampType::LogAppendTime,
                    preallocate: false,
                    max_message_bytes: 10_000,
                },
                TopicConfig {
                    flush: FlushPolicy::Never,
                    ..TopicConfig::default()
                },
            ] {
                let names = configs(&config);
                assert_eq!(names.iter().map(|(k, _)| *k).collect::<Vec<_>>(), KEYS);
                let back = apply(
                    TopicConfig {
                        partitions: config.partitions,
                        ..TopicConfig::default()
                    },
                    names.iter().map(|(k, v)| (*k, v.as_str())),
                )
                .expect("round trip");
                assert_eq!(back, config);
            }
        }

        #[test]
        fn bad_configs_are_named() {
            let err = |entries: &[(&str, &str)]| {
                apply(TopicConfig::default(), entries.iter().copied())
                    .expect_err("refused")
                    .to_string()
            };
            assert!(err(&[("min.insync.replicas", "2")]).contains("min.insync.replicas"));
            assert!(err(&[("retention.ms", "soon")]).contains("retention.ms"));
            assert!(err(&[("flush.messages", "10")]).contains("flush.messages = 10"));
            assert!(err(&[("cleanup.policy", "delete,compact")]).contains("cleanup.policy"));
            // Kafka's defaults (flush left to the OS) read as `never`.
            let kafka_defaults = apply(
                TopicConfig::default(),
                [
                    ("flush.messages", "9223372036854775807"),
                    ("flush.ms", "9223372036854775807"),
                ],
            )
            .expect("defaults");
            assert_eq!(kafka_defaults.flush, FlushPolicy::Never);
        }
    }
}
