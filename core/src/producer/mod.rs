//! The producer: batches records per partition and appends them.
//!
//! `send` encodes the record straight into the open batch of its partition. A batch is handed
//! to the partition's append thread when it reaches `batch_size`, or `linger` after its first
//! record (a background task watches the deadlines). Each record gets a [`DeliveryFuture`] that
//! resolves when its batch is acknowledged, i.e. when the topic's flush policy is met.
//! Memory is bounded by `buffer_memory`: `send` waits while that much is in flight.

mod partitioner;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

pub use partitioner::{Partitioner, partition_for_key};

use crate::batch::BatchBuilder;
use crate::broker::Broker;
use crate::config::CleanupPolicy;
use crate::error::{Error, Result};
use crate::log::AppendInfo;
use crate::record::{ProducerRecord, RecordMetadata, TimestampType, now_ms};
use crate::topic::Topic;

/// Producer settings, named after Kafka's.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a batch waits for more records before it is sent (`linger.ms`).
    pub linger: Duration,
    /// Target batch size in bytes (`batch.size`).
    pub batch_size: usize,
    /// Most bytes of records sent but not yet acknowledged (`buffer.memory`).
    pub buffer_memory: usize,
    /// Partition choice for records without an explicit partition.
    pub partitioner: Partitioner,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(5),
            batch_size: 64 * 1024,
            buffer_memory: 32 << 20,
            partitioner: Partitioner::Default,
        }
    }
}

type Outcome = Result<(u64, i64), Arc<Error>>;

/// The most bytes a batch of `topic` may grow to: its `max.message.bytes` less a header's
/// length, room for the slack of `record_size`'s estimates.
fn max_batch(topic: &Topic) -> usize {
    let limit = usize::try_from(topic.config().max_message_bytes).unwrap_or(usize::MAX);
    limit.saturating_sub(crate::batch::HEADER_LEN).max(1)
}

/// The outcome of one batch, shared by the futures of all its records (one `Arc` clone per
/// record keeps `send` cheap).
#[derive(Debug)]
struct BatchAck {
    topic: Arc<str>,
    partition: u32,
    log_append_time: bool,
    /// Base offset and max timestamp, or the error.
    outcome: OnceLock<Outcome>,
    done: Notify,
}

impl BatchAck {
    fn complete(&self, outcome: Outcome) {
        let _ = self.outcome.set(outcome);
        self.done.notify_waiters();
    }

    async fn wait(&self) -> &Outcome {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            // Registered before the check, so a completion in between is not missed.
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome.get() {
                return outcome;
            }
            notified.await;
        }
    }
}

struct OpenBatch {
    builder: BatchBuilder,
    deadline: Instant,
    ack: Arc<BatchAck>,
    buffered_bytes: usize,
}

#[derive(Default)]
struct PartitionSlot {
    open: Option<OpenBatch>,
    /// The last batch handed over, for `flush`.
    in_flight: Option<Arc<BatchAck>>,
}

/// Everything the producer keeps per topic.
struct TopicSlot {
    topic: Arc<Topic>,
    name: Arc<str>,
    log_append_time: bool,
    compacted: bool,
    /// The topic's `max.message.bytes`: batches are closed before they outgrow it.
    max_batch: usize,
    partitions: Vec<PartitionSlot>,
    sticky: u32,
    rotation: u32,
}

#[derive(Default)]
struct ProducerState {
    slots: Vec<TopicSlot>,
    by_name: HashMap<Arc<str>, usize>,
    /// The slot of the previous record: most producers write one topic, so this skips hashing.
    last: usize,
}

type Failure = (Arc<str>, u32, Arc<Error>);

struct ProducerInner {
    broker: Broker,
    config: ProducerConfig,
    state: Mutex<ProducerState>,
    buffer: Arc<Semaphore>,
    wake: Arc<Notify>,
    /// The first batch failure since the last `flush`, which reports it.
    first_failure: Arc<Mutex<Option<Failure>>>,
}

/// Sends records to topics. Cheap to clone; clones share batches.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Resolves to the record's metadata once its batch is acknowledged.
#[derive(Debug)]
pub struct DeliveryFuture {
    ack: Arc<BatchAck>,
    offset_delta: u32,
    timestamp: i64,
}

impl DeliveryFuture {
    /// Whether this record opened its batch. All records of a batch are acknowledged or fail
    /// together, so a caller that tracks outcomes per batch rather than per record (a bulk
    /// load) keeps only the futures for which this is true and drops the others.
    pub fn starts_batch(&self) -> bool {
        self.offset_delta == 0
    }
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<RecordMetadata>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let ack = &self.ack;
            match ack.wait().await {
                Ok((base_offset, max_timestamp)) => Ok(RecordMetadata {
                    partition: ack.partition,
                    offset: base_offset + u64::from(self.offset_delta),
                    timestamp: if ack.log_append_time {
                        *max_timestamp
                    } else {
                        self.timestamp
                    },
                }),
                Err(cause) => Err(Error::Append {
                    topic: ack.topic.to_string(),
                    partition: ack.partition,
                    cause: cause.clone(),
                }),
            }
        })
    }
}

impl Producer {
    /// A producer writing to `broker`. Must be called inside a tokio runtime.
    pub fn new(broker: Broker, config: ProducerConfig) -> Self {
        let wake = Arc::new(Notify::new());
        let permits = config.buffer_memory.min(Semaphore::MAX_PERMITS);
        let inner = Arc::new(ProducerInner {
            broker,
            config,
            state: Mutex::new(ProducerState::default()),
            buffer: Arc::new(Semaphore::new(permits)),
            wake: wake.clone(),
            first_failure: Arc::default(),
        });
        tokio::spawn(linger_loop(Arc::downgrade(&inner), wake));
        Self { inner }
    }

    /// Adds a record to its partition's batch. Waits only while `buffer_memory` is exhausted.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::UnknownPartition`], [`Error::InvalidRecord`] (e.g. no
    /// key on a compacted topic).
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call has not added the record.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let inner = &self.inner;
        let size = record_size(&record);
        if size > inner.config.buffer_memory {
            return Err(Error::InvalidRecord {
                topic: record.topic,
                reason: "record is larger than buffer_memory",
            });
        }
        let permits = size as u32;
        match inner.buffer.try_acquire_many(permits) {
            Ok(p) => p.forget(),
            Err(_) => inner
                .buffer
                .acquire_many(permits)
                .await
                .map_err(|_| Error::Closed)?
                .forget(),
        }
        let result = self.append_to_batch(record, size);
        if result.is_err() {
            inner.buffer.add_permits(size);
        }
        result
    }

    fn append_to_batch(&self, record: ProducerRecord, size: usize) -> Result<DeliveryFuture> {
        let inner = &self.inner;
        let mut guard = inner.lock();
        let state = &mut *guard;
        let index = match state.slots.get(state.last) {
            Some(slot) if *slot.name == *record.topic => state.last,
            _ => match state.by_name.get(record.topic.as_str()) {
                Some(&index) => index,
                None => {
                    let topic = inner.broker.topic(&record.topic)?;
                    let name: Arc<str> = record.topic.as_str().into();
                    state.slots.push(TopicSlot {
                        log_append_time: topic.config().timestamp_type
                            == TimestampType::LogAppendTime,
                        compacted: topic.config().cleanup_policy == CleanupPolicy::Compact,
                        max_batch: max_batch(&topic),
                        partitions: (0..topic.partition_count())
                            .map(|_| PartitionSlot::default())
                            .collect(),
                        topic,
                        name: name.clone(),
                        sticky: 0,
                        rotation: 0,
                    });
                    state.by_name.insert(name, state.slots.len() - 1);
                    state.slots.len() - 1
                }
            },
        };
        state.last = index;
        if state.slots[index].topic.is_stale() {
            // Deleted (and maybe recreated), grown or altered since this producer first wrote
            // to it.
            let fresh = inner.broker.topic(&record.topic)?;
            let slot = &mut state.slots[index];
            for p in 0..slot.partitions.len() as u32 {
                // A deleted topic's partitions fail their futures with `Closed`; a grown or
                // altered topic's take them as before.
                inner.dispatch(slot, p);
            }
            slot.partitions = (0..fresh.partition_count())
                .map(|_| PartitionSlot::default())
                .collect();
            slot.log_append_time = fresh.config().timestamp_type == TimestampType::LogAppendTime;
            slot.compacted = fresh.config().cleanup_policy == CleanupPolicy::Compact;
            slot.max_batch = max_batch(&fresh);
            slot.topic = fresh;
        }
        let slot = &mut state.slots[index];
        if slot.compacted && record.key.is_none() {
            // Rejected here, not at append, so one keyless record does not fail its whole batch.
            return Err(Error::InvalidRecord {
                topic: record.topic,
                reason: "a compacted topic needs a key on every record",
            });
        }
        let partitions = slot.partitions.len() as u32;
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => {
                slot.topic.partition(p)?;
                p
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => match inner.config.partitioner {
                Partitioner::Default => slot.sticky % partitions,
                Partitioner::RoundRobin => {
                    slot.rotation = slot.rotation.wrapping_add(1);
                    (slot.rotation - 1) % partitions
                }
            },
        };
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let batch_size = inner.config.batch_size.min(slot.max_batch);
        let full_before = slot.partitions[partition as usize]
            .open
            .as_ref()
            .is_some_and(|b| !b.builder.is_empty() && b.builder.size() + size > batch_size);
        if full_before {
            inner.dispatch(slot, partition);
        }
        let linger = inner.config.linger;
        let (name, log_append_time) = (&slot.name, slot.log_append_time);
        let open = &mut slot.partitions[partition as usize].open;
        let created = open.is_none();
        let batch = open.get_or_insert_with(|| OpenBatch {
            builder: BatchBuilder::with_capacity(
                batch_size.min(size.max(1024) * 4).max(batch_size / 4),
            ),
            deadline: Instant::now() + linger,
            ack: Arc::new(BatchAck {
                topic: name.clone(),
                partition,
                log_append_time,
                outcome: OnceLock::new(),
                done: Notify::new(),
            }),
            buffered_bytes: 0,
        });
        let offset_delta = batch.builder.push(
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        batch.buffered_bytes += size;
        let ack = batch.ack.clone();
        if batch.builder.size() >= batch_size {
            inner.dispatch(slot, partition);
        } else if created {
            inner.wake.notify_one();
        }
        Ok(DeliveryFuture {
            ack,
            offset_delta,
            timestamp,
        })
    }

    /// Sends every open batch now and waits until all records sent so far are acknowledged.
    ///
    /// # Errors
    /// The first batch that failed since the previous `flush`, whichever record it held.
    ///
    /// # Cancel safety
    /// Cancel safe: the batches are sent either way; only the waiting stops.
    pub async fn flush(&self) -> Result<()> {
        let waiting: Vec<Arc<BatchAck>> = {
            let mut state = self.inner.lock();
            let mut waiting = Vec::new();
            for slot in &mut state.slots {
                for p in 0..slot.partitions.len() as u32 {
                    self.inner.dispatch(slot, p);
                    waiting.extend(slot.partitions[p as usize].in_flight.clone());
                }
            }
            waiting
        };
        for ack in waiting {
            // Appends of a partition complete in order: the last one done means all are. The
            // batches were cloned, not taken, so a concurrent flush waits for them too.
            ack.wait().await;
        }
        let failure = self
            .inner
            .first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failure {
            Some((topic, partition, cause)) => Err(Error::Append {
                topic: topic.to_string(),
                partition,
                cause,
            }),
            None => Ok(()),
        }
    }
}

impl ProducerInner {
    fn lock(&self) -> MutexGuard<'_, ProducerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the open batch of a partition to its append thread.
    fn dispatch(&self, slot: &mut TopicSlot, partition: u32) {
        let Some(batch) = slot.partitions[partition as usize].open.take() else {
            return;
        };
        if batch.builder.is_empty() {
            return;
        }
        let count = slot.partitions.len() as u32;
        if slot.sticky % count == partition {
            // The sticky partitioner moves on once its batch is sent.
            slot.sticky = (partition + 1) % count;
        }
        slot.partitions[partition as usize].in_flight = Some(batch.ack.clone());
        let OpenBatch {
            builder,
            ack,
            buffered_bytes,
            ..
        } = batch;
        let done = {
            let (ack, buffer, first_failure) =
                (ack.clone(), self.buffer.clone(), self.first_failure.clone());
            move |result: Result<AppendInfo, Arc<Error>>| {
                if let Err(e) = &result {
                    record_failure(&first_failure, &ack, e);
                }
                ack.complete(result.map(|info| (info.base_offset, info.max_timestamp)));
                buffer.add_permits(buffered_bytes);
            }
        };
        let queued = slot
            .topic
            .partition(partition)
            .and_then(|p| p.append_with(builder.finish(), Box::new(done)));
        if let Err(e) = queued {
            let e = Arc::new(e);
            record_failure(&self.first_failure, &ack, &e);
            ack.complete(Err(e));
            self.buffer.add_permits(buffered_bytes);
        }
    }

    fn dispatch_all(&self, state: &mut ProducerState) {
        for slot in &mut state.slots {
            for p in 0..slot.partitions.len() as u32 {
                self.dispatch(slot, p);
            }
        }
    }

    /// Dispatches batches whose linger expired; returns the next deadline.
    fn dispatch_due(&self) -> Option<Instant> {
        let mut state = self.lock();
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for slot in &mut state.slots {
            for p in 0..slot.partitions.len() {
                let Some(deadline) = slot.partitions[p].open.as_ref().map(|b| b.deadline) else {
                    continue;
                };
                if deadline <= now {
                    self.dispatch(slot, p as u32);
                } else {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                }
            }
        }
        next
    }
}

fn record_failure(first_failure: &Mutex<Option<Failure>>, ack: &BatchAck, error: &Arc<Error>) {
    let mut failure = first_failure.lock().unwrap_or_else(|p| p.into_inner());
    failure.get_or_insert_with(|| (ack.topic.clone(), ack.partition, error.clone()));
}

impl Drop for ProducerInner {
    fn drop(&mut self) {
        // Records already accepted by `send` are still written.
        let mut state = self.lock();
        self.dispatch_all(&mut state);
        drop(state);
        self.wake.notify_one();
    }
}

async fn linger_loop(inner: Weak<ProducerInner>, wake: Arc<Notify>) {
    loop {
        let next = match inner.upgrade() {
            Some(inner) => inner.dispatch_due(),
            None => return,
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

fn record_size(record: &ProducerRecord) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 4)
        .sum();
    24 + record.key.as_ref().map_or(0, |k| k.len())
        + record.value.as_ref().map_or(0, |v| v.len())
        + headers
}
