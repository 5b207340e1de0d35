//! Tumbling and hopping windows: one aggregate per key and window, in a state store keyed by
//! key then window start.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::{Aggregator, TimeWindows, Windowed, window_key};
use crate::error::Result;
use crate::record::Record;
use crate::state::StoreHandle;
use crate::task::{EventTimeOperator, TaskContext};
use crate::topology::{Data, Emit};

/// One task's tumbling/hopping window aggregation.
pub(crate) struct TimeWindowAggregate<K, V, A> {
    windows: TimeWindows,
    store: StoreHandle<K, A>,
    aggregator: Aggregator<K, V, A>,
    downstream: Emit<Windowed<K>, Option<A>>,
    /// (close time, store key) of every stored window, loaded from the store on first use:
    /// closed windows are deleted, so the store holds only open ones.
    open: Option<BTreeSet<(i64, Bytes)>>,
    watermark: i64,
    name: Arc<str>,
}

impl<K: Data, V: Data, A: Data> TimeWindowAggregate<K, V, A> {
    pub(crate) fn new(
        windows: TimeWindows,
        store: StoreHandle<K, A>,
        aggregator: Aggregator<K, V, A>,
        downstream: Emit<Windowed<K>, Option<A>>,
    ) -> Self {
        Self {
            windows,
            name: store.name().clone(),
            store,
            aggregator,
            downstream,
            open: None,
            watermark: i64::MIN,
        }
    }

    /// When a window starting at `start` closes: its end plus the grace period.
    fn close_at(&self, start: i64) -> i64 {
        start
            .saturating_add(self.windows.size_ms)
            .saturating_add(self.windows.grace_ms)
    }

    fn open_windows(&mut self, ctx: &TaskContext) -> Result<&mut BTreeSet<(i64, Bytes)>> {
        if self.open.is_none() {
            let (size, grace) = (self.windows.size_ms, self.windows.grace_ms);
            let loaded = ctx
                .store_entries(self.store.id())?
                .into_iter()
                .filter_map(|(slot, _)| {
                    let start = i64::from_be_bytes(
                        slot.get(slot.len().checked_sub(8)?..)?.try_into().ok()?,
                    );
                    Some((start.saturating_add(size).saturating_add(grace), slot))
                })
                .collect();
            self.open = Some(loaded);
        }
        Ok(self.open.get_or_insert_with(BTreeSet::new))
    }

    /// Adds a record to each of its windows that is still open, emitting the new aggregates;
    /// counts it as late if it missed a closed one.
    pub(crate) fn process(&mut self, ctx: &mut TaskContext, r: Record<K, V>) -> Result<()> {
        let Some(key_bytes) = self.store.key_bytes(&r.key)? else {
            return Ok(()); // null keys are not aggregated
        };
        // A record is late when any window it belongs to has closed: it is missing there.
        let mut late = false;
        for start in self.windows.starts(r.timestamp) {
            let close_at = self.close_at(start);
            if close_at <= self.watermark {
                late = true;
                continue;
            }
            let slot = window_key(&key_bytes, start);
            let old = self.store.get(ctx, &slot)?;
            if old.is_none() {
                self.open_windows(ctx)?.insert((close_at, slot.clone()));
            }
            let new = (self.aggregator)(&r.key, r.value.clone(), old);
            self.store.put(ctx, slot, Some(&new), r.timestamp)?;
            let windowed = Windowed {
                key: r.key.clone(),
                start,
                end: start + self.windows.size_ms,
            };
            let update = Record {
                key: windowed,
                value: Some(new),
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            };
            (self.downstream)(ctx, update)?;
        }
        if late {
            ctx.record_late(&self.name, r.timestamp);
        }
        Ok(())
    }
}

impl<K: Data, V: Data, A: Data> EventTimeOperator for TimeWindowAggregate<K, V, A> {
    /// Deletes the windows that closed: their results are final.
    fn advance(&mut self, ctx: &mut TaskContext, watermark: i64) -> Result<()> {
        self.watermark = watermark;
        loop {
            let open = self.open_windows(ctx)?;
            let Some((close_at, slot)) = open.first().cloned() else {
                break;
            };
            if close_at > watermark {
                break;
            }
            open.pop_first();
            self.store.put(ctx, slot, None, watermark)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::topology::Instantiation;
    use crate::window::testing::{Seen, collector, context, store, take};

    type Sum = TimeWindowAggregate<String, u64, u64>;

    fn tumbling(grace_ms: u64) -> (Sum, TaskContext, Seen<Windowed<String>, Option<u64>>) {
        let mut inst = Instantiation::default();
        let store = store::<String, u64>(&mut inst, "sum");
        let (downstream, seen) = collector();
        let windows =
            TimeWindows::of(Duration::from_millis(10)).grace(Duration::from_millis(grace_ms));
        let sum: Aggregator<String, u64, u64> = Arc::new(|_, v, old| old.unwrap_or(0) + v);
        let operator = TimeWindowAggregate::new(windows, store, sum, downstream);
        (operator, context(&inst), seen)
    }

    #[test]
    fn records_fold_into_their_window_until_event_time_closes_it() {
        let (mut op, mut ctx, seen) = tumbling(5);
        op.process(&mut ctx, Record::new("k".into(), 1, 3)).unwrap();
        op.process(&mut ctx, Record::new("k".into(), 2, 9)).unwrap();
        let updates: Vec<_> = take(&seen)
            .into_iter()
            .map(|(w, v, _)| (w.start, v))
            .collect();
        assert_eq!(updates, [(0, Some(1)), (0, Some(3))]);
        op.advance(&mut ctx, 14).unwrap();
        op.process(&mut ctx, Record::new("k".into(), 4, 8)).unwrap();
        assert_eq!(take(&seen).len(), 1, "within grace: still open");
        op.advance(&mut ctx, 15).unwrap();
        assert_eq!(
            ctx.store_entries(0).unwrap().len(),
            0,
            "closed windows leave the store"
        );
        op.process(&mut ctx, Record::new("k".into(), 8, 9)).unwrap();
        assert!(take(&seen).is_empty());
        assert_eq!(ctx.late_records_dropped(), 1, "after end plus grace: late");
    }

    #[test]
    fn a_record_missing_one_closed_hopping_window_counts_as_late_and_joins_the_open_ones() {
        let mut inst = Instantiation::default();
        let store = store::<String, u64>(&mut inst, "hops");
        let (downstream, seen) = collector();
        let windows =
            TimeWindows::of(Duration::from_millis(10)).advance_by(Duration::from_millis(5));
        let count: Aggregator<String, u64, u64> = Arc::new(|_, _, n| n.unwrap_or(0) + 1);
        let mut op = TimeWindowAggregate::new(windows, store, count, downstream);
        let mut ctx = context(&inst);
        op.advance(&mut ctx, 10).unwrap();
        // 7 is in [0, 10), closed at 10, and in [5, 15), still open.
        op.process(&mut ctx, Record::new("k".into(), 1, 7)).unwrap();
        let starts: Vec<i64> = take(&seen).into_iter().map(|(w, ..)| w.start).collect();
        assert_eq!(starts, [5]);
        assert_eq!(ctx.late_records_dropped(), 1);
    }
}
