//! The transaction coordinator: each transactional id's producer id, epoch and state, kept in
//! `__transaction_state` (key: the id; value: JSON), and the markers that end transactions.
//!
//! States as Kafka's: `Empty` -> `Ongoing` (partitions added) -> `PrepareCommit` /
//! `PrepareAbort` (the decision, durable) -> markers in every partition -> `CompleteCommit` /
//! `CompleteAbort`. One async lock per transactional id orders its requests; a transaction
//! is completed while that lock is held, so others see it prepared only after a failure (and
//! get `CONCURRENT_TRANSACTIONS` until the background pass completes it).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedMappedMutexGuard, OwnedMutexGuard};

use super::{Transaction, TransactionInfo, TxnRefusal, crash_point};
use crate::batch::{BatchBuilder, EncodedBatch};
use crate::error::{Error, Result};
use crate::groups::GroupCoordinator;
use crate::partition::Partition;
use crate::record::{TopicPartition, now_ms};
use crate::topic::TopicLookup;

/// The key of the record holding the end of the last producer id block: not UTF-8, so no
/// transactional id can equal it.
const ID_BLOCK_KEY: &[u8] = &[0xff, b'p', b'i', b'd'];
/// Producer ids handed out per durable block.
const ID_BLOCK_SIZE: i64 = 1000;
/// Transactional ids of the embedded producers start with this.
const EMBEDDED_PREFIX: &str = "__logbrook.embedded.";
/// The embedded producers' transaction timeout.
const EMBEDDED_TIMEOUT_MS: i32 = 60_000;
/// The largest transaction timeout a producer may ask for (Kafka's
/// `transaction.max.timeout.ms` default).
pub const MAX_TRANSACTION_TIMEOUT_MS: i32 = 900_000;

/// A transaction's state, as Kafka's coordinator names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction open.
    Empty,
    /// Partitions were added; data may be written.
    Ongoing,
    /// Decided to commit; markers are being written.
    PrepareCommit,
    /// Decided to abort; markers are being written.
    PrepareAbort,
    /// Committed in every partition.
    CompleteCommit,
    /// Aborted in every partition.
    CompleteAbort,
}

/// One transactional id's state, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TxnMetadata {
    producer_id: i64,
    epoch: i16,
    timeout_ms: i32,
    state: TxnState,
    partitions: BTreeSet<(String, u32)>,
    /// When the open transaction began (ms).
    started_ms: i64,
    updated_ms: i64,
}

impl TxnMetadata {
    fn partitions(&self) -> impl Iterator<Item = TopicPartition> + '_ {
        self.partitions
            .iter()
            .map(|(t, p)| TopicPartition::new(t.clone(), *p))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct IdBlock {
    end: i64,
}

type Slot = Arc<tokio::sync::Mutex<Option<TxnMetadata>>>;

/// An embedded producer: its transactional id and, once initialised, its producer id and
/// epoch.
#[derive(Debug)]
struct Embedded {
    transactional_id: String,
    producer: Option<(i64, i16)>,
}

/// The coordinator; see the module docs.
#[derive(Debug)]
pub(crate) struct TransactionCoordinator {
    /// Partition 0 of `__transaction_state`.
    log: Arc<Partition>,
    txns: DashMap<String, Slot>,
    /// Next free producer id and the end of the durable block it comes from.
    ids: tokio::sync::Mutex<(i64, i64)>,
    /// Embedded producers not in use.
    idle_embedded: Mutex<Vec<Embedded>>,
    embedded_count: Mutex<usize>,
    /// Kafka's `transactional.id.expiration.ms`.
    id_expiration_ms: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn refused(transactional_id: &str, refusal: TxnRefusal) -> Error {
    Error::TransactionRefused {
        transactional_id: transactional_id.to_string(),
        refusal,
    }
}

impl TransactionCoordinator {
    /// Folds `log` (partition 0 of `__transaction_state`) into memory. Decided but incomplete
    /// transactions are finished by [`TransactionCoordinator::recover`].
    pub(crate) fn load(log: Arc<Partition>, id_expiration: Duration) -> Result<Self> {
        let mut txns: HashMap<String, TxnMetadata> = HashMap::new();
        let mut id_end = 0;
        log.log().for_each_record(0, |r| {
            let Some(key) = r.key else { return };
            if key.as_ref() == ID_BLOCK_KEY {
                if let Some(block) = r
                    .value
                    .as_ref()
                    .and_then(|v| serde_json::from_slice::<IdBlock>(v).ok())
                {
                    id_end = id_end.max(block.end);
                }
                return;
            }
            let Ok(id) = String::from_utf8(key.to_vec()) else {
                return;
            };
            match r
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice::<TxnMetadata>(v).ok())
            {
                Some(meta) => {
                    txns.insert(id, meta);
                }
                None => {
                    txns.remove(&id);
                }
            }
        })?;
        let mut idle = Vec::new();
        let mut embedded_count = 0;
        for id in txns.keys().filter(|id| id.starts_with(EMBEDDED_PREFIX)) {
            embedded_count += 1;
            idle.push(Embedded {
                transactional_id: id.clone(),
                producer: None,
            });
        }
        Ok(Self {
            log,
            txns: txns
                .into_iter()
                .map(|(id, meta)| (id, Arc::new(tokio::sync::Mutex::new(Some(meta)))))
                .collect(),
            // The rest of the last block may have been handed out before a crash: skip it.
            ids: tokio::sync::Mutex::new((id_end, id_end)),
            idle_embedded: Mutex::new(idle),
            embedded_count: Mutex::new(embedded_count),
            id_expiration_ms: i64::try_from(id_expiration.as_millis()).unwrap_or(i64::MAX),
        })
    }

    fn slot(&self, transactional_id: &str) -> Slot {
        self.txns
            .entry(transactional_id.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
            .clone()
    }

    /// Locks `id`'s state once the request's producer id and epoch are its current ones.
    async fn lock_current(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<OwnedMappedMutexGuard<Option<TxnMetadata>, TxnMetadata>> {
        let guard = self.slot(id).lock_owned().await;
        Self::check_producer(id, guard.as_ref(), producer_id, epoch)?;
        Ok(OwnedMutexGuard::try_map(guard, Option::as_mut)
            .unwrap_or_else(|_| unreachable!("checked above")))
    }

    /// A new producer id, from the current block or a new durable one.
    async fn allocate_producer_id(&self) -> Result<i64> {
        let mut ids = self.ids.lock().await;
        if ids.0 >= ids.1 {
            let end = ids.1 + ID_BLOCK_SIZE;
            let value = serde_json::to_vec(&IdBlock { end }).unwrap_or_default();
            self.append_state(ID_BLOCK_KEY, Some(&value)).await?;
            ids.1 = end;
        }
        ids.0 += 1;
        Ok(ids.0 - 1)
    }

    async fn append_state(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let mut builder = BatchBuilder::with_capacity(64 + value.map_or(0, <[u8]>::len));
        builder.push(now_ms(), Some(key), value, &[]);
        self.log.append(builder.finish()).await?;
        Ok(())
    }

    async fn persist(&self, transactional_id: &str, meta: &mut TxnMetadata) -> Result<()> {
        meta.updated_ms = now_ms();
        let value = serde_json::to_vec(meta).unwrap_or_default();
        self.append_state(transactional_id.as_bytes(), Some(&value))
            .await
    }

    /// Kafka's InitProducerId: a fresh producer id for an idempotent producer, or for a
    /// transactional id its producer id with the epoch bumped (fencing older instances),
    /// after aborting a transaction it left open.
    pub(crate) async fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        timeout_ms: i32,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<(i64, i16)> {
        let Some(id) = transactional_id else {
            return Ok((self.allocate_producer_id().await?, 0));
        };
        if !(1..=MAX_TRANSACTION_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(refused(id, TxnRefusal::InvalidTimeout));
        }
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let now = now_ms();
        let mut meta = match guard.take() {
            None => TxnMetadata {
                producer_id: self.allocate_producer_id().await?,
                epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                started_ms: now,
                updated_ms: now,
            },
            Some(mut meta) => {
                match meta.state {
                    TxnState::PrepareCommit | TxnState::PrepareAbort => {
                        let commit = meta.state == TxnState::PrepareCommit;
                        let done = self.complete(id, &mut meta, commit, topics, groups).await;
                        if let Err(e) = done {
                            *guard = Some(meta);
                            return Err(e);
                        }
                    }
                    TxnState::Ongoing => {
                        // The old instance's transaction: aborted under a bumped epoch so
                        // its late writes are refused.
                        meta.epoch = meta.epoch.saturating_add(1);
                        let done = self
                            .decide_and_complete(id, &mut meta, false, topics, groups)
                            .await;
                        if let Err(e) = done {
                            *guard = Some(meta);
                            return Err(e);
                        }
                    }
                    _ => {}
                }
                meta
            }
        };
        if meta.epoch >= i16::MAX - 1 {
            meta.producer_id = self.allocate_producer_id().await?;
            meta.epoch = -1;
        }
        meta.epoch += 1;
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        let persisted = self.persist(id, &mut meta).await;
        let result = (meta.producer_id, meta.epoch);
        *guard = Some(meta);
        persisted.map(|()| result)
    }

    /// Checks that `producer_id` at `epoch` owns `transactional_id`.
    fn check_producer(
        id: &str,
        meta: Option<&TxnMetadata>,
        producer_id: i64,
        epoch: i16,
    ) -> Result<()> {
        let Some(meta) = meta else {
            return Err(refused(id, TxnRefusal::UnknownProducerId));
        };
        if meta.producer_id != producer_id {
            return Err(refused(id, TxnRefusal::UnknownProducerId));
        }
        if epoch != meta.epoch {
            return Err(refused(id, TxnRefusal::Fenced));
        }
        Ok(())
    }

    /// Kafka's AddPartitionsToTxn: the transaction will write to `partitions` (durable before
    /// any data is, so a crash cannot hide them from recovery).
    pub(crate) async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<()> {
        let mut meta = self.lock_current(id, producer_id, epoch).await?;
        if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(refused(id, TxnRefusal::Concurrent));
        }
        let new = partitions
            .iter()
            .any(|tp| !meta.partitions.contains(&(tp.topic.clone(), tp.partition)));
        if meta.state == TxnState::Ongoing && !new {
            return Ok(());
        }
        let mut updated = meta.clone();
        if updated.state != TxnState::Ongoing {
            updated.state = TxnState::Ongoing;
            updated.started_ms = now_ms();
            updated.partitions.clear();
        }
        updated
            .partitions
            .extend(partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)));
        self.persist(id, &mut updated).await?;
        *meta = updated;
        Ok(())
    }

    /// Checks that a TxnOffsetCommit belongs to an ongoing transaction that added the offsets
    /// partition (Kafka's AddOffsetsToTxn comes first).
    pub(crate) async fn check_offset_commit(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        offsets: &TopicPartition,
    ) -> Result<()> {
        let meta = self.lock_current(id, producer_id, epoch).await?;
        if meta.state != TxnState::Ongoing
            || !meta
                .partitions
                .contains(&(offsets.topic.clone(), offsets.partition))
        {
            return Err(refused(id, TxnRefusal::InvalidState));
        }
        Ok(())
    }

    /// Kafka's EndTxn: commits or aborts the ongoing transaction of `id`.
    pub(crate) async fn end_transaction(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<()> {
        let mut meta = self.lock_current(id, producer_id, epoch).await?;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => {
                self.decide_and_complete(id, &mut meta, commit, topics, groups)
                    .await
            }
            // A retry of an end that succeeded.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => {
                Err(refused(id, TxnRefusal::Concurrent))
            }
            _ => Err(refused(id, TxnRefusal::InvalidState)),
        }
    }

    /// Makes the decision durable, after the data it covers, then completes it.
    async fn decide_and_complete(
        &self,
        id: &str,
        meta: &mut TxnMetadata,
        commit: bool,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<()> {
        if commit {
            // A commit must not outlive its data: a crash could otherwise lose data under
            // a flush interval while the marker says committed.
            let flushes = meta
                .partitions()
                .filter_map(|tp| topics.partition(&tp).ok())
                .map(|p| {
                    let log = p.log().clone();
                    tokio::task::spawn_blocking(move || log.flush())
                });
            for flushed in futures::future::join_all(flushes).await {
                flushed.map_err(|_| Error::Closed)??;
            }
        }
        crash_point("txn-before-decision");
        let mut decided = meta.clone();
        decided.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.persist(id, &mut decided).await?;
        crash_point("txn-after-decision");
        *meta = decided;
        self.complete(id, meta, commit, topics, groups).await
    }

    /// Writes the markers of a decided transaction wherever it is still open, then records it
    /// complete.
    async fn complete(
        &self,
        id: &str,
        meta: &mut TxnMetadata,
        commit: bool,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<()> {
        let (producer_id, epoch) = (meta.producer_id, meta.epoch);
        let offsets = groups.offsets_partition();
        let mut markers = Vec::new();
        let mut offsets_marker = false;
        for tp in meta.partitions() {
            let partition = match topics.partition(&tp) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(transactional_id = id, partition = %tp, error = %e, "partition of a transaction is gone; no marker written there");
                    continue;
                }
            };
            // A partition the transaction never wrote to has nothing to end.
            if !partition
                .log()
                .open_transactions()
                .iter()
                .any(|(pid, _, _)| *pid == producer_id)
            {
                continue;
            }
            if tp == offsets {
                offsets_marker = true;
            } else {
                markers.push(partition.append(EncodedBatch::marker(
                    producer_id,
                    epoch,
                    commit,
                    now_ms(),
                )));
            }
        }
        futures::future::try_join_all(markers).await?;
        crash_point("txn-after-partition-markers");
        if offsets_marker {
            groups.write_marker(producer_id, epoch, commit).await?;
        }
        crash_point("txn-after-markers");
        let mut completed = meta.clone();
        completed.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        completed.partitions.clear();
        self.persist(id, &mut completed).await?;
        *meta = completed;
        tracing::debug!(
            transactional_id = id,
            producer_id,
            epoch,
            commit,
            "transaction completed"
        );
        Ok(())
    }

    /// Aborts transactions open past their timeout (bumping the epoch, which fences the
    /// producer) and finishes decided ones a failure left incomplete.
    pub(crate) async fn expire(&self, topics: &impl TopicLookup, groups: &GroupCoordinator) {
        let now = now_ms();
        let slots: Vec<(String, Slot)> = self
            .txns
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (id, slot) in slots {
            let Ok(mut guard) = slot.try_lock() else {
                continue;
            };
            let Some(meta) = guard.as_mut() else { continue };
            let outcome = match meta.state {
                TxnState::Ongoing if now - meta.started_ms > i64::from(meta.timeout_ms) => {
                    tracing::warn!(transactional_id = %id, producer_id = meta.producer_id, timeout_ms = meta.timeout_ms, "aborting a transaction open past its timeout");
                    meta.epoch = meta.epoch.saturating_add(1);
                    self.decide_and_complete(&id, meta, false, topics, groups)
                        .await
                }
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    let commit = meta.state == TxnState::PrepareCommit;
                    self.complete(&id, meta, commit, topics, groups).await
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    if !id.starts_with(EMBEDDED_PREFIX)
                        && now.saturating_sub(meta.updated_ms) > self.id_expiration_ms =>
                {
                    // Forgotten durably first: the next InitProducerId with it starts afresh.
                    match self.append_state(id.as_bytes(), None).await {
                        Ok(()) => {
                            tracing::info!(transactional_id = %id, producer_id = meta.producer_id, "transactional id expired");
                            *guard = None;
                            drop(guard);
                            // Unless a request is waiting for this slot, the entry goes too.
                            self.txns
                                .remove_if(&id, |_, held| Arc::strong_count(held) <= 2);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(()),
            };
            if let Err(e) = outcome {
                tracing::warn!(transactional_id = %id, error = %e, "could not end or expire a transaction; retrying");
            }
        }
    }

    /// After a crash: finishes every decided transaction, aborts the embedded producers'
    /// undecided ones, and aborts every transaction open in a partition that no ongoing
    /// transactional id accounts for (its partitions were never recorded).
    pub(crate) async fn recover(
        &self,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<()> {
        let mut ongoing: HashMap<i64, i16> = HashMap::new();
        let slots: Vec<(String, Slot)> = self
            .txns
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (id, slot) in slots {
            let mut guard = slot.lock().await;
            let Some(meta) = guard.as_mut() else { continue };
            match meta.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => {
                    let commit = meta.state == TxnState::PrepareCommit;
                    self.complete(&id, meta, commit, topics, groups).await?;
                    tracing::warn!(transactional_id = %id, commit, "completed a transaction decided before a crash");
                }
                TxnState::Ongoing if id.starts_with(EMBEDDED_PREFIX) => {
                    self.decide_and_complete(&id, meta, false, topics, groups)
                        .await?;
                }
                TxnState::Ongoing => {
                    ongoing.insert(meta.producer_id, meta.epoch);
                }
                _ => {}
            }
        }
        let offsets = groups.offsets_partition();
        for partition in topics.all_partitions() {
            let log = partition.log();
            let tp = TopicPartition::new(log.topic().to_string(), log.partition());
            for (producer_id, epoch, first_offset) in log.open_transactions() {
                if ongoing.get(&producer_id) == Some(&epoch) {
                    continue;
                }
                tracing::warn!(partition = %tp, producer_id, first_offset, "aborting a transaction a crash left open");
                if tp == offsets {
                    groups.write_marker(producer_id, epoch, false).await?;
                } else {
                    partition
                        .append(EncodedBatch::marker(producer_id, epoch, false, now_ms()))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Takes an idle embedded producer, or makes a new one.
    async fn checkout_embedded(
        &self,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<Embedded> {
        let idle = lock(&self.idle_embedded).pop();
        let mut embedded = match idle {
            Some(e) => e,
            None => {
                let mut count = lock(&self.embedded_count);
                *count += 1;
                Embedded {
                    transactional_id: format!("{EMBEDDED_PREFIX}{}", *count - 1),
                    producer: None,
                }
            }
        };
        if embedded.producer.is_none() {
            let producer = self
                .init_producer_id(
                    Some(&embedded.transactional_id),
                    EMBEDDED_TIMEOUT_MS,
                    topics,
                    groups,
                )
                .await?;
            embedded.producer = Some(producer);
        }
        Ok(embedded)
    }

    /// Writes `txn` once, into its partitions, as a transaction of an embedded producer, and
    /// commits it (see `Broker::commit_transaction`).
    pub(crate) async fn commit_embedded(
        &self,
        txn: Transaction,
        topics: &impl TopicLookup,
        groups: &GroupCoordinator,
    ) -> Result<TransactionInfo> {
        let records = txn.records;
        let (writes, offsets) = txn.into_parts();
        // Every partition is found before anything is written.
        let mut targets = Vec::with_capacity(writes.len());
        for (tp, batches) in writes {
            targets.push((topics.partition(&tp)?, tp, batches));
        }
        let embedded = self.checkout_embedded(topics, groups).await?;
        let id = embedded.transactional_id.clone();
        let (producer_id, epoch) = embedded
            .producer
            .unwrap_or_else(|| unreachable!("initialised"));
        let result = async {
            let mut partitions: Vec<TopicPartition> =
                targets.iter().map(|(_, tp, _)| tp.clone()).collect();
            if offsets.is_some() {
                partitions.push(groups.offsets_partition());
            }
            self.begin_embedded(&id, producer_id, epoch, &partitions)
                .await?;
            let mut appends = Vec::new();
            for (partition, _, batches) in targets {
                let mut sequence = match partition.log().producer_sequence(producer_id) {
                    Some((e, next)) if e == epoch => next,
                    _ => 0,
                };
                for mut batch in batches {
                    let count = batch.record_count() as i32;
                    batch.set_producer(producer_id, epoch, sequence, true);
                    sequence = sequence.wrapping_add(count) & i32::MAX;
                    appends.push(partition.append(batch));
                }
            }
            futures::future::try_join_all(appends).await?;
            if let Some((group, offsets)) = offsets {
                let offsets: Vec<_> = offsets
                    .into_iter()
                    .map(|(tp, o)| (tp, o, crate::groups::CommitDetails::default()))
                    .collect();
                groups
                    .write_transactional(producer_id, epoch, &group, &offsets)
                    .await?;
            }
            self.end_transaction(&id, producer_id, epoch, true, topics, groups)
                .await
        }
        .await;
        match &result {
            Ok(()) => lock(&self.idle_embedded).push(embedded),
            Err(e) => {
                tracing::warn!(transactional_id = %id, error = %e, "embedded transaction failed; aborting it");
                // Not reused: its next use re-initialises it, which aborts whatever is open.
                let _ = self
                    .end_transaction(&id, producer_id, epoch, false, topics, groups)
                    .await;
                lock(&self.idle_embedded).push(Embedded {
                    transactional_id: id,
                    producer: None,
                });
            }
        }
        result.map(|()| TransactionInfo {
            producer_id,
            records,
        })
    }

    /// An embedded transaction's partitions, kept in memory only: if the process dies before
    /// the decision, recovery aborts whatever it wrote (open in a partition, not ongoing here).
    async fn begin_embedded(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<()> {
        let mut meta = self.lock_current(id, producer_id, epoch).await?;
        meta.state = TxnState::Ongoing;
        meta.started_ms = now_ms();
        meta.partitions = partitions
            .iter()
            .map(|tp| (tp.topic.clone(), tp.partition))
            .collect();
        Ok(())
    }
}
