//! The loop of one task: restore its stores, then poll its inputs, move event time, process,
//! and commit outputs, store changelogs, event-time markers and input offsets together.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use logbrook_core::{
    Broker, ConsumerRecord, Header, Producer, ProducerRecord, TopicPartition, Transaction, now_ms,
    partition_for_key,
};
use tokio_util::sync::CancellationToken;

use super::input::{InputRange, TaskInputs};
use super::metrics::TaskMetrics;
use super::{InputBounds, ProcessingGuarantee, StreamsConfig, default_state_dir};
use crate::error::{Error, Result};
use crate::state::KeyValueStore;
use crate::task::event_time::MARKER_HEADER;
use crate::task::{Channel, EventTime, OutputRecord, Progress, TaskInstance};
use crate::topology::{Topology, changelog_topic};

/// A transaction is committed early once its records reach this size.
const MAX_TRANSACTION_BYTES: usize = 16 << 20;

/// One task: partition `partition` of every source topic.
pub(super) struct Task {
    pub(super) partition: u32,
    /// Tasks in the application: the writers of each repartition partition.
    pub(super) tasks: u32,
    pub(super) broker: Broker,
    pub(super) topology: Arc<Topology>,
    pub(super) config: StreamsConfig,
    pub(super) producer: Producer,
    /// Partition counts of the topics the task writes, looked up once.
    pub(super) partition_counts: HashMap<Arc<str>, u32>,
    pub(super) metrics: Arc<TaskMetrics>,
    pub(super) inputs: Vec<InputRange>,
    /// `Some` for a bounded run: the task stops once every input has ended.
    pub(super) bounds: Option<InputBounds>,
}

/// What the task has done since its last commit.
#[derive(Default)]
struct Progressed {
    /// Next offset to read per input partition, as far as processing got: a commit may fall in
    /// the middle of a polled batch.
    offsets: HashMap<TopicPartition, u64>,
    uncommitted: bool,
}

impl Task {
    pub(super) async fn run(mut self, stop: CancellationToken) -> Result<()> {
        let application_id = self.config.application_id.clone();
        let mut inputs = TaskInputs::new(
            &self.broker,
            &application_id,
            std::mem::take(&mut self.inputs),
            self.topology.timestamp_extractors.clone(),
        )?;
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
        let repartitions: Vec<Arc<str>> = self
            .topology
            .repartition_topics(&application_id)
            .into_iter()
            .map(Arc::from)
            .collect();
        let mut time = self.event_time(&repartitions);
        instance.load_event_time(&mut time)?;
        instance.init_processors(now_ms())?;
        instance.advance_event_time(&mut time)?;
        let exactly_once = self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
        let mut txn = Transaction::new();
        let mut progressed = Progressed::default();
        // The progress last sent into each repartition topic; none yet sends it at once.
        let mut announced: HashMap<Arc<str>, (i64, bool)> = HashMap::new();
        tracing::debug!(application = %application_id, partition = self.partition, "task started");
        let mut last_commit = Instant::now();
        loop {
            if stop.is_cancelled() {
                break;
            }
            match inputs.next().await? {
                Some(record) => {
                    // Buffered records never wait: give other tasks on this worker a turn.
                    tokio::task::consume_budget().await;
                    if self.observe(&mut instance, &mut time, &record, &repartitions)? {
                        // A task its readers think idle tells them it is back before its data.
                        if announced.values().any(|(_, idle)| *idle) {
                            self.announce(&mut instance, &time, &repartitions, &mut announced);
                        }
                        instance.process(&record)?;
                    }
                    self.write_outputs(&mut instance, exactly_once, &mut txn)
                        .await?;
                    progressed.offsets.insert(
                        TopicPartition::new(&*record.topic, record.partition),
                        record.offset + 1,
                    );
                    progressed.uncommitted = true;
                    if txn.size_bytes() >= MAX_TRANSACTION_BYTES {
                        self.commit(&mut instance, &mut time, &mut txn, &mut progressed)
                            .await?;
                        last_commit = Instant::now();
                    }
                    if last_commit.elapsed() < self.config.commit_interval {
                        continue;
                    }
                }
                None => {
                    for (tp, position) in inputs.drained_positions() {
                        if let Some(offset) = progressed.offsets.get_mut(tp)
                            && position > *offset
                        {
                            *offset = position;
                            progressed.uncommitted = true;
                        }
                    }
                    if self.bounds.is_none() || !time.is_finished() {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = inputs.wait_for_data(self.config.commit_interval) => {}
                        }
                    }
                }
            }
            self.follow_inputs(&inputs, &mut time, &repartitions);
            instance.advance_event_time(&mut time)?;
            instance.punctuate_stream_time()?;
            instance.punctuate_wall_clock(now_ms())?;
            self.announce(&mut instance, &time, &repartitions, &mut announced);
            self.write_outputs(&mut instance, exactly_once, &mut txn)
                .await?;
            let finished = self.bounds.is_some() && time.is_finished();
            if finished || last_commit.elapsed() >= self.config.commit_interval {
                if progressed.uncommitted || !txn.is_empty() {
                    self.commit(&mut instance, &mut time, &mut txn, &mut progressed)
                        .await?;
                }
                last_commit = Instant::now();
            }
            if finished {
                tracing::info!(application = %application_id, partition = self.partition, "task read every input to its end");
                break;
            }
        }
        instance.close_processors()?;
        self.announce(&mut instance, &time, &repartitions, &mut announced);
        self.write_outputs(&mut instance, exactly_once, &mut txn)
            .await?;
        self.commit(&mut instance, &mut time, &mut txn, &mut progressed)
            .await?;
        tracing::debug!(application = %application_id, partition = self.partition, "task stopped");
        Ok(())
    }

    /// The channels whose progress the task waits for: its partition of each user source, and
    /// every task writing into each repartition topic it reads.
    fn event_time(&self, repartitions: &[Arc<str>]) -> EventTime {
        let mut channels = Vec::new();
        for topic in self.topology.all_sources(&self.config.application_id) {
            match repartitions.iter().find(|r| ***r == *topic) {
                Some(topic) => channels.extend((0..self.tasks).map(|writer| Channel::Writer {
                    topic: topic.clone(),
                    writer,
                })),
                None => channels.push(Channel::Partition {
                    topic: topic.into(),
                    partition: self.partition,
                }),
            }
        }
        EventTime::new(channels)
    }

    /// Moves event time for one polled record: a marker moves its writer's progress, a data
    /// record its partition's (user topics). Whether the record is data to process.
    fn observe(
        &self,
        instance: &mut TaskInstance,
        time: &mut EventTime,
        record: &ConsumerRecord,
        repartitions: &[Arc<str>],
    ) -> Result<bool> {
        if let Some(progress) = Progress::of(record) {
            let topic = repartitions
                .iter()
                .find(|t| ***t == *record.topic)
                .cloned()
                .unwrap_or_else(|| record.topic.clone());
            time.on_progress(&topic, progress);
            instance.advance_event_time(time)?;
            return Ok(false);
        }
        self.metrics.add_in(1);
        let internal = repartitions.iter().any(|t| **t == *record.topic);
        if !internal {
            if self
                .bounds
                .is_some_and(|bounds| !bounds.contains(record.timestamp))
            {
                return Ok(false); // outside the replayed time range
            }
            let channel = Channel::Partition {
                topic: record.topic.clone(),
                partition: record.partition,
            };
            time.observe(&channel, record.timestamp);
            instance.advance_event_time(time)?;
        }
        Ok(true)
    }

    /// Marks user input partitions idle once read to their end for `max_task_idle`, and
    /// finished once a bounded run read them to their end; records their lag.
    fn follow_inputs(&self, inputs: &TaskInputs, time: &mut EventTime, repartitions: &[Arc<str>]) {
        for state in inputs.states() {
            self.metrics.set_lag(state.tp.to_string(), state.lag);
            if repartitions.iter().any(|t| **t == *state.tp.topic) {
                continue; // writers' markers say how far those are
            }
            let channel = Channel::Partition {
                topic: state.tp.topic.as_str().into(),
                partition: state.tp.partition,
            };
            if state.finished {
                if !time.is_channel_finished(&channel) {
                    time.finish(&channel);
                }
            } else if state
                .caught_up_for
                .is_some_and(|idle| idle >= self.config.max_task_idle)
            {
                time.set_idle(&channel, true);
            }
        }
        self.metrics.set_event_time(time.watermark());
    }

    /// Sends the event time of what feeds each repartition topic into every partition of it,
    /// when it moved since last sent, so the tasks reading it know how far this one is.
    fn announce(
        &self,
        instance: &mut TaskInstance,
        time: &EventTime,
        repartitions: &[Arc<str>],
        announced: &mut HashMap<Arc<str>, (i64, bool)>,
    ) {
        for topic in repartitions {
            let feeds = instance
                .sink_sources
                .get(topic)
                .map_or(&[][..], Vec::as_slice);
            let now = (time.watermark_of(feeds), time.is_idle_of(feeds));
            if announced.get(topic) == Some(&now) {
                continue;
            }
            announced.insert(topic.clone(), now);
            let progress = Progress {
                writer: self.partition,
                watermark: now.0,
                idle: now.1,
            };
            let header = Header {
                key: MARKER_HEADER.into(),
                value: Some(progress.encode()),
            };
            let timestamp = instance.context.max_timestamp.max(0);
            for partition in 0..self.tasks {
                instance.context.outputs.push(OutputRecord {
                    topic: topic.clone(),
                    partition: Some(partition),
                    key: None,
                    value: None,
                    timestamp,
                    headers: vec![header.clone()],
                });
            }
        }
    }

    /// Moves the outputs of the last record or punctuation into the open transaction, or to
    /// the producer under at-least-once.
    async fn write_outputs(
        &mut self,
        instance: &mut TaskInstance,
        exactly_once: bool,
        txn: &mut Transaction,
    ) -> Result<()> {
        let outputs = instance.take_outputs();
        self.metrics.add_out(
            outputs
                .iter()
                .filter(|o| o.headers.iter().all(|h| h.key != MARKER_HEADER))
                .count() as u64,
        );
        for out in outputs {
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
                let end = log.last_stable_offset();
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
                let from = store.checkpoint()?.max(log.log_start_offset());
                let mut applied = 0u64;
                log.for_each_record(from, |r| {
                    if let Some(key) = r.key {
                        store.put_logged(key, r.value);
                        applied += 1;
                    }
                })?;
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
        time: &mut EventTime,
        txn: &mut Transaction,
        progressed: &mut Progressed,
    ) -> Result<()> {
        let started = Instant::now();
        // Event time goes with the state it belongs to; each key written since the last commit
        // gets one changelog record.
        instance.save_event_time(time)?;
        let before = instance.context.outputs.len();
        instance.log_store_writes();
        self.metrics
            .add_state_writes((instance.context.outputs.len() - before) as u64);
        let processed = &progressed.offsets;
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
        let metrics = self.metrics.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            let mut entries = 0;
            for (store, log) in stores.iter_mut().zip(&logs) {
                store.flush(log.high_watermark())?;
                entries += store.committed_entries()?;
            }
            metrics.set_state_entries(entries);
            Ok::<_, Error>(stores)
        })
        .await
        .map_err(|e| Error::Topology(format!("flushing state panicked: {e}")))?;
        instance.context.stores = flushed?;
        if self.config.processing_guarantee == ProcessingGuarantee::AtLeastOnce {
            self.broker.commit_offsets(group, &offsets).await?;
        }
        progressed.uncommitted = false;
        self.metrics.add_commit(started.elapsed());
        self.metrics.set_skipped(instance.skipped());
        self.metrics.set_late(
            instance
                .context
                .late_drops_by_operator()
                .iter()
                .map(|(operator, n)| (operator.to_string(), *n)),
        );
        self.metrics.set_event_time(time.watermark());
        Ok(())
    }
}
