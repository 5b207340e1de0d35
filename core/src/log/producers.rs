//! What a partition knows about the producers writing to it, as Kafka's `ProducerStateManager`:
//! each idempotent producer's epoch and last batches (to acknowledge a retried batch with its
//! original offsets instead of appending it twice, and to refuse gaps and fenced epochs), the
//! transactions still open here (their first offsets bound the last stable offset), and the
//! aborted transactions a `read_committed` reader must skip.
//!
//! The table changes only on the partition's append thread. It is rebuilt on open from a
//! snapshot (written when the log is flushed to its end, as at close) plus the batches after it,
//! or from the whole log when there is no usable snapshot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::batch::{self, BatchHeader};

/// Batches per producer remembered for duplicate detection (Kafka's client keeps at most five
/// in flight, so a retry is always one of the last five).
const REMEMBERED_BATCHES: usize = 5;
/// The snapshot file in a partition's directory.
pub(super) const SNAPSHOT_FILE: &str = "producer-state.json";
/// A producer not heard of for this long is forgotten, unless it has a transaction open here
/// (Kafka's `producer.id.expiration.ms` default: one day).
pub(crate) const PRODUCER_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// A transaction that was aborted in this partition: readers in `read_committed` skip the
/// batches of `producer_id` from `first_offset` up to the abort marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTransaction {
    /// The producer whose batches are skipped.
    pub producer_id: i64,
    /// The transaction's first offset in this partition.
    pub first_offset: u64,
    /// The offset of its abort marker.
    pub last_offset: u64,
}

/// Why a producer's batch is refused; each maps to one of Kafka's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerRefusal {
    /// The batch's sequence does not follow the last one (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrderSequence {
        /// The sequence the partition expected.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
    /// A newer epoch of the producer exists: this one is a zombie (INVALID_PRODUCER_EPOCH).
    FencedEpoch {
        /// The partition's epoch for the producer.
        current: i16,
        /// The batch's epoch.
        got: i16,
    },
    /// A plain batch while the producer has a transaction open here, or a transactional
    /// batch of a producer that wrote plain ones in this epoch (INVALID_TXN_STATE).
    TransactionState,
}

impl std::fmt::Display for ProducerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfOrderSequence { expected, got } => {
                write!(f, "out of order sequence: expected {expected}, got {got}")
            }
            Self::FencedEpoch { current, got } => {
                write!(f, "producer epoch {got} is fenced by epoch {current}")
            }
            Self::TransactionState => {
                write!(f, "batch does not match the producer's transaction state")
            }
        }
    }
}

/// What an append of a producer's batch should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Append it.
    Append,
    /// A retry of a batch already stored at these offsets: acknowledge, do not append.
    Duplicate {
        base_offset: u64,
        last_offset: u64,
        max_timestamp: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StoredBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: u64,
    last_offset: u64,
    max_timestamp: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<StoredBatch>,
    /// First offset of its transaction open in this partition.
    open_transaction: Option<u64>,
    /// When it last wrote here (ms, wall clock), for expiration.
    last_write_ms: i64,
}

/// The producers of one partition; see the module docs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions by first offset.
    open: BTreeMap<u64, i64>,
    /// Aborted transactions in marker order.
    aborted: Vec<AbortedTransaction>,
    /// The offset the table is up to date with (snapshots only).
    #[serde(default)]
    end_offset: u64,
}

impl ProducerTable {
    /// Checks a batch before it is appended. Plain batches (no producer id) always pass.
    pub(crate) fn admit(&self, header: &BatchHeader) -> Result<Admission, ProducerRefusal> {
        if header.producer_id < 0 {
            return Ok(Admission::Append);
        }
        let entry = self.producers.get(&header.producer_id);
        if header.is_control() {
            return match entry {
                Some(e) if header.producer_epoch < e.epoch => Err(ProducerRefusal::FencedEpoch {
                    current: e.epoch,
                    got: header.producer_epoch,
                }),
                _ => Ok(Admission::Append),
            };
        }
        let Some(entry) = entry else {
            // A producer unknown here starts at sequence 0 (or sends none: offsets written
            // inside a transaction carry no sequence).
            return if header.base_sequence <= 0 {
                Ok(Admission::Append)
            } else {
                Err(ProducerRefusal::OutOfOrderSequence {
                    expected: 0,
                    got: header.base_sequence,
                })
            };
        };
        if header.producer_epoch < entry.epoch {
            return Err(ProducerRefusal::FencedEpoch {
                current: entry.epoch,
                got: header.producer_epoch,
            });
        }
        if entry.open_transaction.is_some() && !header.is_transactional() {
            return Err(ProducerRefusal::TransactionState);
        }
        if header.base_sequence < 0 {
            return Ok(Admission::Append);
        }
        if header.producer_epoch > entry.epoch {
            // A new epoch starts its sequences over.
            return if header.base_sequence == 0 {
                Ok(Admission::Append)
            } else {
                Err(ProducerRefusal::OutOfOrderSequence {
                    expected: 0,
                    got: header.base_sequence,
                })
            };
        }
        if let Some(stored) = entry.batches.iter().find(|b| {
            b.first_sequence == header.base_sequence && b.last_sequence == header.last_sequence()
        }) {
            return Ok(Admission::Duplicate {
                base_offset: stored.base_offset,
                last_offset: stored.last_offset,
                max_timestamp: stored.max_timestamp,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if header.base_sequence != expected {
            return Err(ProducerRefusal::OutOfOrderSequence {
                expected,
                got: header.base_sequence,
            });
        }
        Ok(Admission::Append)
    }

    /// Takes an appended batch (or, when rebuilding, a stored one) into the table. `batch` is
    /// the batch's bytes, read only for a control batch's marker type.
    pub(crate) fn record(&mut self, header: &BatchHeader, batch: &[u8], now_ms: i64) {
        self.end_offset = self.end_offset.max(header.next_offset());
        if header.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch > entry.epoch {
            entry.batches.clear();
        }
        entry.epoch = entry.epoch.max(header.producer_epoch);
        entry.last_write_ms = now_ms;
        if header.is_control() {
            if let Some(first_offset) = entry.open_transaction.take() {
                self.open.remove(&first_offset);
                if batch::marker_commits(header, batch) == Some(false) {
                    self.aborted.push(AbortedTransaction {
                        producer_id: header.producer_id,
                        first_offset,
                        last_offset: header.base_offset,
                    });
                }
            }
            return;
        }
        if header.is_transactional() && entry.open_transaction.is_none() {
            entry.open_transaction = Some(header.base_offset);
            self.open.insert(header.base_offset, header.producer_id);
        }
        if header.base_sequence >= 0 {
            if entry.batches.len() == REMEMBERED_BATCHES {
                entry.batches.pop_front();
            }
            entry.batches.push_back(StoredBatch {
                first_sequence: header.base_sequence,
                last_sequence: header.last_sequence(),
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                max_timestamp: header.max_timestamp,
            });
        }
    }

    /// The first offset of the oldest transaction still open here, if any.
    pub(crate) fn first_open_offset(&self) -> Option<u64> {
        self.open.keys().next().copied()
    }

    /// Producers with a transaction open here, with its first offset.
    pub(crate) fn open_transactions(&self) -> Vec<(i64, i16, u64)> {
        self.open
            .iter()
            .map(|(&first, &pid)| {
                let epoch = self.producers.get(&pid).map_or(0, |e| e.epoch);
                (pid, epoch, first)
            })
            .collect()
    }

    /// The next sequence `producer_id` should use here, with its epoch.
    pub(crate) fn next_sequence(&self, producer_id: i64) -> Option<(i16, i32)> {
        let entry = self.producers.get(&producer_id)?;
        let next = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        Some((entry.epoch, next))
    }

    /// Aborted transactions that overlap offsets `from..to`, for a `read_committed` reader.
    pub(crate) fn aborted_between(&self, from: u64, to: u64) -> Vec<AbortedTransaction> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets what lies below the log start, and producers idle for longer than the
    /// expiration with nothing open.
    pub(crate) fn trim(&mut self, log_start: u64, now_ms: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start);
        self.producers.retain(|_, e| {
            e.open_transaction.is_some() || now_ms - e.last_write_ms < PRODUCER_EXPIRATION_MS
        });
    }

    /// The offset the table is up to date with.
    pub(crate) fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// Writes the table as a snapshot for `end_offset`: write to a temp file, fsync, rename.
    pub(crate) fn write_snapshot(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &file, &bytes)?;
        file.sync_data()?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))
    }

    /// The snapshot in `dir`, if there is one that parses.
    pub(crate) fn read_snapshot(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(SNAPSHOT_FILE)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(table) => Some(table),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "unreadable producer state snapshot; rebuilding it from the log");
                None
            }
        }
    }
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, EncodedBatch};

    fn batch(pid: i64, epoch: i16, seq: i32, records: usize, txn: bool, at: u64) -> EncodedBatch {
        let mut b = BatchBuilder::with_capacity(256);
        for i in 0..records {
            b.push(i as i64, None, Some(b"v"), &[]);
        }
        let mut batch = b.finish();
        batch.set_producer(pid, epoch, seq, txn);
        batch.set_base_offset(at);
        batch
    }

    fn append(table: &mut ProducerTable, b: &EncodedBatch) -> Result<Admission, ProducerRefusal> {
        let admission = table.admit(&b.header())?;
        if admission == Admission::Append {
            table.record(&b.header(), b.as_bytes(), 0);
        }
        Ok(admission)
    }

    #[test]
    fn retries_are_recognised_gaps_and_old_epochs_refused() {
        let mut t = ProducerTable::default();
        assert_eq!(
            append(&mut t, &batch(1, 0, 0, 3, false, 0)),
            Ok(Admission::Append)
        );
        assert_eq!(
            append(&mut t, &batch(1, 0, 3, 2, false, 3)),
            Ok(Admission::Append)
        );
        // The first batch again: acknowledged with its offsets.
        assert_eq!(
            append(&mut t, &batch(1, 0, 0, 3, false, 9)),
            Ok(Admission::Duplicate {
                base_offset: 0,
                last_offset: 2,
                max_timestamp: 2
            })
        );
        assert_eq!(
            append(&mut t, &batch(1, 0, 7, 1, false, 5)),
            Err(ProducerRefusal::OutOfOrderSequence {
                expected: 5,
                got: 7
            })
        );
        assert_eq!(
            append(&mut t, &batch(2, 0, 4, 1, false, 5)),
            Err(ProducerRefusal::OutOfOrderSequence {
                expected: 0,
                got: 4
            })
        );
        assert_eq!(
            append(&mut t, &batch(1, 1, 0, 1, false, 5)),
            Ok(Admission::Append)
        );
        assert_eq!(
            append(&mut t, &batch(1, 0, 5, 1, false, 6)),
            Err(ProducerRefusal::FencedEpoch { current: 1, got: 0 })
        );
    }

    #[test]
    fn open_transactions_hold_the_stable_offset_and_aborts_are_listed() {
        let mut t = ProducerTable::default();
        append(&mut t, &batch(5, 0, 0, 2, true, 10)).unwrap();
        append(&mut t, &batch(6, 0, 0, 1, true, 12)).unwrap();
        assert_eq!(t.first_open_offset(), Some(10));
        assert_eq!(
            append(&mut t, &batch(5, 0, 2, 1, false, 13)),
            Err(ProducerRefusal::TransactionState)
        );
        let mut abort = EncodedBatch::marker(5, 0, false, 0);
        abort.set_base_offset(13);
        append(&mut t, &abort).unwrap();
        assert_eq!(t.first_open_offset(), Some(12));
        let mut commit = EncodedBatch::marker(6, 0, true, 0);
        commit.set_base_offset(14);
        append(&mut t, &commit).unwrap();
        assert_eq!(t.first_open_offset(), None);
        let aborted = vec![AbortedTransaction {
            producer_id: 5,
            first_offset: 10,
            last_offset: 13,
        }];
        assert_eq!(t.aborted_between(0, 11), aborted);
        assert_eq!(t.aborted_between(14, 20), vec![]);
        // A marker of an older epoch is a zombie's.
        let old = EncodedBatch::marker(6, -1, true, 0);
        assert!(t.admit(&old.header()).is_err());
    }
}
