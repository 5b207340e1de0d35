//! [`StreamsApp`]: runs a topology against the log, one task per input partition.
//!
//! Each task is a tokio task with its own consumer (group = the application id, assigned
//! partition `p` of every source topic, internal repartition topics included) and its own operator
//! instances and state stores. Outputs, changelog records included, go through one shared
//! producer. Every `commit_interval`, a task waits until its outputs are acknowledged, then
//! commits its stores (with the changelog offset they reach), then its input offsets:
//! at-least-once. After a crash, records processed since the last commit are processed again.
//! On start-up a task restores each store from its changelog, from the store's checkpoint on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbrook_core::{
    Broker, CleanupPolicy, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicConfig, TopicPartition,
};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::state::KeyValueStore;
use crate::topology::{OnError, TaskInstance, Topology, changelog_topic};

/// Delivery guarantee of a [`StreamsApp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Outputs are acknowledged before input offsets are committed; after a crash, records since
    /// the last commit are processed again, so outputs may repeat.
    #[default]
    AtLeastOnce,
}

/// Settings of a streams application.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Names the consumer group and, later, the internal topics. One id per application.
    pub application_id: String,
    /// How often tasks commit their input offsets.
    pub commit_interval: Duration,
    /// Delivery guarantee.
    pub processing_guarantee: ProcessingGuarantee,
    /// What to do with records that do not deserialize.
    pub on_deserialization_error: OnError,
    /// Where task state stores live; default `{data_dir}/streams-state/{application_id}`.
    pub state_dir: Option<PathBuf>,
}

impl StreamsConfig {
    /// Defaults for `application_id`: commit every 100 ms, at-least-once, fail on bad records.
    pub fn new(application_id: impl Into<String>) -> Self {
        Self {
            application_id: application_id.into(),
            commit_interval: Duration::from_millis(100),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            on_deserialization_error: OnError::Fail,
            state_dir: None,
        }
    }
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
        if let OnError::DeadLetter(topic) = &config.on_deserialization_error {
            outputs.push(topic);
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
        let stop = shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        for partition in 0..self.partitions {
            let task = Task {
                partition,
                broker: self.broker.clone(),
                topology: self.topology.clone(),
                config: self.config.clone(),
                producer: producer.clone(),
            };
            let stop = stop.clone();
            tasks.spawn(async move {
                let result = task.run(stop.clone()).await;
                if result.is_err() {
                    stop.cancel(); // one failed task stops the application
                }
                result
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined.map_err(|e| Error::Topology(format!("a task panicked: {e}")))?;
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

struct Task {
    partition: u32,
    broker: Broker,
    topology: Arc<Topology>,
    config: StreamsConfig,
    producer: Producer,
}

impl Task {
    async fn run(self, stop: CancellationToken) -> Result<()> {
        let config = ConsumerConfig {
            group_id: Some(self.config.application_id.clone()),
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(self.broker.clone(), config);
        let application_id = self.config.application_id.clone();
        let assigned = self
            .topology
            .all_sources(&application_id)
            .into_iter()
            .map(|t| TopicPartition::new(t, self.partition))
            .collect();
        consumer.assign(assigned)?;
        let mut instance = self.topology.instantiate(
            &application_id,
            self.partition,
            self.config.on_deserialization_error.clone(),
        );
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
        tracing::debug!(application = %self.config.application_id, partition = self.partition, "task started");
        let mut last_commit = Instant::now();
        loop {
            let records = tokio::select! {
                () = stop.cancelled() => break,
                records = consumer.poll(self.config.commit_interval) => records?,
            };
            for record in &records {
                instance.process(record)?;
                for out in instance.take_outputs() {
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
            if last_commit.elapsed() >= self.config.commit_interval {
                self.commit(&mut consumer, &mut instance).await?;
                last_commit = Instant::now();
            }
        }
        self.commit(&mut consumer, &mut instance).await?;
        tracing::debug!(application = %self.config.application_id, partition = self.partition, "task stopped");
        Ok(())
    }

    fn state_dir(&self) -> PathBuf {
        self.config.state_dir.clone().unwrap_or_else(|| {
            self.broker
                .data_dir()
                .join("streams-state")
                .join(&self.config.application_id)
        })
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
                            store.put(key, r.value);
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

    /// Outputs first (changelogs included), then the stores at the changelog offsets those
    /// outputs reached, then the input offsets that produced them.
    async fn commit(&self, consumer: &mut Consumer, instance: &mut TaskInstance) -> Result<()> {
        self.producer.flush().await?;
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
        consumer.commit().await?;
        Ok(())
    }
}
