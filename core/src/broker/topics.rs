//! The broker's topics: creation, deletion, alteration, growth, record deletion, lookup, and
//! following the writer from a read-only handle.

use std::path::Path;
use std::sync::Arc;

use super::{Broker, list_topic_dirs};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::groups::OFFSETS_TOPIC;
use crate::record::now_ms;
use crate::storage::{Storage, sync_dir};
use crate::topic::{
    TOPIC_FILE, Topic, TopicDescription, TopicLookup, validate_topic_name, write_config,
};
use crate::transactions::TRANSACTIONS_TOPIC;

impl Broker {
    /// Creates a topic.
    ///
    /// # Errors
    /// [`Error::InvalidTopicName`], [`Error::InvalidConfig`], [`Error::TopicExists`],
    /// [`Error::ReadOnly`], I/O errors.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        validate_topic_name(name)?;
        config.validate()?;
        self.writable("create topic")?;
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        if self.inner.topics.contains_key(name) {
            return Err(Error::TopicExists(name.to_string()));
        }
        let topic = Arc::new(create_topic_files(
            &self.inner.config.data_dir,
            &self.inner.config.storage,
            name,
            &config,
        )?);
        self.inner.topics.insert(name.to_string(), topic.clone());
        tracing::info!(
            topic = name,
            partitions = config.partitions,
            "created topic"
        );
        Ok(topic)
    }

    /// Deletes a topic, its data and the groups' committed offsets for it.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::ReadOnly`], I/O errors.
    ///
    /// # Cancel safety
    /// Once started, the deletion completes in the background even if the future is dropped.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.writable("delete topic")?;
        if name == OFFSETS_TOPIC || name == TRANSACTIONS_TOPIC {
            return Err(Error::InvalidTopicName {
                name: name.into(),
                reason: "internal topics cannot be deleted",
            });
        }
        let (_, topic) = {
            let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
            self.inner
                .topics
                .remove(name)
                .ok_or_else(|| Error::UnknownTopic(name.to_string()))?
        };
        let root = self.inner.config.data_dir.clone();
        let name_owned = name.to_string();
        tokio::task::spawn_blocking(move || -> Result<()> {
            topic.close()?;
            let trash = root.join(".trash");
            std::fs::create_dir_all(&trash).map_err(Error::io(&trash))?;
            let target = trash.join(format!("{name_owned}.{}", now_ms()));
            std::fs::rename(topic.dir(), &target).map_err(Error::io(topic.dir()))?;
            sync_dir(&root.join("topics")).map_err(Error::io(root.join("topics")))?;
            std::fs::remove_dir_all(&target).map_err(Error::io(&target))
        })
        .await
        .map_err(|_| Error::Closed)??;
        self.inner.groups.forget_topic(name).await?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Changes a topic's config (Kafka's AlterConfigs): validated, written to its `topic.json`
    /// atomically, then applied to its live partitions (retention, compaction, segment rolling,
    /// flushing and timestamps follow it from their next step). The partition count cannot
    /// change here (see [`Broker::create_partitions`]). Returns the topic's new handle; older
    /// handles report [`Topic::is_stale`].
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::InvalidConfig`] (also for a different partition count),
    /// [`Error::ReadOnly`], I/O errors.
    pub fn alter_topic_config(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        config.validate()?;
        self.writable("alter topic config")?;
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self.topic(name)?;
        if config.partitions != topic.partition_count() {
            return Err(Error::InvalidConfig {
                key: "partitions",
                reason: format!(
                    "topic {name:?} has {} partitions; they are added with create partitions, not altered",
                    topic.partition_count()
                ),
            });
        }
        write_config(topic.dir(), &config)?;
        let altered = Arc::new(topic.with_config(&self.inner.config.storage, config, true)?);
        self.inner.topics.insert(name.to_string(), altered.clone());
        topic.mark_replaced();
        tracing::info!(topic = name, "altered topic config");
        Ok(altered)
    }

    /// Grows a topic to `partitions` partitions (Kafka's CreatePartitions): the new partitions
    /// are created and opened, then the count is written to its `topic.json` atomically (a
    /// crash in between leaves the old count, and empty partition directories the next growth
    /// reuses). Returns the topic's new handle; older handles report [`Topic::is_stale`].
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::InvalidPartitionCount`] for a count not above the
    /// current one, [`Error::InvalidConfig`] past the limit, [`Error::ReadOnly`], I/O errors.
    pub fn create_partitions(&self, name: &str, partitions: u32) -> Result<Arc<Topic>> {
        self.writable("create partitions")?;
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self.topic(name)?;
        let config = self.grown_config(&topic, partitions)?;
        let old_count = topic.partition_count() as usize;
        let grown = topic.with_config(&self.inner.config.storage, config.clone(), true)?;
        if let Err(e) = write_config(topic.dir(), &config) {
            for added in &grown.partitions()[old_count..] {
                let _ = added.close();
            }
            // The partitions already switched to the new config differ only in the count.
            for partition in topic.partitions() {
                partition.log().set_config(topic.config().clone());
            }
            return Err(e);
        }
        let grown = Arc::new(grown);
        self.inner.topics.insert(name.to_string(), grown.clone());
        topic.mark_replaced();
        tracing::info!(topic = name, partitions, "created partitions");
        Ok(grown)
    }

    /// The config `topic` would have with `partitions` partitions, if it may grow to them.
    ///
    /// # Errors
    /// As [`Broker::create_partitions`], without I/O.
    pub fn grown_config(&self, topic: &Topic, partitions: u32) -> Result<TopicConfig> {
        if partitions <= topic.partition_count() {
            return Err(Error::InvalidPartitionCount {
                topic: topic.name().to_string(),
                partitions: topic.partition_count(),
                requested: partitions,
            });
        }
        let config = TopicConfig {
            partitions,
            ..topic.config().clone()
        };
        config.validate()?;
        Ok(config)
    }

    /// Deletes the records of a partition below `before` (Kafka's DeleteRecords): its log start
    /// offset moves there, durably, and sealed segments wholly below it are deleted. `None`
    /// means the high watermark. Returns the new log start offset (the low watermark).
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::UnknownPartition`], [`Error::OffsetOutOfRange`] past the
    /// high watermark, [`Error::RecordsNotDeletable`] on a compacted topic, [`Error::ReadOnly`],
    /// I/O errors.
    ///
    /// # Cancel safety
    /// Once started, the deletion completes in the background even if the future is dropped.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        before: Option<u64>,
    ) -> Result<u64> {
        self.writable("delete records")?;
        let log = self.topic(topic)?.partition(partition)?.log().clone();
        tokio::task::spawn_blocking(move || log.delete_records(before))
            .await
            .map_err(|_| Error::Closed)?
    }

    /// A topic by name.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`].
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner.topics.topic(name)
    }

    /// Names of all topics, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.topics.iter().map(|t| t.key().clone()).collect();
        names.sort();
        names
    }

    /// Configuration and per-partition counters of a topic.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`].
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        Ok(self.topic(name)?.describe())
    }

    /// Read-only handles: re-reads topics and segment files written by the writer process.
    ///
    /// # Errors
    /// I/O errors.
    pub fn refresh(&self) -> Result<()> {
        if !self.is_read_only() {
            return Ok(());
        }
        let topics_dir = self.inner.config.data_dir.join("topics");
        for dir in list_topic_dirs(&topics_dir)? {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if !self.inner.topics.contains_key(&name)
                && dir.join(TOPIC_FILE).exists()
                && let Ok(topic) = Topic::open(&self.inner.config.storage, dir, false)
            {
                self.inner.topics.insert(name, Arc::new(topic));
            }
        }
        // Follow the writer's alterations: a new config, more partitions.
        let current: Vec<Arc<Topic>> = self.inner.topics.iter().map(|t| t.clone()).collect();
        for topic in current {
            if let Ok(Some(config)) = topic.changed_config()
                && let Ok(changed) = topic.with_config(&self.inner.config.storage, config, false)
            {
                self.inner
                    .topics
                    .insert(topic.name().to_string(), Arc::new(changed));
                topic.mark_replaced();
            }
        }
        for topic in self.inner.topics.iter() {
            for partition in topic.partitions() {
                partition.refresh()?;
            }
        }
        Ok(())
    }
}

/// Writes a new topic's directory under `root` (staged in `.staging/`, then renamed into
/// `topics/`, so a crash leaves a whole topic or none) and opens it for writing.
pub(super) fn create_topic_files(
    root: &Path,
    storage: &Arc<dyn Storage>,
    name: &str,
    config: &TopicConfig,
) -> Result<Topic> {
    let staging = root.join(".staging").join(name);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(Error::io(&staging))?;
    write_config(&staging, config)?;
    let topics_dir = root.join("topics");
    let dir = topics_dir.join(name);
    std::fs::rename(&staging, &dir).map_err(Error::io(&dir))?;
    sync_dir(&topics_dir).map_err(Error::io(&topics_dir))?;
    Topic::open(storage, dir, true)
}
