//! Windows on event time: the window kinds users choose ([`TimeWindows`], [`SlidingWindows`],
//! [`SessionWindows`]) and one operator per kind (`time`, `sliding`, `session`), plus
//! `suppress`, which holds each window's result until the window closes.
//!
//! Every operator is an [`EventTimeOperator`](crate::task::EventTimeOperator) with its own
//! watermark, set when event time reaches it: a window closes when that watermark passes its
//! end plus the grace period, whether or not a record for its key arrives. A record is late
//! (dropped, counted, warned about) when every window it belongs to has closed.

mod session;
mod sliding;
mod suppress;
mod time;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

pub(crate) use session::{Merger, SessionWindowAggregate};
pub(crate) use sliding::SlidingWindowAggregate;
pub(crate) use suppress::{PendingSerde, Suppress};
pub(crate) use time::TimeWindowAggregate;

/// Folds a value into a window's aggregate (`None` for a new window).
pub(crate) type Aggregator<K, V, A> = Arc<dyn Fn(&K, V, Option<A>) -> A + Send + Sync>;

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
    pub(crate) size_ms: i64,
    pub(crate) advance_ms: i64,
    pub(crate) grace_ms: i64,
}

pub(crate) fn millis(d: Duration) -> i64 {
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
    pub(crate) fn starts(&self, timestamp: i64) -> impl Iterator<Item = i64> + use<> {
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
    pub(crate) gap_ms: i64,
    pub(crate) grace_ms: i64,
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
    pub(crate) size_ms: i64,
    pub(crate) grace_ms: i64,
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
    pub(crate) fn affected(
        &self,
        t: i64,
        others: impl Iterator<Item = i64> + Clone,
    ) -> BTreeSet<(i64, i64)> {
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
pub(crate) fn window_key(key: &[u8], start: i64) -> Bytes {
    let mut buf = BytesMut::with_capacity(key.len() + 8);
    buf.put_slice(key);
    buf.put_i64(start);
    buf.freeze()
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

/// A stand-alone task for the operators' unit tests: in-memory stores and a downstream that
/// collects what it is sent.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use crate::record::Record;
    use crate::serde::Json;
    use crate::state::{KeyValueStore, StoreHandle};
    use crate::task::{OnError, TaskContext};
    use crate::topology::{Emit, Instantiation};

    /// A context whose stores are those registered in `inst`, kept in memory.
    pub(crate) fn context(inst: &Instantiation) -> TaskContext {
        let mut ctx = TaskContext::new("test", 0, OnError::Fail);
        ctx.stores = inst
            .store_names()
            .iter()
            .map(|name| KeyValueStore::in_memory(name).unwrap())
            .collect();
        ctx
    }

    /// A JSON store handle registered in `inst`.
    pub(crate) fn store<K, A>(inst: &mut Instantiation, name: &str) -> StoreHandle<K, A>
    where
        K: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        A: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        StoreHandle::register(inst, name, Arc::new(Json::new()), Arc::new(Json::new()))
    }

    /// What a collector has seen: (key, value, timestamp).
    pub(crate) type Seen<K, V> = Arc<Mutex<Vec<(K, V, i64)>>>;

    /// A downstream that collects (key, value, timestamp).
    pub(crate) fn collector<K: Send + 'static, V: Send + 'static>() -> (Emit<K, V>, Seen<K, V>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let emit: Emit<K, V> = Box::new(move |_, r: Record<K, V>| {
            sink.lock().unwrap().push((r.key, r.value, r.timestamp));
            Ok(())
        });
        (emit, seen)
    }

    /// Takes what the collector has seen so far.
    pub(crate) fn take<T>(seen: &Mutex<Vec<T>>) -> Vec<T> {
        std::mem::take(&mut *seen.lock().unwrap())
    }
}
