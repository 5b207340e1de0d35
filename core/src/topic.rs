//! Topics: name rules, metadata on disk, and their partitions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::log::{Log, PartitionStats};
use crate::partition::Partition;
use crate::storage::Storage;

/// Name of the metadata file in a topic's directory.
pub(crate) const TOPIC_FILE: &str = "topic.json";

/// Checks Kafka's topic naming rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
/// A valid name is always a single safe path component.
///
/// # Errors
/// [`Error::InvalidTopicName`] saying which part of the rule is broken.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 249 {
        return bad("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    name: Arc<str>,
    config: TopicConfig,
    dir: PathBuf,
    partitions: Vec<Arc<Partition>>,
    /// Set when the topic is closed (deleted, or the broker closed): handles holding it look
    /// the topic up again.
    closed: AtomicBool,
}

/// A topic's configuration and per-partition counters.
#[derive(Debug, Clone)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// Its configuration.
    pub config: TopicConfig,
    /// Counters per partition, in partition order.
    pub partitions: Vec<PartitionStats>,
}

impl Topic {
    /// Opens every partition of the topic stored in `dir`.
    pub(crate) fn open(storage: &Arc<dyn Storage>, dir: PathBuf, writable: bool) -> Result<Self> {
        let config = read_config(&dir)?;
        let name: Arc<str> = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::CorruptMetadata {
                path: dir.clone(),
                reason: "not a topic directory".into(),
            })?
            .into();
        let mut partitions = Vec::with_capacity(config.partitions as usize);
        for p in 0..config.partitions {
            let log = Log::open(
                storage.clone(),
                dir.join(p.to_string()),
                name.clone(),
                p,
                config.clone(),
                writable,
            )?;
            partitions.push(Arc::new(Partition::new(log, writable)?));
        }
        Ok(Self {
            name,
            config,
            dir,
            partitions,
            closed: AtomicBool::new(false),
        })
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's configuration.
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// One partition.
    ///
    /// # Errors
    /// [`Error::UnknownPartition`] if out of range.
    pub fn partition(&self, partition: u32) -> Result<&Arc<Partition>> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| Error::UnknownPartition {
                topic: self.name.to_string(),
                partition,
                partitions: self.partition_count(),
            })
    }

    /// All partitions in order.
    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// Configuration and counters.
    pub fn describe(&self) -> TopicDescription {
        TopicDescription {
            name: self.name.to_string(),
            config: self.config.clone(),
            partitions: self.partitions.iter().map(|p| p.log().stats()).collect(),
        }
    }

    /// Whether the topic was closed (deleted, or its broker closed).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    pub(crate) fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Relaxed);
        let mut first_error = None;
        for p in &self.partitions {
            if let Err(e) = p.close() {
                tracing::error!(topic = %self.name, partition = p.log().partition(), error = %e, "closing partition failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn read_config(dir: &Path) -> Result<TopicConfig> {
    let path = dir.join(TOPIC_FILE);
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let config: TopicConfig = serde_json::from_str(&text).map_err(|e| Error::CorruptMetadata {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    config.validate().map_err(|e| Error::CorruptMetadata {
        path,
        reason: e.to_string(),
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_topic_name_rule_is_enforced() {
        for ok in ["a", "orders.v1", "my_topic-2", "...", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../etc",
            "a b",
            "ü",
            &"x".repeat(250),
            "a\0b",
        ] {
            assert!(
                validate_topic_name(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
