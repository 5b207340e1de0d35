//! The logical graph a [`StreamsBuilder`](crate::StreamsBuilder) records, and the per-task
//! instances the runtime and the test driver run.
//!
//! Every point of the graph where records of one type flow is a [`Node`]. Chaining an operator
//! on a stream adds a *factory* to its node; each task calls the factories to build its own
//! operator instances (so state is per task, as in Kafka Streams), wired as plain closures.
//! A node with several parents (after `merge`) is instantiated once per task and shared.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use logbrook_core::{ConsumerRecord, Header};

use crate::error::{Error, Result};
use crate::processor::{PunctuationType, SharedHooks, each_hook};
use crate::record::Record;
use crate::state::KeyValueStore;

/// Types that can flow through a topology.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// One operator instance: takes a record, forwards results to its children.
pub(crate) type Emit<K, V> = Box<dyn FnMut(&mut TaskContext, Record<K, V>) -> Result<()> + Send>;
type ChildFactory<K, V> = Arc<dyn Fn(&mut Instantiation) -> Emit<K, V> + Send + Sync>;

pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A point of the graph carrying `(K, V)` records.
pub(crate) struct Node<K, V> {
    id: usize,
    children: Mutex<Vec<ChildFactory<K, V>>>,
}

impl<K: Data, V: Data> Node<K, V> {
    pub(crate) fn new(id: usize) -> Arc<Self> {
        Arc::new(Self {
            id,
            children: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn add_child(
        &self,
        factory: impl Fn(&mut Instantiation) -> Emit<K, V> + Send + Sync + 'static,
    ) {
        lock(&self.children).push(Arc::new(factory));
    }

    /// This node's instance for one task: hands each record to every child.
    pub(crate) fn instantiate(&self, inst: &mut Instantiation) -> Emit<K, V> {
        let factories: Vec<ChildFactory<K, V>> = lock(&self.children).clone();
        let mut children: Vec<Emit<K, V>> = factories.iter().map(|f| f(inst)).collect();
        match children.len() {
            0 => Box::new(|_, _| Ok(())),
            1 => children.pop().unwrap_or_else(|| Box::new(|_, _| Ok(()))),
            _ => Box::new(move |ctx, record| {
                let Some((last, rest)) = children.split_last_mut() else {
                    return Ok(());
                };
                for child in rest {
                    child(ctx, record.clone())?;
                }
                last(ctx, record)
            }),
        }
    }

    /// The task's single instance of a node with several parents.
    pub(crate) fn shared_instance(
        self: &Arc<Self>,
        inst: &mut Instantiation,
    ) -> Arc<Mutex<Emit<K, V>>> {
        if let Some(existing) = inst
            .shared
            .get(&self.id)
            .and_then(|a| a.downcast_ref::<Arc<Mutex<Emit<K, V>>>>())
        {
            return existing.clone();
        }
        let emit = Arc::new(Mutex::new(self.instantiate(inst)));
        inst.shared.insert(self.id, Box::new(emit.clone()));
        emit
    }
}

/// State of building one task's instance.
#[derive(Default)]
pub(crate) struct Instantiation {
    shared: HashMap<usize, Box<dyn Any + Send>>,
    pub(crate) application_id: String,
    /// Stores the operators asked for, by index.
    stores: Vec<String>,
    /// Processor-API instances, for init, punctuation and close.
    pub(crate) hooks: Vec<SharedHooks>,
    /// Operators that keep their own stream time.
    clocks: usize,
}

impl Instantiation {
    /// Registers a store for the task being built; its index for `TaskContext::store_*`.
    pub(crate) fn add_store(&mut self, name: &str) -> usize {
        // By name: a table's store is shared by its source and the joins that look it up.
        if let Some(index) = self.stores.iter().position(|s| s == name) {
            return index;
        }
        self.stores.push(name.to_string());
        self.stores.len() - 1
    }

    /// Registers an operator's stream-time clock (the largest timestamp it has seen, as Kafka
    /// Streams' windowed and join processors keep); its index for `TaskContext::observe`.
    /// Clocks are saved in the task's clock store at each commit, so a restart resumes them.
    pub(crate) fn add_clock(&mut self) -> usize {
        self.clocks += 1;
        self.clocks - 1
    }

    /// The task's single instance of something shared by several operators (the two sides of
    /// a join), made by `make` on first use.
    pub(crate) fn shared<T: Any + Send + Clone>(
        &mut self,
        id: usize,
        make: impl FnOnce(&mut Self) -> T,
    ) -> T {
        if let Some(existing) = self.shared.get(&id).and_then(|a| a.downcast_ref::<T>()) {
            return existing.clone();
        }
        let value = make(self);
        self.shared.insert(id, Box::new(value.clone()));
        value
    }

    pub(crate) fn resolve(&self, topic: &TopicName) -> Arc<str> {
        topic.resolve(&self.application_id).into()
    }
}

/// A topic of a topology: a user's, or an internal one named after the application id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TopicName {
    User(String),
    /// `{application_id}-{suffix}`, e.g. a repartition topic.
    Internal(String),
}

impl TopicName {
    pub(crate) fn resolve(&self, application_id: &str) -> String {
        match self {
            Self::User(topic) => topic.clone(),
            Self::Internal(suffix) => format!("{application_id}-{suffix}"),
        }
    }
}

fn user_topics<'a>(topics: impl Iterator<Item = &'a TopicName>) -> Vec<&'a str> {
    topics
        .filter_map(|t| match t {
            TopicName::User(name) => Some(name.as_str()),
            TopicName::Internal(_) => None,
        })
        .collect()
}

/// The store keeping operators' stream-time clocks.
pub(crate) const CLOCK_STORE: &str = "stream-time-clocks";

/// Name of a store's changelog topic.
pub(crate) fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// Decodes a consumer record of one source topic and feeds it to the graph.
pub(crate) type SourceEmit = Box<dyn FnMut(&mut TaskContext, &ConsumerRecord) -> Result<()> + Send>;
pub(crate) type SourceFactory = Arc<dyn Fn(&mut Instantiation) -> SourceEmit + Send + Sync>;

/// A built topology: what to read, what to write, and how to instantiate a task.
pub struct Topology {
    pub(crate) sources: BTreeMap<TopicName, SourceFactory>,
    pub(crate) sinks: BTreeSet<TopicName>,
    pub(crate) stores: BTreeSet<String>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("sources", &self.source_topics())
            .field("sinks", &self.sinks)
            .finish()
    }
}

impl Topology {
    /// The user topics the topology reads (internal repartition topics not included).
    pub fn source_topics(&self) -> Vec<&str> {
        user_topics(self.sources.keys())
    }

    /// The user topics the topology writes.
    pub fn sink_topics(&self) -> Vec<&str> {
        user_topics(self.sinks.iter())
    }

    /// Names of the state stores.
    pub fn store_names(&self) -> Vec<&str> {
        self.stores.iter().map(String::as_str).collect()
    }

    /// Every topic a task reads, internal ones resolved for `application_id`.
    pub(crate) fn all_sources(&self, application_id: &str) -> Vec<String> {
        self.sources
            .keys()
            .map(|t| t.resolve(application_id))
            .collect()
    }

    /// Names of the internal topics an application with this id uses: repartition topics and
    /// store changelogs.
    pub fn internal_topic_names(&self, application_id: &str) -> Vec<String> {
        self.internal_topics(application_id)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// Internal topics as (name, compacted): repartition topics and store changelogs.
    pub(crate) fn internal_topics(&self, application_id: &str) -> Vec<(String, bool)> {
        let mut topics: BTreeSet<(String, bool)> = self
            .sources
            .keys()
            .chain(&self.sinks)
            .filter(|t| matches!(t, TopicName::Internal(_)))
            .map(|t| (t.resolve(application_id), false))
            .collect();
        topics.extend(
            self.stores
                .iter()
                .map(|s| (changelog_topic(application_id, s), true)),
        );
        topics.into_iter().collect()
    }

    /// A fresh instance of every operator, for one task (partition) of `application_id`. Its
    /// stores are still to be opened with `TaskInstance::open_stores`.
    pub(crate) fn instantiate(
        &self,
        application_id: &str,
        partition: u32,
        on_error: OnError,
    ) -> TaskInstance {
        let mut inst = Instantiation {
            application_id: application_id.to_string(),
            ..Instantiation::default()
        };
        let sources = self
            .sources
            .iter()
            .map(|(topic, factory)| (topic.resolve(application_id), factory(&mut inst)))
            .collect();
        let clock_store = (inst.clocks > 0).then(|| inst.add_store(CLOCK_STORE));
        let changelogs = inst
            .stores
            .iter()
            .map(|s| changelog_topic(application_id, s).into())
            .collect();
        TaskInstance {
            sources,
            hooks: inst.hooks,
            store_names: inst.stores,
            context: TaskContext {
                on_error,
                application_id: application_id.into(),
                partition,
                changelogs,
                clocks: vec![i64::MIN; inst.clocks],
                clock_store,
                ..TaskContext::default()
            },
        }
    }
}

/// What happens to a record whose key or value does not deserialize.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop the task with the error (Kafka Streams' default).
    #[default]
    Fail,
    /// Log it and go on with the next record.
    LogAndSkip,
    /// Copy the raw record to this topic, with headers naming the source and the error, and go on.
    DeadLetter(String),
}

/// Handles a record that failed (to deserialize, or in user code) by `policy`.
pub(crate) fn apply_error_policy(
    ctx: &mut TaskContext,
    r: &ConsumerRecord,
    error: Error,
    policy: &OnError,
) -> Result<()> {
    match policy {
        OnError::Fail => Err(error),
        OnError::LogAndSkip => {
            tracing::warn!(error = %error, "skipping a record");
            ctx.skipped += 1;
            Ok(())
        }
        OnError::DeadLetter(topic) => {
            let mut headers = r.headers.clone();
            for (key, value) in [
                ("logbrook.error.topic", r.topic.to_string()),
                ("logbrook.error.partition", r.partition.to_string()),
                ("logbrook.error.offset", r.offset.to_string()),
                ("logbrook.error.message", error.to_string()),
            ] {
                headers.push(Header {
                    key: key.into(),
                    value: Some(value.into()),
                });
            }
            tracing::warn!(error = %error, dead_letter_topic = %topic, "sending a record to the dead-letter topic");
            ctx.outputs.push(OutputRecord {
                topic: topic.as_str().into(),
                partition: None,
                key: r.key.clone(),
                value: r.value.clone(),
                timestamp: r.timestamp,
                headers,
            });
            ctx.skipped += 1;
            Ok(())
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string())
}

/// A record an operator wrote to an output topic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputRecord {
    pub topic: Arc<str>,
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
    pub headers: Vec<Header>,
}

/// What operators see of the task running them.
#[derive(Default)]
pub struct TaskContext {
    pub(crate) outputs: Vec<OutputRecord>,
    pub(crate) stream_time: i64,
    /// Policy for records that do not deserialize.
    pub(crate) on_error: OnError,
    /// Policy for records on which user code panics.
    pub(crate) on_processing_error: OnError,
    pub(crate) skipped: u64,
    pub(crate) partition_counts: HashMap<String, u32>,
    pub(crate) application_id: Arc<str>,
    /// The task's partition: it reads this partition of every source and writes it of every
    /// changelog.
    pub(crate) partition: u32,
    pub(crate) stores: Vec<KeyValueStore>,
    pub(crate) changelogs: Vec<Arc<str>>,
    /// Records dropped for arriving after their windows closed.
    pub(crate) late_dropped: u64,
    /// Stream time per operator clock, and whether any moved since the last save.
    pub(crate) clocks: Vec<i64>,
    clocks_moved: bool,
    clock_store: Option<usize>,
}

impl TaskContext {
    /// The largest record timestamp the task has seen (Kafka's stream time).
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// Partitions of an output topic, when known.
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.partition_counts.get(topic).copied()
    }

    /// The task's partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The application id the task runs under.
    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    pub(crate) fn store_get(&self, store: usize, key: &[u8]) -> Result<Option<Bytes>> {
        self.stores
            .get(store)
            .ok_or_else(|| Error::Topology(format!("store #{store} is not open")))?
            .get(key)
    }

    pub(crate) fn store_range(
        &self,
        store: usize,
        from: &[u8],
        to: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>> {
        self.stores
            .get(store)
            .ok_or_else(|| Error::Topology(format!("store #{store} is not open")))?
            .range(from, to)
    }

    pub(crate) fn store_entries(&self, store: usize) -> Result<Vec<(Bytes, Bytes)>> {
        self.stores
            .get(store)
            .ok_or_else(|| Error::Topology(format!("store #{store} is not open")))?
            .entries()
    }

    /// Advances an operator's clock to `timestamp` if later; returns the clock.
    pub(crate) fn observe(&mut self, clock: usize, timestamp: i64) -> i64 {
        let now = &mut self.clocks[clock];
        if timestamp > *now {
            *now = timestamp;
            self.clocks_moved = true;
        }
        *now
    }

    /// Records dropped so far for arriving after every window they belong to had closed.
    pub fn late_records_dropped(&self) -> u64 {
        self.late_dropped
    }

    /// Writes to a store; the write reaches its changelog at the next
    /// [`TaskInstance::log_store_writes`].
    pub(crate) fn store_put(
        &mut self,
        store: usize,
        key: Bytes,
        value: Option<Bytes>,
        _timestamp: i64,
    ) -> Result<()> {
        self.stores
            .get_mut(store)
            .ok_or_else(|| Error::Topology(format!("store #{store} is not open")))?
            .put(key, value);
        Ok(())
    }
}

/// One task's running topology.
pub(crate) struct TaskInstance {
    sources: HashMap<String, SourceEmit>,
    hooks: Vec<SharedHooks>,
    pub(crate) store_names: Vec<String>,
    pub(crate) context: TaskContext,
}

impl TaskInstance {
    /// Runs one input record through the graph; its outputs collect in the context. A panic in
    /// user code is handled by the processing-error policy; outputs and store writes made
    /// before the panic stay (as in Kafka Streams).
    pub(crate) fn process(&mut self, record: &ConsumerRecord) -> Result<()> {
        self.context.stream_time = self.context.stream_time.max(record.timestamp);
        let source = self
            .sources
            .get_mut(&*record.topic)
            .ok_or_else(|| Error::Topology(format!("no source reads topic {:?}", record.topic)))?;
        let context = &mut self.context;
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source(context, record)));
        let result = match outcome {
            Ok(result) => result,
            Err(panic) => {
                let error = Error::Processing {
                    topic: record.topic.to_string(),
                    partition: record.partition,
                    offset: record.offset,
                    message: panic_message(&*panic),
                };
                let policy = self.context.on_processing_error.clone();
                apply_error_policy(&mut self.context, record, error, &policy)
            }
        };
        result.and_then(|()| self.punctuate_stream_time())
    }

    /// Turns the store writes since the last call into changelog records (the latest value per
    /// key), stamped with the stream time.
    pub(crate) fn log_store_writes(&mut self) {
        let ctx = &mut self.context;
        let timestamp = ctx.stream_time;
        for (store, changelog) in ctx.stores.iter_mut().zip(&ctx.changelogs) {
            for (key, value) in store.take_unlogged() {
                ctx.outputs.push(OutputRecord {
                    topic: changelog.clone(),
                    partition: Some(ctx.partition),
                    key: Some(key),
                    value,
                    timestamp,
                    headers: Vec::new(),
                });
            }
        }
    }

    /// Reads the operators' clocks back from the clock store (after a restore).
    pub(crate) fn load_clocks(&mut self) -> Result<()> {
        let Some(store) = self.context.clock_store else {
            return Ok(());
        };
        for i in 0..self.context.clocks.len() {
            let saved = self.context.store_get(store, &(i as u32).to_be_bytes())?;
            if let Some(bytes) = saved
                && let Ok(bytes) = <[u8; 8]>::try_from(&bytes[..])
            {
                self.context.clocks[i] = i64::from_be_bytes(bytes);
            }
        }
        Ok(())
    }

    /// Writes the clocks that moved to the clock store (and its changelog), before a commit.
    pub(crate) fn save_clocks(&mut self) -> Result<()> {
        let Some(store) = self.context.clock_store else {
            return Ok(());
        };
        if !std::mem::take(&mut self.context.clocks_moved) {
            return Ok(());
        }
        let latest = self.context.clocks.iter().copied().max().unwrap_or(0);
        for i in 0..self.context.clocks.len() {
            let value = Bytes::copy_from_slice(&self.context.clocks[i].to_be_bytes());
            let key = Bytes::copy_from_slice(&(i as u32).to_be_bytes());
            self.context.store_put(store, key, Some(value), latest)?;
        }
        Ok(())
    }

    /// Starts the processor-API instances (after the stores are open and restored).
    pub(crate) fn init_processors(&mut self, wall_clock: i64) -> Result<()> {
        each_hook(&self.hooks, &mut self.context, |h, ctx| {
            h.init(ctx, wall_clock)
        })
    }

    /// Fires stream-time punctuations that the current stream time made due.
    fn punctuate_stream_time(&mut self) -> Result<()> {
        let now = self.context.stream_time;
        each_hook(&self.hooks, &mut self.context, |h, ctx| {
            h.punctuate(ctx, PunctuationType::StreamTime, now)
        })
    }

    /// Fires wall-clock punctuations due at `now` (ms).
    pub(crate) fn punctuate_wall_clock(&mut self, now: i64) -> Result<()> {
        each_hook(&self.hooks, &mut self.context, |h, ctx| {
            h.punctuate(ctx, PunctuationType::WallClockTime, now)
        })
    }

    /// Closes the processor-API instances.
    pub(crate) fn close_processors(&mut self) -> Result<()> {
        each_hook(&self.hooks, &mut self.context, |h, ctx| h.close(ctx))
    }

    /// Opens the task's stores, in the order the operators registered them.
    pub(crate) fn open_stores(
        &mut self,
        mut open: impl FnMut(&str) -> Result<KeyValueStore>,
    ) -> Result<()> {
        self.context.stores = self
            .store_names
            .iter()
            .map(|name| open(name))
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Whether the task reads `topic` (resolved name).
    pub(crate) fn reads(&self, topic: &str) -> bool {
        self.sources.contains_key(topic)
    }

    pub(crate) fn take_outputs(&mut self) -> Vec<OutputRecord> {
        std::mem::take(&mut self.context.outputs)
    }

    /// Records skipped by `OnError::LogAndSkip` or sent to the dead-letter topic so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.context.skipped
    }
}
