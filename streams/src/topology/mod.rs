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

use logbrook_core::ConsumerRecord;

use crate::error::Result;
use crate::record::Record;
use crate::task::{EventTimeOperator, OnError, SharedHooks, TaskContext, TaskInstance};

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
        inst.shared(self.id, |inst| Arc::new(Mutex::new(self.instantiate(inst))))
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
    /// Operators that act when event time advances, upstream before downstream: a slot is
    /// reserved before the operator's downstream is built, so its results reach operators that
    /// have not yet seen the new time, as a watermark travels through Flink's operators.
    timers: Vec<Option<Arc<Mutex<dyn EventTimeOperator>>>>,
    /// What the source being instantiated reaches, and what lies beneath each shared instance:
    /// an event-time operator waits only for the inputs that feed it, and a task's progress
    /// into a repartition topic is that of the inputs that feed that topic (never its own).
    reach: BTreeSet<Reached>,
    shared_reach: HashMap<usize, BTreeSet<Reached>>,
}

/// Something a source's records can get to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    Sink(Arc<str>),
    Timer(usize),
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

    /// The stores registered so far, by index.
    #[cfg(test)]
    pub(crate) fn store_names(&self) -> &[String] {
        &self.stores
    }

    /// Reserves the place of an event-time operator, before its downstream is instantiated.
    pub(crate) fn reserve_timer(&mut self) -> usize {
        self.timers.push(None);
        self.reach.insert(Reached::Timer(self.timers.len() - 1));
        self.timers.len() - 1
    }

    /// Fills a place reserved with [`Instantiation::reserve_timer`].
    pub(crate) fn set_timer(&mut self, slot: usize, operator: Arc<Mutex<dyn EventTimeOperator>>) {
        self.timers[slot] = Some(operator);
    }

    /// The task's single instance of something shared by several operators (the two sides of
    /// a join), made by `make` on first use.
    pub(crate) fn shared<T: Any + Send + Clone>(
        &mut self,
        id: usize,
        make: impl FnOnce(&mut Self) -> T,
    ) -> T {
        if let Some(existing) = self.shared.get(&id).and_then(|a| a.downcast_ref::<T>()) {
            // Another parent: what lies beneath is reached from its source too.
            let beneath = self.shared_reach.get(&id).cloned().unwrap_or_default();
            self.reach.extend(beneath);
            return existing.clone();
        }
        let outer = std::mem::take(&mut self.reach);
        let value = make(self);
        let beneath = std::mem::replace(&mut self.reach, outer);
        self.reach.extend(beneath.iter().cloned());
        self.shared_reach.insert(id, beneath);
        self.shared.insert(id, Box::new(value.clone()));
        value
    }

    /// Notes that the source being instantiated writes `topic`.
    pub(crate) fn reaches_sink(&mut self, topic: &Arc<str>) {
        self.reach.insert(Reached::Sink(topic.clone()));
    }

    pub(crate) fn resolve(&self, topic: &TopicName) -> Arc<str> {
        topic.resolve(&self.application_id).into()
    }
}

/// Builds an event-time operator for the task being instantiated: its place among the task's
/// event-time operators is taken before `make` instantiates its downstream, so it hears of
/// new event time before them.
pub(crate) fn instantiate_timer<T: EventTimeOperator + 'static>(
    inst: &mut Instantiation,
    make: impl FnOnce(&mut Instantiation) -> T,
) -> Arc<Mutex<T>> {
    let slot = inst.reserve_timer();
    let operator = Arc::new(Mutex::new(make(inst)));
    inst.set_timer(slot, operator.clone());
    operator
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

/// The store keeping a task's event time (the progress of each input it waits for).
pub(crate) const EVENT_TIME_STORE: &str = "event-time";

/// Name of a store's changelog topic.
pub(crate) fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// Decodes a consumer record of one source topic and feeds it to the graph.
pub(crate) type SourceEmit = Box<dyn FnMut(&mut TaskContext, &ConsumerRecord) -> Result<()> + Send>;
pub(crate) type SourceFactory = Arc<dyn Fn(&mut Instantiation) -> SourceEmit + Send + Sync>;
/// Reads when a record's event happened from its content (Kafka's `TimestampExtractor`);
/// `None` keeps the log timestamp.
pub(crate) type TimestampExtractor = Arc<dyn Fn(&ConsumerRecord) -> Option<i64> + Send + Sync>;

/// The timestamp extractors of a topology's source topics.
#[derive(Clone, Default)]
pub(crate) struct TimestampExtractors(pub(crate) BTreeMap<String, TimestampExtractor>);

impl TimestampExtractors {
    /// Sets `record`'s timestamp to its event time when its topic has an extractor. Done as
    /// records are read, so event time, bounds, the order of a task's inputs and every
    /// operator see the same time.
    pub(crate) fn apply(&self, record: &mut ConsumerRecord) {
        if let Some(extract) = self.0.get(&*record.topic)
            && let Some(timestamp) = extract(record)
        {
            record.timestamp = timestamp;
        }
    }
}

/// A built topology: what to read, what to write, and how to instantiate a task.
pub struct Topology {
    pub(crate) sources: BTreeMap<TopicName, SourceFactory>,
    pub(crate) sinks: BTreeSet<TopicName>,
    pub(crate) stores: BTreeSet<String>,
    /// Source topics whose records carry their event time in their content.
    pub(crate) timestamp_extractors: TimestampExtractors,
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

    /// Internal topics that the tasks both write and read (repartition topics), resolved for
    /// `application_id`: every task sends its event-time progress into each of their partitions.
    pub(crate) fn repartition_topics(&self, application_id: &str) -> Vec<String> {
        self.sinks
            .iter()
            .filter(|t| matches!(t, TopicName::Internal(_)) && self.sources.contains_key(*t))
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
        let mut sources = HashMap::new();
        let mut timer_sources: Vec<Vec<Arc<str>>> = Vec::new();
        let mut sink_sources: BTreeMap<Arc<str>, Vec<Arc<str>>> = BTreeMap::new();
        for (topic, factory) in &self.sources {
            let topic: Arc<str> = topic.resolve(application_id).into();
            inst.reach.clear();
            sources.insert(topic.to_string(), factory(&mut inst));
            for reached in std::mem::take(&mut inst.reach) {
                match reached {
                    Reached::Sink(sink) => {
                        sink_sources.entry(sink).or_default().push(topic.clone())
                    }
                    Reached::Timer(slot) => {
                        if timer_sources.len() <= slot {
                            timer_sources.resize(slot + 1, Vec::new());
                        }
                        timer_sources[slot].push(topic.clone());
                    }
                }
            }
        }
        timer_sources.resize(inst.timers.len(), Vec::new());
        let event_time_store = self
            .stores
            .contains(EVENT_TIME_STORE)
            .then(|| inst.add_store(EVENT_TIME_STORE));
        let changelogs = inst
            .stores
            .iter()
            .map(|s| changelog_topic(application_id, s).into())
            .collect();
        let mut context = TaskContext::new(application_id, partition, on_error);
        context.changelogs = changelogs;
        TaskInstance {
            sources,
            hooks: inst.hooks,
            timers: inst
                .timers
                .into_iter()
                .zip(timer_sources)
                .filter_map(|(timer, sources)| Some((timer?, sources)))
                .map(|(operator, sources)| crate::task::Timer::new(operator, sources))
                .collect(),
            sink_sources,
            store_names: inst.stores,
            event_time_store,
            context,
        }
    }
}
