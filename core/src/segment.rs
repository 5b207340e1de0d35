//! One segment of a partition log: `{base_offset:020}.log` with its `.index` and `.timeindex`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchError, BatchHeader, EncodedBatch, HEADER_LEN};
use crate::index::{OffsetEntry, SparseIndex, TimeEntry};
use crate::storage::{Storage, StorageFile};

/// Bytes of log between two entries of the sparse indexes (Kafka's `index.interval.bytes`).
pub(crate) const INDEX_INTERVAL_BYTES: u64 = 4096;
/// The active segment reserves disk blocks this far ahead of its end, so appends and their
/// fsyncs do not allocate; the reservation is released when the segment is sealed.
const PREALLOCATE_AHEAD_BYTES: u64 = 32 << 20;

/// Path of a segment file with extension `ext` (`log`, `index` or `timeindex`).
pub(crate) fn segment_path(dir: &Path, base_offset: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Why a scan of a segment stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanStop {
    /// Byte position of the first batch that is not whole and valid.
    pub position: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// A segment file and its indexes.
#[derive(Debug)]
pub(crate) struct LogSegment {
    pub base_offset: u64,
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    offset_index: SparseIndex<OffsetEntry>,
    time_index: SparseIndex<TimeEntry>,
    /// Bytes of whole batches.
    pub size: u64,
    /// The offset after the last record; `base_offset` when empty.
    pub next_offset: u64,
    /// Largest record timestamp, `i64::MIN` when empty.
    pub max_timestamp: i64,
    /// Max timestamp of the first batch: the segment's age for time-based rolling.
    pub first_batch_timestamp: Option<i64>,
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    allocated: u64,
    preallocate: bool,
}

impl LogSegment {
    /// Creates an empty active segment.
    pub(crate) fn create(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: u64,
        preallocate: bool,
    ) -> io::Result<Self> {
        let path = segment_path(dir, base_offset, "log");
        let file = storage.open(&path, true)?;
        file.set_len(0)?;
        Ok(Self::active(dir, base_offset, path, file, preallocate))
    }

    fn active(
        dir: &Path,
        base_offset: u64,
        path: PathBuf,
        file: Arc<dyn StorageFile>,
        preallocate: bool,
    ) -> Self {
        Self {
            base_offset,
            path,
            file,
            offset_index: SparseIndex::in_memory(
                segment_path(dir, base_offset, "index"),
                Vec::new(),
            ),
            time_index: SparseIndex::in_memory(
                segment_path(dir, base_offset, "timeindex"),
                Vec::new(),
            ),
            size: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            first_batch_timestamp: None,
            bytes_since_offset_entry: 0,
            bytes_since_time_entry: 0,
            allocated: 0,
            preallocate,
        }
    }

    /// Opens a segment by reading every batch from the start, rebuilding its indexes in memory.
    /// Batches before `verify_crc_from` get a shape check only; from there on, the CRC too.
    /// Returns the segment (ending at the last whole batch) and why the scan stopped early.
    pub(crate) fn open_by_scan(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: u64,
        verify_crc_from: u64,
        writable: bool,
        preallocate: bool,
    ) -> io::Result<(Self, Option<ScanStop>)> {
        let path = segment_path(dir, base_offset, "log");
        let file = if writable {
            storage.open(&path, false)?
        } else {
            storage.open_read_only(&path)?
        };
        let file_len = file.len()?;
        let mut segment = Self::active(dir, base_offset, path, file, preallocate);
        segment.allocated = file_len;
        let stop = segment.extend_by_scan(verify_crc_from)?;
        Ok((segment, stop))
    }

    /// Reads batches past `self.size` until the file ends or a batch is not whole and valid,
    /// adding them to the segment. Used on open, and by read-only readers to follow a writer.
    pub(crate) fn extend_by_scan(&mut self, verify_crc_from: u64) -> io::Result<Option<ScanStop>> {
        let file_len = self.file.len()?;
        let mut batch_buf = Vec::new();
        let stop = loop {
            let position = self.size;
            if position >= file_len {
                break None;
            }
            let header = match read_header(&*self.file, position, file_len)? {
                HeaderRead::Header(h) => h,
                HeaderRead::Zeros => break None,
                HeaderRead::Short => {
                    break Some(ScanStop {
                        position,
                        reason: "incomplete batch header".into(),
                    });
                }
            };
            let fits = position + header.total_len() as u64 <= file_len;
            let checked = if position >= verify_crc_from {
                if fits {
                    batch_buf.resize(header.total_len(), 0);
                    self.file.read_exact_at(&mut batch_buf, position)?;
                    batch::validate(&batch_buf)
                } else {
                    Err(BatchError::Incomplete)
                }
            } else {
                match header.check_shape() {
                    Err(reason) => Err(BatchError::Corrupt(reason)),
                    Ok(()) if !fits => Err(BatchError::Incomplete),
                    Ok(()) => Ok(header),
                }
            };
            let reason = match checked {
                Ok(h) if h.base_offset < self.next_offset => format!(
                    "batch base offset {} is below the previous batch's end {}",
                    h.base_offset, self.next_offset
                ),
                Ok(h) if h.next_offset() - self.base_offset > u64::from(u32::MAX) => {
                    format!(
                        "batch offsets {}..{} do not fit the segment",
                        h.base_offset,
                        h.next_offset()
                    )
                }
                Ok(h) => {
                    self.track_batch(&h);
                    continue;
                }
                Err(BatchError::Incomplete) => "batch extends past the end of the file".into(),
                Err(BatchError::Corrupt(reason)) => reason,
            };
            break Some(ScanStop { position, reason });
        };
        Ok(stop)
    }

    /// Whether a whole, valid batch starts right after the bad one at `stop`: then the bad batch
    /// is damage in the middle of the data, not a torn write at its end.
    pub(crate) fn valid_batch_follows(&self, stop: &ScanStop) -> io::Result<bool> {
        let file_len = self.file.len()?;
        let HeaderRead::Header(bad) = read_header(&*self.file, stop.position, file_len)? else {
            return Ok(false);
        };
        if bad.check_shape().is_err() {
            return Ok(false);
        }
        let next = stop.position + bad.total_len() as u64;
        let HeaderRead::Header(h) = read_header(&*self.file, next, file_len)? else {
            return Ok(false);
        };
        if h.check_shape().is_err() || next + h.total_len() as u64 > file_len {
            return Ok(false);
        }
        let mut buf = vec![0u8; h.total_len()];
        self.file.read_exact_at(&mut buf, next)?;
        Ok(batch::validate(&buf).is_ok())
    }

    /// Opens a sealed segment, using its index files when they are sound and rebuilding them
    /// from the log when they are missing or inconsistent. A sealed segment must be whole: a
    /// batch that does not parse is returned as a `ScanStop` for the caller to report.
    pub(crate) fn open_sealed(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: u64,
        writable: bool,
    ) -> io::Result<Result<Self, ScanStop>> {
        let path = segment_path(dir, base_offset, "log");
        let file = if writable {
            storage.open(&path, false)?
        } else {
            storage.open_read_only(&path)?
        };
        let size = file.len()?;
        let offset_path = segment_path(dir, base_offset, "index");
        let time_path = segment_path(dir, base_offset, "timeindex");
        let offsets = SparseIndex::<OffsetEntry>::read_all(storage, &offset_path)?;
        let times = SparseIndex::<TimeEntry>::read_all(storage, &time_path)?;
        if let (Some(offsets), Some(times)) = (offsets, times)
            && offsets_are_sound(&offsets, size)
            && times_are_sound(&times)
        {
            let walk_from = offsets.last().map_or(0, |e| u64::from(e.position));
            let walk_base = offsets
                .last()
                .map_or(base_offset, |e| base_offset + u64::from(e.relative_offset));
            let walked = walk_to_end(&*file, walk_from, size, walk_base)?;
            // The final time entry, written at seal, must describe the segment's end.
            let time_end_ok = |next: u64| match times.last() {
                Some(e) => base_offset + u64::from(e.relative_offset) == next,
                None => size == 0,
            };
            if let Some(next_offset) = walked.filter(|&next| time_end_ok(next)) {
                let (offset_count, time_count) = (offsets.len(), times.len());
                let max_timestamp = times.last().map_or(i64::MIN, |e| e.timestamp);
                let first = read_header(&*file, 0, size)?;
                return Ok(Ok(Self {
                    base_offset,
                    path,
                    file,
                    offset_index: SparseIndex::open_file(storage, offset_path, offset_count)?,
                    time_index: SparseIndex::open_file(storage, time_path, time_count)?,
                    size,
                    next_offset,
                    max_timestamp,
                    first_batch_timestamp: match first {
                        HeaderRead::Header(h) => Some(h.max_timestamp),
                        _ => None,
                    },
                    bytes_since_offset_entry: 0,
                    bytes_since_time_entry: 0,
                    allocated: size,
                    preallocate: false,
                }));
            }
        }
        tracing::warn!(segment = %path.display(), "index missing or inconsistent, rebuilding from the log");
        let (mut segment, stop) =
            Self::open_by_scan(storage, dir, base_offset, 0, writable, false)?;
        if let Some(stop) = stop {
            return Ok(Err(stop));
        }
        if segment.size < size {
            return Ok(Err(ScanStop {
                position: segment.size,
                reason: "zeroed bytes inside a sealed segment".into(),
            }));
        }
        if writable {
            segment.write_indexes(storage)?;
        }
        Ok(Ok(segment))
    }

    /// Updates size, offsets and indexes for a batch that is now on disk at `self.size`.
    fn track_batch(&mut self, header: &BatchHeader) {
        let len = header.total_len() as u64;
        if self.offset_index.len() == 0 || self.bytes_since_offset_entry >= INDEX_INTERVAL_BYTES {
            self.offset_index.push(OffsetEntry {
                relative_offset: (header.base_offset - self.base_offset) as u32,
                position: self.size as u32,
            });
            self.bytes_since_offset_entry = 0;
        }
        self.bytes_since_offset_entry += len;
        self.next_offset = header.next_offset();
        self.size += len;
        self.first_batch_timestamp
            .get_or_insert(header.max_timestamp);
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            if self.time_index.len() == 0 || self.bytes_since_time_entry >= INDEX_INTERVAL_BYTES {
                self.push_time_entry();
            }
        }
        self.bytes_since_time_entry += len;
    }

    fn push_time_entry(&mut self) {
        self.time_index.push(TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: (self.next_offset - self.base_offset) as u32,
        });
        self.bytes_since_time_entry = 0;
    }

    /// Appends an encoded batch (offsets already assigned) at the end of the segment.
    pub(crate) fn append(&mut self, batch: &EncodedBatch) -> io::Result<()> {
        let len = batch.len() as u64;
        if self.preallocate && self.size + len > self.allocated {
            let target = self.size + len + PREALLOCATE_AHEAD_BYTES;
            self.file.allocate(target)?;
            self.allocated = target;
        }
        self.file.write_all_at(batch.as_bytes(), self.size)?;
        self.track_batch(&batch.header());
        Ok(())
    }

    /// Seals the segment: releases preallocated space and writes the index files.
    /// Durability of the result is the flusher's job (see `Log::flush`).
    /// Returns the index files, which the flusher must fsync with the log file.
    pub(crate) fn seal(&mut self, storage: &dyn Storage) -> io::Result<[Arc<dyn StorageFile>; 2]> {
        self.release_preallocation()?;
        self.preallocate = false;
        self.write_indexes(storage)
    }

    /// Shrinks the file to the data it holds (the preallocated tail goes).
    pub(crate) fn release_preallocation(&mut self) -> io::Result<()> {
        if self.allocated != self.size {
            self.file.set_len(self.size)?;
            self.allocated = self.size;
        }
        Ok(())
    }

    fn write_indexes(&mut self, storage: &dyn Storage) -> io::Result<[Arc<dyn StorageFile>; 2]> {
        let last = self.time_index.last()?;
        if self.max_timestamp != i64::MIN
            && last.is_none_or(|e| {
                e.timestamp != self.max_timestamp
                    || u64::from(e.relative_offset) != self.next_offset - self.base_offset
            })
        {
            // A final entry makes the file's last timestamp the segment's max timestamp.
            self.push_time_entry();
        }
        Ok([
            self.offset_index.write_to_file(storage)?,
            self.time_index.write_to_file(storage)?,
        ])
    }

    /// Position of the first batch that holds an offset `>= offset`, or `None` if there is none
    /// before byte `limit`.
    pub(crate) fn find_position(&self, offset: u64, limit: u64) -> io::Result<Option<u64>> {
        let start = self
            .offset_index
            .last_where(|e| self.base_offset + u64::from(e.relative_offset) <= offset)?
            .map_or(0, |e| u64::from(e.position));
        let mut position = start;
        while position < limit {
            let HeaderRead::Header(h) = read_header(&*self.file, position, limit)? else {
                return Ok(None);
            };
            if h.last_offset() >= offset {
                return Ok(Some(position));
            }
            position += h.total_len() as u64;
        }
        Ok(None)
    }

    /// The first offset `>= from` whose record timestamp is `>= timestamp`, looking before byte
    /// `limit`.
    pub(crate) fn find_offset_by_time(
        &self,
        timestamp: i64,
        from: u64,
        limit: u64,
    ) -> io::Result<Option<u64>> {
        if self.max_timestamp < timestamp && self.size <= limit {
            return Ok(None);
        }
        let start_offset = self
            .time_index
            .last_where(|e| e.timestamp < timestamp)?
            .map_or(self.base_offset, |e| {
                self.base_offset + u64::from(e.relative_offset)
            })
            .max(from);
        let Some(mut position) = self.find_position(start_offset, limit)? else {
            return Ok(None);
        };
        while position < limit {
            let HeaderRead::Header(h) = read_header(&*self.file, position, limit)? else {
                return Ok(None);
            };
            if h.check_shape().is_err() {
                return Ok(None);
            }
            if h.max_timestamp >= timestamp {
                let mut buf = vec![0u8; h.total_len()];
                self.file.read_exact_at(&mut buf, position)?;
                let bytes = Bytes::from(buf);
                let mut found = None;
                let _ = batch::for_each_record(&bytes, &h, |r| {
                    if found.is_none() && r.offset >= from && r.timestamp >= timestamp {
                        found = Some(r.offset);
                    }
                });
                if found.is_some() {
                    return Ok(found);
                }
            }
            position += h.total_len() as u64;
        }
        Ok(None)
    }
}

/// Calls `visit` with the position and header of each batch from byte `position` up to byte
/// `limit`, reading headers only; stops at the first header that does not parse.
pub(crate) fn walk_batches(
    file: &dyn StorageFile,
    mut position: u64,
    limit: u64,
    mut visit: impl FnMut(u64, &BatchHeader),
) -> io::Result<()> {
    while position < limit {
        let HeaderRead::Header(h) = read_header(file, position, limit)? else {
            break;
        };
        if h.check_shape().is_err() {
            break;
        }
        visit(position, &h);
        position += h.total_len() as u64;
    }
    Ok(())
}

enum HeaderRead {
    Header(BatchHeader),
    /// All zeros: the unwritten (preallocated) tail.
    Zeros,
    /// Fewer bytes than a header before `limit`.
    Short,
}

fn read_header(file: &dyn StorageFile, position: u64, limit: u64) -> io::Result<HeaderRead> {
    if position >= limit {
        return Ok(HeaderRead::Short);
    }
    if position + HEADER_LEN as u64 > limit {
        let mut rest = vec![0u8; (limit - position) as usize];
        file.read_exact_at(&mut rest, position)?;
        return Ok(if rest.iter().all(|&b| b == 0) {
            HeaderRead::Zeros
        } else {
            HeaderRead::Short
        });
    }
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact_at(&mut buf, position)?;
    if buf.iter().all(|&b| b == 0) {
        return Ok(HeaderRead::Zeros);
    }
    Ok(BatchHeader::parse(&buf).map_or(HeaderRead::Short, HeaderRead::Header))
}

/// Walks batch headers from `position` to `size`; the next offset if they tile it exactly.
fn walk_to_end(
    file: &dyn StorageFile,
    mut position: u64,
    size: u64,
    mut next: u64,
) -> io::Result<Option<u64>> {
    while position < size {
        let HeaderRead::Header(h) = read_header(file, position, size)? else {
            return Ok(None);
        };
        if h.check_shape().is_err()
            || h.base_offset < next
            || position + h.total_len() as u64 > size
        {
            return Ok(None);
        }
        next = h.next_offset();
        position += h.total_len() as u64;
    }
    Ok(Some(next))
}

fn offsets_are_sound(entries: &[OffsetEntry], size: u64) -> bool {
    entries
        .windows(2)
        .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
        && entries.last().is_none_or(|e| u64::from(e.position) < size)
        && (size == 0 || entries.first().is_some_and(|e| e.position == 0))
}

fn times_are_sound(entries: &[TimeEntry]) -> bool {
    entries
        .windows(2)
        .all(|w| w[0].timestamp <= w[1].timestamp && w[0].relative_offset <= w[1].relative_offset)
}
