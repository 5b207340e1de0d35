//! Stream-stream joins within a time window: inner, left and outer, as Kafka Streams'
//! `KStream#join(KStream, ValueJoiner, JoinWindows)`.
//!
//! A left record at `t` joins every right record of its key with a timestamp in
//! `[t - before, t + after]` (a right record at `t` joins left records in
//! `[t - after, t + before]`), whichever arrives first; the result takes the larger timestamp.
//! Each side's records wait in a state store (changelogged) until no partner can arrive any
//! more: stream time past `t + before + after + grace`. Then a left or outer join emits the
//! records that never met a partner, with `None` for the missing side, as Kafka Streams does
//! since 3.1 (no eager, later-contradicted results). A record arriving after that point for its
//! own timestamp is late: dropped and counted.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::record::Record;
use crate::state::StoreHandle;
use crate::task::{EventTimeOperator, TaskContext};
use crate::topology::{Data, Emit};

/// How far apart in time two records may be to join, and how late records may arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    before_ms: i64,
    after_ms: i64,
    grace_ms: i64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl JoinWindows {
    /// Records join when their timestamps differ by at most `difference`, either way; no grace.
    pub fn of(difference: Duration) -> Self {
        let ms = millis(difference);
        Self {
            before_ms: ms,
            after_ms: ms,
            grace_ms: 0,
        }
    }

    /// How much older than a left record a right record may be.
    pub fn before(mut self, before: Duration) -> Self {
        self.before_ms = millis(before);
        self
    }

    /// How much newer than a left record a right record may be.
    pub fn after(mut self, after: Duration) -> Self {
        self.after_ms = millis(after);
        self
    }

    /// Accepts out-of-order records up to `grace` after their window closes.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = millis(grace);
        self
    }

    fn retention(&self) -> i64 {
        self.before_ms + self.after_ms + self.grace_ms
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Left,
    Right,
}

/// Store slot of a buffered record: key length, key, timestamp (sign-flipped, big-endian, so
/// slots sort by time) and a sequence number for records with equal key and timestamp.
fn slot(key: &[u8], timestamp: i64, sequence: u32) -> Bytes {
    let mut buf = BytesMut::with_capacity(key.len() + 16);
    buf.put_u32(key.len() as u32);
    buf.put_slice(key);
    buf.put_u64((timestamp as u64) ^ (1 << 63));
    buf.put_u32(sequence);
    buf.freeze()
}

fn slot_parts(slot: &[u8]) -> Option<(&[u8], i64)> {
    let len = u32::from_be_bytes(slot.get(..4)?.try_into().ok()?) as usize;
    let key = slot.get(4..4 + len)?;
    let ts = u64::from_be_bytes(slot.get(4 + len..12 + len)?.try_into().ok()?);
    Some((key, (ts ^ (1 << 63)) as i64))
}

/// A buffered record: whether it met a partner yet, and its value.
#[derive(Serialize, serde::Deserialize)]
pub(crate) struct Buffered<V> {
    matched: bool,
    value: V,
}

pub(crate) type Joiner<K, V, VO, VR> = dyn Fn(&K, Option<V>, Option<VO>) -> VR + Send + Sync;

/// One task's join: both buffers, the expiry index and the downstream.
pub(crate) struct JoinCore<K, V, VO, VR> {
    windows: JoinWindows,
    left: StoreHandle<K, Buffered<V>>,
    right: StoreHandle<K, Buffered<VO>>,
    joiner: Arc<Joiner<K, V, VO, VR>>,
    /// Emit unmatched left (right) records once their window closes.
    outer_left: bool,
    outer_right: bool,
    /// (expiry, side, slot) of every buffered record, loaded from the stores on first use.
    expiries: Option<BTreeSet<(i64, Side, Bytes)>>,
    /// Event time, as this operator last heard of it; shared by both sides.
    watermark: i64,
    /// Names the operator in late-drop counts: its left store.
    name: Arc<str>,
    downstream: Emit<K, VR>,
}

impl<K: 'static, V: 'static, VO: 'static, VR> JoinCore<K, V, VO, VR> {
    /// A join of `windows` over two buffers; `outer` says which sides' unmatched records are
    /// emitted (left, right).
    pub(crate) fn new(
        windows: JoinWindows,
        (left, right): (StoreHandle<K, Buffered<V>>, StoreHandle<K, Buffered<VO>>),
        joiner: Arc<Joiner<K, V, VO, VR>>,
        (outer_left, outer_right): (bool, bool),
        downstream: Emit<K, VR>,
    ) -> Self {
        Self {
            windows,
            name: left.name().clone(),
            left,
            right,
            joiner,
            outer_left,
            outer_right,
            expiries: None,
            watermark: i64::MIN,
            downstream,
        }
    }
}

impl<K, V, VO, VR> JoinCore<K, V, VO, VR>
where
    K: Data + Serialize + DeserializeOwned,
    V: Data + Serialize + DeserializeOwned,
    VO: Data + Serialize + DeserializeOwned,
    VR: Data,
{
    fn expiries(&mut self, ctx: &TaskContext) -> Result<&mut BTreeSet<(i64, Side, Bytes)>> {
        if self.expiries.is_none() {
            let retention = self.windows.retention();
            let mut index = BTreeSet::new();
            for (side, entries) in [
                (
                    Side::Left,
                    self.left
                        .entries(ctx)?
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect::<Vec<_>>(),
                ),
                (
                    Side::Right,
                    self.right
                        .entries(ctx)?
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect(),
                ),
            ] {
                for s in entries {
                    if let Some((_, ts)) = slot_parts(&s) {
                        index.insert((ts.saturating_add(retention), side, s));
                    }
                }
            }
            self.expiries = Some(index);
        }
        Ok(self.expiries.get_or_insert_with(BTreeSet::new))
    }
}

impl<K, V, VO, VR> JoinCore<K, V, VO, VR>
where
    K: Data + Serialize + DeserializeOwned,
    V: Data + Serialize + DeserializeOwned,
    VO: Data + Serialize + DeserializeOwned,
    VR: Data,
{
    /// The event time to judge `timestamp` by; `None` when it is late.
    fn admit(&mut self, ctx: &mut TaskContext, timestamp: i64) -> Option<i64> {
        let now = self.watermark;
        if timestamp.saturating_add(self.windows.retention()) <= now {
            ctx.record_late(&self.name, timestamp);
            return None;
        }
        Some(now)
    }

    pub(crate) fn on_left(&mut self, ctx: &mut TaskContext, r: Record<K, V>) -> Result<()> {
        let Some(key) = self.left.key_bytes(&r.key)? else {
            return Ok(()); // null keys do not join
        };
        let Some(now) = self.admit(ctx, r.timestamp) else {
            return Ok(());
        };
        let window = (self.windows.before_ms, self.windows.after_ms);
        let Self {
            left,
            right,
            joiner,
            downstream,
            ..
        } = self;
        let buffered = probe_and_buffer(
            ctx,
            left,
            right,
            window,
            &key,
            r,
            |ctx, out, mine, theirs| {
                let joined = out.map(|k, ()| {
                    let value = joiner(&k, Some(mine), Some(theirs));
                    (k, value)
                });
                downstream(ctx, joined)
            },
        )?;
        self.track(ctx, Side::Left, buffered, now)
    }

    pub(crate) fn on_right(&mut self, ctx: &mut TaskContext, r: Record<K, VO>) -> Result<()> {
        let Some(key) = self.right.key_bytes(&r.key)? else {
            return Ok(()); // null keys do not join
        };
        let Some(now) = self.admit(ctx, r.timestamp) else {
            return Ok(());
        };
        let window = (self.windows.after_ms, self.windows.before_ms);
        let Self {
            left,
            right,
            joiner,
            downstream,
            ..
        } = self;
        let buffered = probe_and_buffer(
            ctx,
            right,
            left,
            window,
            &key,
            r,
            |ctx, out, mine, theirs| {
                let joined = out.map(|k, ()| {
                    let value = joiner(&k, Some(theirs), Some(mine));
                    (k, value)
                });
                downstream(ctx, joined)
            },
        )?;
        self.track(ctx, Side::Right, buffered, now)
    }

    /// Registers a newly buffered record for expiry, then expires what is due.
    fn track(
        &mut self,
        ctx: &mut TaskContext,
        side: Side,
        (slot, timestamp): (Bytes, i64),
        now: i64,
    ) -> Result<()> {
        let expiry = timestamp.saturating_add(self.windows.retention());
        self.expiries(ctx)?.insert((expiry, side, slot));
        self.expire(ctx, now)
    }

    /// Drops buffered records no partner can reach any more; outer sides emit the unmatched.
    fn expire(&mut self, ctx: &mut TaskContext, now: i64) -> Result<()> {
        loop {
            let Some((expiry, side, s)) = self.expiries(ctx)?.first().cloned() else {
                break;
            };
            if expiry > now {
                break;
            }
            self.expiries(ctx)?.pop_first();
            let Some((key_bytes, ts)) = slot_parts(&s).map(|(k, t)| (k.to_vec(), t)) else {
                continue;
            };
            match side {
                Side::Left => {
                    let Some(bytes) = ctx.store_get(self.left.id(), &s)? else {
                        continue;
                    };
                    let buffered: Buffered<V> = self.left.decode(&bytes)?;
                    self.left.put(ctx, s, None, ts)?;
                    if self.outer_left && !buffered.matched {
                        let key = self.left.decode_key(&key_bytes)?;
                        let value = (self.joiner)(&key, Some(buffered.value), None);
                        (self.downstream)(ctx, Record::new(key, value, ts))?;
                    }
                }
                Side::Right => {
                    let Some(bytes) = ctx.store_get(self.right.id(), &s)? else {
                        continue;
                    };
                    let buffered: Buffered<VO> = self.right.decode(&bytes)?;
                    self.right.put(ctx, s, None, ts)?;
                    if self.outer_right && !buffered.matched {
                        let key = self.right.decode_key(&key_bytes)?;
                        let value = (self.joiner)(&key, None, Some(buffered.value));
                        (self.downstream)(ctx, Record::new(key, value, ts))?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl<K, V, VO, VR> EventTimeOperator for JoinCore<K, V, VO, VR>
where
    K: Data + Serialize + DeserializeOwned,
    V: Data + Serialize + DeserializeOwned,
    VO: Data + Serialize + DeserializeOwned,
    VR: Data,
{
    /// Expires the buffered records no partner can reach any more; outer sides emit theirs.
    fn advance(&mut self, ctx: &mut TaskContext, watermark: i64) -> Result<()> {
        self.watermark = watermark;
        self.expire(ctx, watermark)
    }
}

/// Joins `r` with the other side's buffered records of its key within
/// `[t - look_back, t + look_ahead]` (`emit` gets the joined record's key, its value, the
/// partner's value, and returns after forwarding), marks them matched, then buffers `r`.
/// Returns the slot and timestamp it was buffered at.
fn probe_and_buffer<K, T, O>(
    ctx: &mut TaskContext,
    own: &StoreHandle<K, Buffered<T>>,
    other: &StoreHandle<K, Buffered<O>>,
    (look_back, look_ahead): (i64, i64),
    key: &[u8],
    r: Record<K, T>,
    mut emit: impl FnMut(&mut TaskContext, Record<K, ()>, T, O) -> Result<()>,
) -> Result<(Bytes, i64)>
where
    K: Data,
    T: Data + Serialize + DeserializeOwned,
    O: Data + Serialize + DeserializeOwned,
{
    let from = slot(key, r.timestamp.saturating_sub(look_back), 0);
    let to = slot(key, r.timestamp.saturating_add(look_ahead), u32::MAX);
    let mut matched = false;
    for (partner_slot, bytes) in ctx.store_range(other.id(), &from, &to)? {
        let Some((_, ts)) = slot_parts(&partner_slot) else {
            continue;
        };
        let mut partner = other.decode(&bytes)?;
        matched = true;
        let out = Record {
            key: r.key.clone(),
            value: (),
            timestamp: r.timestamp.max(ts),
            headers: r.headers.clone(),
        };
        emit(ctx, out, r.value.clone(), partner.value.clone())?;
        if !partner.matched {
            partner.matched = true;
            other.put(ctx, partner_slot, Some(&partner), ts)?;
        }
    }
    let same_time = ctx.store_range(
        own.id(),
        &slot(key, r.timestamp, 0),
        &slot(key, r.timestamp, u32::MAX),
    )?;
    let own_slot = slot(key, r.timestamp, same_time.len() as u32);
    let buffered = Buffered {
        matched,
        value: r.value,
    };
    own.put(ctx, own_slot.clone(), Some(&buffered), r.timestamp)?;
    Ok((own_slot, r.timestamp))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::topology::Instantiation;
    use crate::window::testing::{collector, context, store, take};

    #[test]
    fn pairs_meet_within_the_window_and_unmatched_left_records_go_out_when_time_passes() {
        let mut inst = Instantiation::default();
        let left = store::<String, Buffered<u64>>(&mut inst, "j-left");
        let right = store::<String, Buffered<u64>>(&mut inst, "j-right");
        let (downstream, seen) = collector::<String, String>();
        let joiner: Arc<Joiner<String, u64, u64, String>> =
            Arc::new(|_, l, r| format!("{l:?}+{r:?}"));
        let windows = JoinWindows::of(Duration::from_millis(10));
        let mut join = JoinCore::new(windows, (left, right), joiner, (true, false), downstream);
        let mut ctx = context(&inst);
        join.on_left(&mut ctx, Record::new("a".into(), 1, 0))
            .unwrap();
        join.on_left(&mut ctx, Record::new("b".into(), 2, 5))
            .unwrap();
        join.on_right(&mut ctx, Record::new("a".into(), 9, 8))
            .unwrap();
        assert_eq!(
            take(&seen),
            [("a".to_string(), "Some(1)+Some(9)".to_string(), 8)]
        );
        join.advance(&mut ctx, 24).unwrap();
        assert!(
            take(&seen).is_empty(),
            "b may still meet a partner until 25"
        );
        join.advance(&mut ctx, 25).unwrap();
        assert_eq!(
            take(&seen),
            [("b".to_string(), "Some(2)+None".to_string(), 5)]
        );
        join.on_right(&mut ctx, Record::new("b".into(), 3, 4))
            .unwrap();
        assert_eq!(ctx.late_records_dropped(), 1);
    }
}
