//! Grouping and aggregation: `group_by_key` / `group_by`, then `count`, `reduce`, `aggregate`
//! into a [`KTable`].
//!
//! When an operator may have changed the key upstream (`map`, `flat_map`, `select_key`,
//! `group_by`), records first go through an internal repartition topic,
//! `{application_id}-{store}-repartition`, partitioned by the new key, so that equal keys meet
//! in one task, as Kafka Streams does.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::kstream::KStream;
use super::ktable::{KTable, Materialized};
use crate::record::Record;
use crate::serde::{Json, Serde};
use crate::state::StoreHandle;
use crate::topology::{Data, Node};

/// The serdes of a grouping: for its repartition topic and its store's keys.
pub struct Grouped<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Clone for Grouped<K, V> {
    fn clone(&self) -> Self {
        Self {
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K: Data, V: Data> Grouped<K, V> {
    /// Groups with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Self {
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }
}

/// A stream grouped by key, ready to aggregate.
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
    grouped: Grouped<K, V>,
}

impl<K, V> Clone for KGroupedStream<K, V> {
    fn clone(&self) -> Self {
        Self {
            stream: self.stream.clone(),
            grouped: self.grouped.clone(),
        }
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    /// Groups by the current key (JSON serdes).
    pub fn group_by_key(&self) -> KGroupedStream<K, V>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.group_by_key_with(Grouped::with(Json::new(), Json::new()))
    }

    /// Groups by the current key with these serdes.
    pub fn group_by_key_with(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream {
            stream: self.clone(),
            grouped,
        }
    }

    /// Groups by a new key computed from each record (JSON serdes); repartitions.
    pub fn group_by<K2>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KGroupedStream<K2, V>
    where
        K2: Data + Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.select_key(f).group_by_key()
    }

    /// Groups by a new key with these serdes; repartitions.
    pub fn group_by_with<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        self.select_key(f).group_by_key_with(grouped)
    }
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// Records per key, kept in the state store `store`.
    pub fn count(&self, store: &str) -> KTable<K, u64> {
        self.aggregate_with(
            store,
            Arc::new(Json::<u64>::new()),
            |_, _, count: Option<u64>| count.unwrap_or(0) + 1,
        )
    }

    /// Combines each key's values with `f(aggregate, value)`; the first value starts it.
    pub fn reduce(
        &self,
        store: &str,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> KTable<K, V> {
        self.aggregate_with(
            store,
            self.grouped.value_serde.clone(),
            move |_, value, old: Option<V>| match old {
                Some(aggregate) => f(aggregate, value),
                None => value,
            },
        )
    }

    /// Folds each key's values into an `A` starting from `init()`; the store keeps `A` as JSON.
    pub fn aggregate<A>(
        &self,
        store: &str,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
    ) -> KTable<K, A>
    where
        A: Data + Serialize + DeserializeOwned,
    {
        self.aggregate_with(
            store,
            Arc::new(Json::<A>::new()),
            move |key, value, old: Option<A>| f(key, value, old.unwrap_or_else(&init)),
        )
    }

    pub(crate) fn grouped(&self) -> &Grouped<K, V> {
        &self.grouped
    }

    /// The grouped records, through a repartition topic if the key may have changed.
    pub(crate) fn partitioned_by_key(&self, store: &str) -> KStream<K, V> {
        if !self.stream.key_changed {
            return self.stream.clone();
        }
        self.stream.repartition_through(
            store,
            self.grouped.key_serde.clone(),
            self.grouped.value_serde.clone(),
        )
    }

    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        serde: Arc<dyn Serde<A>>,
        step: impl Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
    ) -> KTable<K, A> {
        let builder = self.stream.builder.clone();
        builder.add_store(store);
        let input = self.partitioned_by_key(store);
        let table = Node::<K, Option<A>>::new(builder.next_id());
        let graph = table.clone();
        let key_serde = self.grouped.key_serde.clone();
        let step = Arc::new(step);
        let store_name = store.to_string();
        let store_serde = serde.clone();
        input.node.add_child(move |inst| {
            let store = StoreHandle::register(inst, &store_name, key_serde.clone(), serde.clone());
            let mut downstream = graph.instantiate(inst);
            let step = step.clone();
            Box::new(move |ctx, r: Record<K, V>| {
                let Some(slot) = store.key_bytes(&r.key)? else {
                    return Ok(());
                };
                let old = store.get(ctx, &slot)?;
                let Record {
                    key,
                    value,
                    timestamp,
                    headers,
                } = r;
                let new = step(&key, value, old);
                store.put(ctx, slot, Some(&new), timestamp)?;
                downstream(
                    ctx,
                    Record {
                        key,
                        value: Some(new),
                        timestamp,
                        headers,
                    },
                )
            })
        });
        let materialized = Materialized {
            name: store.to_string(),
            key_serde: self.grouped.key_serde.clone(),
            value_serde: store_serde,
        };
        KTable::new(KStream::new(table, builder)).with_store(materialized)
    }
}
