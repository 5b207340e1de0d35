//! Windowed aggregation on event time: tumbling and hopping [`TimeWindows`] and
//! [`SessionWindows`], with a grace period. A record is late when every window it belongs to has
//! closed (window end + grace <= the task's stream time); late records are dropped and counted.
//! Results are emitted on every update, or once per window when it closes
//! ([`WindowedTable::suppress_until_window_closes`], Kafka's `suppress(untilWindowCloses)`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::grouped::KGroupedStream;
use super::kstream::KStream;
use super::ktable::KTable;
use super::store_handle::StoreHandle;
use crate::record::Record;
use crate::serde::{Json, Serde};
use crate::topology::{Data, Node, TaskContext};

/// A key and the window `[start, end)` it was aggregated in (sessions and sliding windows:
/// `[start, end]`, both ends inclusive, as in Kafka Streams).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Windowed<K> {
    /// The grouping key.
    pub key: K,
    /// Window start (ms).
    pub start: i64,
    /// Window end (ms).
    pub end: i64,
}

/// Fixed-size windows aligned to the epoch: tumbling when `advance == size`, else hopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    size_ms: i64,
    advance_ms: i64,
    grace_ms: i64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl TimeWindows {
    /// Tumbling windows of `size`, no grace period.
    pub fn of(size: Duration) -> Self {
        let size_ms = millis(size).max(1);
        Self {
            size_ms,
            advance_ms: size_ms,
            grace_ms: 0,
        }
    }

    /// Hopping windows: a new window every `advance` (at most `size`).
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance_ms = millis(advance).clamp(1, self.size_ms);
        self
    }

    /// Accepts records up to `grace` after a window ends.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = millis(grace);
        self
    }

    /// Starts of the windows holding `timestamp`, oldest first.
    fn starts(&self, timestamp: i64) -> impl Iterator<Item = i64> + use<> {
        let last = timestamp - timestamp.rem_euclid(self.advance_ms);
        let (size, advance) = (self.size_ms, self.advance_ms);
        let first = last - ((size - 1) / advance) * advance;
        (0..)
            .map(move |i| first + i * advance)
            .take_while(move |start| *start <= last)
            .filter(move |start| *start > timestamp - size && *start >= 0)
    }
}

/// Windows that grow while records keep coming within `gap` of each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    gap_ms: i64,
    grace_ms: i64,
}

impl SessionWindows {
    /// Sessions closed by `gap` of inactivity, no grace period.
    pub fn with_inactivity_gap(gap: Duration) -> Self {
        Self {
            gap_ms: millis(gap).max(1),
            grace_ms: 0,
        }
    }

    /// Accepts records up to `grace` after a session could no longer grow.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = millis(grace);
        self
    }
}

/// Windows of a fixed size that slide with the records (Kafka's `SlidingWindows`): for each
/// record at `t` the window `[t - size, t]` ending at it, and `[t + 1, t + 1 + size]` starting
/// just after it once a record falls there. Each distinct set of records within `size` of each
/// other is aggregated once. Ends are inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    size_ms: i64,
    grace_ms: i64,
}

impl SlidingWindows {
    /// Records at most `difference` apart share a window; no grace period.
    pub fn of_time_difference(difference: Duration) -> Self {
        Self {
            size_ms: millis(difference),
            grace_ms: 0,
        }
    }

    /// Accepts records up to `grace` after a window ends.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = millis(grace);
        self
    }

    /// Windows `(start, end)` that a record at `t` creates or changes, given the timestamps of
    /// the other buffered records of its key.
    fn affected(&self, t: i64, others: impl Iterator<Item = i64> + Clone) -> BTreeSet<(i64, i64)> {
        let d = self.size_ms;
        // Left windows start at 0 at the earliest, as Kafka's.
        let mut windows = BTreeSet::from([((t - d).max(0), t)]);
        for other in others.clone() {
            if other > t && other <= t + d {
                windows.insert(((other - d).max(0), other)); // a later record's window holds t
            }
            if other < t && other >= t - d - 1 {
                windows.insert((other + 1, other + 1 + d)); // an earlier record's right window
            }
        }
        if others.clone().any(|o| o > t && o <= t + 1 + d) {
            windows.insert((t + 1, t + 1 + d));
        }
        windows
    }
}

/// Store key of a window: the key bytes, then the start, big-endian, so windows of a key sort
/// by time.
fn window_key(key: &[u8], start: i64) -> Bytes {
    let mut buf = BytesMut::with_capacity(key.len() + 8);
    buf.put_slice(key);
    buf.put_i64(start);
    buf.freeze()
}

/// Counts a record dropped for arriving after all of its windows closed.
fn drop_late(ctx: &mut TaskContext, now: i64) {
    ctx.late_dropped += 1;
    tracing::trace!(stream_time = now, "dropped a late record");
}

/// A grouped stream cut into time windows.
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: TimeWindows,
}

/// A grouped stream cut into sliding windows.
pub struct SlidingWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SlidingWindows,
}

/// A grouped stream cut into sessions.
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
}

/// The result of a windowed aggregation: a table of windows, with its grace period.
pub struct WindowedTable<K, A> {
    table: KTable<Windowed<K>, A>,
    grace_ms: i64,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<A>>,
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// Cuts each key's records into tumbling or hopping windows.
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            grouped: self.clone(),
            windows,
        }
    }

    /// Cuts each key's records into sliding windows.
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> SlidingWindowedKStream<K, V> {
        SlidingWindowedKStream {
            grouped: self.clone(),
            windows,
        }
    }

    /// Cuts each key's records into sessions.
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream {
            grouped: self.clone(),
            windows,
        }
    }
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    /// Records per key and window.
    pub fn count(&self, store: &str) -> WindowedTable<K, u64> {
        self.aggregate_with(
            store,
            Arc::new(Json::<u64>::new()),
            |_, _, n: Option<u64>| n.unwrap_or(0) + 1,
        )
    }

    /// Combines each window's values with `f(aggregate, value)`.
    pub fn reduce(
        &self,
        store: &str,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> WindowedTable<K, V> {
        let serde = self.grouped.grouped().value_serde.clone();
        self.aggregate_with(store, serde, move |_, v, old: Option<V>| match old {
            Some(a) => f(a, v),
            None => v,
        })
    }

    /// Folds each window's values into an `A` from `init()`; stored as JSON.
    pub fn aggregate<A: Data + Serialize + DeserializeOwned>(
        &self,
        store: &str,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
    ) -> WindowedTable<K, A> {
        self.aggregate_with(
            store,
            Arc::new(Json::<A>::new()),
            move |k, v, old: Option<A>| f(k, v, old.unwrap_or_else(&init)),
        )
    }

    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        serde: Arc<dyn Serde<A>>,
        step: impl Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
    ) -> WindowedTable<K, A> {
        let input = self.grouped.partitioned_by_key(store);
        let builder = input.builder.clone();
        builder.add_store(store);
        builder.use_clock();
        let table = Node::<Windowed<K>, Option<A>>::new(builder.next_id());
        let graph = table.clone();
        let key_serde = self.grouped.grouped().key_serde.clone();
        let (windows, step, store_name, value_serde) = (
            self.windows,
            Arc::new(step),
            store.to_string(),
            serde.clone(),
        );
        input.node.add_child(move |inst| {
            let clock = inst.add_clock();
            let store =
                StoreHandle::register(inst, &store_name, key_serde.clone(), value_serde.clone());
            let mut downstream = graph.instantiate(inst);
            let step = step.clone();
            // (close time, slot) of every stored window, loaded from the store on first use:
            // closed windows are deleted, so the store holds only open ones.
            let mut open: Option<BTreeSet<(i64, Bytes)>> = None;
            let retention = windows.size_ms + windows.grace_ms;
            Box::new(move |ctx, r: Record<K, V>| {
                let now = ctx.observe(clock, r.timestamp);
                let open = match &mut open {
                    Some(open) => open,
                    None => open.insert(
                        ctx.store_entries(store.id())?
                            .into_iter()
                            .filter_map(|(slot, _)| {
                                let start = i64::from_be_bytes(
                                    slot.get(slot.len().checked_sub(8)?..)?.try_into().ok()?,
                                );
                                Some((start + retention, slot))
                            })
                            .collect(),
                    ),
                };
                while let Some((close_at, slot)) = open.first().cloned() {
                    if close_at > now {
                        break;
                    }
                    open.pop_first();
                    store.put(ctx, slot, None, r.timestamp)?;
                }
                let Some(key_bytes) = store.key_bytes(&r.key)? else {
                    return Ok(());
                };
                let mut accepted = false;
                for start in windows.starts(r.timestamp) {
                    let end = start + windows.size_ms;
                    if end + windows.grace_ms <= now {
                        continue; // this window has closed
                    }
                    accepted = true;
                    let slot = window_key(&key_bytes, start);
                    let old = store.get(ctx, &slot)?;
                    if old.is_none() {
                        open.insert((start + retention, slot.clone()));
                    }
                    let new = step(&r.key, r.value.clone(), old);
                    store.put(ctx, slot, Some(&new), r.timestamp)?;
                    let windowed = Windowed {
                        key: r.key.clone(),
                        start,
                        end,
                    };
                    downstream(
                        ctx,
                        Record {
                            key: windowed,
                            value: Some(new),
                            timestamp: r.timestamp,
                            headers: r.headers.clone(),
                        },
                    )?;
                }
                if !accepted {
                    drop_late(ctx, now);
                }
                Ok(())
            })
        });
        WindowedTable {
            table: KTable::new(KStream::new(table, builder)),
            grace_ms: windows.grace_ms,
            key_serde: self.grouped.grouped().key_serde.clone(),
            value_serde: serde,
        }
    }
}

/// The buffered records of a key for sliding windows: (timestamp, value bytes), in arrival order.
type SlidingBuffer = Vec<(i64, Vec<u8>)>;

impl<K: Data, V: Data> SlidingWindowedKStream<K, V> {
    /// Records per window.
    pub fn count(&self, store: &str) -> WindowedTable<K, u64> {
        self.aggregate_with(
            store,
            Arc::new(Json::<u64>::new()),
            |_, _, n: Option<u64>| n.unwrap_or(0) + 1,
        )
    }

    /// Combines each window's values with `f(aggregate, value)`.
    pub fn reduce(
        &self,
        store: &str,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> WindowedTable<K, V> {
        let serde = self.grouped.grouped().value_serde.clone();
        self.aggregate_with(store, serde, move |_, v, old: Option<V>| match old {
            Some(a) => f(a, v),
            None => v,
        })
    }

    /// Folds each window's values into an `A` from `init()`; stored as JSON.
    pub fn aggregate<A: Data + Serialize + DeserializeOwned>(
        &self,
        store: &str,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
    ) -> WindowedTable<K, A> {
        self.aggregate_with(
            store,
            Arc::new(Json::<A>::new()),
            move |k, v, old: Option<A>| f(k, v, old.unwrap_or_else(&init)),
        )
    }

    /// Keeps each key's records of the last `size + grace` in the store and re-folds the
    /// windows a record changes.
    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        serde: Arc<dyn Serde<A>>,
        step: impl Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
    ) -> WindowedTable<K, A> {
        let input = self.grouped.partitioned_by_key(store);
        let builder = input.builder.clone();
        builder.add_store(store);
        builder.use_clock();
        let table = Node::<Windowed<K>, Option<A>>::new(builder.next_id());
        let graph = table.clone();
        let key_serde = self.grouped.grouped().key_serde.clone();
        let value_serde = self.grouped.grouped().value_serde.clone();
        let (windows, step, store_name) = (self.windows, Arc::new(step), store.to_string());
        input.node.add_child(move |inst| {
            let clock = inst.add_clock();
            let store = StoreHandle::register(
                inst,
                &store_name,
                key_serde.clone(),
                Arc::new(Json::<SlidingBuffer>::new()),
            );
            let mut downstream = graph.instantiate(inst);
            let (step, value_serde) = (step.clone(), value_serde.clone());
            Box::new(move |ctx, r: Record<K, V>| {
                let now = ctx.observe(clock, r.timestamp);
                let Some(key_bytes) = store.key_bytes(&r.key)? else {
                    return Ok(());
                };
                let (t, d, grace) = (r.timestamp, windows.size_ms, windows.grace_ms);
                let open = |end: i64, now: i64| end + 1 + grace > now;
                if !open(t + d, now) {
                    drop_late(ctx, now); // every window that could hold it has closed
                    return Ok(());
                }
                let mut buffer = store.get(ctx, &key_bytes)?.unwrap_or_default();
                let affected = windows.affected(t, buffer.iter().map(|(ts, _)| *ts));
                let value = value_serde
                    .serialize(&r.value)
                    .map_err(|e| store.error(e))?
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                buffer.push((t, value));
                buffer.sort_by_key(|(ts, _)| *ts); // stable: equal timestamps keep arrival order
                for (start, end) in affected {
                    if !open(end, now) {
                        continue;
                    }
                    let mut aggregate = None;
                    let mut latest = i64::MIN;
                    for (ts, bytes) in buffer.iter().filter(|(ts, _)| (start..=end).contains(ts)) {
                        let v = value_serde
                            .deserialize(Some(bytes))
                            .map_err(|e| store.error(e))?;
                        aggregate = Some(step(&r.key, v, aggregate));
                        latest = latest.max(*ts);
                    }
                    let Some(aggregate) = aggregate else { continue };
                    let windowed = Windowed {
                        key: r.key.clone(),
                        start,
                        end,
                    };
                    downstream(
                        ctx,
                        Record {
                            key: windowed,
                            value: Some(aggregate),
                            timestamp: latest,
                            headers: r.headers.clone(),
                        },
                    )?;
                }
                // A record is needed while any window that can hold it is open.
                buffer.retain(|(ts, _)| open(ts + d, now));
                store.put(ctx, key_bytes, Some(&buffer), t)
            })
        });
        WindowedTable {
            table: KTable::new(KStream::new(table, builder)),
            // Ends are inclusive: a window closes one millisecond after its end plus grace.
            grace_ms: windows.grace_ms + 1,
            key_serde: self.grouped.grouped().key_serde.clone(),
            value_serde: serde,
        }
    }
}

/// One session of a key, as stored: the key's sessions are kept together in one JSON list.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    start: i64,
    end: i64,
    value: Vec<u8>,
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    /// Records per session.
    pub fn count(&self, store: &str) -> WindowedTable<K, u64> {
        self.aggregate_with(
            store,
            Arc::new(Json::<u64>::new()),
            |_, _, n: Option<u64>| n.unwrap_or(0) + 1,
            |a, b| a + b,
        )
    }

    /// Folds each session's values into an `A` from `init()`; `merge` combines two sessions
    /// that a record bridges.
    pub fn aggregate<A: Data + Serialize + DeserializeOwned>(
        &self,
        store: &str,
        init: impl Fn() -> A + Send + Sync + 'static,
        f: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        merge: impl Fn(A, A) -> A + Send + Sync + 'static,
    ) -> WindowedTable<K, A> {
        self.aggregate_with(
            store,
            Arc::new(Json::<A>::new()),
            move |k, v, old: Option<A>| f(k, v, old.unwrap_or_else(&init)),
            merge,
        )
    }

    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        serde: Arc<dyn Serde<A>>,
        step: impl Fn(&K, V, Option<A>) -> A + Send + Sync + 'static,
        merge: impl Fn(A, A) -> A + Send + Sync + 'static,
    ) -> WindowedTable<K, A> {
        let input = self.grouped.partitioned_by_key(store);
        let builder = input.builder.clone();
        builder.add_store(store);
        builder.use_clock();
        let table = Node::<Windowed<K>, Option<A>>::new(builder.next_id());
        let graph = table.clone();
        let key_serde = self.grouped.grouped().key_serde.clone();
        let (windows, step, merge, store_name, value_serde) = (
            self.windows,
            Arc::new(step),
            Arc::new(merge),
            store.to_string(),
            serde.clone(),
        );
        input.node.add_child(move |inst| {
            let clock = inst.add_clock();
            // A key's sessions are kept together, as one JSON list.
            let store = StoreHandle::register(
                inst,
                &store_name,
                key_serde.clone(),
                Arc::new(Json::<Vec<Session>>::new()),
            );
            let mut downstream = graph.instantiate(inst);
            let (serde, step, merge) = (value_serde.clone(), step.clone(), merge.clone());
            Box::new(move |ctx, r: Record<K, V>| {
                let now = ctx.observe(clock, r.timestamp);
                let Some(key_bytes) = store.key_bytes(&r.key)? else {
                    return Ok(());
                };
                let ts = r.timestamp;
                if ts + windows.gap_ms + windows.grace_ms <= now {
                    drop_late(ctx, now); // no session it could join or start is still open
                    return Ok(());
                }
                let mut sessions = store.get(ctx, &key_bytes)?.unwrap_or_default();
                // Sessions this record touches merge with it into one.
                let (touching, mut kept): (Vec<Session>, Vec<Session>) = sessions
                    .drain(..)
                    .partition(|s| ts >= s.start - windows.gap_ms && ts <= s.end + windows.gap_ms);
                let mut start = ts;
                let mut end = ts;
                let mut merged: Option<A> = None;
                for s in &touching {
                    start = start.min(s.start);
                    end = end.max(s.end);
                    let value = serde
                        .deserialize(Some(&s.value))
                        .map_err(|e| store.error(e))?;
                    merged = Some(match merged {
                        Some(m) => merge(m, value),
                        None => value,
                    });
                }
                let new = step(&r.key, r.value, merged);
                for s in &touching {
                    if (s.start, s.end) != (start, end) {
                        // The merged session replaces it: retract it downstream.
                        let gone = Windowed {
                            key: r.key.clone(),
                            start: s.start,
                            end: s.end,
                        };
                        downstream(
                            ctx,
                            Record {
                                key: gone,
                                value: None,
                                timestamp: ts,
                                headers: Vec::new(),
                            },
                        )?;
                    }
                }
                let value = serde
                    .serialize(&new)
                    .map_err(|e| store.error(e))?
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                kept.push(Session { start, end, value });
                // Sessions that can no longer grow or merge are done: drop them from the store.
                kept.retain(|s| s.end + windows.gap_ms + windows.grace_ms > now);
                kept.sort_by_key(|s| s.start);
                store.put(ctx, key_bytes, Some(&kept), ts)?;
                let windowed = Windowed {
                    key: r.key,
                    start,
                    end,
                };
                downstream(
                    ctx,
                    Record {
                        key: windowed,
                        value: Some(new),
                        timestamp: ts,
                        headers: r.headers,
                    },
                )
            })
        });
        WindowedTable {
            table: KTable::new(KStream::new(table, builder)),
            // A session can grow until `gap` after its end; then the grace period runs.
            grace_ms: windows.gap_ms + windows.grace_ms,
            key_serde: self.grouped.grouped().key_serde.clone(),
            value_serde: serde,
        }
    }
}

/// Buffered final results of one window, as kept in the suppression store.
struct Pending {
    close_at: i64,
    start: i64,
    end: i64,
    timestamp: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// A compact binary layout for [`Pending`]: it is written on every update of every window, so
/// JSON (byte arrays as number lists) would dominate the cost. Four big-endian i64 (close_at,
/// start, end, timestamp), the key (u32 length, bytes), then the value if present.
struct PendingSerde;

impl Serde<Pending> for PendingSerde {
    fn serialize(&self, p: &Pending) -> Result<Option<Bytes>, String> {
        let value_len = p.value.as_ref().map_or(0, Vec::len);
        let mut buf = BytesMut::with_capacity(37 + p.key.len() + value_len);
        for n in [p.close_at, p.start, p.end, p.timestamp] {
            buf.put_i64(n);
        }
        buf.put_u32(p.key.len() as u32);
        buf.put_slice(&p.key);
        if let Some(value) = &p.value {
            buf.put_u8(1);
            buf.put_slice(value);
        } else {
            buf.put_u8(0);
        }
        Ok(Some(buf.freeze()))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Pending, String> {
        let b = bytes.ok_or("null pending window")?;
        let short = || format!("pending window of {} bytes is truncated", b.len());
        let i64_at = |at: usize| -> Result<i64, String> {
            Ok(i64::from_be_bytes(
                b.get(at..at + 8)
                    .ok_or_else(short)?
                    .try_into()
                    .map_err(|_| short())?,
            ))
        };
        let key_len = u32::from_be_bytes(
            b.get(32..36)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?,
        ) as usize;
        let key = b.get(36..36 + key_len).ok_or_else(short)?.to_vec();
        let value = match b.get(36 + key_len) {
            Some(1) => Some(b[37 + key_len..].to_vec()),
            Some(_) => None,
            None => return Err(short()),
        };
        Ok(Pending {
            close_at: i64_at(0)?,
            start: i64_at(8)?,
            end: i64_at(16)?,
            timestamp: i64_at(24)?,
            key,
            value,
        })
    }
}

impl<K: Data, A: Data> WindowedTable<K, A> {
    /// Every update of every window (`None` retracts a merged session).
    pub fn to_stream(&self) -> KStream<Windowed<K>, Option<A>> {
        self.table.to_stream()
    }

    /// The windows as a table.
    pub fn table(&self) -> KTable<Windowed<K>, A> {
        self.table.clone()
    }

    /// One final result per window, emitted once stream time passes the window's end plus the
    /// grace period. Pending windows live in the state store `store` (changelogged), so a
    /// restart neither loses nor repeats them.
    pub fn suppress_until_window_closes(&self, store: &str) -> KStream<Windowed<K>, A> {
        let updates = self.table.to_stream();
        let builder = updates.builder.clone();
        builder.add_store(store);
        builder.use_clock();
        let out = Node::<Windowed<K>, A>::new(builder.next_id());
        let graph = out.clone();
        let (grace_ms, key_serde, value_serde, store_name) = (
            self.grace_ms,
            self.key_serde.clone(),
            self.value_serde.clone(),
            store.to_string(),
        );
        updates.node.add_child(move |inst| {
            let clock = inst.add_clock();
            let store =
                StoreHandle::register(inst, &store_name, key_serde.clone(), Arc::new(PendingSerde));
            let mut downstream = graph.instantiate(inst);
            let value_serde = value_serde.clone();
            // (close time, buffer key) of every pending window, loaded from the store once.
            let mut index: Option<BTreeSet<(i64, Bytes)>> = None;
            Box::new(move |ctx, r: Record<Windowed<K>, Option<A>>| {
                let now = ctx.observe(clock, r.timestamp);
                let index = match &mut index {
                    Some(index) => index,
                    None => index.insert(
                        store
                            .entries(ctx)?
                            .into_iter()
                            .map(|(slot, p)| (p.close_at, slot))
                            .collect(),
                    ),
                };
                let Some(key_bytes) = store.key_bytes(&r.key.key)? else {
                    return Ok(());
                };
                let slot = window_key(&key_bytes, r.key.start);
                let close_at = r.key.end + grace_ms;
                match &r.value {
                    Some(value) => {
                        let value = value_serde
                            .serialize(value)
                            .map_err(|e| store.error(e))?
                            .map(|b| b.to_vec());
                        let pending = Pending {
                            close_at,
                            start: r.key.start,
                            end: r.key.end,
                            timestamp: r.timestamp,
                            key: key_bytes.to_vec(),
                            value,
                        };
                        index.insert((close_at, slot.clone()));
                        store.put(ctx, slot, Some(&pending), r.timestamp)?;
                    }
                    None => {
                        // A retracted session emits nothing.
                        index.remove(&(close_at, slot.clone()));
                        store.put(ctx, slot, None, r.timestamp)?;
                    }
                }
                // Emit every window that has closed, oldest first.
                while let Some((close_at, slot)) = index.first().cloned() {
                    if close_at > now {
                        break;
                    }
                    index.pop_first();
                    let Some(pending) = store.get(ctx, &slot)? else {
                        continue;
                    };
                    store.put(ctx, slot, None, pending.timestamp)?;
                    let key = store
                        .key_serde()
                        .deserialize(Some(&pending.key))
                        .map_err(|e| store.error(e))?;
                    let Some(value) = pending.value else { continue };
                    let value = value_serde
                        .deserialize(Some(&value))
                        .map_err(|e| store.error(e))?;
                    let windowed = Windowed {
                        key,
                        start: pending.start,
                        end: pending.end,
                    };
                    downstream(
                        ctx,
                        Record {
                            key: windowed,
                            value,
                            timestamp: pending.timestamp,
                            headers: Vec::new(),
                        },
                    )?;
                }
                Ok(())
            })
        });
        KStream::new(out, builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_and_hopping_windows_cover_each_timestamp() {
        let tumbling = TimeWindows::of(Duration::from_millis(10));
        assert_eq!(tumbling.starts(25).collect::<Vec<_>>(), vec![20]);
        assert_eq!(tumbling.starts(20).collect::<Vec<_>>(), vec![20]);
        assert_eq!(tumbling.starts(19).collect::<Vec<_>>(), vec![10]);
        let hopping =
            TimeWindows::of(Duration::from_millis(10)).advance_by(Duration::from_millis(5));
        assert_eq!(hopping.starts(12).collect::<Vec<_>>(), vec![5, 10]);
        assert_eq!(
            hopping.starts(3).collect::<Vec<_>>(),
            vec![0],
            "no negative starts"
        );
        let thirds = TimeWindows::of(Duration::from_millis(9)).advance_by(Duration::from_millis(3));
        assert_eq!(thirds.starts(10).collect::<Vec<_>>(), vec![3, 6, 9]);
    }
}
