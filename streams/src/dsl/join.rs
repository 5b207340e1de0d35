//! Stream-table joins: each stream record meets the table's current row for its key, looked up
//! in the table's store in the same task (the stream and the table are co-partitioned: the
//! runtime checks that their topics have equal partition counts). Table updates emit nothing.
//! A stream whose key changed first goes through a repartition topic.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::kstream::KStream;
use super::ktable::KTable;
use crate::record::Record;
use crate::state::StoreHandle;
use crate::topology::{Data, Node};

impl<K: Data, V: Data + Serialize + DeserializeOwned> KStream<K, V> {
    /// Inner join: records whose key has no row in `table` are dropped.
    pub fn join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&K, V, VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.lookup_join(table, move |key, value, row| {
            row.map(|row| joiner(key, value, row))
        })
    }

    /// Left join: every record is kept; `None` when its key has no row in `table`.
    pub fn left_join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&K, V, Option<VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.lookup_join(table, move |key, value, row| Some(joiner(key, value, row)))
    }

    fn lookup_join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        join: impl Fn(&K, V, Option<VT>) -> Option<VR> + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let child = Node::<K, VR>::new(self.builder.next_id());
        let Some(materialized) = table.materialized().cloned() else {
            self.builder.problem(
                "join_table needs a materialized table: one from StreamsBuilder::table or an aggregation".into(),
            );
            return KStream::new(child, self.builder.clone());
        };
        let input = if self.key_changed {
            let name = format!("{}-join-{}", materialized.name, self.builder.next_id());
            self.repartition_through(
                &name,
                materialized.key_serde.clone(),
                std::sync::Arc::new(crate::serde::Json::<V>::new()),
            )
        } else {
            self.clone()
        };
        let graph = child.clone();
        let join = std::sync::Arc::new(join);
        input.node.add_child(move |inst| {
            let table = StoreHandle::register(
                inst,
                &materialized.name,
                materialized.key_serde.clone(),
                materialized.value_serde.clone(),
            );
            let mut downstream = graph.instantiate(inst);
            let join = join.clone();
            Box::new(move |ctx, r: Record<K, V>| {
                let row = match table.key_bytes(&r.key)? {
                    Some(slot) => table.get(ctx, &slot)?,
                    None => None,
                };
                let Record {
                    key,
                    value,
                    timestamp,
                    headers,
                } = r;
                match join(&key, value, row) {
                    Some(joined) => downstream(
                        ctx,
                        Record {
                            key,
                            value: joined,
                            timestamp,
                            headers,
                        },
                    ),
                    None => Ok(()),
                }
            })
        });
        KStream::new(child, self.builder.clone())
    }
}
