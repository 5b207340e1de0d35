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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::kstream::KStream;
use super::store_handle::StoreHandle;
use crate::error::Result;
use crate::record::Record;
use crate::serde::{Json, Serde};
use crate::topology::{Data, Emit, Instantiation, Node, TaskContext, lock};

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
struct Buffered<V> {
    matched: bool,
    value: V,
}

type Joiner<K, V, VO, VR> = dyn Fn(&K, Option<V>, Option<VO>) -> VR + Send + Sync;

/// One task's join: both buffers, the expiry index and the downstream.
struct JoinCore<K, V, VO, VR> {
    windows: JoinWindows,
    left: StoreHandle<K, Buffered<V>>,
    right: StoreHandle<K, Buffered<VO>>,
    joiner: Arc<Joiner<K, V, VO, VR>>,
    /// Emit unmatched left (right) records once their window closes.
    outer_left: bool,
    outer_right: bool,
    /// (expiry, side, slot) of every buffered record, loaded from the stores on first use.
    expiries: Option<BTreeSet<(i64, Side, Bytes)>>,
    /// Stream time shared by both sides (Kafka's shared time tracker).
    clock: usize,
    downstream: Emit<K, VR>,
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
    /// Advances the join's stream time; `None` (after expiring) when `timestamp` is late.
    fn admit(&mut self, ctx: &mut TaskContext, timestamp: i64) -> Result<Option<i64>> {
        let now = ctx.observe(self.clock, timestamp);
        if timestamp.saturating_add(self.windows.retention()) <= now {
            ctx.late_dropped += 1;
            self.expire(ctx, now)?;
            return Ok(None);
        }
        Ok(Some(now))
    }

    fn on_left(&mut self, ctx: &mut TaskContext, r: Record<K, V>) -> Result<()> {
        let Some(key) = self.left.key_bytes(&r.key)? else {
            return Ok(()); // null keys do not join
        };
        let Some(now) = self.admit(ctx, r.timestamp)? else {
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

    fn on_right(&mut self, ctx: &mut TaskContext, r: Record<K, VO>) -> Result<()> {
        let Some(key) = self.right.key_bytes(&r.key)? else {
            return Ok(()); // null keys do not join
        };
        let Some(now) = self.admit(ctx, r.timestamp)? else {
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

impl<K, V> KStream<K, V>
where
    K: Data + Serialize + DeserializeOwned,
    V: Data + Serialize + DeserializeOwned,
{
    /// Inner join with `other` within `windows`: one result per pair of records of a key whose
    /// timestamps are close enough. `name` names the two buffer stores
    /// (`{name}-left`, `{name}-right`) and, after a key change, the repartition topics.
    pub fn join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&K, V, VO) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        name: &str,
    ) -> KStream<K, VR>
    where
        VO: Data + Serialize + DeserializeOwned,
        VR: Data,
    {
        self.window_join(other, windows, name, (false, false), move |k, v, o| {
            // Inner joins only ever see both sides.
            match (v, o) {
                (Some(v), Some(o)) => joiner(k, v, o),
                _ => unreachable!("inner join without a partner"),
            }
        })
    }

    /// Left join: as [`KStream::join`], plus each left record that met no partner, with
    /// `None`, once its window has closed.
    pub fn left_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&K, V, Option<VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        name: &str,
    ) -> KStream<K, VR>
    where
        VO: Data + Serialize + DeserializeOwned,
        VR: Data,
    {
        self.window_join(
            other,
            windows,
            name,
            (true, false),
            move |k, v, o| match v {
                Some(v) => joiner(k, v, o),
                None => unreachable!("left join without a left record"),
            },
        )
    }

    /// Outer join: as [`KStream::left_join`], plus each right record that met no partner.
    pub fn outer_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&K, Option<V>, Option<VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        name: &str,
    ) -> KStream<K, VR>
    where
        VO: Data + Serialize + DeserializeOwned,
        VR: Data,
    {
        self.window_join(other, windows, name, (true, true), joiner)
    }

    fn window_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        windows: JoinWindows,
        name: &str,
        (outer_left, outer_right): (bool, bool),
        joiner: impl Fn(&K, Option<V>, Option<VO>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR>
    where
        VO: Data + Serialize + DeserializeOwned,
        VR: Data,
    {
        let builder = self.builder.clone();
        let (left_store, right_store) = (format!("{name}-left"), format!("{name}-right"));
        builder.add_store(&left_store);
        builder.add_store(&right_store);
        builder.use_clock();
        // Equal keys must meet in one task: re-keyed sides go through a repartition topic.
        let left = if self.key_changed {
            self.repartition(&format!("{name}-left"))
        } else {
            self.clone()
        };
        let right = if other.key_changed {
            other.repartition(&format!("{name}-right"))
        } else {
            other.clone()
        };
        let out = Node::<K, VR>::new(builder.next_id());
        let core_id = builder.next_id();
        let joiner: Arc<Joiner<K, V, VO, VR>> = Arc::new(joiner);
        let make_core = {
            let (out, joiner) = (out.clone(), joiner.clone());
            move |inst: &mut Instantiation| {
                let key_serde: Arc<dyn Serde<K>> = Arc::new(Json::<K>::new());
                Arc::new(Mutex::new(JoinCore {
                    windows,
                    left: StoreHandle::register(
                        inst,
                        &left_store,
                        key_serde.clone(),
                        Arc::new(Json::<Buffered<V>>::new()),
                    ),
                    right: StoreHandle::register(
                        inst,
                        &right_store,
                        key_serde,
                        Arc::new(Json::<Buffered<VO>>::new()),
                    ),
                    joiner: joiner.clone(),
                    outer_left,
                    outer_right,
                    expiries: None,
                    clock: inst.add_clock(),
                    downstream: out.instantiate(inst),
                }))
            }
        };
        let make_left = make_core.clone();
        left.node.add_child(move |inst| {
            let core = inst.shared(core_id, |inst| make_left.clone()(inst));
            Box::new(move |ctx, r| lock(&core).on_left(ctx, r))
        });
        right.node.add_child(move |inst| {
            let core = inst.shared(core_id, |inst| make_core.clone()(inst));
            Box::new(move |ctx, r| lock(&core).on_right(ctx, r))
        });
        KStream::new(out, builder)
    }
}
