//! The DSL: [`StreamsBuilder`] starts from topics and yields typed [`KStream`]s and [`KTable`]s.

mod grouped;
mod join;
mod kstream;
mod ktable;
mod stream_join;
mod table_join;
mod windowed;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use logbrook_core::ConsumerRecord;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use grouped::{Grouped, KGroupedStream};
pub use kstream::{BranchedStream, KStream, Produced};
pub use ktable::KTable;
pub use windowed::{
    SessionWindowedKStream, SlidingWindowedKStream, TimeWindowedKStream, WindowedTable,
};

use crate::error::{Error, Result};
use crate::record::Record;
use crate::serde::{Json, Serde};
use crate::task::TaskContext;
use crate::topology::{
    Data, EVENT_TIME_STORE, Node, SourceEmit, SourceFactory, TimestampExtractor,
    TimestampExtractors, TopicName, Topology, lock,
};

#[derive(Default)]
pub(crate) struct BuilderState {
    next_id: AtomicUsize,
    sources: Mutex<BTreeMap<TopicName, SourceFactory>>,
    sinks: Mutex<BTreeSet<TopicName>>,
    stores: Mutex<BTreeSet<String>>,
    /// Per user source topic, how to read its records' event time.
    timestamp_extractors: Mutex<BTreeMap<String, TimestampExtractor>>,
    /// Mistakes found while building, reported by `build`.
    problems: Mutex<Vec<String>>,
    /// Whether an operator acts on event time (the task then keeps it in a store).
    uses_event_time: std::sync::atomic::AtomicBool,
}

impl BuilderState {
    pub(crate) fn next_id(&self) -> usize {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn add_sink(&self, topic: TopicName) {
        lock(&self.sinks).insert(topic);
    }

    pub(crate) fn add_source(&self, topic: TopicName, factory: SourceFactory) {
        if lock(&self.sources).insert(topic.clone(), factory).is_some() {
            self.problem(format!("topic {topic:?} is read by two sources"));
        }
    }

    pub(crate) fn add_store(&self, name: &str) {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            self.problem(format!(
                "store name {name:?} must be ASCII letters, digits, '-', '_' or '.'"
            ));
        } else if !lock(&self.stores).insert(name.to_string()) {
            self.problem(format!("store name {name:?} is used twice"));
        }
    }

    /// Notes that an operator acts on event time.
    pub(crate) fn use_event_time(&self) {
        self.uses_event_time.store(true, Ordering::Relaxed);
    }

    pub(crate) fn problem(&self, problem: String) {
        lock(&self.problems).push(problem);
    }
}

/// Records the operators of a topology, starting from source topics.
///
/// # Examples
/// ```
/// use logbrook_streams::{StreamsBuilder, TopologyTestDriver, serde::Str};
/// let builder = StreamsBuilder::new();
/// builder
///     .stream_with::<Option<String>, String>("lines", Str, Str)
///     .flat_map_values(|line| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
///     .filter(|_, word| word.len() > 3)
///     .to_with("words", logbrook_streams::Produced::with(Str, Str));
/// let topology = builder.build().unwrap();
/// assert_eq!(topology.source_topics(), vec!["lines"]);
/// ```
#[derive(Clone, Default)]
pub struct StreamsBuilder {
    state: Arc<BuilderState>,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder").finish_non_exhaustive()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of `topic` with JSON keys and values (the default serde).
    pub fn stream<K, V>(&self, topic: &str) -> KStream<K, V>
    where
        K: Data + Serialize + DeserializeOwned,
        V: Data + Serialize + DeserializeOwned,
    {
        self.stream_with(topic, Json::<K>::new(), Json::<V>::new())
    }

    /// A stream of `topic` with the given serdes.
    pub fn stream_with<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KStream<K, V> {
        let node = Node::<K, V>::new(self.state.next_id());
        let factory = source_factory(node.clone(), Arc::new(key_serde), Arc::new(value_serde));
        self.state
            .add_source(TopicName::User(topic.to_string()), factory);
        KStream::new(node, self.state.clone())
    }

    /// A table of `topic` with JSON keys and values: the latest value per key; a null value
    /// (tombstone) deletes the key. Materialized in the state store `store`.
    pub fn table<K, V>(&self, topic: &str, store: &str) -> KTable<K, V>
    where
        K: Data + Serialize + DeserializeOwned,
        V: Data + Serialize + DeserializeOwned,
    {
        self.table_with(topic, store, Json::<K>::new(), Json::<V>::new())
    }

    /// As [`StreamsBuilder::table`], with the given serdes.
    pub fn table_with<K: Data, V: Data>(
        &self,
        topic: &str,
        store: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KTable<K, V> {
        let updates = Node::<K, Option<V>>::new(self.state.next_id());
        let key_serde: Arc<dyn Serde<K>> = Arc::new(key_serde);
        let value_serde: Arc<dyn Serde<V>> = Arc::new(value_serde);
        let factory = source_factory(
            updates.clone(),
            key_serde.clone(),
            Arc::new(Tombstones(value_serde.clone())),
        );
        self.state
            .add_source(TopicName::User(topic.to_string()), factory);
        KTable::materialize(
            KStream::new(updates, self.state.clone()),
            store,
            key_serde,
            value_serde,
        )
    }

    /// Takes the timestamps of `topic`'s records from their content instead of the log (Kafka's
    /// `TimestampExtractor`): event time, windows and joins then follow when each event
    /// happened, not when it was written, e.g. for lines a connector ingested. `extract`
    /// returning `None` keeps the log timestamp. The no-late-records contract of event time
    /// holds when the extracted timestamps of each partition are in order. A bounded run's
    /// `start_time` still finds its first offset by log timestamp.
    ///
    /// # Examples
    /// ```
    /// use logbrook_streams::serde::{Json, Str};
    /// use logbrook_streams::{Produced, StreamsBuilder, TopologyTestDriver};
    /// use serde_json::{Value, json};
    ///
    /// let builder = StreamsBuilder::new();
    /// // Clicks say when they happened in their `time_ms` field.
    /// builder.timestamp_extractor("clicks", |record| {
    ///     let click: Value = serde_json::from_slice(record.value.as_deref()?).ok()?;
    ///     click["time_ms"].as_i64()
    /// });
    /// builder
    ///     .stream_with::<String, Value>("clicks", Str, Json::new())
    ///     .to_with("clicks-at-event-time", Produced::with(Str, Json::new()));
    /// let mut driver = TopologyTestDriver::new(&builder.build().unwrap()).unwrap();
    /// let input = driver.input_topic::<String, Value>("clicks", Str, Json::new());
    /// let output = driver.output_topic::<String, Value>("clicks-at-event-time", Str, Json::new());
    /// // Written to the log at 9_000, it happened at 1_000.
    /// driver.pipe(&input, "ann".into(), json!({"time_ms": 1_000}), 9_000).unwrap();
    /// assert_eq!(driver.read_all(&output).unwrap()[0].timestamp, 1_000);
    /// ```
    pub fn timestamp_extractor(
        &self,
        topic: &str,
        extract: impl Fn(&ConsumerRecord) -> Option<i64> + Send + Sync + 'static,
    ) {
        if lock(&self.state.timestamp_extractors)
            .insert(topic.to_string(), Arc::new(extract))
            .is_some()
        {
            self.state
                .problem(format!("topic {topic:?} has two timestamp extractors"));
        }
    }

    /// Checks and freezes the topology.
    ///
    /// # Errors
    /// [`Error::Topology`] naming each mistake (no source, a topic read twice, a store name
    /// used twice).
    pub fn build(self) -> Result<Topology> {
        let problems = std::mem::take(&mut *lock(&self.state.problems));
        if !problems.is_empty() {
            return Err(Error::Topology(problems.join("; ")));
        }
        let sources = std::mem::take(&mut *lock(&self.state.sources));
        if sources.is_empty() {
            return Err(Error::Topology(
                "no source topic: start with StreamsBuilder::stream".into(),
            ));
        }
        let timestamp_extractors = std::mem::take(&mut *lock(&self.state.timestamp_extractors));
        if let Some(topic) = timestamp_extractors
            .keys()
            .find(|t| !sources.contains_key(&TopicName::User((*t).clone())))
        {
            return Err(Error::Topology(format!(
                "topic {topic:?} has a timestamp extractor but no source reads it"
            )));
        }
        let sinks = std::mem::take(&mut *lock(&self.state.sinks));
        let mut stores = std::mem::take(&mut *lock(&self.state.stores));
        if self.state.uses_event_time.load(Ordering::Relaxed)
            && !stores.insert(EVENT_TIME_STORE.into())
        {
            return Err(Error::Topology(format!(
                "store name {EVENT_TIME_STORE:?} is reserved for the tasks' event time"
            )));
        }
        Ok(Topology {
            sources,
            sinks,
            stores,
            timestamp_extractors: TimestampExtractors(timestamp_extractors),
        })
    }
}

/// Decodes records of one topic with these serdes into `node`.
pub(crate) fn source_factory<K: Data, V: Data>(
    node: Arc<Node<K, V>>,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
) -> SourceFactory {
    Arc::new(move |inst| {
        let mut downstream = node.instantiate(inst);
        let (key_serde, value_serde) = (key_serde.clone(), value_serde.clone());
        let emit: SourceEmit = Box::new(move |ctx: &mut TaskContext, r: &ConsumerRecord| {
            let key = match key_serde.deserialize(r.key.as_deref()) {
                Ok(key) => key,
                Err(reason) => return on_bad_record(ctx, r, "key", reason),
            };
            let value = match value_serde.deserialize(r.value.as_deref()) {
                Ok(value) => value,
                Err(reason) => return on_bad_record(ctx, r, "value", reason),
            };
            downstream(
                ctx,
                Record {
                    key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers.clone(),
                },
            )
        });
        emit
    })
}

/// Reads a null value as a tombstone (`None`) instead of asking the value serde.
pub(crate) struct Tombstones<V>(pub(crate) Arc<dyn Serde<V>>);

impl<V: 'static> Serde<Option<V>> for Tombstones<V> {
    fn serialize(&self, value: &Option<V>) -> Result<Option<bytes::Bytes>, String> {
        match value {
            Some(v) => self.0.serialize(v),
            None => Ok(None),
        }
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Option<V>, String> {
        bytes.map(|b| self.0.deserialize(Some(b))).transpose()
    }
}

/// Applies the task's deserialization error policy to a record that failed to decode.
fn on_bad_record(
    ctx: &mut TaskContext,
    r: &ConsumerRecord,
    part: &'static str,
    reason: String,
) -> Result<()> {
    let error = Error::Deserialize {
        topic: r.topic.to_string(),
        partition: r.partition,
        offset: r.offset,
        part,
        reason,
    };
    let policy = ctx.on_error.clone();
    crate::task::apply_error_policy(ctx, r, error, &policy)
}
