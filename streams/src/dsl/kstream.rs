//! `KStream`: an unbounded stream of typed records, and its stateless operators.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::BuilderState;
use crate::error::Error;
use crate::record::Record;
use crate::serde::{Json, Serde};
use crate::task::OutputRecord;
use crate::topology::{Data, Emit, Node, TopicName, lock};

/// A stream of `(K, V)` records. Operators return new streams; nothing runs until the built
/// topology is run by [`StreamsApp`](crate::StreamsApp) or a
/// [`TopologyTestDriver`](crate::TopologyTestDriver).
pub struct KStream<K, V> {
    pub(crate) node: Arc<Node<K, V>>,
    pub(crate) builder: Arc<BuilderState>,
    /// Set once an operator may have changed the key: grouping must then repartition.
    pub(crate) key_changed: bool,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            builder: self.builder.clone(),
            key_changed: self.key_changed,
        }
    }
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KStream").finish_non_exhaustive()
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(node: Arc<Node<K, V>>, builder: Arc<BuilderState>) -> Self {
        Self {
            node,
            builder,
            key_changed: false,
        }
    }

    /// Marks the stream as possibly re-keyed.
    fn rekeyed(mut self) -> Self {
        self.key_changed = true;
        self
    }

    /// Adds an operator: `make` builds, per task, a function of the record and the downstream.
    fn chain<K2: Data, V2: Data>(
        &self,
        make: impl Fn() -> Box<
            dyn FnMut(
                    Record<K, V>,
                    &mut dyn FnMut(Record<K2, V2>) -> crate::Result<()>,
                ) -> crate::Result<()>
                + Send,
        > + Send
        + Sync
        + 'static,
    ) -> KStream<K2, V2> {
        let child = Node::<K2, V2>::new(self.builder.next_id());
        let graph = child.clone();
        self.node.add_child(move |inst| {
            let mut downstream = graph.instantiate(inst);
            let mut operator = make();
            Box::new(move |ctx, record| operator(record, &mut |out| downstream(ctx, out)))
        });
        KStream {
            node: child,
            builder: self.builder.clone(),
            key_changed: self.key_changed,
        }
    }

    /// Keeps the records for which `predicate` holds.
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KStream<K, V> {
        let predicate = Arc::new(predicate);
        self.chain(move || {
            let predicate = predicate.clone();
            Box::new(move |r, emit| {
                if predicate(&r.key, &r.value) {
                    emit(r)
                } else {
                    Ok(())
                }
            })
        })
    }

    /// Drops the records for which `predicate` holds.
    pub fn filter_not(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KStream<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Replaces each record's key and value. A new key means a later grouping or join will
    /// repartition.
    pub fn map<K2: Data, V2: Data>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let f = Arc::new(f);
        self.chain(move || {
            let f = f.clone();
            Box::new(move |r: Record<K, V>, emit| emit(r.map(|k, v| f(k, v))))
        })
        .rekeyed()
    }

    /// Replaces each record's value, keeping its key.
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.map_values_with_key(move |_, value| f(value))
    }

    /// Replaces each record's value, with the key to look at.
    pub fn map_values_with_key<V2: Data>(
        &self,
        f: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        let f = Arc::new(f);
        self.chain(move || {
            let f = f.clone();
            Box::new(move |r: Record<K, V>, emit| {
                emit(r.map(|k, v| {
                    let v = f(&k, v);
                    (k, v)
                }))
            })
        })
    }

    /// Turns each record into zero or more records.
    pub fn flat_map<K2: Data, V2: Data, I>(
        &self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        let f = Arc::new(f);
        self.chain(move || {
            let f = f.clone();
            Box::new(move |r: Record<K, V>, emit| {
                let Record {
                    key,
                    value,
                    timestamp,
                    headers,
                } = r;
                for (key, value) in f(key, value) {
                    emit(Record {
                        key,
                        value,
                        timestamp,
                        headers: headers.clone(),
                    })?;
                }
                Ok(())
            })
        })
        .rekeyed()
    }

    /// Turns each value into zero or more values under the same key.
    pub fn flat_map_values<V2: Data, I>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        let f = Arc::new(f);
        self.chain(move || {
            let f = f.clone();
            Box::new(move |r: Record<K, V>, emit| {
                for value in f(r.value) {
                    emit(Record {
                        key: r.key.clone(),
                        value,
                        timestamp: r.timestamp,
                        headers: r.headers.clone(),
                    })?;
                }
                Ok(())
            })
        })
    }

    /// Sets a new key computed from the record.
    pub fn select_key<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        let f = Arc::new(f);
        self.chain(move || {
            let f = f.clone();
            Box::new(move |r: Record<K, V>, emit| {
                let key = f(&r.key, &r.value);
                emit(r.map(|_, v| (key, v)))
            })
        })
        .rekeyed()
    }

    /// Runs a custom [`Processor`](crate::processor::Processor), one made by `supplier` per
    /// task, with access to the named state stores (each backed by a changelog like any
    /// store). Its output may have any key, so a later grouping or join repartitions.
    pub fn process<P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<P::KeyOut, P::ValueOut>
    where
        P: crate::processor::Processor<K, V>,
    {
        for store in stores {
            self.builder.add_store(store);
        }
        let stores: Vec<String> = stores.iter().map(|s| (*s).to_string()).collect();
        let child = Node::<P::KeyOut, P::ValueOut>::new(self.builder.next_id());
        let graph = child.clone();
        self.node.add_child(move |inst| {
            let downstream = graph.instantiate(inst);
            let indices = stores
                .iter()
                .map(|name| (name.clone(), inst.add_store(name)))
                .collect();
            let cell = Arc::new(std::sync::Mutex::new(crate::processor::ProcessorCell::new(
                supplier(),
                downstream,
                indices,
            )));
            inst.hooks.push(cell.clone());
            Box::new(move |ctx, record| lock(&cell).process(ctx, record))
        });
        KStream {
            node: child,
            builder: self.builder.clone(),
            key_changed: true,
        }
    }

    /// Sends the records through the internal topic `{application_id}-{name}-repartition`,
    /// partitioned by their current key (JSON serdes), so that equal keys meet in one task.
    /// Groupings and joins do this by themselves after a key change.
    pub fn repartition(&self, name: &str) -> KStream<K, V>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.repartition_with(name, Json::<K>::new(), Json::<V>::new())
    }

    /// As [`KStream::repartition`], with these serdes.
    pub fn repartition_with(
        &self,
        name: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KStream<K, V> {
        self.repartition_through(name, Arc::new(key_serde), Arc::new(value_serde))
    }

    pub(crate) fn repartition_through(
        &self,
        name: &str,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
    ) -> KStream<K, V> {
        let topic = TopicName::Internal(format!("{name}-repartition"));
        let produced = Produced {
            key_serde: key_serde.clone(),
            value_serde: value_serde.clone(),
            partitioner: None,
        };
        self.sink(topic.clone(), produced);
        let node = Node::<K, V>::new(self.builder.next_id());
        let factory = super::source_factory(node.clone(), key_serde, value_serde);
        self.builder.add_source(topic, factory);
        KStream::new(node, self.builder.clone())
    }

    /// Calls `f` on each record and passes it on unchanged.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        let f = Arc::new(f);
        self.chain(move || {
            let f = f.clone();
            Box::new(move |r, emit| {
                f(&r.key, &r.value);
                emit(r)
            })
        })
    }

    /// The records of both streams, interleaved in arrival order.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let merged = Node::<K, V>::new(self.builder.next_id());
        for parent in [&self.node, &other.node] {
            let shared = merged.clone();
            parent.add_child(move |inst| {
                let instance = shared.shared_instance(inst);
                Box::new(move |ctx, record| (lock(&instance))(ctx, record))
            });
        }
        KStream {
            node: merged,
            builder: self.builder.clone(),
            key_changed: self.key_changed || other.key_changed,
        }
    }

    /// Starts named branches: each record goes to the first branch whose predicate holds.
    pub fn split(&self) -> BranchedStream<K, V> {
        self.split_named("")
    }

    /// As [`KStream::split`], with `prefix` before every branch name (Kafka's `Named`).
    pub fn split_named(&self, prefix: &str) -> BranchedStream<K, V> {
        BranchedStream {
            parent: self.clone(),
            prefix: prefix.to_string(),
            branches: Vec::new(),
        }
    }

    /// Writes the stream to `topic` as JSON, partitioned by key.
    pub fn to(&self, topic: &str)
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.to_with(topic, Produced::with(Json::<K>::new(), Json::<V>::new()));
    }

    /// Writes the stream to `topic` with the given serdes and partitioner.
    pub fn to_with(&self, topic: &str, produced: Produced<K, V>) {
        self.sink(TopicName::User(topic.to_string()), produced);
    }

    /// Writes to a user or internal topic.
    pub(crate) fn sink(&self, topic: TopicName, produced: Produced<K, V>) {
        self.builder.add_sink(topic.clone());
        self.node.add_child(move |inst| {
            let (topic, produced) = (inst.resolve(&topic), produced.clone());
            inst.reaches_sink(&topic);
            let emit: Emit<K, V> = Box::new(move |ctx, r| {
                let serialize_error = |part, reason| Error::Serialize {
                    topic: topic.to_string(),
                    part,
                    reason,
                };
                let key = produced
                    .key_serde
                    .serialize(&r.key)
                    .map_err(|e| serialize_error("key", e))?;
                let value = produced
                    .value_serde
                    .serialize(&r.value)
                    .map_err(|e| serialize_error("value", e))?;
                let partition = match &produced.partitioner {
                    Some(choose) => {
                        let count = ctx.partition_count(&topic).ok_or_else(|| {
                            Error::Topology(format!(
                                "partition count of output topic {topic:?} is unknown"
                            ))
                        })?;
                        Some(choose(&r.key, &r.value, count) % count)
                    }
                    None => None,
                };
                ctx.outputs.push(OutputRecord {
                    topic: topic.clone(),
                    partition,
                    key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                });
                Ok(())
            });
            emit
        });
    }
}

type Partitioner<K, V> = Arc<dyn Fn(&K, &V, u32) -> u32 + Send + Sync>;

/// How a stream is written to a topic: serdes and partitioner.
pub struct Produced<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) partitioner: Option<Partitioner<K, V>>,
}

impl<K, V> Clone for Produced<K, V> {
    fn clone(&self) -> Self {
        Self {
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            partitioner: self.partitioner.clone(),
        }
    }
}

impl<K: Data, V: Data> Produced<K, V> {
    /// These serdes; partitions chosen from the key bytes with Kafka's murmur2.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self {
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            partitioner: None,
        }
    }

    /// Chooses partitions with `f(key, value, partition_count)` instead.
    pub fn partitioner(mut self, f: impl Fn(&K, &V, u32) -> u32 + Send + Sync + 'static) -> Self {
        self.partitioner = Some(Arc::new(f));
        self
    }
}

type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;
/// A branch: its predicate (`None` for the default branch) and where matching records go.
type Route<K, V, T> = (Option<Predicate<K, V>>, T);
type NodeRoute<K, V> = Route<K, V, Arc<Node<K, V>>>;

/// Named branches of a stream, from [`KStream::split`].
pub struct BranchedStream<K, V> {
    parent: KStream<K, V>,
    prefix: String,
    branches: Vec<(String, Predicate<K, V>)>,
}

impl<K: Data, V: Data> BranchedStream<K, V> {
    /// A branch taking the records that match `predicate` and no earlier branch.
    pub fn branch(
        mut self,
        name: &str,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.branches
            .push((format!("{}{name}", self.prefix), Arc::new(predicate)));
        self
    }

    /// Finishes with a branch for the records no predicate took.
    pub fn default_branch(self, name: &str) -> HashMap<String, KStream<K, V>> {
        let name = format!("{}{name}", self.prefix);
        self.finish(Some(name))
    }

    /// Finishes; records no predicate took are dropped.
    pub fn no_default_branch(self) -> HashMap<String, KStream<K, V>> {
        self.finish(None)
    }

    fn finish(self, default: Option<String>) -> HashMap<String, KStream<K, V>> {
        let builder = self.parent.builder.clone();
        let key_changed = self.parent.key_changed;
        let mut routes: Vec<NodeRoute<K, V>> = Vec::new();
        let mut streams = HashMap::new();
        for (name, predicate) in self.branches {
            let node = Node::new(builder.next_id());
            streams.insert(
                name,
                KStream {
                    node: node.clone(),
                    builder: builder.clone(),
                    key_changed,
                },
            );
            routes.push((Some(predicate), node));
        }
        if let Some(name) = default {
            let node = Node::new(builder.next_id());
            streams.insert(
                name,
                KStream {
                    node: node.clone(),
                    builder: builder.clone(),
                    key_changed,
                },
            );
            routes.push((None, node));
        }
        self.parent.node.add_child(move |inst| {
            let mut targets: Vec<Route<K, V, Emit<K, V>>> = routes
                .iter()
                .map(|(p, node)| (p.clone(), node.instantiate(inst)))
                .collect();
            Box::new(move |ctx, r| {
                for (predicate, emit) in &mut targets {
                    if predicate.as_ref().is_none_or(|p| p(&r.key, &r.value)) {
                        return emit(ctx, r);
                    }
                }
                Ok(())
            })
        });
        streams
    }
}
