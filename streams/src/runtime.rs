//! [`StreamsApp`]: runs a topology against the log, one task per input partition.
//!
//! Each task is a tokio task with its own consumer (group = the application id, assigned
//! partition `p` of every source topic, internal repartition topics included) and its own operator
//! instances and state stores. On start-up a task restores each store from its changelog, from
//! the store's checkpoint on.
//!
//! Exactly-once (the default): a task collects its outputs, changelog records included, in a
//! [`Transaction`] with its input offsets, and every `commit_interval` commits them atomically
//! through the log's transaction log; then it commits its stores at the changelog offsets
//! reached. After a crash, the work since the last commit is done again and its outputs, never
//! written, appear once. At-least-once: outputs go through a shared producer; at each commit a
//! task waits for them, commits its stores, then its offsets; after a crash outputs may repeat.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbrook_core::{
    Broker, CleanupPolicy, Producer, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition,
    Transaction, now_ms, partition_for_key,
};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::input::TaskInputs;
use crate::state::KeyValueStore;
use crate::topology::{OnError, OutputRecord, TaskInstance, Topology, changelog_topic};

/// A transaction is committed early once its records reach this size.
const MAX_TRANSACTION_BYTES: usize = 16 << 20;

/// Delivery guarantee of a [`StreamsApp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Outputs, store changelogs and input offsets are committed atomically: after a crash the
    /// output topics hold exactly what a clean run writes.
    #[default]
    ExactlyOnce,
    /// Outputs are acknowledged before input offsets are committed; after a crash, records since
    /// the last commit are processed again, so outputs may repeat. Faster: no transaction log.
    AtLeastOnce,
}

/// Settings of a streams application.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Names the consumer group, the internal topics and the state directory.
    pub application_id: String,
    /// How often tasks commit.
    pub commit_interval: Duration,
    /// Delivery guarantee.
    pub processing_guarantee: ProcessingGuarantee,
    /// What to do with records that do not deserialize.
    pub on_deserialization_error: OnError,
    /// What to do with records on which user code panics.
    pub on_processing_error: OnError,
    /// Where task state stores live; default `{data_dir}/streams-state/{application_id}`.
    pub state_dir: Option<PathBuf>,
    /// Worker threads running the tasks (Kafka's `num.stream.threads`); `None` runs them on the
    /// caller's tokio runtime.
    pub worker_threads: Option<usize>,
}

impl StreamsConfig {
    /// Defaults for `application_id`: exactly-once, commit every 100 ms, fail on bad records,
    /// tasks on the caller's runtime.
    pub fn new(application_id: impl Into<String>) -> Self {
        Self {
            application_id: application_id.into(),
            commit_interval: Duration::from_millis(100),
            processing_guarantee: ProcessingGuarantee::ExactlyOnce,
            on_deserialization_error: OnError::Fail,
            on_processing_error: OnError::Fail,
            state_dir: None,
            worker_threads: None,
        }
    }
}

/// The state directory of an application: `{data_dir}/streams-state/{application_id}`.
pub fn default_state_dir(broker: &Broker, application_id: &str) -> PathBuf {
    broker.data_dir().join("streams-state").join(application_id)
}

/// A topology running against a broker.
#[derive(Debug)]
pub struct StreamsApp {
    broker: Broker,
    topology: Arc<Topology>,
    config: StreamsConfig,
    partitions: u32,
}

impl StreamsApp {
    /// Checks the topology against the log: source and sink topics exist, and sources are
    /// co-partitioned (equal partition counts), as tasks read the same partition of each.
    ///
    /// # Errors
    /// [`Error::Topology`] naming the missing topic or the mismatched partition counts.
    pub fn new(broker: Broker, topology: Topology, config: StreamsConfig) -> Result<Self> {
        let mut counts = Vec::new();
        for topic in topology.source_topics() {
            let t = broker
                .topic(topic)
                .map_err(|_| Error::Topology(format!("source topic {topic:?} does not exist")))?;
            counts.push((topic.to_string(), t.partition_count()));
        }
        let partitions = counts.first().map_or(0, |(_, n)| *n);
        if counts.iter().any(|(_, n)| *n != partitions) {
            let listed: Vec<String> = counts.iter().map(|(t, n)| format!("{t} has {n}")).collect();
            return Err(Error::Topology(format!(
                "source topics are not co-partitioned: {}",
                listed.join(", ")
            )));
        }
        let mut outputs: Vec<&str> = topology.sink_topics();
        for policy in [
            &config.on_deserialization_error,
            &config.on_processing_error,
        ] {
            if let OnError::DeadLetter(topic) = policy {
                outputs.push(topic);
            }
        }
        for topic in outputs {
            broker
                .topic(topic)
                .map_err(|_| Error::Topology(format!("output topic {topic:?} does not exist")))?;
        }
        // Internal topics: as many partitions as the sources, so task p owns partition p.
        for (topic, compacted) in topology.internal_topics(&config.application_id) {
            if broker.topic(&topic).is_err() {
                let cleanup_policy = if compacted {
                    CleanupPolicy::Compact
                } else {
                    CleanupPolicy::Delete
                };
                let topic_config = TopicConfig {
                    partitions,
                    cleanup_policy,
                    retention_ms: None,
                    ..TopicConfig::default()
                };
                broker.create_topic(&topic, topic_config)?;
                tracing::info!(topic, "created internal topic");
            } else if broker.topic(&topic)?.partition_count() != partitions {
                return Err(Error::Topology(format!(
                    "internal topic {topic:?} does not have {partitions} partitions like the sources; reset the application"
                )));
            }
        }
        Ok(Self {
            broker,
            topology: Arc::new(topology),
            config,
            partitions,
        })
    }

    /// Runs every task until `shutdown` is cancelled, then commits what was processed and
    /// returns. A task's error stops all tasks and is returned.
    ///
    /// # Errors
    /// The first task error (a record failing under `OnError::Fail`, a log error).
    ///
    /// # Cancel safety
    /// Cancel `shutdown` instead of dropping the future: dropping skips the final commit, so the
    /// records since the last commit are processed again on the next run.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let producer = Producer::new(
            self.broker.clone(),
            ProducerConfig {
                linger: Duration::from_millis(1),
                ..ProducerConfig::default()
            },
        );
        // With worker_threads, tasks run on a runtime of their own; the log is runtime-agnostic.
        let own_runtime = match self.config.worker_threads {
            Some(threads) => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name(format!("{}-worker", self.config.application_id))
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Topology(format!("cannot start worker threads: {e}")))?,
            ),
            None => None,
        };
        let stop = shutdown.child_token();
        let mut tasks = Vec::new();
        for partition in 0..self.partitions {
            let task = Task {
                partition,
                broker: self.broker.clone(),
                topology: self.topology.clone(),
                config: self.config.clone(),
                producer: producer.clone(),
                partition_counts: HashMap::new(),
            };
            let stop = stop.clone();
            let work = async move {
                let result = task.run(stop.clone()).await;
                if result.is_err() {
                    stop.cancel(); // one failed task stops the application
                }
                result
            };
            tasks.push(match &own_runtime {
                Some(runtime) => runtime.spawn(work),
                None => tokio::spawn(work),
            });
        }
        tracing::info!(
            application = %self.config.application_id,
            tasks = self.partitions,
            guarantee = ?self.config.processing_guarantee,
            "streams application running"
        );
        let mut first_error = None;
        for joined in futures::future::join_all(tasks).await {
            let result = joined.map_err(|e| Error::Topology(format!("a task panicked: {e}")))?;
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        if let Some(runtime) = own_runtime {
            runtime.shutdown_background();
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs until SIGINT (Ctrl-C) or SIGTERM, then stops gracefully: every task finishes its
    /// current records, closes its processors and commits.
    ///
    /// # Errors
    /// As [`StreamsApp::run`].
    pub async fn run_until_signal(self) -> Result<()> {
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received; committing and stopping");
            trigger.cancel();
        });
        self.run(shutdown).await
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

struct Task {
    partition: u32,
    broker: Broker,
    topology: Arc<Topology>,
    config: StreamsConfig,
    producer: Producer,
    /// Partition counts of the topics the task writes, looked up once.
    partition_counts: HashMap<Arc<str>, u32>,
}

impl Task {
    async fn run(mut self, stop: CancellationToken) -> Result<()> {
        let application_id = self.config.application_id.clone();
        let assigned = self
            .topology
            .all_sources(&application_id)
            .into_iter()
            .map(|t| TopicPartition::new(t, self.partition))
            .collect();
        let mut inputs = TaskInputs::new(&self.broker, &application_id, assigned)?;
        let mut instance = self.topology.instantiate(
            &application_id,
            self.partition,
            self.config.on_deserialization_error.clone(),
        );
        instance.context.on_processing_error = self.config.on_processing_error.clone();
        for topic in self.topology.sink_topics() {
            if let Ok(t) = self.broker.topic(topic) {
                instance
                    .context
                    .partition_counts
                    .insert(topic.to_string(), t.partition_count());
            }
        }
        let state_dir = self.state_dir().join(format!("task-{}", self.partition));
        instance.open_stores(|name| {
            KeyValueStore::open(name, &state_dir.join(format!("{name}.redb")))
        })?;
        let mut instance = self.restore(instance).await?;
        instance.load_clocks()?;
        instance.init_processors(now_ms())?;
        let exactly_once = self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
        let mut txn = Transaction::new();
        // Next offset to read per input partition, as far as processing got: a commit may fall
        // in the middle of a polled batch.
        let mut processed: HashMap<TopicPartition, u64> = HashMap::new();
        let mut uncommitted = false;
        tracing::debug!(application = %self.config.application_id, partition = self.partition, "task started");
        let mut last_commit = Instant::now();
        loop {
            if stop.is_cancelled() {
                break;
            }
            match inputs.next().await? {
                Some(record) => {
                    // Buffered records never wait: give other tasks on this worker a turn.
                    tokio::task::consume_budget().await;
                    instance.process(&record)?;
                    self.write_outputs(&mut instance, exactly_once, &mut txn)
                        .await?;
                    processed.insert(
                        TopicPartition::new(&*record.topic, record.partition),
                        record.offset + 1,
                    );
                    uncommitted = true;
                    if txn.size_bytes() >= MAX_TRANSACTION_BYTES {
                        self.commit(&mut instance, &mut txn, &processed).await?;
                        uncommitted = false;
                        last_commit = Instant::now();
                    }
                    if last_commit.elapsed() < self.config.commit_interval {
                        continue;
                    }
                }
                None => {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = inputs.wait_for_data(self.config.commit_interval) => {}
                    }
                }
            }
            instance.punctuate_wall_clock(now_ms())?;
            self.write_outputs(&mut instance, exactly_once, &mut txn)
                .await?;
            if last_commit.elapsed() >= self.config.commit_interval {
                if uncommitted || !txn.is_empty() {
                    self.commit(&mut instance, &mut txn, &processed).await?;
                    uncommitted = false;
                }
                last_commit = Instant::now();
            }
        }
        instance.close_processors()?;
        self.write_outputs(&mut instance, exactly_once, &mut txn)
            .await?;
        self.commit(&mut instance, &mut txn, &processed).await?;
        tracing::debug!(application = %self.config.application_id, partition = self.partition, "task stopped");
        Ok(())
    }

    /// Moves the outputs of the last record or punctuation into the open transaction, or to
    /// the producer under at-least-once.
    async fn write_outputs(
        &mut self,
        instance: &mut TaskInstance,
        exactly_once: bool,
        txn: &mut Transaction,
    ) -> Result<()> {
        for out in instance.take_outputs() {
            if exactly_once {
                let partition = self.partition_of(&out)?;
                txn.send(
                    &out.topic,
                    partition,
                    out.timestamp,
                    out.key.as_deref(),
                    out.value.as_deref(),
                    &out.headers,
                );
            } else {
                let record = ProducerRecord {
                    topic: out.topic.to_string(),
                    partition: out.partition,
                    key: out.key,
                    value: out.value,
                    headers: out.headers,
                    timestamp: Some(out.timestamp),
                };
                self.producer.send(record).await?;
            }
        }
        Ok(())
    }

    /// The partition an output goes to: the operator's choice, else murmur2 of the key, else
    /// the task's own partition (deterministic, so a re-run writes the same).
    fn partition_of(&mut self, out: &OutputRecord) -> Result<u32> {
        if let Some(p) = out.partition {
            return Ok(p);
        }
        let count = match self.partition_counts.get(&out.topic) {
            Some(count) => *count,
            None => {
                let count = self.broker.topic(&out.topic)?.partition_count();
                self.partition_counts.insert(out.topic.clone(), count);
                count
            }
        };
        Ok(match &out.key {
            Some(key) => partition_for_key(key, count),
            None => self.partition % count,
        })
    }

    fn state_dir(&self) -> PathBuf {
        self.config
            .state_dir
            .clone()
            .unwrap_or_else(|| default_state_dir(&self.broker, &self.config.application_id))
    }

    /// The log partition holding store `index`'s changelog for this task.
    fn changelog(&self, instance: &TaskInstance, index: usize) -> Result<Arc<logbrook_core::Log>> {
        let topic = changelog_topic(&self.config.application_id, &instance.store_names[index]);
        Ok(self
            .broker
            .topic(&topic)?
            .partition(self.partition)?
            .log()
            .clone())
    }

    /// Replays each store's changelog from the store's checkpoint to the end.
    async fn restore(&self, mut instance: TaskInstance) -> Result<TaskInstance> {
        let logs = (0..instance.store_names.len())
            .map(|i| self.changelog(&instance, i))
            .collect::<Result<Vec<_>>>()?;
        let partition = self.partition;
        tokio::task::spawn_blocking(move || {
            for (store, log) in instance.context.stores.iter_mut().zip(logs) {
                let end = log.high_watermark();
                let checkpoint = store.checkpoint()?;
                if checkpoint > end {
                    // The store is ahead of its changelog (the changelog was reset or lost):
                    // it cannot be trusted.
                    tracing::warn!(
                        store = store.name(),
                        partition,
                        checkpoint,
                        end,
                        "state store is ahead of its changelog; rebuilding it"
                    );
                    store.clear()?;
                }
                let mut offset = store.checkpoint()?.max(log.log_start_offset());
                let (from, mut applied) = (offset, 0u64);
                let mut records = Vec::new();
                while offset < end {
                    let chunk = log.read(offset, 1 << 20)?;
                    if chunk.is_empty() {
                        break;
                    }
                    records.clear();
                    chunk.records(offset, &mut records)?;
                    for r in records.drain(..) {
                        if let Some(key) = r.key {
                            store.put_logged(key, r.value);
                            applied += 1;
                        }
                    }
                    offset = chunk.next_offset;
                }
                store.flush(end)?;
                tracing::info!(
                    store = store.name(),
                    partition,
                    from,
                    to = end,
                    applied,
                    "restored state store"
                );
            }
            Ok::<_, Error>(instance)
        })
        .await
        .map_err(|e| Error::Topology(format!("restoring state panicked: {e}")))?
    }

    /// Exactly-once: the transaction (outputs, changelogs, input offsets) in one atomic write.
    /// At-least-once: outputs first, then offsets. Either way the stores are committed after the
    /// changelog records they hold, at the changelog offsets reached.
    async fn commit(
        &mut self,
        instance: &mut TaskInstance,
        txn: &mut Transaction,
        processed: &HashMap<TopicPartition, u64>,
    ) -> Result<()> {
        // Operators' stream times go with the state they belong to; each key written since the
        // last commit gets one changelog record.
        instance.save_clocks()?;
        instance.log_store_writes();
        let exactly_once = self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
        self.write_outputs(instance, exactly_once, txn).await?;
        let group = &self.config.application_id.clone();
        let offsets: Vec<(TopicPartition, u64)> = processed
            .iter()
            .filter(|(tp, o)| self.broker.committed_offset(group, tp) != Some(**o))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        if self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            let mut full = std::mem::take(txn);
            full.commit_offsets(group.clone(), offsets.clone());
            self.broker.commit_transaction(full).await?;
        } else {
            self.producer.flush().await?;
        }
        let logs = (0..instance.store_names.len())
            .map(|i| self.changelog(instance, i))
            .collect::<Result<Vec<_>>>()?;
        let mut stores = std::mem::take(&mut instance.context.stores);
        let flushed = tokio::task::spawn_blocking(move || {
            for (store, log) in stores.iter_mut().zip(&logs) {
                store.flush(log.high_watermark())?;
            }
            Ok::<_, Error>(stores)
        })
        .await
        .map_err(|e| Error::Topology(format!("flushing state panicked: {e}")))?;
        instance.context.stores = flushed?;
        if self.config.processing_guarantee == ProcessingGuarantee::AtLeastOnce {
            self.broker.commit_offsets(group, &offsets).await?;
        }
        Ok(())
    }
}
