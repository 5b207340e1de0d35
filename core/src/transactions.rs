//! Transactions: records for several partitions plus a group's offset commit, all or nothing.
//!
//! The design is a redo log rather than Kafka's commit markers.
//! [`Broker::commit_transaction`](crate::Broker::commit_transaction) first appends the whole
//! transaction (every batch and the offsets) as one record to the internal topic
//! `__transactions` (flush always); that durable append is the commit point. Only then are the
//! batches appended to their partitions, the offsets committed and a `complete` record
//! written. On open, a transaction with a prepare record and no complete record is applied
//! again. Its batches carry the transaction id (the prepare record's offset) as producer id and
//! their index as base sequence, so a batch that reached its partition before the crash is
//! recognised and not written twice.
//!
//! Consumers therefore only ever see committed data (Kafka's `read_committed`): a transaction
//! that missed its commit point left nothing in any partition. The price is that
//! transactional bytes are written twice. `transactions.checkpoint` in the data dir holds an
//! offset of `__transactions` below which every transaction is complete, so recovery reads
//! only the tail.
//!
//! The [`TransactionCoordinator`] sits below the broker: it owns the `__transactions` partition
//! and the checkpoint, and is handed a [`TopicLookup`] for the partitions a transaction writes
//! and the [`GroupCoordinator`] for its offsets. `Broker::commit_transaction`
//! (`broker/transactions.rs`) delegates to it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes};

use crate::batch::{self, BatchBuilder, EncodedBatch};
use crate::config::{CleanupPolicy, FlushPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::groups::GroupCoordinator;
use crate::log::Log;
use crate::partition::Partition;
use crate::record::{Header, TopicPartition, now_ms};
use crate::topic::TopicLookup;

/// The internal topic holding the transaction log.
pub const TRANSACTIONS_TOPIC: &str = "__transactions";

/// In the data dir: the offset of `__transactions` below which every transaction is complete.
pub(crate) const CHECKPOINT_FILE: &str = "transactions.checkpoint";
const PREPARE: u8 = 1;
const COMPLETE: u8 = 2;
const FORMAT: u8 = 1;
/// Batches of a transaction are cut at about this size.
const BATCH_BYTES: usize = 1 << 20;
/// Room left in the prepare record's batch for its own framing.
const MAX_TRANSACTION_BYTES: usize = batch::MAX_BATCH_BYTES - 4096;

/// Records for any partitions and a consumer group's offsets, committed together by
/// [`Broker::commit_transaction`](crate::Broker::commit_transaction).
#[derive(Debug, Default)]
pub struct Transaction {
    writes: BTreeMap<TopicPartition, PartitionWrites>,
    offsets: Option<(String, Vec<(TopicPartition, u64)>)>,
    records: usize,
}

#[derive(Debug, Default)]
struct PartitionWrites {
    sealed: Vec<EncodedBatch>,
    open: Option<BatchBuilder>,
    bytes: usize,
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record for partition `partition` of `topic`.
    pub fn send(
        &mut self,
        topic: &str,
        partition: u32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        let tp = TopicPartition::new(topic, partition);
        let writes = self.writes.entry(tp).or_default();
        let builder = writes
            .open
            .get_or_insert_with(|| BatchBuilder::with_capacity(4096));
        let before = builder.size();
        builder.push(timestamp, key, value, headers);
        writes.bytes += builder.size() - before;
        if builder.size() >= BATCH_BYTES
            && let Some(full) = writes.open.take()
        {
            writes.sealed.push(full.finish());
        }
        self.records += 1;
    }

    /// Commits `offsets` (the next offset to read) for `group` with the records.
    pub fn commit_offsets(
        &mut self,
        group: impl Into<String>,
        offsets: Vec<(TopicPartition, u64)>,
    ) {
        self.offsets = Some((group.into(), offsets));
    }

    /// Records added so far.
    pub fn record_count(&self) -> usize {
        self.records
    }

    /// Encoded bytes of the records so far.
    pub fn size_bytes(&self) -> usize {
        self.writes.values().map(|w| w.bytes).sum()
    }

    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.offsets.is_none()
    }
}

/// What [`Broker::commit_transaction`](crate::Broker::commit_transaction) wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionInfo {
    /// The transaction's id (its offset in `__transactions`).
    pub id: u64,
    /// Records written.
    pub records: usize,
}

/// A decoded transaction, ready to apply.
#[derive(Debug)]
struct Prepared {
    writes: Vec<(TopicPartition, u64, Vec<EncodedBatch>)>,
    offsets: Option<(String, Vec<(TopicPartition, u64)>)>,
}

/// Commits transactions through the redo log `__transactions` and completes interrupted ones.
#[derive(Debug)]
pub(crate) struct TransactionCoordinator {
    /// Partition 0 of `__transactions`.
    log: Arc<Partition>,
    /// Where [`CHECKPOINT_FILE`] is written: the data dir.
    dir: PathBuf,
    /// Lower bounds of the prepare offsets of transactions not yet complete, with counts.
    in_flight: Mutex<BTreeMap<u64, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TransactionCoordinator {
    /// The config `__transactions` is created with: one partition, flushed on every append,
    /// kept ten minutes.
    pub(crate) fn topic_config() -> TopicConfig {
        TopicConfig {
            partitions: 1,
            segment_bytes: 64 << 20,
            cleanup_policy: CleanupPolicy::Delete,
            flush: FlushPolicy::Always,
            // Complete transactions are of no use; the checkpoint keeps recovery off them.
            retention_ms: Some(10 * 60 * 1000),
            preallocate: false,
            ..TopicConfig::default()
        }
    }

    /// A coordinator writing to `log` (partition 0 of `__transactions`) and its checkpoint to
    /// the data dir `dir`. Interrupted transactions wait for [`TransactionCoordinator::recover`].
    pub(crate) fn new(log: Arc<Partition>, dir: &Path) -> Self {
        Self {
            log,
            dir: dir.to_path_buf(),
            in_flight: Mutex::new(BTreeMap::new()),
        }
    }

    /// Writes `txn` atomically (see `Broker::commit_transaction`), its partitions found in
    /// `topics` and its offsets committed through `groups`.
    pub(crate) async fn commit(
        &self,
        txn: Transaction,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<TransactionInfo> {
        let records = txn.records;
        let mut writes = Vec::with_capacity(txn.writes.len());
        for (tp, mut w) in txn.writes {
            let partition = topics.partition(&tp)?;
            if let Some(open) = w.open.take() {
                w.sealed.push(open.finish());
            }
            // Every batch of this transaction lands at or after the current end.
            let hint = partition.log().high_watermark();
            writes.push((tp, hint, w.sealed));
        }
        let prepared = Prepared {
            writes,
            offsets: txn.offsets,
        };
        let payload = encode(&prepared);
        if payload.len() > MAX_TRANSACTION_BYTES {
            return Err(Error::Transaction(format!(
                "transaction of {} bytes is over the 64 MiB limit; commit more often",
                payload.len()
            )));
        }
        let bound = self.log.log().high_watermark();
        *lock(&self.in_flight).entry(bound).or_default() += 1;
        let result = async {
            let mut builder = BatchBuilder::with_capacity(payload.len() + 64);
            builder.push(now_ms(), None, Some(&payload), &[]);
            let id = self.log.append(builder.finish()).await?.base_offset;
            self.apply(id, prepared, false, topics, groups).await?;
            Ok(TransactionInfo { id, records })
        }
        .await;
        let mut in_flight = lock(&self.in_flight);
        if let Some(count) = in_flight.get_mut(&bound) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&bound);
            }
        }
        result
    }

    /// Appends a committed transaction's batches and offsets, then its complete record. When
    /// `recovering`, skips batches already in their partitions.
    async fn apply(
        &self,
        id: u64,
        prepared: Prepared,
        recovering: bool,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<()> {
        let mut acks = Vec::new();
        for (tp, hint, batches) in prepared.writes {
            let partition = match topics.partition(&tp) {
                Ok(p) => p,
                Err(e) if recovering => {
                    tracing::warn!(transaction = id, error = %e, "partition of an interrupted transaction is gone; skipping its records");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let present = if recovering {
                let log = partition.log().clone();
                tokio::task::spawn_blocking(move || sequences_written(&log, hint, id))
                    .await
                    .map_err(|_| Error::Closed)??
            } else {
                HashSet::new()
            };
            for (sequence, mut batch) in batches.into_iter().enumerate() {
                let sequence = sequence as i32;
                if present.contains(&sequence) {
                    continue;
                }
                batch.set_producer(id as i64, sequence);
                // Queued in order now; acknowledged together below.
                acks.push(partition.append(batch));
            }
        }
        futures::future::try_join_all(acks).await?;
        if let Some((group, offsets)) = prepared.offsets {
            let entries = offsets
                .into_iter()
                .map(|(tp, offset)| (group.clone(), tp, Some((offset, None))))
                .collect();
            groups.write(entries).await?;
        }
        let mut complete = BatchBuilder::with_capacity(64);
        let mut value = vec![COMPLETE];
        value.extend_from_slice(&id.to_le_bytes());
        complete.push(now_ms(), None, Some(&value), &[]);
        self.log.append(complete.finish()).await?;
        Ok(())
    }

    /// Writes the offset below which every transaction is complete.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        // The end is read before the in-flight set: a transaction starting after this read
        // prepares above it, one started before is in the set until complete.
        let end = self.log.log().high_watermark();
        let low = lock(&self.in_flight)
            .keys()
            .next()
            .copied()
            .unwrap_or(end)
            .min(end);
        let tmp = self.dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        std::fs::write(&tmp, low.to_string()).map_err(Error::io(&tmp))?;
        std::fs::rename(&tmp, self.dir.join(CHECKPOINT_FILE)).map_err(Error::io(&self.dir))?;
        Ok(())
    }

    /// Completes the transactions interrupted by a crash (prepared, not complete), then
    /// checkpoints.
    pub(crate) async fn recover(
        &self,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<()> {
        let log = self.log.log().clone();
        let from = read_checkpoint(&self.dir);
        let pending = tokio::task::spawn_blocking(move || pending_transactions(&log, from))
            .await
            .map_err(|_| Error::Closed)??;
        for (id, payload) in pending {
            let prepared = decode(&payload).map_err(|reason| {
                Error::Transaction(format!(
                    "damaged prepare record at offset {id} of {TRANSACTIONS_TOPIC}: {reason}"
                ))
            })?;
            let records: u32 = prepared
                .writes
                .iter()
                .flat_map(|(_, _, b)| b.iter().map(EncodedBatch::record_count))
                .sum();
            self.apply(id, prepared, true, topics, groups).await?;
            tracing::warn!(
                transaction = id,
                records,
                "completed a transaction interrupted by a crash"
            );
        }
        self.checkpoint()
    }
}

fn read_checkpoint(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(CHECKPOINT_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Prepare records from `from` on without a complete record, in order.
fn pending_transactions(log: &Log, from: u64) -> Result<Vec<(u64, Bytes)>> {
    let mut pending = BTreeMap::new();
    log.for_each_record(from, |r| {
        let Some(value) = r.value else { return };
        match value.first() {
            Some(&PREPARE) => {
                pending.insert(r.offset, value);
            }
            Some(&COMPLETE) if value.len() == 9 => {
                let mut id = &value[1..];
                pending.remove(&id.get_u64_le());
            }
            _ => {}
        }
    })?;
    Ok(pending.into_iter().collect())
}

/// Base sequences of the batches transaction `id` wrote at or after `from`, by their headers.
fn sequences_written(log: &Log, from: u64, id: u64) -> Result<HashSet<i32>> {
    let mut found = HashSet::new();
    for batch in log.scan(from) {
        let header = *batch?.header();
        if header.producer_id == id as i64 {
            found.insert(header.base_sequence);
        }
    }
    Ok(found)
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.put_u16_le(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

/// Layout (little endian): kind, format, partition count; per partition its topic (u16 length
/// and bytes), partition u32, hint u64, batch count u32 and batches (u32 length and bytes);
/// then a flag for offsets and, if set, group, count, and per entry topic, partition u32 and
/// offset u64.
fn encode(prepared: &Prepared) -> Vec<u8> {
    let bytes: usize = prepared
        .writes
        .iter()
        .flat_map(|(_, _, b)| b.iter().map(|b| b.len() + 4))
        .sum();
    let mut buf = Vec::with_capacity(bytes + 64 * prepared.writes.len() + 64);
    buf.put_u8(PREPARE);
    buf.put_u8(FORMAT);
    buf.put_u32_le(prepared.writes.len() as u32);
    for (tp, hint, batches) in &prepared.writes {
        put_str(&mut buf, &tp.topic);
        buf.put_u32_le(tp.partition);
        buf.put_u64_le(*hint);
        buf.put_u32_le(batches.len() as u32);
        for b in batches {
            buf.put_u32_le(b.len() as u32);
            buf.put_slice(b.as_bytes());
        }
    }
    match &prepared.offsets {
        None => buf.put_u8(0),
        Some((group, offsets)) => {
            buf.put_u8(1);
            put_str(&mut buf, group);
            buf.put_u32_le(offsets.len() as u32);
            for (tp, offset) in offsets {
                put_str(&mut buf, &tp.topic);
                buf.put_u32_le(tp.partition);
                buf.put_u64_le(*offset);
            }
        }
    }
    buf
}

fn decode(payload: &[u8]) -> std::result::Result<Prepared, String> {
    let mut r = payload;
    let need = |r: &[u8], n: usize| {
        if r.len() < n {
            Err(format!("truncated ({} bytes left, {n} needed)", r.len()))
        } else {
            Ok(())
        }
    };
    let get_str = |r: &mut &[u8]| -> std::result::Result<String, String> {
        need(r, 2)?;
        let len = r.get_u16_le() as usize;
        need(r, len)?;
        let s = std::str::from_utf8(&r[..len]).map_err(|e| e.to_string())?;
        r.advance(len);
        Ok(s.to_string())
    };
    need(r, 6)?;
    if r.get_u8() != PREPARE {
        return Err("not a prepare record".into());
    }
    let format = r.get_u8();
    if format != FORMAT {
        return Err(format!("unknown format {format}"));
    }
    let count = r.get_u32_le();
    let mut writes = Vec::new();
    for _ in 0..count {
        let topic = get_str(&mut r)?;
        need(r, 16)?;
        let partition = r.get_u32_le();
        let hint = r.get_u64_le();
        let batches = r.get_u32_le();
        let mut list = Vec::new();
        for _ in 0..batches {
            need(r, 4)?;
            let len = r.get_u32_le() as usize;
            need(r, len)?;
            batch::validate(&r[..len])
                .map_err(|e| format!("batch for {topic}-{partition}: {e:?}"))?;
            list.push(EncodedBatch::from_validated(r[..len].to_vec()));
            r.advance(len);
        }
        writes.push((TopicPartition::new(topic, partition), hint, list));
    }
    need(r, 1)?;
    let offsets = if r.get_u8() == 1 {
        let group = get_str(&mut r)?;
        need(r, 4)?;
        let n = r.get_u32_le();
        let mut offsets = Vec::new();
        for _ in 0..n {
            let topic = get_str(&mut r)?;
            need(r, 12)?;
            let partition = r.get_u32_le();
            offsets.push((TopicPartition::new(topic, partition), r.get_u64_le()));
        }
        Some((group, offsets))
    } else {
        None
    };
    Ok(Prepared { writes, offsets })
}

#[cfg(test)]
impl Transaction {
    /// The prepare record `commit` would write for this transaction, with every partition's
    /// hint at 0, and its batches per partition in order: for crash tests.
    pub(crate) fn into_prepare_record(self) -> (Vec<u8>, Vec<(TopicPartition, Vec<EncodedBatch>)>) {
        let writes: Vec<_> = self
            .writes
            .into_iter()
            .map(|(tp, mut w)| {
                w.sealed.extend(w.open.take().map(BatchBuilder::finish));
                (tp, 0, w.sealed)
            })
            .collect();
        let prepared = Prepared {
            writes,
            offsets: self.offsets,
        };
        let payload = encode(&prepared);
        let batches = prepared
            .writes
            .into_iter()
            .map(|(tp, _, batches)| (tp, batches))
            .collect();
        (payload, batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_records_round_trip_and_damage_is_reported() {
        let mut txn = Transaction::new();
        txn.send("out", 1, 5, Some(b"k"), Some(b"v"), &[]);
        txn.send("out", 1, 6, None, Some(b"w"), &[]);
        txn.send("other", 0, 7, Some(b"x"), None, &[]);
        txn.commit_offsets("app", vec![(TopicPartition::new("in", 1), 42)]);
        let writes = txn
            .writes
            .into_iter()
            .map(|(tp, mut w)| {
                w.sealed.extend(w.open.take().map(BatchBuilder::finish));
                (tp, 3, w.sealed)
            })
            .collect();
        let prepared = Prepared {
            writes,
            offsets: txn.offsets,
        };
        let bytes = encode(&prepared);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.writes.len(), 2);
        assert_eq!(decoded.writes[1].0, TopicPartition::new("out", 1));
        assert_eq!(decoded.writes[1].2[0].record_count(), 2);
        assert_eq!(decoded.offsets, prepared.offsets);
        for cut in [1, 5, 20, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} must fail");
        }
    }
}
