//! Transactions as Kafka's: one design for network producers and embedded exactly-once.
//!
//! A producer writes transactional batches (stamped with its producer id and epoch) straight
//! into the partitions; each partition tracks the transactions open in it, and readers in
//! `read_committed` stop at the first one (the last stable offset). The
//! [`TransactionCoordinator`](coordinator::TransactionCoordinator) keeps each transactional
//! id's state in the compacted internal topic `__transaction_state`; ending a transaction
//! writes `PrepareCommit`/`PrepareAbort` there (the decision, fsynced after the data it
//! covers), then a commit or abort marker (a control batch) into every partition the
//! transaction touched, then `CompleteCommit`/`CompleteAbort`. Offsets committed in a
//! transaction are transactional batches in `__consumer_offsets`, applied at its marker.
//!
//! After a crash the coordinator finishes every decided transaction (writing the markers a
//! partition still lacks) and aborts every transaction open in a partition that nothing
//! decided, so each is committed in all its partitions and offsets, or in none. The design,
//! states and recovery at each step: `docs/transactions.md`.
//!
//! [`Broker::commit_transaction`](crate::Broker::commit_transaction) is the embedded way in:
//! it buffers nothing twice, writing a [`Transaction`]'s batches once, into their partitions,
//! under a producer id of its own (`coordinator.rs`).

pub(crate) mod coordinator;

use std::collections::BTreeMap;

use crate::batch::{BatchBuilder, EncodedBatch};
use crate::record::{Header, TopicPartition};

/// The steps of ending a transaction where a crash test can stop the process (see
/// [`crash_point`]), in order.
pub const CRASH_POINTS: [&str; 4] = [
    "txn-before-decision",
    "txn-after-decision",
    "txn-after-partition-markers",
    "txn-after-markers",
];

/// For crash tests: when the environment variable `LOGBROOK_CRASH_AT` names `step`, the process
/// aborts there, as `kill -9` would stop it (the page cache keeps what was written).
pub(crate) fn crash_point(step: &'static str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("LOGBROOK_CRASH_AT").ok())
        .as_deref()
        == Some(step)
    {
        eprintln!("LOGBROOK_CRASH_AT={step}: aborting the process");
        std::process::abort();
    }
}

/// The internal topic holding each transactional id's state.
pub const TRANSACTIONS_TOPIC: &str = "__transaction_state";
/// Batches of a transaction are cut at about this size.
const BATCH_BYTES: usize = 1 << 20;

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
    /// The producer id the transaction was written under.
    pub producer_id: i64,
    /// Records written.
    pub records: usize,
}

/// Why the coordinator refuses a transactional request; each is one of Kafka's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnRefusal {
    /// The producer id does not belong to the transactional id (INVALID_PRODUCER_ID_MAPPING).
    UnknownProducerId,
    /// A newer producer took over the transactional id (PRODUCER_FENCED).
    Fenced,
    /// The request does not fit the transaction's state (INVALID_TXN_STATE).
    InvalidState,
    /// The previous transaction is still being completed (CONCURRENT_TRANSACTIONS).
    Concurrent,
    /// The transaction timeout is out of bounds (INVALID_TRANSACTION_TIMEOUT).
    InvalidTimeout,
}

impl std::fmt::Display for TxnRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UnknownProducerId => "the producer id does not belong to this transactional id",
            Self::Fenced => "a newer producer with the same transactional id fenced this one",
            Self::InvalidState => "the request does not fit the transaction's state",
            Self::Concurrent => "the previous transaction is still being completed",
            Self::InvalidTimeout => "the transaction timeout is out of bounds",
        })
    }
}

/// A transaction's batches per partition, and its group's offset commit if it has one.
pub(crate) type TransactionParts = (
    Vec<(TopicPartition, Vec<EncodedBatch>)>,
    Option<(String, Vec<(TopicPartition, u64)>)>,
);

impl Transaction {
    /// Its batches per partition (the open one sealed) and its offset commit.
    pub(crate) fn into_parts(self) -> TransactionParts {
        let writes = self
            .writes
            .into_iter()
            .map(|(tp, mut w)| {
                w.sealed.extend(w.open.take().map(BatchBuilder::finish));
                (tp, w.sealed)
            })
            .collect();
        (writes, self.offsets)
    }
}
