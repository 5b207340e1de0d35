//! Topics: name rules, metadata on disk, and their partitions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::log::{Log, PartitionStats};
use crate::partition::Partition;
use crate::record::TopicPartition;
use crate::storage::{Storage, sync_dir};

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

/// A topic and its partitions, as of one config: altering the config or adding partitions
/// makes a new handle (sharing the partitions) and marks this one replaced.
#[derive(Debug)]
pub struct Topic {
    name: Arc<str>,
    config: TopicConfig,
    dir: PathBuf,
    partitions: Vec<Arc<Partition>>,
    /// Set when the topic is closed (deleted, or the broker closed): handles holding it look
    /// the topic up again.
    closed: AtomicBool,
    /// Set when a newer handle took this one's place (partitions added, config altered).
    replaced: AtomicBool,
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
        if writable {
            // Left by an alteration interrupted before its rename; the old file is whole.
            let _ = std::fs::remove_file(dir.join(format!("{TOPIC_FILE}.tmp")));
        }
        let name: Arc<str> = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::CorruptMetadata {
                path: dir.clone(),
                reason: "not a topic directory".into(),
            })?
            .into();
        let partitions = open_partitions(storage, &dir, &name, &config, 0, writable)?;
        Ok(Self {
            name,
            config,
            dir,
            partitions,
            closed: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
        })
    }

    /// A handle with `config`: the partitions this one has, shared and switched to `config`,
    /// and any more `config.partitions` asks for, opened (created when `writable`). Shrinking
    /// is the caller's to refuse; a smaller count keeps every partition.
    pub(crate) fn with_config(
        &self,
        storage: &Arc<dyn Storage>,
        config: TopicConfig,
        writable: bool,
    ) -> Result<Self> {
        let added = open_partitions(
            storage,
            &self.dir,
            &self.name,
            &config,
            self.partition_count(),
            writable,
        )?;
        for partition in &self.partitions {
            partition.log().set_config(config.clone());
        }
        let mut partitions = self.partitions.clone();
        partitions.extend(added);
        Ok(Self {
            name: self.name.clone(),
            config,
            dir: self.dir.clone(),
            partitions,
            closed: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
        })
    }

    /// Marks this handle as replaced by a newer one; see [`Topic::is_stale`].
    pub(crate) fn mark_replaced(&self) {
        self.replaced.store(true, Ordering::Relaxed);
    }

    /// The config on disk, when it differs from this handle's (read-only views follow the
    /// writer's alterations with it).
    pub(crate) fn changed_config(&self) -> Result<Option<TopicConfig>> {
        let config = read_config(&self.dir)?;
        Ok((config != self.config).then_some(config))
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

    /// Whether this handle is out of date: the topic was closed, or a newer handle replaced
    /// this one (partitions added, config altered). Holders look the topic up again.
    pub fn is_stale(&self) -> bool {
        self.is_closed() || self.replaced.load(Ordering::Relaxed)
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

/// Finds open topics by name: how the group and transaction coordinators reach the partitions
/// they are asked about without knowing the broker that holds them.
pub(crate) trait TopicLookup: Sync {
    /// A topic by name.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`].
    fn topic(&self, name: &str) -> Result<Arc<Topic>>;

    /// One partition of a topic.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::UnknownPartition`].
    fn partition(&self, tp: &TopicPartition) -> Result<Arc<Partition>> {
        self.topic(&tp.topic)?.partition(tp.partition).cloned()
    }

    /// Every partition of every topic, internal ones included.
    fn all_partitions(&self) -> Vec<Arc<Partition>>;
}

/// The broker's topics by name.
impl TopicLookup for DashMap<String, Arc<Topic>> {
    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.get(name)
            .map(|t| t.clone())
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.iter().flat_map(|t| t.partitions().to_vec()).collect()
    }
}

/// Opens partitions `first..config.partitions` of the topic in `dir`.
fn open_partitions(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    name: &Arc<str>,
    config: &TopicConfig,
    first: u32,
    writable: bool,
) -> Result<Vec<Arc<Partition>>> {
    let mut partitions = Vec::with_capacity(config.partitions.saturating_sub(first) as usize);
    for p in first..config.partitions {
        let log = Log::open(
            storage.clone(),
            dir.join(p.to_string()),
            name.clone(),
            p,
            config.clone(),
            writable,
        );
        match log.and_then(|log| Partition::new(log, writable)) {
            Ok(partition) => partitions.push(Arc::new(partition)),
            Err(e) => {
                // Stop the append threads of those already opened.
                for partition in &partitions {
                    let _ = partition.close();
                }
                return Err(e);
            }
        }
    }
    Ok(partitions)
}

/// Writes a topic's config to `dir/topic.json` atomically: a temporary file, fsynced, renamed
/// over the old one, then the directory fsynced. A crash leaves the old config or the new.
pub(crate) fn write_config(dir: &Path, config: &TopicConfig) -> Result<()> {
    let path = dir.join(TOPIC_FILE);
    let tmp = dir.join(format!("{TOPIC_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(config).map_err(|e| Error::CorruptMetadata {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let mut file = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    std::io::Write::write_all(&mut file, &json)
        .and_then(|()| file.sync_all())
        .map_err(Error::io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(Error::io(&path))?;
    sync_dir(dir).map_err(Error::io(dir))
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
