//! Sliding windows: each key's records of the last `size + grace` are kept in the store, and
//! the windows a record creates or changes are folded again from them.

use std::sync::Arc;

use super::{Aggregator, SlidingWindows, Windowed};
use crate::error::Result;
use crate::record::Record;
use crate::serde::Serde;
use crate::state::StoreHandle;
use crate::task::{EventTimeOperator, TaskContext};
use crate::topology::{Data, Emit};

/// The buffered records of a key: (timestamp, value bytes), in timestamp then arrival order.
pub(crate) type SlidingBuffer = Vec<(i64, Vec<u8>)>;

/// One task's sliding window aggregation.
pub(crate) struct SlidingWindowAggregate<K, V, A> {
    windows: SlidingWindows,
    store: StoreHandle<K, SlidingBuffer>,
    value_serde: Arc<dyn Serde<V>>,
    aggregator: Aggregator<K, V, A>,
    downstream: Emit<Windowed<K>, Option<A>>,
    watermark: i64,
    name: Arc<str>,
}

impl<K: Data, V: Data, A: Data> SlidingWindowAggregate<K, V, A> {
    pub(crate) fn new(
        windows: SlidingWindows,
        store: StoreHandle<K, SlidingBuffer>,
        value_serde: Arc<dyn Serde<V>>,
        aggregator: Aggregator<K, V, A>,
        downstream: Emit<Windowed<K>, Option<A>>,
    ) -> Self {
        Self {
            windows,
            name: store.name().clone(),
            store,
            value_serde,
            aggregator,
            downstream,
            watermark: i64::MIN,
        }
    }

    /// Whether a window ending at `end` (inclusive) is still open.
    fn is_open(&self, end: i64) -> bool {
        end.saturating_add(1).saturating_add(self.windows.grace_ms) > self.watermark
    }

    pub(crate) fn process(&mut self, ctx: &mut TaskContext, r: Record<K, V>) -> Result<()> {
        let Some(key_bytes) = self.store.key_bytes(&r.key)? else {
            return Ok(());
        };
        let (t, d) = (r.timestamp, self.windows.size_ms);
        if !self.is_open(t.saturating_add(d)) {
            ctx.record_late(&self.name, t); // every window that could hold it has closed
            return Ok(());
        }
        let store = &self.store;
        let mut buffer = store.get(ctx, &key_bytes)?.unwrap_or_default();
        let affected = self.windows.affected(t, buffer.iter().map(|(ts, _)| *ts));
        let value = self
            .value_serde
            .serialize(&r.value)
            .map_err(|e| store.error(e))?
            .map(|b| b.to_vec())
            .unwrap_or_default();
        buffer.push((t, value));
        buffer.sort_by_key(|(ts, _)| *ts); // stable: equal timestamps keep arrival order
        for (start, end) in affected {
            if !self.is_open(end) {
                continue;
            }
            let mut aggregate = None;
            let mut latest = i64::MIN;
            for (ts, bytes) in buffer.iter().filter(|(ts, _)| (start..=end).contains(ts)) {
                let v = self
                    .value_serde
                    .deserialize(Some(bytes))
                    .map_err(|e| self.store.error(e))?;
                aggregate = Some((self.aggregator)(&r.key, v, aggregate));
                latest = latest.max(*ts);
            }
            let Some(aggregate) = aggregate else { continue };
            let windowed = Windowed {
                key: r.key.clone(),
                start,
                end,
            };
            let update = Record {
                key: windowed,
                value: Some(aggregate),
                timestamp: latest,
                headers: r.headers.clone(),
            };
            (self.downstream)(ctx, update)?;
        }
        // A record is needed while any window that can hold it is open.
        buffer.retain(|(ts, _)| self.is_open(ts.saturating_add(d)));
        self.store.put(ctx, key_bytes, Some(&buffer), t)
    }
}

impl<K: Data, V: Data, A: Data> EventTimeOperator for SlidingWindowAggregate<K, V, A> {
    /// Windows close by time alone; a key's expired records are dropped at its next record.
    fn advance(&mut self, _ctx: &mut TaskContext, watermark: i64) -> Result<()> {
        self.watermark = watermark;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::serde::Json;
    use crate::topology::Instantiation;
    use crate::window::testing::{collector, context, take};

    #[test]
    fn each_distinct_set_of_close_records_is_one_window_until_event_time_closes_it() {
        let mut inst = Instantiation::default();
        let store = StoreHandle::register(
            &mut inst,
            "sliding",
            Arc::new(Json::<String>::new()),
            Arc::new(Json::new()),
        );
        let (downstream, seen) = collector::<Windowed<String>, Option<u64>>();
        let count: Aggregator<String, u64, u64> = Arc::new(|_, _, n| n.unwrap_or(0) + 1);
        let windows = SlidingWindows::of_time_difference(Duration::from_millis(10));
        let mut op =
            SlidingWindowAggregate::new(windows, store, Arc::new(Json::new()), count, downstream);
        let mut ctx = context(&inst);
        op.process(&mut ctx, Record::new("k".into(), 0, 10))
            .unwrap();
        op.process(&mut ctx, Record::new("k".into(), 0, 15))
            .unwrap();
        let out: Vec<_> = take(&seen)
            .into_iter()
            .map(|(w, v, _)| (w.start, w.end, v))
            .collect();
        assert_eq!(out, [(0, 10, Some(1)), (5, 15, Some(2)), (11, 21, Some(1))]);
        op.advance(&mut ctx, 26).unwrap();
        op.process(&mut ctx, Record::new("k".into(), 0, 14))
            .unwrap();
        assert_eq!(
            ctx.late_records_dropped(),
            1,
            "[4, 14] ... [14, 24] have all closed"
        );
    }
}
