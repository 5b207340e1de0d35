//! The loop of one task: restore its stores, then poll its inputs, move event time, process,
//! and commit outputs, store changelogs, event-time markers and input offsets together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use logbrook_core::{
    ConsumerRecord, Header, Producer, ProducerRecord, TopicPartition, now_ms, partition_for_key,
};
use tokio_util::sync::CancellationToken;

use super::input::{InputRange, TaskInputs};
use super::log::{AppLog, PartitionCounts, TaskWriter};
use super::metrics::TaskMetrics;
use super::queries::LocalStores;
use super::standby::{changelog_partitions, open_task_store};
use super::{InputBounds, ProcessingGuarantee, StreamsConfig};
use crate::error::{Error, Result};
use crate::state::KeyValueStore;
use crate::task::event_time::MARKER_HEADER;
use crate::task::{Channel, EventTime, OutputRecord, Progress, TaskInstance};
use crate::topology::Topology;

/// A transaction is committed early once its records reach this size.
const MAX_TRANSACTION_BYTES: usize = 16 << 20;

/// One task: partition `partition` of every source topic.
pub(super) struct Task {
    pub(super) partition: u32,
    /// Tasks in the application: the writers of each repartition partition.
    pub(super) tasks: u32,
    pub(super) log: AppLog,
    pub(super) topology: Arc<Topology>,
    pub(super) config: StreamsConfig,
    /// At-least-once on the embedded log: the producer the app's tasks share.
    pub(super) producer: Option<Producer>,
    /// On a cluster: the instance's group membership, whose identity commits carry.
    pub(super) member: Option<logbrook_client::GroupMember>,
    /// Partition counts of the topics the task writes, looked up once.
    pub(super) partition_counts: PartitionCounts,
    pub(super) metrics: Arc<TaskMetrics>,
    /// Where interactive queries find this task's stores while it runs.
    pub(super) stores: LocalStores,
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
    /// What the task committed last, per input partition.
    committed: HashMap<TopicPartition, u64>,
    uncommitted: bool,
}

impl Task {
    pub(super) async fn run(mut self, stop: CancellationToken) -> Result<()> {
        let application_id = self.config.application_id.clone();
        let mut inputs = TaskInputs::new(
            &self.log,
            &application_id,
            std::mem::take(&mut self.inputs),
            self.topology.timestamp_extractors.clone(),
        )
        .await?;
        let mut instance = self.topology.instantiate(
            &application_id,
            self.partition,
            self.config.on_deserialization_error.clone(),
        );
        instance.context.on_processing_error = self.config.on_processing_error.clone();
        for topic in self.topology.sink_topics() {
            if let Some(count) = self.log.partition_count(topic).await? {
                instance
                    .context
                    .partition_counts
                    .insert(topic.to_string(), count);
            }
        }
        let state_dir = self.config.state_dir_on(&self.log);
        instance.open_stores(|name| open_task_store(&state_dir, self.partition, name))?;
        let instance = self.restore(instance).await?;
        self.stores.register(
            self.partition,
            instance.context.stores.iter().map(KeyValueStore::reader),
        );
        let result = self.process(instance, &mut inputs, stop).await;
        self.stores.unregister(self.partition);
        result
    }

    /// Processes records and commits until `stop` (or a bounded run's end).
    async fn process(
        &mut self,
        mut instance: TaskInstance,
        inputs: &mut TaskInputs,
        stop: CancellationToken,
    ) -> Result<()> {
        let application_id = self.config.application_id.clone();
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
        let mut txn = TaskWriter::new(
            &self.log,
            self.producer.as_ref(),
            self.member.take(),
            &application_id,
            self.partition,
            exactly_once,
        )
        .await?;
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
                    self.write_outputs(&mut instance, &mut txn).await?;
                    progressed.offsets.insert(
                        TopicPartition::new(&*record.topic, record.partition),
                        record.offset + 1,
                    );
                    progressed.uncommitted = true;
                    if txn.pending_bytes() >= MAX_TRANSACTION_BYTES {
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
                            waited = inputs.wait_for_data(self.config.commit_interval) => waited?,
                        }
                    }
                }
            }
            self.follow_inputs(inputs, &mut time, &repartitions);
            instance.advance_event_time(&mut time)?;
            instance.punctuate_stream_time()?;
            instance.punctuate_wall_clock(now_ms())?;
            self.announce(&mut instance, &time, &repartitions, &mut announced);
            self.write_outputs(&mut instance, &mut txn).await?;
            let finished = self.bounds.is_some() && time.is_finished();
            if finished || last_commit.elapsed() >= self.config.commit_interval {
                if progressed.uncommitted || txn.has_pending() {
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
        self.write_outputs(&mut instance, &mut txn).await?;
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

    /// Hands the outputs of the last record or punctuation to the task's writer.
    async fn write_outputs(
        &mut self,
        instance: &mut TaskInstance,
        writer: &mut TaskWriter,
    ) -> Result<()> {
        let outputs = instance.take_outputs();
        self.metrics.add_out(
            outputs
                .iter()
                .filter(|o| o.headers.iter().all(|h| h.key != MARKER_HEADER))
                .count() as u64,
        );
        for out in outputs {
            let partition = self.partition_of(&out).await?;
            let record = ProducerRecord {
                topic: out.topic.to_string(),
                partition: Some(partition),
                key: out.key,
                value: out.value,
                headers: out.headers,
                timestamp: Some(out.timestamp),
            };
            writer.send(record, partition).await?;
        }
        Ok(())
    }

    /// The partition an output goes to: the operator's choice, else murmur2 of the key, else
    /// the task's own partition (deterministic, so a re-run writes the same).
    async fn partition_of(&mut self, out: &OutputRecord) -> Result<u32> {
        if let Some(p) = out.partition {
            return Ok(p);
        }
        let count = self.partition_counts.of(&self.log, &out.topic).await?;
        Ok(match &out.key {
            Some(key) => partition_for_key(key, count),
            None => self.partition % count,
        })
    }

    /// The partitions holding this task's store changelogs, in store order.
    fn changelogs(&self, instance: &TaskInstance) -> Vec<TopicPartition> {
        changelog_partitions(
            &self.config.application_id,
            &instance.store_names,
            self.partition,
        )
    }

    /// Replays each store's changelog from the store's checkpoint to the end.
    async fn restore(&self, mut instance: TaskInstance) -> Result<TaskInstance> {
        let partition = self.partition;
        let changelogs = self.changelogs(&instance);
        let ends = self.log.end_offsets(&changelogs).await?;
        let stores = std::mem::take(&mut instance.context.stores);
        let mut restored = Vec::with_capacity(stores.len());
        for ((mut store, tp), end) in stores.into_iter().zip(&changelogs).zip(ends) {
            let checkpoint = store.checkpoint()?;
            if checkpoint > end {
                // The store is ahead of its changelog (the changelog was reset or lost): it
                // cannot be trusted.
                tracing::warn!(
                    store = store.name(),
                    partition,
                    checkpoint,
                    end,
                    "state store is ahead of its changelog; rebuilding it"
                );
                store.clear()?;
            }
            let from = store.checkpoint()?;
            let ((mut store, applied), reached) = self
                .log
                .replay(tp, from, (store, 0u64), |(store, applied), r| {
                    if let Some(key) = r.key {
                        store.put_logged(key, r.value);
                        *applied += 1;
                    }
                })
                .await?;
            store.flush(reached)?;
            self.metrics.add_restored(applied);
            tracing::info!(
                store = store.name(),
                partition,
                from,
                to = reached,
                applied,
                "restored state store"
            );
            restored.push(store);
        }
        instance.context.stores = restored;
        Ok(instance)
    }

    /// Exactly-once: outputs, changelogs and input offsets in one atomic write.
    /// At-least-once: outputs first, then offsets. Either way the stores are committed after the
    /// changelog records they hold, at the changelog offsets reached.
    async fn commit(
        &mut self,
        instance: &mut TaskInstance,
        time: &mut EventTime,
        writer: &mut TaskWriter,
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
        self.write_outputs(instance, writer).await?;
        let group = self.config.application_id.clone();
        let offsets: Vec<(TopicPartition, u64)> = progressed
            .offsets
            .iter()
            .filter(|(tp, o)| progressed.committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        writer.commit(&group, offsets.clone()).await?;
        let changelogs = self.changelogs(instance);
        let ends = self.log.end_offsets(&changelogs).await?;
        let mut stores = std::mem::take(&mut instance.context.stores);
        let metrics = self.metrics.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            let mut entries = 0;
            for (store, end) in stores.iter_mut().zip(ends) {
                store.flush(end)?;
                entries += store.committed_entries()?;
            }
            metrics.set_state_entries(entries);
            Ok::<_, Error>(stores)
        })
        .await
        .map_err(|e| Error::Topology(format!("flushing state panicked: {e}")))?;
        instance.context.stores = flushed?;
        writer.commit_offsets(&group, &offsets).await?;
        progressed.committed.extend(offsets);
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
