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
//! topics/<topic>/<partition>/producer-state.json   producers, open and aborted transactions
//! ```
//!
//! The broker sits on top of core: it owns the topics and the two coordinators, which own
//! their internal topics (`__consumer_offsets`, `__transaction_state`) and never see the broker.
//! Its API is split by area: topics (`topics.rs`), consumer groups (`groups.rs`) and
//! transactions (`transactions.rs`) hand their work to [`Topic`], the
//! [`GroupCoordinator`] and the [`TransactionCoordinator`]; this file opens, runs the
//! background work and closes.

mod groups;
mod topics;
mod transactions;

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
use crate::partition::Partition;
use crate::record::now_ms;
use crate::storage::{FsStorage, Storage, sync_dir};
use crate::topic::{Topic, validate_topic_name};
use crate::transactions::TRANSACTIONS_TOPIC;
use crate::transactions::coordinator::TransactionCoordinator;
use topics::create_topic_files;

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
    /// How long a transactional id with no transaction open is remembered after its last
    /// use (Kafka's `transactional.id.expiration.ms`, 7 days).
    pub transactional_id_expiration: Duration,
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
            transactional_id_expiration: Duration::from_secs(7 * 24 * 60 * 60),
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
    /// `None` on a read-only broker.
    transactions: Option<TransactionCoordinator>,
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
        if let Some(transactions) = &broker.inner.transactions {
            let inner = &broker.inner;
            transactions.recover(&inner.topics, &inner.groups).await?;
            broker.spawn_background_tasks();
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

    /// Consumer groups, for the consumers in this process.
    pub(crate) fn groups(&self) -> &GroupCoordinator {
        &self.inner.groups
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
                }
                drop(inner);
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
        self.inner.tasks.spawn(async move {
            // Transaction timeouts, and decided transactions a failure left incomplete.
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                if let Some(transactions) = &inner.transactions {
                    transactions.expire(&inner.topics, &inner.groups).await;
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
    let (groups, transactions) = match open_coordinators(&config, &topics) {
        Ok(coordinators) => coordinators,
        Err(e) => {
            for topic in topics.iter() {
                let _ = topic.close();
            }
            return Err(e);
        }
    };
    let inner = BrokerInner {
        groups,
        transactions,
        topics,
        admin: Mutex::new(()),
        lock: Mutex::new(lock),
        cancel: CancellationToken::new(),
        tasks: TaskTracker::new(),
        config,
    };
    Ok(inner)
}

/// The coordinators over their internal topics, which a writable broker creates if missing.
/// Loads the committed group offsets and transaction states; interrupted transactions are
/// completed later, by
/// [`TransactionCoordinator::recover`] once the broker is up.
fn open_coordinators(
    config: &BrokerConfig,
    topics: &DashMap<String, Arc<Topic>>,
) -> Result<(GroupCoordinator, Option<TransactionCoordinator>)> {
    if config.read_only {
        let offsets = match topics.get(OFFSETS_TOPIC) {
            Some(topic) => Some(topic.partition(0)?.clone()),
            None => None,
        };
        return Ok((GroupCoordinator::load(offsets, false)?, None));
    }
    let offsets = internal_partition(config, topics, OFFSETS_TOPIC)?;
    let groups = GroupCoordinator::load(Some(offsets), true)?;
    let log = internal_partition(config, topics, TRANSACTIONS_TOPIC)?;
    let transactions = TransactionCoordinator::load(log, config.transactional_id_expiration)?;
    Ok((groups, Some(transactions)))
}

/// Partition 0 of an internal state topic (`__consumer_offsets`, `__transaction_state`), created
/// when missing: one compacted partition, flushed on every append, kept forever.
fn internal_partition(
    config: &BrokerConfig,
    topics: &DashMap<String, Arc<Topic>>,
    name: &str,
) -> Result<Arc<Partition>> {
    if let Some(topic) = topics.get(name) {
        return Ok(topic.partition(0)?.clone());
    }
    let topic_config = TopicConfig {
        partitions: 1,
        segment_bytes: 64 << 20,
        cleanup_policy: CleanupPolicy::Compact,
        flush: FlushPolicy::Always,
        retention_ms: None,
        preallocate: false,
        ..TopicConfig::default()
    };
    let topic = create_topic_files(&config.data_dir, &config.storage, name, &topic_config)?;
    let partition = topic.partition(0)?.clone();
    topics.insert(name.to_string(), Arc::new(topic));
    tracing::info!(
        topic = name,
        partitions = topic_config.partitions,
        "created topic"
    );
    Ok(partition)
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
