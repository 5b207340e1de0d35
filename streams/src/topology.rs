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
use crate::record::Record;

/// Types that can flow through a topology.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// One operator instance: takes a record, forwards results to its children.
pub(crate) type Emit<K, V> = Box<dyn FnMut(&mut TaskContext, Record<K, V>) -> Result<()> + Send>;
type ChildFactory<K, V> = Arc<dyn Fn(&mut Instantiation) -> Emit<K, V> + Send + Sync>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
}

/// Decodes a consumer record of one source topic and feeds it to the graph.
pub(crate) type SourceEmit = Box<dyn FnMut(&mut TaskContext, &ConsumerRecord) -> Result<()> + Send>;
pub(crate) type SourceFactory = Arc<dyn Fn(&mut Instantiation) -> SourceEmit + Send + Sync>;

/// A built topology: what to read, what to write, and how to instantiate a task.
pub struct Topology {
    pub(crate) sources: BTreeMap<String, SourceFactory>,
    pub(crate) sinks: BTreeSet<String>,
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
    /// Topics the topology reads.
    pub fn source_topics(&self) -> Vec<&str> {
        self.sources.keys().map(String::as_str).collect()
    }

    /// Topics the topology writes.
    pub fn sink_topics(&self) -> Vec<&str> {
        self.sinks.iter().map(String::as_str).collect()
    }

    /// A fresh instance of every operator, for one task.
    pub(crate) fn instantiate(&self, on_error: OnError) -> TaskInstance {
        let mut inst = Instantiation::default();
        let sources = self
            .sources
            .iter()
            .map(|(topic, factory)| (topic.clone(), factory(&mut inst)))
            .collect();
        TaskInstance {
            sources,
            context: TaskContext {
                on_error,
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
    pub(crate) on_error: OnError,
    pub(crate) skipped: u64,
    pub(crate) partition_counts: HashMap<String, u32>,
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
}

/// One task's running topology.
pub(crate) struct TaskInstance {
    sources: HashMap<String, SourceEmit>,
    pub(crate) context: TaskContext,
}

impl TaskInstance {
    /// Runs one input record through the graph; its outputs collect in the context.
    pub(crate) fn process(&mut self, record: &ConsumerRecord) -> Result<()> {
        self.context.stream_time = self.context.stream_time.max(record.timestamp);
        let source = self
            .sources
            .get_mut(&*record.topic)
            .ok_or_else(|| Error::Topology(format!("no source reads topic {:?}", record.topic)))?;
        source(&mut self.context, record)
    }

    pub(crate) fn take_outputs(&mut self) -> Vec<OutputRecord> {
        std::mem::take(&mut self.context.outputs)
    }

    /// Records skipped by `OnError::LogAndSkip` or sent to the dead-letter topic so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.context.skipped
    }
}
