//! [`TopologyTestDriver`]: runs a topology in memory, record by record, for tests of users'
//! pipelines. Deterministic: no log, no threads, no sleeping; timestamps are whatever the test
//! pipes in.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use logbrook_core::{ConsumerRecord, TimestampType};

use crate::error::{Error, Result};
use crate::serde::Serde;
use crate::state::KeyValueStore;
use crate::task::{Channel, EventTime, OnError, OutputRecord, TaskInstance};
use crate::topology::{TimestampExtractors, Topology};

/// The application id a [`TopologyTestDriver`] runs under; internal topics are named after it
/// (e.g. `test-driver-counts-changelog`).
pub const DRIVER_APPLICATION_ID: &str = "test-driver";

type QueuedRecord = (
    Arc<str>,
    Option<Bytes>,
    Option<Bytes>,
    i64,
    Vec<logbrook_core::Header>,
);

fn driver_channel() -> Channel {
    Channel::Partition {
        topic: "test-driver-input".into(),
        partition: 0,
    }
}

/// Runs one task of a topology synchronously.
pub struct TopologyTestDriver {
    task: TaskInstance,
    /// One input channel: records are piped in the order the test means them, so event time
    /// is the largest timestamp piped (as Kafka's test driver's stream time).
    event_time: EventTime,
    outputs: HashMap<String, VecDeque<OutputRecord>>,
    next_offsets: HashMap<String, u64>,
    /// Virtual wall-clock time (ms) for wall-clock punctuation; starts at 0.
    wall_clock: i64,
    /// The topology's timestamp extractors, applied to piped records as a task applies them.
    timestamp_extractors: TimestampExtractors,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver").finish_non_exhaustive()
    }
}

/// Where a test pipes typed records in.
pub struct TestInputTopic<K, V> {
    topic: Arc<str>,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

/// Where a test reads typed records out.
pub struct TestOutputTopic<K, V> {
    topic: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
    _types: PhantomData<fn() -> (K, V)>,
}

/// A record read from a [`TestOutputTopic`].
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord<K, V> {
    /// Key.
    pub key: K,
    /// Value.
    pub value: V,
    /// Timestamp.
    pub timestamp: i64,
    /// Partition chosen by a custom partitioner, if any.
    pub partition: Option<u32>,
}

impl TopologyTestDriver {
    /// A driver for one task of `topology` (application id [`DRIVER_APPLICATION_ID`], stores in
    /// memory); deserialization errors fail.
    ///
    /// # Errors
    /// If a store cannot be created.
    pub fn new(topology: &Topology) -> Result<Self> {
        Self::with_error_policy(topology, OnError::Fail)
    }

    /// A driver with a deserialization error policy (user-code panics fail).
    ///
    /// # Errors
    /// If a store cannot be created.
    pub fn with_error_policy(topology: &Topology, on_error: OnError) -> Result<Self> {
        Self::with_error_policies(topology, on_error, OnError::Fail)
    }

    /// A driver with policies for records that do not deserialize and for records on which
    /// user code panics.
    ///
    /// # Errors
    /// If a store cannot be created or a processor's `init` fails.
    pub fn with_error_policies(
        topology: &Topology,
        on_deserialization_error: OnError,
        on_processing_error: OnError,
    ) -> Result<Self> {
        let mut task = topology.instantiate(DRIVER_APPLICATION_ID, 0, on_deserialization_error);
        task.context.on_processing_error = on_processing_error;
        task.open_stores(KeyValueStore::in_memory)?;
        task.init_processors(0)?;
        let mut driver = Self {
            task,
            event_time: EventTime::new([driver_channel()]),
            outputs: HashMap::new(),
            next_offsets: HashMap::new(),
            wall_clock: 0,
            timestamp_extractors: topology.timestamp_extractors.clone(),
        };
        driver.route_outputs(&mut VecDeque::new());
        Ok(driver)
    }

    /// Moves the virtual wall clock forward, firing the wall-clock punctuations that become
    /// due (once each, as a task that was busy for that long would).
    ///
    /// # Errors
    /// Whatever the punctuations return.
    pub fn advance_wall_clock(&mut self, by: std::time::Duration) -> Result<()> {
        self.wall_clock += by.as_millis() as i64;
        self.task.punctuate_wall_clock(self.wall_clock)?;
        let mut queue = VecDeque::new();
        self.route_outputs(&mut queue);
        self.drain(queue)
    }

    /// The virtual wall-clock time (ms).
    pub fn wall_clock(&self) -> i64 {
        self.wall_clock
    }

    /// Sends the task's outputs to the output topics, or back into `queue` for topics the
    /// topology reads itself (repartition topics), as they would go round through the log.
    fn route_outputs(&mut self, queue: &mut VecDeque<QueuedRecord>) {
        // The driver "commits" after every record: its changelogs show each record's writes.
        self.task.log_store_writes();
        for output in self.task.take_outputs() {
            if self.task.reads(&output.topic) {
                queue.push_back((
                    output.topic,
                    output.key,
                    output.value,
                    output.timestamp,
                    output.headers,
                ));
            } else {
                self.outputs
                    .entry(output.topic.to_string())
                    .or_default()
                    .push_back(output);
            }
        }
    }

    fn drain(&mut self, mut queue: VecDeque<QueuedRecord>) -> Result<()> {
        while let Some((topic, key, value, timestamp, headers)) = queue.pop_front() {
            let offset = self.next_offsets.entry(topic.to_string()).or_insert(0);
            let mut record = ConsumerRecord {
                topic,
                partition: 0,
                offset: *offset,
                timestamp,
                timestamp_type: TimestampType::CreateTime,
                key,
                value,
                headers,
            };
            *offset += 1;
            self.timestamp_extractors.apply(&mut record);
            self.event_time.observe(&driver_channel(), record.timestamp);
            self.task.advance_event_time(&mut self.event_time)?;
            self.route_outputs(&mut queue);
            self.task.process(&record)?;
            self.route_outputs(&mut queue);
        }
        Ok(())
    }

    /// Moves event time forward to `timestamp` without a record, as time passing on every
    /// input would: windows whose end plus grace it passes close, suppressed results go out,
    /// join buffers expire. `i64::MAX` is the end of a bounded input.
    ///
    /// # Errors
    /// Whatever the operators return.
    pub fn advance_stream_time(&mut self, timestamp: i64) -> Result<()> {
        self.event_time.observe(&driver_channel(), timestamp);
        self.task.advance_event_time(&mut self.event_time)?;
        self.task.punctuate_stream_time()?;
        let mut queue = VecDeque::new();
        self.route_outputs(&mut queue);
        self.drain(queue)
    }

    /// Ends the input: event time reaches infinity, so every open window closes and every join
    /// buffer expires, as at the end of a bounded run.
    ///
    /// # Errors
    /// Whatever the operators return.
    pub fn end_input(&mut self) -> Result<()> {
        self.advance_stream_time(i64::MAX)
    }

    /// Declares the partition count of an output topic (for custom partitioners).
    pub fn set_partition_count(&mut self, topic: &str, partitions: u32) {
        self.task
            .context
            .partition_counts
            .insert(topic.to_string(), partitions);
    }

    /// An input topic with these serdes.
    pub fn input_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> TestInputTopic<K, V> {
        TestInputTopic {
            topic: topic.into(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }

    /// An output topic with these serdes.
    pub fn output_topic<K: 'static, V: 'static>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            topic: topic.to_string(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            _types: PhantomData,
        }
    }

    /// Pipes one record in at `timestamp` and runs it through the topology.
    ///
    /// # Errors
    /// Serialization of the input, or whatever the topology returns.
    pub fn pipe<K: 'static, V: 'static>(
        &mut self,
        input: &TestInputTopic<K, V>,
        key: K,
        value: V,
        timestamp: i64,
    ) -> Result<()> {
        let key = input
            .key_serde
            .serialize(&key)
            .map_err(|reason| Error::Serialize {
                topic: input.topic.to_string(),
                part: "key",
                reason,
            })?;
        let value = input
            .value_serde
            .serialize(&value)
            .map_err(|reason| Error::Serialize {
                topic: input.topic.to_string(),
                part: "value",
                reason,
            })?;
        self.pipe_raw(&input.topic, key, value, timestamp)
    }

    /// Pipes raw bytes in, e.g. to test records that do not deserialize.
    ///
    /// # Errors
    /// Whatever the topology returns.
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
    ) -> Result<()> {
        let queue = VecDeque::from([(Arc::<str>::from(topic), key, value, timestamp, Vec::new())]);
        self.drain(queue)
    }

    /// A state store of the task, e.g. to check an aggregate.
    pub fn store(&self, name: &str) -> Option<&KeyValueStore> {
        let index = self.task.store_names.iter().position(|n| n == name)?;
        self.task.context.stores.get(index)
    }

    /// The typed value of `key` in store `name`.
    ///
    /// # Errors
    /// [`Error::State`] for an unknown store or bytes that do not decode.
    pub fn store_value<K: 'static, A: 'static>(
        &self,
        name: &str,
        key: &K,
        key_serde: &impl Serde<K>,
        value_serde: &impl Serde<A>,
    ) -> Result<Option<A>> {
        let state_error = |reason: String| Error::State {
            store: name.to_string(),
            reason,
        };
        let store = self
            .store(name)
            .ok_or_else(|| state_error("no such store".into()))?;
        let Some(key) = key_serde.serialize(key).map_err(state_error)? else {
            return Ok(None);
        };
        store
            .get(&key)?
            .map(|bytes| value_serde.deserialize(Some(&bytes)).map_err(state_error))
            .transpose()
    }

    /// Takes every record written to `output` so far.
    ///
    /// # Errors
    /// A record that does not deserialize with the output topic's serdes.
    pub fn read_all<K: 'static, V: 'static>(
        &mut self,
        output: &TestOutputTopic<K, V>,
    ) -> Result<Vec<TestRecord<K, V>>> {
        let records = self.outputs.remove(&output.topic).unwrap_or_default();
        records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let bad = |part, reason| Error::Deserialize {
                    topic: output.topic.clone(),
                    partition: r.partition.unwrap_or(0),
                    offset: i as u64,
                    part,
                    reason,
                };
                Ok(TestRecord {
                    key: output
                        .key_serde
                        .deserialize(r.key.as_deref())
                        .map_err(|e| bad("key", e))?,
                    value: output
                        .value_serde
                        .deserialize(r.value.as_deref())
                        .map_err(|e| bad("value", e))?,
                    timestamp: r.timestamp,
                    partition: r.partition,
                })
            })
            .collect()
    }

    /// Raw records written to `topic` (e.g. a dead-letter topic), with their headers.
    pub fn read_raw(
        &mut self,
        topic: &str,
    ) -> Vec<(Option<Bytes>, Option<Bytes>, Vec<logbrook_core::Header>)> {
        self.outputs
            .remove(topic)
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.key, r.value, r.headers))
            .collect()
    }

    /// Records skipped or dead-lettered for not deserializing.
    pub fn skipped_records(&self) -> u64 {
        self.task.skipped()
    }

    /// Records dropped for arriving after all their windows closed.
    pub fn late_records_dropped(&self) -> u64 {
        self.task.context.late_records_dropped()
    }

    /// The task's stream time: the largest timestamp piped in.
    pub fn stream_time(&self) -> i64 {
        self.task.context.stream_time()
    }
}
