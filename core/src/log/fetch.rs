//! Reading a partition: whole batches up to the high watermark, and seeks by timestamp.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{AbortedTransaction, Log};
use crate::batch::{self, BatchHeader};
use crate::error::{Error, Result};
use crate::record::ConsumerRecord;
use crate::storage::StorageFile;

impl Log {
    /// Reads whole batches holding `offset` and after, about `max_bytes` of them (at least one
    /// batch, however large), up to the high watermark.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] below the log start; I/O errors.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<FetchedChunk> {
        let max_bytes = max_bytes.max(crate::batch::HEADER_LEN);
        let state = self.lock();
        let end = state.high_watermark;
        let log_start = state.log_start();
        let empty = |offset| FetchedChunk {
            topic: self.topic.clone(),
            partition: self.partition,
            segment: PathBuf::new(),
            position: 0,
            data: Bytes::new(),
            next_offset: offset,
            high_watermark: end.offset,
            log_start_offset: log_start,
            aborted: Vec::new(),
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
            let Some(limit) = end.limit_in(segment) else {
                break;
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
            aborted: Vec::new(),
        })
    }

    /// [`Log::read`] for a `read_committed` reader: stops at the last stable offset and
    /// carries the aborted transactions the chunk overlaps, whose batches
    /// [`FetchedChunk::records`] then leaves out.
    ///
    /// # Errors
    /// As [`Log::read`].
    pub fn read_committed(&self, offset: u64, max_bytes: usize) -> Result<FetchedChunk> {
        let stable = self.last_stable_offset();
        let mut chunk = self.read(offset, max_bytes)?;
        if chunk.next_offset > stable {
            // A batch never straddles the stable offset: it is the first offset of a batch.
            let mut pos = 0;
            while let Some(header) = BatchHeader::parse(&chunk.data[pos..]) {
                if header.base_offset >= stable || pos + header.total_len() > chunk.data.len() {
                    break;
                }
                pos += header.total_len();
            }
            chunk.data.truncate(pos);
            chunk.next_offset = last_batch_next_offset(&chunk.data)
                .unwrap_or(offset)
                .max(offset.min(stable));
        }
        if !chunk.data.is_empty() {
            chunk.aborted = self.aborted_transactions(offset, chunk.next_offset);
        }
        Ok(chunk)
    }

    /// The first offset (at or after the log start) whose timestamp is `>= timestamp`, or `None`
    /// if every visible record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        let state = self.lock();
        let end = state.high_watermark;
        let start = state.log_start();
        for segment in state.segments.values() {
            let Some(limit) = end.limit_in(segment) else {
                break;
            };
            if segment.next_offset <= start {
                continue;
            }
            if let Some(offset) = segment
                .find_offset_by_time(timestamp, start, limit)
                .map_err(Error::io(&segment.path))?
            {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }
}

impl Log {
    /// The offset and timestamp of the record with the largest timestamp at or after the log
    /// start (the first such record on a tie), or `None` for an empty log: Kafka's ListOffsets
    /// `MAX_TIMESTAMP` (-3). Reads batch headers, newest maximum first, and decodes one batch
    /// (two when the log start falls inside a batch).
    ///
    /// # Errors
    /// I/O errors and corrupt batches.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<(u64, i64)>> {
        struct Candidate {
            max_timestamp: i64,
            base_offset: u64,
            file: Arc<dyn StorageFile>,
            path: PathBuf,
            position: u64,
            limit: u64,
        }
        let (start, mut candidates) = {
            let state = self.lock();
            let end = state.high_watermark;
            let start = state.log_start();
            let mut candidates = Vec::new();
            for segment in state.segments.values() {
                let Some(limit) = end.limit_in(segment) else {
                    break;
                };
                if segment.next_offset <= start || segment.max_timestamp == i64::MIN {
                    continue;
                }
                let position = if segment.base_offset < start {
                    let found = segment
                        .find_position(start, limit)
                        .map_err(Error::io(&segment.path))?;
                    found.unwrap_or(limit)
                } else {
                    0
                };
                candidates.push(Candidate {
                    max_timestamp: segment.max_timestamp,
                    base_offset: segment.base_offset,
                    file: segment.file.clone(),
                    path: segment.path.clone(),
                    position,
                    limit,
                });
            }
            (start, candidates)
        };
        // A segment's max timestamp bounds its visible batches': the segments that may hold
        // the answer come first.
        candidates.sort_by(|a, b| {
            b.max_timestamp
                .cmp(&a.max_timestamp)
                .then(a.base_offset.cmp(&b.base_offset))
        });
        // (timestamp, offset of the batch, the record's offset if known)
        let mut best: Option<(i64, u64, Option<u64>)> = None;
        for candidate in candidates {
            if let Some((timestamp, offset, _)) = best
                && (candidate.max_timestamp < timestamp
                    || (candidate.max_timestamp == timestamp && candidate.base_offset > offset))
            {
                continue;
            }
            let mut straddling = None;
            crate::segment::walk_batches(
                &*candidate.file,
                candidate.position,
                candidate.limit,
                |_, header| {
                    if header.last_offset() < start {
                        return;
                    }
                    if header.base_offset < start {
                        // Part of it is deleted: its records decide (below).
                        straddling = Some(*header);
                        return;
                    }
                    let better = best.is_none_or(|(timestamp, offset, _)| {
                        header.max_timestamp > timestamp
                            || (header.max_timestamp == timestamp && header.base_offset < offset)
                    });
                    if better {
                        best = Some((header.max_timestamp, header.base_offset, None));
                    }
                },
            )
            .map_err(Error::io(&candidate.path))?;
            if let Some(header) = straddling
                && let Some((offset, timestamp)) = self.max_timestamp_record(start)?
                && best.is_none_or(|(t, o, _)| {
                    timestamp > t || (timestamp == t && header.base_offset < o)
                })
            {
                best = Some((timestamp, header.base_offset, Some(offset)));
            }
        }
        Ok(match best {
            None => None,
            Some((timestamp, _, Some(offset))) => Some((offset, timestamp)),
            Some((timestamp, batch_offset, None)) => {
                let found = self.max_timestamp_record(batch_offset)?;
                Some((found.map_or(batch_offset, |(offset, _)| offset), timestamp))
            }
        })
    }

    /// The first record with the largest timestamp in the batch holding `offset`, among its
    /// records at or after `offset`.
    fn max_timestamp_record(&self, offset: u64) -> Result<Option<(u64, i64)>> {
        let chunk = self.read(offset, 1)?;
        let mut records = Vec::new();
        chunk.records(offset, &mut records)?;
        let mut best: Option<(u64, i64)> = None;
        for r in &records {
            if best.is_none_or(|(_, t)| r.timestamp > t) {
                best = Some((r.offset, r.timestamp));
            }
        }
        Ok(best)
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

/// Whether `header` is a batch of one of the `aborted` transactions.
pub(super) fn is_aborted(aborted: &[AbortedTransaction], header: &BatchHeader) -> bool {
    header.is_transactional()
        && aborted.iter().any(|a| {
            a.producer_id == header.producer_id
                && a.first_offset <= header.base_offset
                && header.base_offset < a.last_offset
        })
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
    /// Aborted transactions overlapping the chunk, for `read_committed` reads (else empty).
    aborted: Vec<AbortedTransaction>,
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

    /// The aborted transactions a `read_committed` reader must skip in this chunk.
    pub fn aborted(&self) -> &[AbortedTransaction] {
        &self.aborted
    }

    /// Checks each batch's CRC and decodes its records with offsets `>= from_offset`.
    ///
    /// # Errors
    /// [`Error::CorruptBatch`] with the segment and byte position of the first bad batch.
    pub fn records(&self, from_offset: u64, out: &mut Vec<ConsumerRecord>) -> Result<()> {
        out.reserve(self.record_count());
        let mut pos = 0;
        while pos < self.data.len() {
            pos += self.batch_records(pos, from_offset, out)?.total_len();
        }
        Ok(())
    }

    /// Checks the CRC of the batch at byte `pos` of the chunk and decodes its records with
    /// offsets `>= from_offset`; returns its header. Transaction markers hold no records for
    /// readers, and batches of aborted transactions are left out of `read_committed` chunks.
    ///
    /// # Errors
    /// [`Error::CorruptBatch`] with the batch's segment and byte position.
    pub(super) fn batch_records(
        &self,
        pos: usize,
        from_offset: u64,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<BatchHeader> {
        let rest = self.data.slice(pos..);
        let header = batch::validate(&rest).map_err(|e| self.corrupt(pos, format!("{e:?}")))?;
        if header.next_offset() > from_offset
            && !header.is_control()
            && !is_aborted(&self.aborted, &header)
        {
            let timestamp_type = header.timestamp_type();
            batch::for_each_record(&rest, &header, |r| {
                if r.offset >= from_offset {
                    out.push(r.into_consumer_record(&self.topic, self.partition, timestamp_type));
                }
            })
            .map_err(|reason| self.corrupt(pos, reason))?;
        }
        Ok(header)
    }

    /// How many records [`FetchedChunk::records`] would return from the start of the chunk,
    /// counted from the batch headers without decoding (markers and aborted batches hold none).
    pub fn readable_record_count(&self) -> u64 {
        let (mut pos, mut count) = (0, 0u64);
        while let Some(header) = BatchHeader::parse(&self.data[pos..]) {
            if header.check_shape().is_err() || pos + header.total_len() > self.data.len() {
                break;
            }
            if !header.is_control() && !is_aborted(&self.aborted, &header) {
                count += u64::from(header.record_count);
            }
            pos += header.total_len();
        }
        count
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

    pub(super) fn corrupt(&self, pos: usize, reason: String) -> Error {
        Error::CorruptBatch {
            topic: self.topic.to_string(),
            partition: self.partition,
            segment: self.segment.clone(),
            position: self.position + pos as u64,
            reason,
        }
    }
}
