//! A partition's log: ordered segments, the last one active, with recovery, reads and flushing.
//!
//! Concurrency: one writer (the partition's append thread) calls [`Log::append`]; readers call
//! [`Log::read`] from any thread. Both take the state lock only to find positions; data is read
//! outside it through the segment's shared file handle, which stays valid even if the segment is
//! deleted or replaced meanwhile. [`Log::scan`] walks the batches from an offset to the end,
//! reading chunk after chunk; [`Log::for_each_record`] decodes them. Files: `fetch` (reads,
//! seeks by time), `scan`, `recovery` (open), `retention`, `compaction`.

mod compaction;
mod fetch;
mod producers;
mod recovery;
mod retention;
mod scan;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;

use crate::batch::{self, EncodedBatch};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::segment::{LogSegment, ScanStop, segment_path};
use crate::storage::{Storage, StorageFile, sync_dir};

pub use compaction::CompactionOutcome;
pub use fetch::FetchedChunk;
pub(crate) use producers::ProducerTable;
pub use producers::{AbortedTransaction, ProducerRefusal};
pub use retention::RetentionOutcome;
pub use scan::{LogScan, ScannedBatch};

const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Holds the log start offset once records were deleted below a segment's base (DeleteRecords).
const LOG_START_OFFSET_FILE: &str = "log-start-offset";

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
    /// The batch's max timestamp as stored (the append time for log-append-time topics).
    pub max_timestamp: i64,
}

/// The visible end of the log: consumers never read at or past `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VisibleEnd {
    offset: u64,
    segment_base: u64,
    position: u64,
}

/// Counters describing a partition on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStats {
    /// First offset still in the log.
    pub log_start_offset: u64,
    /// The offset the next record will get (visible to consumers).
    pub log_end_offset: u64,
    /// Bytes of whole batches across all segments.
    pub size_bytes: u64,
    /// Number of segments, the active one included.
    pub segments: usize,
}

/// One partition's segmented log.
#[derive(Debug)]
pub struct Log {
    topic: Arc<str>,
    partition: u32,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    /// Swapped whole when the topic's config is altered; readers take a snapshot.
    config: RwLock<Arc<TopicConfig>>,
    writable: bool,
    state: Mutex<LogState>,
    /// Fsyncs of the active segment so far (each covers one group commit).
    fsyncs: AtomicU64,
    /// Held by background maintenance (cleaner, checkpoints) and by `close`, so a closed log's
    /// files are never touched again, e.g. after its topic is deleted and recreated.
    maintenance: Mutex<bool>,
}

#[derive(Debug)]
struct LogState {
    segments: BTreeMap<u64, LogSegment>,
    high_watermark: VisibleEnd,
    /// Offsets below this were deleted (DeleteRecords), though their segment may still hold
    /// them; 0 when nothing was. The log start is the larger of this and the first segment's base.
    deleted_below: u64,
    /// Every offset below this is known to be on disk (fsynced).
    recovery_point: u64,
    /// The recovery point last written to the checkpoint file.
    checkpointed: u64,
    /// Files of segments sealed since the last flush.
    unflushed: Vec<Arc<dyn StorageFile>>,
    /// A segment file was created or removed since the last flush.
    dir_dirty: bool,
    /// The producers writing here: sequences, open and aborted transactions.
    producers: ProducerTable,
    /// A copy of `producers` as of an offset that was then fsynced, waiting to be written as
    /// the snapshot at the next checkpoint, and when it was taken.
    snapshot: Option<ProducerTable>,
    snapshot_taken: Option<std::time::Instant>,
    /// The end offset of the last snapshot written.
    snapshot_written: Option<u64>,
    /// Set when an fsync failed: what was written may not be on disk, and the page cache may
    /// already have dropped it, so the log takes no more writes until it is reopened (as Kafka
    /// takes a log directory offline).
    failed: Option<String>,
}

impl VisibleEnd {
    /// The byte position in `segment` that readers may not pass, or `None` if the whole segment
    /// lies past the visible end.
    fn limit_in(&self, segment: &LogSegment) -> Option<u64> {
        match segment.base_offset.cmp(&self.segment_base) {
            std::cmp::Ordering::Less => Some(segment.size),
            std::cmp::Ordering::Equal => Some(self.position),
            std::cmp::Ordering::Greater => None,
        }
    }
}

impl LogState {
    fn active(&self) -> &LogSegment {
        self.segments
            .values()
            .next_back()
            .unwrap_or_else(|| unreachable!("a log has a segment"))
    }
    fn active_mut(&mut self) -> &mut LogSegment {
        self.segments
            .values_mut()
            .next_back()
            .unwrap_or_else(|| unreachable!("a log has a segment"))
    }
    /// First offset still in the log.
    fn log_start(&self) -> u64 {
        let first = self.segments.values().next().map_or(0, |s| s.base_offset);
        first.max(self.deleted_below)
    }
    fn end(&self) -> VisibleEnd {
        let active = self.active();
        VisibleEnd {
            offset: active.next_offset,
            segment_base: active.base_offset,
            position: active.size,
        }
    }
}

impl Log {
    /// Opens (and when `writable`, recovers) the log in `dir`, creating it if empty.
    ///
    /// Segments wholly below the recovery point are trusted (their indexes are checked and rebuilt
    /// if needed). From the recovery point on, every batch's CRC is checked; the log is truncated
    /// after the last whole batch. A bad batch below the recovery point is corruption of data that
    /// was durable, and is returned as [`Error::CorruptBatch`] rather than truncated away.
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        topic: Arc<str>,
        partition: u32,
        config: TopicConfig,
        writable: bool,
    ) -> Result<Self> {
        let log = Self {
            topic,
            partition,
            dir,
            storage,
            config: RwLock::new(Arc::new(config)),
            writable,
            state: Mutex::new(LogState {
                segments: BTreeMap::new(),
                high_watermark: VisibleEnd {
                    offset: 0,
                    segment_base: 0,
                    position: 0,
                },
                deleted_below: 0,
                recovery_point: 0,
                checkpointed: 0,
                failed: None,
                producers: ProducerTable::default(),
                snapshot: None,
                snapshot_taken: None,
                snapshot_written: None,
                unflushed: Vec::new(),
                dir_dirty: false,
            }),
            fsyncs: AtomicU64::new(0),
            maintenance: Mutex::new(false),
        };
        log.load()?;
        Ok(log)
    }

    fn corrupt(&self, base: u64, stop: ScanStop) -> Error {
        Error::CorruptBatch {
            topic: self.topic.to_string(),
            partition: self.partition,
            segment: segment_path(&self.dir, base, "log"),
            position: stop.position,
            reason: stop.reason,
        }
    }

    fn delete_segment_files(&self, base: u64) -> Result<()> {
        for ext in ["log", "index", "timeindex"] {
            let path = segment_path(&self.dir, base, ext);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path)(e)),
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves plain data; keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The topic this log belongs to.
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// The partition number.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The topic configuration the log runs with now (a snapshot: an altered config replaces it).
    pub fn config(&self) -> Arc<TopicConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs with `config` from now on (retention, compaction, segment rolling, flushing,
    /// timestamps); the partition count in it is not the log's business.
    pub(crate) fn set_config(&self, config: TopicConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.lock().log_start()
    }

    /// The offset after the last record visible to consumers.
    pub fn high_watermark(&self) -> u64 {
        self.lock().high_watermark.offset
    }

    /// The last stable offset: the high watermark, or the first offset of the oldest
    /// transaction still open here if that is lower. `read_committed` readers stop at it.
    pub fn last_stable_offset(&self) -> u64 {
        let state = self.lock();
        Self::stable_end(&state)
    }

    fn stable_end(state: &LogState) -> u64 {
        let hw = state.high_watermark.offset;
        state
            .producers
            .first_open_offset()
            .map_or(hw, |first| first.min(hw))
    }

    /// Aborted transactions overlapping offsets `from..to`.
    pub fn aborted_transactions(&self, from: u64, to: u64) -> Vec<AbortedTransaction> {
        self.lock().producers.aborted_between(from, to)
    }

    /// Transactions open in this partition: producer id, its epoch here, first offset.
    pub fn open_transactions(&self) -> Vec<(i64, i16, u64)> {
        self.lock().producers.open_transactions()
    }

    /// The epoch and next sequence of `producer_id` here, if it wrote here.
    pub fn producer_sequence(&self, producer_id: i64) -> Option<(i16, i32)> {
        self.lock().producers.next_sequence(producer_id)
    }

    /// How many times the active segment was fsynced since open (one per group commit under
    /// `flush = always`).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Offsets, size and segment count.
    pub fn stats(&self) -> PartitionStats {
        let state = self.lock();
        PartitionStats {
            log_start_offset: state.log_start(),
            log_end_offset: state.high_watermark.offset,
            size_bytes: state.segments.values().map(|s| s.size).sum(),
            segments: state.segments.len(),
        }
    }

    /// Appends a batch, assigning its offsets. The data is written but neither flushed nor
    /// visible to consumers until [`Log::flush`] and [`Log::publish`] as the flush policy says.
    pub(crate) fn append(&self, batch: &mut EncodedBatch, now_ms: i64) -> Result<AppendInfo> {
        if !self.writable {
            return Err(Error::ReadOnly {
                operation: "append",
            });
        }
        let config = self.config();
        if config.timestamp_type == crate::record::TimestampType::LogAppendTime {
            batch.set_log_append_time(now_ms);
        }
        if config.cleanup_policy == crate::config::CleanupPolicy::Compact {
            self.check_keys(batch)?;
        }
        if batch.len() as u64 > config.max_message_bytes {
            return Err(Error::BatchTooLarge {
                topic: self.topic.to_string(),
                size: batch.len(),
                limit: config.max_message_bytes,
            });
        }
        let mut state = self.lock();
        self.check_not_failed(&state)?;
        let header = batch.header();
        match state.producers.admit(&header) {
            Ok(producers::Admission::Append) => {}
            Ok(producers::Admission::Duplicate {
                base_offset,
                last_offset,
                max_timestamp,
            }) => {
                tracing::debug!(topic = %self.topic, partition = self.partition, producer_id = header.producer_id, base_sequence = header.base_sequence, base_offset, "retried batch acknowledged with its stored offsets");
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    max_timestamp,
                });
            }
            Err(refusal) => {
                return Err(Error::ProducerRefused {
                    topic: self.topic.to_string(),
                    partition: self.partition,
                    producer_id: header.producer_id,
                    refusal,
                });
            }
        }
        let active = state.active();
        let records = u64::from(batch.record_count());
        let roll = active.size > 0
            && (active.size + batch.len() as u64 > config.segment_bytes
                // As Kafka: the incoming batch's timestamp against the segment's first batch,
                // so replaying old data does not roll a segment per batch.
                // A marker carries the wall clock, not event time: it must not roll a segment
                // of replayed old data on every transaction.
                || !header.is_control() && config.segment_ms.is_some_and(|ms| {
                    let incoming = batch.header().max_timestamp;
                    active.first_batch_timestamp.is_some_and(|t| incoming.saturating_sub(t) >= ms as i64)
                })
                || active.next_offset - active.base_offset + records > u64::from(u32::MAX));
        if roll {
            self.roll(&mut state)?;
        }
        let active = state.active_mut();
        let base_offset = active.next_offset;
        batch.set_base_offset(base_offset);
        active.append(batch).map_err(Error::io(&active.path))?;
        state
            .producers
            .record(&batch.header(), batch.as_bytes(), now_ms);
        Ok(AppendInfo {
            base_offset,
            last_offset: base_offset + records - 1,
            max_timestamp: batch.header().max_timestamp,
        })
    }

    fn check_not_failed(&self, state: &LogState) -> Result<()> {
        match &state.failed {
            Some(reason) => Err(Error::LogFailed {
                topic: self.topic.to_string(),
                partition: self.partition,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn check_keys(&self, batch: &EncodedBatch) -> Result<()> {
        let bytes = Bytes::copy_from_slice(batch.as_bytes());
        let mut missing = false;
        batch::for_each_record(&bytes, &batch.header(), |r| missing |= r.key.is_none()).map_err(
            |_| Error::InvalidRecord {
                topic: self.topic.to_string(),
                reason: "batch does not decode",
            },
        )?;
        if missing {
            return Err(Error::InvalidRecord {
                topic: self.topic.to_string(),
                reason: "a compacted topic needs a key on every record",
            });
        }
        Ok(())
    }

    fn roll(&self, state: &mut LogState) -> Result<()> {
        let active = state.active_mut();
        let next = active.next_offset;
        let index_files = active
            .seal(&*self.storage)
            .map_err(Error::io(&active.path))?;
        let log_file = active.file.clone();
        state.unflushed.push(log_file);
        state.unflushed.extend(index_files);
        let preallocate = self.config().preallocate;
        let segment = LogSegment::create(&*self.storage, &self.dir, next, preallocate)
            .map_err(Error::io(segment_path(&self.dir, next, "log")))?;
        state.segments.insert(next, segment);
        state.dir_dirty = true;
        tracing::debug!(topic = %self.topic, partition = self.partition, base_offset = next, "rolled segment");
        Ok(())
    }

    /// Makes everything appended so far visible to consumers; returns the new high watermark.
    pub(crate) fn publish(&self) -> u64 {
        let mut state = self.lock();
        state.high_watermark = state.end();
        state.high_watermark.offset
    }

    /// Fsyncs everything appended so far and advances the recovery point. A failure poisons
    /// the log (see `LogState::failed`).
    pub(crate) fn flush(&self) -> Result<()> {
        self.flush_capturing(false)
    }

    /// [`Log::flush`]; also copies the producer table as of the flushed end for the next
    /// snapshot when `force` or when the last copy is a second old.
    fn flush_capturing(&self, force: bool) -> Result<()> {
        let (sealed, active, end, dir_dirty, captured) = {
            let mut state = self.lock();
            self.check_not_failed(&state)?;
            let due = force
                || state
                    .snapshot_taken
                    .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
            let captured = (due && state.snapshot_written != Some(state.producers.end_offset()))
                .then(|| state.producers.clone());
            let active = state.active();
            let (file, path, end) = (active.file.clone(), active.path.clone(), active.next_offset);
            let dir_dirty = std::mem::take(&mut state.dir_dirty);
            (
                std::mem::take(&mut state.unflushed),
                (file, path),
                end,
                dir_dirty,
                captured,
            )
        };
        let synced = (|| {
            for file in &sealed {
                file.sync_data().map_err(Error::io(&self.dir))?;
            }
            if dir_dirty {
                sync_dir(&self.dir).map_err(Error::io(&self.dir))?;
            }
            active.0.sync_data().map_err(Error::io(&active.1))
        })();
        let mut state = self.lock();
        if let Err(e) = synced {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "fsync failed; the partition takes no more writes until reopened");
            state.failed = Some(e.to_string());
            return Err(e);
        }
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        state.recovery_point = state.recovery_point.max(end);
        if let Some(captured) = captured {
            state.snapshot = Some(captured);
            state.snapshot_taken = Some(std::time::Instant::now());
        }
        Ok(())
    }

    /// Writes the recovery point to disk if it moved. Everything below it is skipped by the
    /// CRC scan on the next open.
    pub(crate) fn checkpoint_recovery_point(&self) -> Result<()> {
        let Some(_maintenance) = self.begin_maintenance() else {
            return Ok(());
        };
        self.write_recovery_point()
    }

    fn write_recovery_point(&self) -> Result<()> {
        self.write_producer_snapshot()?;
        let recovery_point = {
            let state = self.lock();
            if state.recovery_point == state.checkpointed {
                return Ok(());
            }
            state.recovery_point
        };
        let path = self.dir.join(RECOVERY_POINT_FILE);
        let tmp = self.dir.join(format!("{RECOVERY_POINT_FILE}.tmp"));
        let file = self.storage.open(&tmp, true).map_err(Error::io(&tmp))?;
        let text = format!("{recovery_point}\n");
        file.set_len(0).map_err(Error::io(&tmp))?;
        file.write_all_at(text.as_bytes(), 0)
            .map_err(Error::io(&tmp))?;
        file.sync_data().map_err(Error::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(Error::io(&path))?;
        sync_dir(&self.dir).map_err(Error::io(&self.dir))?;
        self.lock().checkpointed = recovery_point;
        Ok(())
    }

    /// Writes the producer table copied at the last flush, so the next open reads the log only
    /// from there. Forgets aborted transactions below the log start and expired producers.
    fn write_producer_snapshot(&self) -> Result<()> {
        let (table, log_start) = {
            let mut state = self.lock();
            let Some(table) = state.snapshot.take() else {
                return Ok(());
            };
            let log_start = state.log_start();
            state.producers.trim(log_start, crate::record::now_ms());
            (table, log_start)
        };
        let mut table = table;
        table.trim(log_start, crate::record::now_ms());
        table
            .write_snapshot(&self.dir)
            .map_err(Error::io(self.dir.join(producers::SNAPSHOT_FILE)))?;
        self.lock().snapshot_written = Some(table.end_offset());
        Ok(())
    }

    /// Rebuilds the producer table on open: the snapshot (if it is not past the log's end),
    /// then every batch after it.
    fn rebuild_producers(&self) -> Result<()> {
        let (start, end) = {
            let state = self.lock();
            (state.log_start(), state.high_watermark.offset)
        };
        let mut table = ProducerTable::read_snapshot(&self.dir)
            .filter(|t| t.end_offset() <= end)
            .unwrap_or_default();
        let from = table.end_offset().max(start);
        let now = crate::record::now_ms();
        let mut scan = self.scan(from);
        for batch in &mut scan {
            let batch = batch?;
            table.record(batch.header(), &batch.bytes(), now);
        }
        if scan.next_offset() < end {
            tracing::warn!(topic = %self.topic, partition = self.partition, from, end, "producer state rebuilt from part of the log");
        }
        let mut state = self.lock();
        state.producers = table;
        Ok(())
    }

    /// Takes the maintenance lock unless the log is closed.
    pub(crate) fn begin_maintenance(&self) -> Option<MutexGuard<'_, bool>> {
        let guard = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        if *guard { None } else { Some(guard) }
    }

    /// Flushes, checkpoints and releases the active segment's preallocated space. Waits for
    /// running maintenance; none runs afterwards.
    pub(crate) fn close(&self) -> Result<()> {
        let mut closed = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        if !self.writable || *closed {
            *closed = true;
            return Ok(());
        }
        *closed = true;
        {
            let mut state = self.lock();
            let active = state.active_mut();
            active
                .release_preallocation()
                .map_err(Error::io(&active.path))?;
        }
        self.flush_capturing(true)?;
        self.write_recovery_point()
    }

    /// For read-only views: picks up segments and batches the writer added since the last call,
    /// and forgets segments it deleted.
    pub(crate) fn refresh(&self) -> Result<()> {
        if self.writable {
            return Ok(());
        }
        let bases = self.list_segments()?;
        let deleted_below = self.read_offset_file(LOG_START_OFFSET_FILE)?;
        let mut state = self.lock();
        state.deleted_below = deleted_below;
        state
            .segments
            .retain(|base, _| bases.binary_search(base).is_ok());
        let known_last = state.segments.keys().next_back().copied();
        if let Some(active) = state.segments.values_mut().next_back() {
            active.extend_by_scan(0).map_err(Error::io(&active.path))?;
        }
        for &base in bases
            .iter()
            .filter(|&&b| known_last.is_none_or(|last| b > last))
        {
            let (segment, _) =
                LogSegment::open_by_scan(&*self.storage, &self.dir, base, 0, false, false)
                    .map_err(Error::io(segment_path(&self.dir, base, "log")))?;
            state.segments.insert(base, segment);
        }
        if !state.segments.is_empty() {
            state.high_watermark = state.end();
        }
        let from = state.producers.end_offset();
        drop(state);
        // The writer's transactions as far as this view can see.
        let mut table = self.lock().producers.clone();
        let now = crate::record::now_ms();
        for batch in self.scan(from) {
            let batch = batch?;
            table.record(batch.header(), &batch.bytes(), now);
        }
        self.lock().producers = table;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::AtomicI64;

    use super::*;
    use crate::batch::BatchBuilder;
    use crate::config::FlushPolicy;
    use crate::storage::FsStorage;
    use crate::storage::faulty::FaultyStorage;

    fn open(dir: &Path, storage: Arc<dyn Storage>) -> Result<Log> {
        let config = TopicConfig {
            segment_bytes: 4096,
            flush: FlushPolicy::Always,
            ..TopicConfig::default()
        };
        Log::open(storage, dir.to_path_buf(), "t".into(), 0, config, true)
    }

    fn batch(i: u32) -> EncodedBatch {
        let mut b = BatchBuilder::with_capacity(256);
        let value = format!("value-{i}-{}", "x".repeat(100 + (i as usize * 7) % 90));
        b.push(
            1_000 + i64::from(i),
            Some(b"k"),
            Some(value.as_bytes()),
            &[],
        );
        b.push(1_000 + i64::from(i), None, Some(b"second"), &[]);
        b.finish()
    }

    /// Crashes the storage after every possible number of written bytes (in steps), then
    /// reopens with the real file system: every acknowledged batch is there, in order, and
    /// at most the one unacknowledged batch that was written whole before its fsync failed.
    #[test]
    fn a_crash_at_any_byte_keeps_exactly_the_acknowledged_batches() {
        for budget in (0..9_000).step_by(113) {
            let dir = tempfile::tempdir().unwrap();
            let storage = Arc::new(FaultyStorage {
                budget: Arc::new(AtomicI64::new(budget)),
                fail_sync: Arc::default(),
            });
            let mut acknowledged = 0u32;
            if let Ok(log) = open(dir.path(), storage) {
                for i in 0..60 {
                    let mut b = batch(i);
                    if log.append(&mut b, 0).and_then(|_| log.flush()).is_err() {
                        break;
                    }
                    log.publish();
                    acknowledged += 1;
                }
            }
            let log = open(dir.path(), Arc::new(FsStorage)).unwrap();
            let mut records = Vec::new();
            log.for_each_record(0, |r| records.push(r)).unwrap();
            let batches = records.len() as u32 / 2;
            assert!(
                batches == acknowledged || batches == acknowledged + 1,
                "budget {budget}: {acknowledged} acknowledged, {batches} recovered"
            );
            for (i, pair) in records.chunks(2).enumerate() {
                let expected = format!("value-{i}-");
                assert!(
                    pair[0]
                        .value
                        .as_deref()
                        .unwrap()
                        .starts_with(expected.as_bytes()),
                    "budget {budget}"
                );
                assert_eq!(pair[0].offset, 2 * i as u64);
            }
            // The recovered log takes appends again.
            let mut next = batch(99);
            assert_eq!(
                log.append(&mut next, 0).unwrap().base_offset,
                u64::from(batches) * 2
            );
        }
    }

    #[test]
    fn a_failed_fsync_stops_the_partition_from_taking_writes() {
        let dir = tempfile::tempdir().unwrap();
        let fail_sync = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let storage = Arc::new(FaultyStorage {
            budget: Arc::new(AtomicI64::new(i64::MAX)),
            fail_sync: fail_sync.clone(),
        });
        let log = open(dir.path(), storage).unwrap();
        log.append(&mut batch(0), 0).unwrap();
        log.flush().unwrap();
        assert_eq!(log.publish(), 2);
        fail_sync.store(true, std::sync::atomic::Ordering::SeqCst);
        log.append(&mut batch(1), 0).unwrap();
        assert!(log.flush().is_err());
        fail_sync.store(false, std::sync::atomic::Ordering::SeqCst);
        // Even with the disk back, writes stay refused: the failed data may be gone from the cache.
        assert!(matches!(
            log.append(&mut batch(2), 0),
            Err(Error::LogFailed { .. })
        ));
        assert!(matches!(log.flush(), Err(Error::LogFailed { .. })));
    }
}
