//! The embedded broker: a data directory of topics, its writer lock, and background work
//! (interval flushes, recovery-point checkpoints, retention and compaction).
//!
//! Layout of a data directory:
//! ```text
//! .lock                          writer lock; holds the writer's pid
//! format                         the data format, `2` (record batches are Kafka's v2)
//! topics/<topic>/topic.json      topic config
//! topics/<topic>/<partition>/    {base_offset:020}.log|.index|.timeindex, recovery-point,
//!                                log-start-offset (once records were deleted)
//! .staging/ .trash/              topic creation and deletion in progress
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{CleanupPolicy, FlushPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::groups::{GroupCoordinator, OFFSETS_TOPIC};
use crate::record::now_ms;
use crate::storage::{FsStorage, Storage, sync_dir};
use crate::topic::{TOPIC_FILE, Topic, TopicDescription, validate_topic_name, write_config};
use crate::transactions::{TRANSACTIONS_TOPIC, TransactionCoordinator};

/// How to open a data directory.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Open without the writer lock: consume and describe only, following the writer's files.
    pub read_only: bool,
    /// How often retention and compaction run.
    pub cleaner_interval: Duration,
    /// How often recovery points are written to disk.
    pub recovery_point_checkpoint_interval: Duration,
    /// File I/O backend (replaceable in tests).
    pub storage: Arc<dyn Storage>,
}

impl BrokerConfig {
    /// Defaults for `data_dir`: writable, cleaner every 30 s, checkpoints every 5 s.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            read_only: false,
            cleaner_interval: Duration::from_secs(30),
            recovery_point_checkpoint_interval: Duration::from_secs(5),
            storage: Arc::new(FsStorage),
        }
    }

    /// Opens read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// A handle to an open data directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<BrokerInner>,
}

#[derive(Debug)]
struct BrokerInner {
    config: BrokerConfig,
    topics: DashMap<String, Arc<Topic>>,
    groups: GroupCoordinator,
    transactions: TransactionCoordinator,
    /// Serializes topic creation and deletion.
    admin: Mutex<()>,
    /// The writer lock, released by `close`.
    lock: Mutex<Option<File>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Broker {
    /// Opens a data directory with default settings (see [`BrokerConfig::new`]).
    ///
    /// # Errors
    /// [`Error::Locked`] if another process writes it; recovery errors such as
    /// [`Error::CorruptBatch`]; I/O errors.
    ///
    /// # Cancel safety
    /// Cancel safe: an abandoned open finishes loading in the background and releases the lock.
    pub async fn open(data_dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(BrokerConfig::new(data_dir)).await
    }

    /// Opens a data directory. Must run inside a tokio runtime: background tasks are spawned.
    ///
    /// # Errors
    /// As [`Broker::open`].
    ///
    /// # Cancel safety
    /// As [`Broker::open`].
    pub async fn open_with(config: BrokerConfig) -> Result<Self> {
        let loaded = tokio::task::spawn_blocking(move || load(config))
            .await
            .map_err(|_| Error::Closed)??;
        let broker = Self {
            inner: Arc::new(loaded),
        };
        if !broker.inner.config.read_only {
            broker.inner.groups.load(&broker).await?;
            broker.inner.transactions.recover(&broker).await?;
            broker.spawn_background_tasks();
        } else if broker.inner.topics.contains_key(OFFSETS_TOPIC) {
            broker.inner.groups.load(&broker).await?;
        }
        Ok(broker)
    }

    /// Whether this handle is read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.config.read_only
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    pub(crate) fn groups(&self) -> &GroupCoordinator {
        &self.inner.groups
    }

    pub(crate) fn transactions(&self) -> &TransactionCoordinator {
        &self.inner.transactions
    }

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
        let root = &self.inner.config.data_dir;
        let staging = root.join(".staging").join(name);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(Error::io(&staging))?;
        write_config(&staging, &config)?;
        let topics_dir = root.join("topics");
        let dir = topics_dir.join(name);
        std::fs::rename(&staging, &dir).map_err(Error::io(&dir))?;
        sync_dir(&topics_dir).map_err(Error::io(&topics_dir))?;
        let topic = Arc::new(Topic::open(&self.inner.config.storage, dir, true)?);
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
        self.inner.groups.forget_topic(self, name).await?;
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
        self.inner
            .topics
            .get(name)
            .map(|t| t.clone())
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
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

    /// Runs retention and compaction on every partition now (the background cleaner does this
    /// every `cleaner_interval`).
    ///
    /// # Errors
    /// The first error of any partition.
    ///
    /// # Cancel safety
    /// Cancel safe: a pass runs to its end in the background; each step is crash-safe anyway.
    pub async fn run_cleaner(&self) -> Result<()> {
        let topics: Vec<Arc<Topic>> = self.inner.topics.iter().map(|t| t.clone()).collect();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let now = now_ms();
            for topic in topics {
                for partition in topic.partitions() {
                    match topic.config().cleanup_policy {
                        CleanupPolicy::Delete => {
                            partition.log().apply_retention(now)?;
                        }
                        CleanupPolicy::Compact => {
                            partition.log().compact(now)?;
                        }
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| Error::Closed)?
    }

    /// Stops background work, drains the append threads, flushes every partition and writes
    /// recovery points. Appends after this fail with [`Error::Closed`].
    ///
    /// # Errors
    /// The first flush error.
    ///
    /// # Cancel safety
    /// Not cancel safe: a dropped close may leave partitions open until the broker is dropped
    /// (which closes them too).
    pub async fn close(&self) -> Result<()> {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        if !self.is_read_only()
            && let Err(e) = self.checkpoint_transactions()
        {
            tracing::warn!(error = %e, "transaction checkpoint at close failed");
        }
        let topics: Vec<Arc<Topic>> = self.inner.topics.iter().map(|t| t.clone()).collect();
        let result = tokio::task::spawn_blocking(move || {
            let mut first = None;
            for topic in topics {
                if let Err(e) = topic.close() {
                    first.get_or_insert(e);
                }
            }
            first.map_or(Ok(()), Err)
        })
        .await
        .map_err(|_| Error::Closed)?;
        // Another process may take over the directory now.
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        result
    }

    fn writable(&self, operation: &'static str) -> Result<()> {
        if self.is_read_only() {
            Err(Error::ReadOnly { operation })
        } else {
            Ok(())
        }
    }

    fn spawn_background_tasks(&self) {
        let weak = Arc::downgrade(&self.inner);
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_flush: HashMap<(String, u32), Instant> = HashMap::new();
            let mut last_checkpoint = Instant::now();
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                let checkpoint = last_checkpoint.elapsed() >= inner.config.recovery_point_checkpoint_interval;
                let mut due = Vec::new();
                for topic in inner.topics.iter() {
                    let interval = match topic.config().flush {
                        FlushPolicy::Interval { ms } => Some(Duration::from_millis(ms)),
                        _ => None,
                    };
                    for partition in topic.partitions() {
                        let key = (topic.name().to_string(), partition.log().partition());
                        let flush = interval.is_some_and(|i| last_flush.get(&key).is_none_or(|t| t.elapsed() >= i));
                        if flush {
                            last_flush.insert(key, Instant::now());
                        }
                        if flush || checkpoint {
                            due.push((partition.log().clone(), flush, checkpoint));
                        }
                    }
                }
                if checkpoint {
                    last_checkpoint = Instant::now();
                    let broker = Broker { inner };
                    if let Err(e) = broker.checkpoint_transactions() {
                        tracing::error!(error = %e, "transaction checkpoint failed");
                    }
                } else {
                    drop(inner);
                }
                if due.is_empty() {
                    continue;
                }
                let result = tokio::task::spawn_blocking(move || {
                    for (log, flush, checkpoint) in due {
                        let outcome = (if flush || (checkpoint && log.config().flush == FlushPolicy::Never) { log.flush() } else { Ok(()) })
                            .and_then(|()| if checkpoint { log.checkpoint_recovery_point() } else { Ok(()) });
                        if let Err(e) = outcome {
                            tracing::error!(topic = %log.topic(), partition = log.partition(), error = %e, "background flush failed");
                        }
                    }
                })
                .await;
                if result.is_err() {
                    break;
                }
            }
        });
        let weak = Arc::downgrade(&self.inner);
        let cancel = self.inner.cancel.clone();
        let interval = self.inner.config.cleaner_interval;
        self.inner.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                let broker = Broker { inner };
                if let Err(e) = broker.run_cleaner().await {
                    tracing::error!(error = %e, "log cleaner failed");
                }
            }
        });
    }
}

fn list_topic_dirs(topics_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    match std::fs::read_dir(topics_dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(Error::io(topics_dir))?;
                if entry.file_type().map_err(Error::io(entry.path()))?.is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(topics_dir)(e)),
    }
    dirs.sort();
    Ok(dirs)
}

fn acquire_lock(data_dir: &Path) -> Result<File> {
    let path = data_dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(Error::io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_string();
            return Err(Error::Locked {
                path: data_dir.to_path_buf(),
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path)(e)),
    }
    file.set_len(0).map_err(Error::io(&path))?;
    writeln!(file, "{}", std::process::id()).map_err(Error::io(&path))?;
    Ok(file)
}

fn load(config: BrokerConfig) -> Result<BrokerInner> {
    let root = &config.data_dir;
    let lock = if config.read_only {
        if !root.is_dir() {
            return Err(Error::io(root)(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "data dir does not exist",
            )));
        }
        None
    } else {
        std::fs::create_dir_all(root.join("topics")).map_err(Error::io(root))?;
        let lock = acquire_lock(root)?;
        let _ = std::fs::remove_dir_all(root.join(".staging"));
        let _ = std::fs::remove_dir_all(root.join(".trash"));
        Some(lock)
    };
    check_format(root, !config.read_only)?;
    let topics = DashMap::new();
    for dir in list_topic_dirs(&root.join("topics"))? {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if validate_topic_name(&name).is_err() {
            continue;
        }
        let topic = Topic::open(&config.storage, dir, !config.read_only)?;
        topics.insert(name, Arc::new(topic));
    }
    let inner = BrokerInner {
        groups: GroupCoordinator::default(),
        transactions: TransactionCoordinator::default(),
        topics,
        admin: Mutex::new(()),
        lock: Mutex::new(lock),
        cancel: CancellationToken::new(),
        tasks: TaskTracker::new(),
        config,
    };
    Ok(inner)
}

/// The data format this version reads and writes; `format` holds it.
const DATA_FORMAT: &str = "2";

/// Refuses a data dir of another format. Format 1 (Logbrook's own little-endian batches) had no
/// `format` file: a dir with topics and no file is format 1. A new dir gets the file.
fn check_format(root: &Path, writable: bool) -> Result<()> {
    let path = root.join("format");
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let has_topics = !list_topic_dirs(&root.join("topics"))?.is_empty();
            if has_topics {
                "1".to_string()
            } else {
                if writable {
                    let mut file = File::create(&path).map_err(Error::io(&path))?;
                    file.write_all(format!("{DATA_FORMAT}\n").as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(Error::io(&path))?;
                    sync_dir(root).map_err(Error::io(root))?;
                }
                return Ok(());
            }
        }
        Err(e) => return Err(Error::io(&path)(e)),
    };
    if found != DATA_FORMAT {
        return Err(Error::UnsupportedFormat {
            path: root.to_path_buf(),
            found,
            expected: DATA_FORMAT,
        });
    }
    Ok(())
}

impl Drop for BrokerInner {
    fn drop(&mut self) {
        // Without close(), still stop the append threads so queued appends are written.
        for topic in self.topics.iter() {
            let _ = topic.close();
        }
    }
}
