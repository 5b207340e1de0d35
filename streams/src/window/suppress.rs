//! Suppression: one final result per window, held in a store until event time passes the
//! window's end plus the grace period, then emitted with a timestamp inside the window (its
//! last millisecond), so that a later windowed stage puts it in the matching window.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::{Windowed, window_key};
use crate::error::Result;
use crate::record::Record;
use crate::serde::Serde;
use crate::state::StoreHandle;
use crate::task::{EventTimeOperator, TaskContext};
use crate::topology::{Data, Emit};

/// Buffered final results of one window, as kept in the suppression store.
pub(crate) struct Pending {
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
pub(crate) struct PendingSerde;

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

/// One task's suppression of a windowed table's updates.
pub(crate) struct Suppress<K, A> {
    /// How long after a window's end its result may still change.
    grace_ms: i64,
    /// Whether windows include their end (sessions, sliding windows): the last millisecond of
    /// a window is then `end`, else `end - 1`.
    end_inclusive: bool,
    store: StoreHandle<K, Pending>,
    value_serde: Arc<dyn Serde<A>>,
    downstream: Emit<Windowed<K>, A>,
    /// (close time, store key) of every pending window, loaded from the store once.
    index: Option<BTreeSet<(i64, Bytes)>>,
    watermark: i64,
}

impl<K: Data, A: Data> Suppress<K, A> {
    pub(crate) fn new(
        (grace_ms, end_inclusive): (i64, bool),
        store: StoreHandle<K, Pending>,
        value_serde: Arc<dyn Serde<A>>,
        downstream: Emit<Windowed<K>, A>,
    ) -> Self {
        Self {
            grace_ms,
            end_inclusive,
            store,
            value_serde,
            downstream,
            index: None,
            watermark: i64::MIN,
        }
    }

    fn index(&mut self, ctx: &TaskContext) -> Result<&mut BTreeSet<(i64, Bytes)>> {
        if self.index.is_none() {
            let loaded = self
                .store
                .entries(ctx)?
                .into_iter()
                .map(|(slot, p)| (p.close_at, slot))
                .collect();
            self.index = Some(loaded);
        }
        Ok(self.index.get_or_insert_with(BTreeSet::new))
    }

    /// Holds the latest result of a window (a `None` value retracts a merged session).
    pub(crate) fn process(
        &mut self,
        ctx: &mut TaskContext,
        r: Record<Windowed<K>, Option<A>>,
    ) -> Result<()> {
        let Some(key_bytes) = self.store.key_bytes(&r.key.key)? else {
            return Ok(());
        };
        let slot = window_key(&key_bytes, r.key.start);
        let close_at = r.key.end.saturating_add(self.grace_ms);
        match &r.value {
            Some(value) => {
                let value = self
                    .value_serde
                    .serialize(value)
                    .map_err(|e| self.store.error(e))?
                    .map(|b| b.to_vec());
                let pending = Pending {
                    close_at,
                    start: r.key.start,
                    end: r.key.end,
                    timestamp: r.timestamp,
                    key: key_bytes.to_vec(),
                    value,
                };
                self.index(ctx)?.insert((close_at, slot.clone()));
                self.store.put(ctx, slot, Some(&pending), r.timestamp)?;
            }
            None => {
                self.index(ctx)?.remove(&(close_at, slot.clone()));
                self.store.put(ctx, slot, None, r.timestamp)?;
            }
        }
        self.emit_closed(ctx)
    }

    /// Emits every window that has closed, oldest first.
    fn emit_closed(&mut self, ctx: &mut TaskContext) -> Result<()> {
        let watermark = self.watermark;
        loop {
            let index = self.index(ctx)?;
            let Some((close_at, slot)) = index.first().cloned() else {
                break;
            };
            if close_at > watermark {
                break;
            }
            index.pop_first();
            let Some(pending) = self.store.get(ctx, &slot)? else {
                continue;
            };
            self.store.put(ctx, slot, None, pending.timestamp)?;
            let key = self
                .store
                .key_serde()
                .deserialize(Some(&pending.key))
                .map_err(|e| self.store.error(e))?;
            let Some(value) = pending.value else { continue };
            let value = self
                .value_serde
                .deserialize(Some(&value))
                .map_err(|e| self.store.error(e))?;
            let last_ms = if self.end_inclusive {
                pending.end
            } else {
                pending.end - 1
            };
            let windowed = Windowed {
                key,
                start: pending.start,
                end: pending.end,
            };
            (self.downstream)(
                ctx,
                Record::new(windowed, value, last_ms.max(pending.start)),
            )?;
        }
        Ok(())
    }
}

impl<K: Data, A: Data> EventTimeOperator for Suppress<K, A> {
    fn advance(&mut self, ctx: &mut TaskContext, watermark: i64) -> Result<()> {
        self.watermark = watermark;
        self.emit_closed(ctx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::serde::Json;
    use crate::topology::Instantiation;
    use crate::window::testing::{collector, context, take};

    #[test]
    fn one_result_per_window_goes_out_when_event_time_passes_its_close() {
        let mut inst = Instantiation::default();
        let store = StoreHandle::register(
            &mut inst,
            "final",
            Arc::new(Json::<String>::new()),
            Arc::new(PendingSerde),
        );
        let (downstream, seen) = collector::<Windowed<String>, u64>();
        let mut op = Suppress::new((5, false), store, Arc::new(Json::new()), downstream);
        let mut ctx = context(&inst);
        let window = |start| Windowed {
            key: "k".to_string(),
            start,
            end: start + 10,
        };
        op.process(&mut ctx, Record::new(window(0), Some(1), 3))
            .unwrap();
        op.process(&mut ctx, Record::new(window(0), Some(2), 7))
            .unwrap();
        op.process(&mut ctx, Record::new(window(10), Some(7), 12))
            .unwrap();
        op.advance(&mut ctx, 14).unwrap();
        assert!(take(&seen).is_empty(), "grace still runs");
        op.advance(&mut ctx, 15).unwrap();
        assert_eq!(
            take(&seen),
            [(window(0), 2, 9)],
            "the latest value, at the window's last ms"
        );
        op.advance(&mut ctx, i64::MAX).unwrap();
        assert_eq!(take(&seen), [(window(10), 7, 19)]);
        assert_eq!(ctx.store_entries(0).unwrap().len(), 0);
    }
}
