//! A partition's log: ordered segments, the last one active, with recovery, reads and flushing.
//!
//! Concurrency: one writer (the partition's append thread) calls [`Log::append`]; readers call
//! [`Log::read`] from any thread. Both take the state lock only to find positions; data is read
//! outside it through the segment's shared file handle, which stays valid even if the segment is
//! deleted or replaced meanwhile.

mod compaction;
mod retention;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::batch::{self, BatchHeader, EncodedBatch};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::record::ConsumerRecord;
use crate::segment::{LogSegment, ScanStop, segment_path};
use crate::storage::{Storage, StorageFile, sync_dir};

pub use compaction::CompactionOutcome;
pub use retention::RetentionOutcome;

const RECOVERY_POINT_FILE: &str = "recovery-point";

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
    config: TopicConfig,
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
    /// Every offset below this is known to be on disk (fsynced).
    recovery_point: u64,
    /// The recovery point last written to the checkpoint file.
    checkpointed: u64,
    /// Files of segments sealed since the last flush.
    unflushed: Vec<Arc<dyn StorageFile>>,
    /// A segment file was created or removed since the last flush.
    dir_dirty: bool,
    /// Set when an fsync failed: what was written may not be on disk, and the page cache may
    /// already have dropped it, so the log takes no more writes until it is reopened (as Kafka
    /// takes a log directory offline).
    failed: Option<String>,
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
            config,
            writable,
            state: Mutex::new(LogState {
                segments: BTreeMap::new(),
                high_watermark: VisibleEnd {
                    offset: 0,
                    segment_base: 0,
                    position: 0,
                },
                recovery_point: 0,
                checkpointed: 0,
                failed: None,
                unflushed: Vec::new(),
                dir_dirty: false,
            }),
            fsyncs: AtomicU64::new(0),
            maintenance: Mutex::new(false),
        };
        log.load()?;
        Ok(log)
    }

    fn load(&self) -> Result<()> {
        let storage = &*self.storage;
        let dir = &self.dir;
        let mut needs_flush = false;
        if self.writable && !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent).map_err(Error::io(parent))?;
            }
            needs_flush = true;
        }
        let bases = self.list_segments()?;
        let recovery_point = self.read_recovery_point()?;
        let mut segments = BTreeMap::new();
        let mut scanned = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let may_hold_unflushed = next_base.is_none_or(|next| next > recovery_point);
            if !may_hold_unflushed || (!self.writable && next_base.is_some()) {
                let segment = LogSegment::open_sealed(storage, dir, base, self.writable)
                    .map_err(Error::io(segment_path(dir, base, "log")))?
                    .map_err(|stop| self.corrupt(base, stop))?;
                segments.insert(base, segment);
                continue;
            }
            let preallocate = self.writable && self.config.preallocate && next_base.is_none();
            let (mut segment, mut stop) =
                LogSegment::open_by_scan(storage, dir, base, 0, self.writable, preallocate)
                    .map_err(Error::io(segment_path(dir, base, "log")))?;
            let file_len = segment.file.len().map_err(Error::io(&segment.path))?;
            if stop.is_none() && next_base.is_some() && segment.size < file_len {
                // Zeros are only the end of data in the active segment's reserved tail.
                stop = Some(ScanStop {
                    position: segment.size,
                    reason: "zeroed bytes inside a sealed segment".into(),
                });
            }
            if let Some(stop) = stop {
                if !self.writable {
                    tracing::debug!(topic = %self.topic, partition = self.partition, position = stop.position, "read-only view ends at an incomplete batch");
                    segments.insert(base, segment);
                    break;
                }
                // Below the recovery point the data was fsynced, and a valid batch after the bad
                // one means damage in the middle: neither is a torn write, so nothing is cut.
                let durable = segment.next_offset < recovery_point;
                if durable
                    || segment
                        .valid_batch_follows(&stop)
                        .map_err(Error::io(&segment.path))?
                {
                    return Err(self.corrupt(base, stop));
                }
                tracing::warn!(
                    topic = %self.topic, partition = self.partition,
                    segment = %segment.path.display(), position = stop.position, reason = %stop.reason,
                    "truncating the unflushed tail of the log after the last whole batch"
                );
                segment
                    .file
                    .set_len(stop.position)
                    .map_err(Error::io(&segment.path))?;
                for &later in bases.iter().skip(i + 1) {
                    tracing::warn!(topic = %self.topic, partition = self.partition, base_offset = later, "deleting segment after the truncation point");
                    self.delete_segment_files(later)?;
                }
                scanned.push(segment.file.clone());
                segments.insert(base, segment);
                needs_flush = true;
                break;
            }
            scanned.push(segment.file.clone());
            if next_base.is_some() && self.writable {
                let index_files = segment.seal(storage).map_err(Error::io(&segment.path))?;
                scanned.extend(index_files);
            }
            segments.insert(base, segment);
        }
        if segments.is_empty() {
            if !self.writable {
                return Err(Error::CorruptMetadata {
                    path: self.dir.clone(),
                    reason: "partition has no segments".into(),
                });
            }
            let segment = LogSegment::create(storage, dir, 0, self.config.preallocate)
                .map_err(Error::io(segment_path(dir, 0, "log")))?;
            segments.insert(0, segment);
            needs_flush = true;
        }
        let mut state = self.lock();
        state.segments = segments;
        let end = state.end();
        if self.writable && recovery_point > end.offset {
            let active = state.active();
            return Err(Error::CorruptBatch {
                topic: self.topic.to_string(),
                partition: self.partition,
                segment: active.path.clone(),
                position: active.size,
                reason: format!(
                    "the log ends at offset {} but offsets below {recovery_point} were fsynced",
                    end.offset
                ),
            });
        }
        // After a crash the scanned bytes may sit only in the page cache: make them durable
        // before anything is served, so nothing visible can vanish later.
        needs_flush |= self.writable && recovery_point < end.offset;
        state.recovery_point = recovery_point;
        state.checkpointed = recovery_point;
        state.unflushed = scanned;
        state.dir_dirty = needs_flush;
        drop(state);
        if needs_flush {
            self.flush()?;
            self.checkpoint_recovery_point()?;
        }
        let mut state = self.lock();
        state.high_watermark = state.end();
        Ok(())
    }

    fn list_segments(&self) -> Result<Vec<u64>> {
        let mut bases = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.writable => {
                return Ok(bases);
            }
            Err(e) => return Err(Error::io(&self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io(&self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(base) = name
                .strip_suffix(".log")
                .and_then(|b| b.parse::<u64>().ok())
            {
                bases.push(base);
            } else if self.writable && (name.ends_with(".cleaned") || name.ends_with(".tmp")) {
                // Left over by a cleaner or checkpoint interrupted mid-way; the originals are intact.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        bases.sort_unstable();
        Ok(bases)
    }

    fn read_recovery_point(&self) -> Result<u64> {
        let path = self.dir.join(RECOVERY_POINT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| Error::CorruptMetadata {
                path,
                reason: format!("{:?} is not an offset", text.trim()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(path)(e)),
        }
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

    /// The topic configuration the log runs with.
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        let state = self.lock();
        state.segments.values().next().map_or(0, |s| s.base_offset)
    }

    /// The offset after the last record visible to consumers.
    pub fn high_watermark(&self) -> u64 {
        self.lock().high_watermark.offset
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
            log_start_offset: state.segments.values().next().map_or(0, |s| s.base_offset),
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
        if self.config.timestamp_type == crate::record::TimestampType::LogAppendTime {
            batch.set_log_append_time(now_ms);
        }
        if self.config.cleanup_policy == crate::config::CleanupPolicy::Compact {
            self.check_keys(batch)?;
        }
        if batch.len() > crate::batch::MAX_BATCH_BYTES {
            return Err(Error::InvalidRecord {
                topic: self.topic.to_string(),
                reason: "batch is larger than 64 MiB",
            });
        }
        let mut state = self.lock();
        self.check_not_failed(&state)?;
        let active = state.active();
        let records = u64::from(batch.record_count());
        let roll = active.size > 0
            && (active.size + batch.len() as u64 > self.config.segment_bytes
                // As Kafka: the incoming batch's timestamp against the segment's first batch,
                // so replaying old data does not roll a segment per batch.
                || self.config.segment_ms.is_some_and(|ms| {
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
        let segment = LogSegment::create(&*self.storage, &self.dir, next, self.config.preallocate)
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
        let (sealed, active, end, dir_dirty) = {
            let mut state = self.lock();
            self.check_not_failed(&state)?;
            let active = state.active();
            let (file, path, end) = (active.file.clone(), active.path.clone(), active.next_offset);
            let dir_dirty = std::mem::take(&mut state.dir_dirty);
            (
                std::mem::take(&mut state.unflushed),
                (file, path),
                end,
                dir_dirty,
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
        self.flush()?;
        self.write_recovery_point()
    }

    /// Reads whole batches holding `offset` and after, about `max_bytes` of them (at least one
    /// batch, however large), up to the high watermark.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] below the log start; I/O errors.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<FetchedChunk> {
        let max_bytes = max_bytes.max(crate::batch::HEADER_LEN);
        let state = self.lock();
        let end = state.high_watermark;
        let log_start = state.segments.values().next().map_or(0, |s| s.base_offset);
        let empty = |offset| FetchedChunk {
            topic: self.topic.clone(),
            partition: self.partition,
            segment: PathBuf::new(),
            position: 0,
            data: Bytes::new(),
            next_offset: offset,
            high_watermark: end.offset,
            log_start_offset: log_start,
        };
        if offset < log_start {
            return Err(Error::OffsetOutOfRange {
                topic: self.topic.to_string(),
                partition: self.partition,
                offset,
                log_start_offset: log_start,
                log_end_offset: end.offset,
            });
        }
        if offset >= end.offset {
            return Ok(empty(offset));
        }
        let first = state
            .segments
            .range(..=offset)
            .next_back()
            .map_or(log_start, |(b, _)| *b);
        let mut found = None;
        for segment in state.segments.range(first..).map(|(_, s)| s) {
            if segment.base_offset > end.segment_base {
                break;
            }
            let limit = if segment.base_offset == end.segment_base {
                end.position
            } else {
                segment.size
            };
            let position = segment
                .find_position(offset, limit)
                .map_err(Error::io(&segment.path))?;
            if let Some(position) = position {
                found = Some((segment.file.clone(), segment.path.clone(), position, limit));
                break;
            }
        }
        drop(state);
        let Some((file, path, position, limit)) = found else {
            return Ok(empty(end.offset));
        };
        let mut data = read_at(&*file, &path, position, max_bytes, limit)?;
        let whole = whole_batches_len(&data);
        if whole == 0 {
            // The first batch is larger than max_bytes: return it whole.
            if let Some(header) = BatchHeader::parse(&data) {
                data = read_at(&*file, &path, position, header.total_len(), limit)?;
            }
        } else {
            data.truncate(whole);
        }
        let next_offset = last_batch_next_offset(&data).unwrap_or(offset);
        Ok(FetchedChunk {
            topic: self.topic.clone(),
            partition: self.partition,
            segment: path,
            position,
            data: Bytes::from(data),
            next_offset,
            high_watermark: end.offset,
            log_start_offset: log_start,
        })
    }

    /// The first offset whose timestamp is `>= timestamp`, or `None` if every visible record is
    /// older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        let state = self.lock();
        let end = state.high_watermark;
        for segment in state.segments.values() {
            if segment.base_offset > end.segment_base {
                break;
            }
            let limit = if segment.base_offset == end.segment_base {
                end.position
            } else {
                segment.size
            };
            if let Some(offset) = segment
                .find_offset_by_time(timestamp, limit)
                .map_err(Error::io(&segment.path))?
            {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    /// For read-only views: picks up segments and batches the writer added since the last call,
    /// and forgets segments it deleted.
    pub(crate) fn refresh(&self) -> Result<()> {
        if self.writable {
            return Ok(());
        }
        let bases = self.list_segments()?;
        let mut state = self.lock();
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
        Ok(())
    }
}

fn read_at(
    file: &dyn StorageFile,
    path: &Path,
    position: u64,
    max_bytes: usize,
    limit: u64,
) -> Result<Vec<u8>> {
    let len = limit.saturating_sub(position).min(max_bytes as u64) as usize;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, position)
        .map_err(Error::io(path))?;
    Ok(buf)
}

/// Length of the prefix of `data` made of whole batches (by their declared lengths). A batch
/// whose header is malformed ends the prefix after it is included, so the reader reports it.
fn whole_batches_len(data: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(header) = BatchHeader::parse(&data[pos..]) {
        if header.check_shape().is_err() {
            return data.len();
        }
        if pos + header.total_len() > data.len() {
            break;
        }
        pos += header.total_len();
    }
    pos
}

fn last_batch_next_offset(data: &[u8]) -> Option<u64> {
    let mut pos = 0;
    let mut next = None;
    while let Some(header) = BatchHeader::parse(&data[pos..]) {
        if header.check_shape().is_err() || pos + header.total_len() > data.len() {
            break;
        }
        next = Some(header.next_offset());
        pos += header.total_len();
    }
    next
}

/// Whole batches read from one segment.
#[derive(Debug, Clone)]
pub struct FetchedChunk {
    topic: Arc<str>,
    partition: u32,
    segment: PathBuf,
    position: u64,
    data: Bytes,
    /// The offset after the last batch in the chunk (the next one to fetch).
    pub next_offset: u64,
    /// The partition's high watermark when read.
    pub high_watermark: u64,
    /// The partition's first offset when read.
    pub log_start_offset: u64,
}

impl FetchedChunk {
    /// Whether no batch was read (the reader is at the end).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Raw bytes of the chunk (whole batches).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Checks each batch's CRC and decodes its records with offsets `>= from_offset`.
    ///
    /// # Errors
    /// [`Error::CorruptBatch`] with the segment and byte position of the first bad batch.
    pub fn records(&self, from_offset: u64, out: &mut Vec<ConsumerRecord>) -> Result<()> {
        out.reserve(self.record_count());
        let mut pos = 0;
        while pos < self.data.len() {
            let rest = self.data.slice(pos..);
            let header = batch::validate(&rest).map_err(|e| self.corrupt(pos, format!("{e:?}")))?;
            if header.next_offset() > from_offset {
                let timestamp_type = header.timestamp_type();
                batch::for_each_record(&rest, &header, |r| {
                    if r.offset >= from_offset {
                        out.push(r.into_consumer_record(
                            &self.topic,
                            self.partition,
                            timestamp_type,
                        ));
                    }
                })
                .map_err(|reason| self.corrupt(pos, reason))?;
            }
            pos += header.total_len();
        }
        Ok(())
    }

    /// Records in the chunk by the batch headers (bounded by what the bytes could hold).
    fn record_count(&self) -> usize {
        let (mut pos, mut count) = (0, 0usize);
        while let Some(header) = BatchHeader::parse(&self.data[pos..]) {
            if header.check_shape().is_err() || pos + header.total_len() > self.data.len() {
                break;
            }
            count += header.record_count as usize;
            pos += header.total_len();
        }
        count.min(self.data.len() / 7)
    }

    fn corrupt(&self, pos: usize, reason: String) -> Error {
        Error::CorruptBatch {
            topic: self.topic.to_string(),
            partition: self.partition,
            segment: self.segment.clone(),
            position: self.position + pos as u64,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
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
            let mut offset = 0;
            loop {
                let chunk = log.read(offset, 1 << 20).unwrap();
                if chunk.is_empty() {
                    break;
                }
                chunk.records(offset, &mut records).unwrap();
                offset = chunk.next_offset;
            }
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
