//! Session windows: a key's sessions are kept together in one store entry; a record joins (and
//! may bridge) the sessions within `gap` of it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Aggregator, SessionWindows, Windowed};
use crate::error::Result;
use crate::record::Record;
use crate::serde::Serde;
use crate::state::StoreHandle;
use crate::task::{EventTimeOperator, TaskContext};
use crate::topology::{Data, Emit};

/// One session of a key, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    start: i64,
    end: i64,
    value: Vec<u8>,
}

/// Combines the aggregates of two sessions that a record bridges.
pub(crate) type Merger<A> = Arc<dyn Fn(A, A) -> A + Send + Sync>;

/// One task's session window aggregation.
pub(crate) struct SessionWindowAggregate<K, V, A> {
    windows: SessionWindows,
    store: StoreHandle<K, Vec<Session>>,
    value_serde: Arc<dyn Serde<A>>,
    aggregator: Aggregator<K, V, A>,
    merger: Merger<A>,
    downstream: Emit<Windowed<K>, Option<A>>,
    watermark: i64,
    name: Arc<str>,
}

impl<K: Data, V: Data, A: Data> SessionWindowAggregate<K, V, A> {
    pub(crate) fn new(
        windows: SessionWindows,
        store: StoreHandle<K, Vec<Session>>,
        value_serde: Arc<dyn Serde<A>>,
        (aggregator, merger): (Aggregator<K, V, A>, Merger<A>),
        downstream: Emit<Windowed<K>, Option<A>>,
    ) -> Self {
        Self {
            windows,
            name: store.name().clone(),
            store,
            value_serde,
            aggregator,
            merger,
            downstream,
            watermark: i64::MIN,
        }
    }

    /// Whether a session ending at `end` can still grow or merge.
    fn is_open(&self, end: i64) -> bool {
        end.saturating_add(self.windows.gap_ms)
            .saturating_add(self.windows.grace_ms)
            > self.watermark
    }

    pub(crate) fn process(&mut self, ctx: &mut TaskContext, r: Record<K, V>) -> Result<()> {
        let Some(key_bytes) = self.store.key_bytes(&r.key)? else {
            return Ok(());
        };
        let ts = r.timestamp;
        if !self.is_open(ts) {
            ctx.record_late(&self.name, ts); // no session it could join or start is still open
            return Ok(());
        }
        let gap = self.windows.gap_ms;
        let mut sessions = self.store.get(ctx, &key_bytes)?.unwrap_or_default();
        // Sessions this record touches merge with it into one.
        let (touching, mut kept): (Vec<Session>, Vec<Session>) = sessions
            .drain(..)
            .partition(|s| ts >= s.start - gap && ts <= s.end + gap);
        let (mut start, mut end) = (ts, ts);
        let mut merged: Option<A> = None;
        for s in &touching {
            start = start.min(s.start);
            end = end.max(s.end);
            let value = self
                .value_serde
                .deserialize(Some(&s.value))
                .map_err(|e| self.store.error(e))?;
            merged = Some(match merged {
                Some(m) => (self.merger)(m, value),
                None => value,
            });
        }
        let new = (self.aggregator)(&r.key, r.value, merged);
        for s in &touching {
            if (s.start, s.end) != (start, end) {
                // The merged session replaces it: retract it downstream.
                let gone = Windowed {
                    key: r.key.clone(),
                    start: s.start,
                    end: s.end,
                };
                (self.downstream)(ctx, Record::new(gone, None, ts))?;
            }
        }
        let value = self
            .value_serde
            .serialize(&new)
            .map_err(|e| self.store.error(e))?
            .map(|b| b.to_vec())
            .unwrap_or_default();
        kept.push(Session { start, end, value });
        // Sessions that can no longer grow or merge are done: drop them from the store.
        kept.retain(|s| self.is_open(s.end));
        kept.sort_by_key(|s| s.start);
        self.store.put(ctx, key_bytes, Some(&kept), ts)?;
        let windowed = Windowed {
            key: r.key,
            start,
            end,
        };
        let update = Record {
            key: windowed,
            value: Some(new),
            timestamp: ts,
            headers: r.headers,
        };
        (self.downstream)(ctx, update)
    }
}

impl<K: Data, V: Data, A: Data> EventTimeOperator for SessionWindowAggregate<K, V, A> {
    /// Sessions close by time alone; a key's finished sessions leave the store at its next
    /// record.
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
    fn a_record_bridging_two_sessions_merges_them_and_retracts_both() {
        let mut inst = Instantiation::default();
        let store = StoreHandle::register(
            &mut inst,
            "sessions",
            Arc::new(Json::<String>::new()),
            Arc::new(Json::new()),
        );
        let (downstream, seen) = collector::<Windowed<String>, Option<u64>>();
        let count: Aggregator<String, u64, u64> = Arc::new(|_, _, n| n.unwrap_or(0) + 1);
        let merge: Merger<u64> = Arc::new(|a, b| a + b);
        let windows = SessionWindows::with_inactivity_gap(Duration::from_millis(10));
        let mut op = SessionWindowAggregate::new(
            windows,
            store,
            Arc::new(Json::new()),
            (count, merge),
            downstream,
        );
        let mut ctx = context(&inst);
        op.process(&mut ctx, Record::new("k".into(), 0, 0)).unwrap();
        op.process(&mut ctx, Record::new("k".into(), 0, 20))
            .unwrap();
        take(&seen);
        op.process(&mut ctx, Record::new("k".into(), 0, 10))
            .unwrap();
        let out: Vec<_> = take(&seen)
            .into_iter()
            .map(|(w, v, _)| (w.start, w.end, v))
            .collect();
        assert_eq!(out, [(0, 0, None), (20, 20, None), (0, 20, Some(3))]);
        op.advance(&mut ctx, 25).unwrap();
        op.process(&mut ctx, Record::new("k".into(), 0, 19))
            .unwrap();
        assert_eq!(
            ctx.late_records_dropped(),
            0,
            "a record at 19 may still join until 29"
        );
        op.advance(&mut ctx, 31).unwrap();
        op.process(&mut ctx, Record::new("k".into(), 0, 5)).unwrap();
        assert_eq!(ctx.late_records_dropped(), 1);
    }
}
