//! `KTable`: the latest value per key, as a stream of updates (`Some`) and deletes (`None`).

use std::sync::Arc;

use super::kstream::KStream;
use crate::record::Record;
use crate::serde::Serde;
use crate::state::StoreHandle;
use crate::topology::{Data, Node};

/// A changelog of `(K, V)`: each update is `Some(value)`, each delete `None`.
pub struct KTable<K, V> {
    updates: KStream<K, Option<V>>,
    /// The store holding the table's rows, when it is materialized (a source table or an
    /// aggregation); joins look rows up there.
    store: Option<Materialized<K, V>>,
}

/// Where and how a materialized table keeps its rows.
pub(crate) struct Materialized<K, V> {
    pub(crate) name: String,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V> Clone for Materialized<K, V> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        Self {
            updates: self.updates.clone(),
            store: self.store.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KTable").finish_non_exhaustive()
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn new(updates: KStream<K, Option<V>>) -> Self {
        Self {
            updates,
            store: None,
        }
    }

    pub(crate) fn with_store(mut self, store: Materialized<K, V>) -> Self {
        self.store = Some(store);
        self
    }

    pub(crate) fn materialized(&self) -> Option<&Materialized<K, V>> {
        self.store.as_ref()
    }

    /// Keeps `updates` in the state store `store`, as `StreamsBuilder::table` does.
    pub(crate) fn materialize(
        updates: KStream<K, Option<V>>,
        store: &str,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
    ) -> Self {
        let builder = updates.builder.clone();
        builder.add_store(store);
        let table = Node::<K, Option<V>>::new(builder.next_id());
        let graph = table.clone();
        let store_name = store.to_string();
        let materialized = Materialized {
            name: store_name.clone(),
            key_serde: key_serde.clone(),
            value_serde: value_serde.clone(),
        };
        updates.node.add_child(move |inst| {
            let store =
                StoreHandle::register(inst, &store_name, key_serde.clone(), value_serde.clone());
            let mut downstream = graph.instantiate(inst);
            Box::new(move |ctx, r: Record<K, Option<V>>| {
                let Some(slot) = store.key_bytes(&r.key)? else {
                    return Ok(()); // a table has no row without a key
                };
                store.put(ctx, slot, r.value.as_ref(), r.timestamp)?;
                downstream(ctx, r)
            })
        });
        Self::new(KStream::new(table, builder)).with_store(materialized)
    }

    /// The updates as a stream: `Some(value)` per update, `None` per delete (a tombstone when
    /// written with a JSON or `Option` serde).
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        self.updates.clone()
    }

    /// Keeps the rows for which `predicate` holds; a row that stops matching is deleted
    /// downstream.
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        let updates = self
            .updates
            .map_values_with_key(move |key, value| value.filter(|v| predicate(key, v)));
        KTable::new(updates)
    }

    /// Maps each row's value.
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        KTable::new(self.updates.map_values(move |value| value.map(&f)))
    }
}
