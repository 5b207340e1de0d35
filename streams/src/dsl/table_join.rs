//! Table-table joins (inner, left, outer): an update on either side looks the key up in the
//! other table's store and emits the new joined row, or a delete when the join no longer holds.
//! Both tables must be materialized (from `StreamsBuilder::table` or an aggregation) and
//! co-partitioned.

use std::sync::Arc;

use super::kstream::KStream;
use super::ktable::KTable;
use crate::record::Record;
use crate::state::StoreHandle;
use crate::topology::{Data, Node, lock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Inner,
    Left,
    Outer,
}

impl Mode {
    /// Whether a row exists for these sides.
    fn joins(self, left: bool, right: bool) -> bool {
        match self {
            Mode::Inner => left && right,
            Mode::Left => left,
            Mode::Outer => left || right,
        }
    }
}

type Joiner<K, V, VO, VR> = dyn Fn(&K, Option<V>, Option<VO>) -> VR + Send + Sync;

impl<K: Data, V: Data> KTable<K, V> {
    /// Inner join: a row for each key present in both tables.
    pub fn join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&K, V, VO) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, Mode::Inner, move |k, v, o| match (v, o) {
            (Some(v), Some(o)) => joiner(k, v, o),
            _ => unreachable!("inner table join without both rows"),
        })
    }

    /// Left join: a row for each key of this table, with the other's row if any.
    pub fn left_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&K, V, Option<VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, Mode::Left, move |k, v, o| match v {
            Some(v) => joiner(k, v, o),
            None => unreachable!("left table join without a left row"),
        })
    }

    /// Outer join: a row for each key present in either table.
    pub fn outer_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&K, Option<V>, Option<VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, Mode::Outer, joiner)
    }

    fn table_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        mode: Mode,
        joiner: impl Fn(&K, Option<V>, Option<VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        let updates = self.to_stream();
        let builder = updates.builder.clone();
        let out = Node::<K, Option<VR>>::new(builder.next_id());
        let (Some(this_store), Some(other_store)) =
            (self.materialized().cloned(), other.materialized().cloned())
        else {
            builder.problem(
                "table-table joins need materialized tables: from StreamsBuilder::table or an aggregation".into(),
            );
            return KTable::new(KStream::new(out, builder));
        };
        let joiner: Arc<Joiner<K, V, VO, VR>> = Arc::new(joiner);

        // Left-side updates look the key up in the right table.
        let (graph, j, that) = (out.clone(), joiner.clone(), other_store);
        updates.node.add_child(move |inst| {
            let lookup = StoreHandle::register(
                inst,
                &that.name,
                that.key_serde.clone(),
                that.value_serde.clone(),
            );
            let downstream = graph.shared_instance(inst);
            let j = j.clone();
            Box::new(move |ctx, r: Record<K, Option<V>>| {
                let Some(slot) = lookup.key_bytes(&r.key)? else {
                    return Ok(());
                };
                let other = lookup.get(ctx, &slot)?;
                let value = if mode.joins(r.value.is_some(), other.is_some()) {
                    Some(j(&r.key, r.value, other))
                } else if mode == Mode::Inner && other.is_none() {
                    return Ok(()); // there was no joined row to delete
                } else {
                    None
                };
                let out = Record {
                    key: r.key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                };
                (lock(&downstream))(ctx, out)
            })
        });

        // Right-side updates look the key up in the left table.
        let (graph, j) = (out.clone(), joiner);
        other.to_stream().node.add_child(move |inst| {
            let lookup = StoreHandle::register(
                inst,
                &this_store.name,
                this_store.key_serde.clone(),
                this_store.value_serde.clone(),
            );
            let downstream = graph.shared_instance(inst);
            let j = j.clone();
            Box::new(move |ctx, r: Record<K, Option<VO>>| {
                let Some(slot) = lookup.key_bytes(&r.key)? else {
                    return Ok(());
                };
                let this = lookup.get(ctx, &slot)?;
                let value = if mode.joins(this.is_some(), r.value.is_some()) {
                    Some(j(&r.key, this, r.value))
                } else if mode != Mode::Outer && this.is_none() {
                    return Ok(()); // no left row: nothing was joined
                } else {
                    None
                };
                let out = Record {
                    key: r.key,
                    value,
                    timestamp: r.timestamp,
                    headers: r.headers,
                };
                (lock(&downstream))(ctx, out)
            })
        });
        KTable::new(KStream::new(out, builder))
    }
}
