//! Log compaction: sealed segments keep only the latest record per key.
//!
//! The cleaner reads every sealed segment to find each key's latest offset, then rewrites each
//! segment without the records that are superseded (and without tombstones older than
//! `delete_retention_ms`). A rewritten segment is written beside the original as `.cleaned`,
//! fsynced, then renamed over it; a crash at any point leaves either the old or the new file.
//! Offsets are kept: batches may have gaps afterwards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::Log;
use crate::batch::{self, BatchBuilder, BatchHeader, EncodedBatch};
use crate::config::CleanupPolicy;
use crate::error::{Error, Result};
use crate::record::TimestampType;
use crate::segment::{LogSegment, segment_path};
use crate::storage::{StorageFile, sync_dir};

/// What one cleaning pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Segments rewritten or removed.
    pub segments_cleaned: usize,
    /// Records dropped.
    pub records_removed: u64,
    /// Bytes of the sealed segments before and after.
    pub bytes_before: u64,
    /// Bytes after.
    pub bytes_after: u64,
}

struct SealedSegment {
    base: u64,
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    size: u64,
}

impl Log {
    /// Runs one cleaning pass over the sealed segments of a compacted topic.
    pub(crate) fn compact(&self, now_ms: i64) -> Result<CompactionOutcome> {
        let mut outcome = CompactionOutcome::default();
        let config = self.config();
        if !self.writable || config.cleanup_policy != CleanupPolicy::Compact {
            return Ok(outcome);
        }
        let Some(_maintenance) = self.begin_maintenance() else {
            return Ok(outcome);
        };
        let sealed: Vec<SealedSegment> = {
            let state = self.lock();
            // Only what lies below the last stable offset: an open transaction may still abort.
            let stable = Self::stable_end(&state);
            let bases: Vec<u64> = state.segments.keys().copied().collect();
            state
                .segments
                .values()
                .zip(bases.iter().skip(1))
                .take_while(|(_, next_base)| **next_base <= stable)
                .map(|(s, _)| s)
                .map(|s| SealedSegment {
                    base: s.base_offset,
                    file: s.file.clone(),
                    path: s.path.clone(),
                    size: s.size,
                })
                .collect()
        };
        if sealed.is_empty() {
            return Ok(outcome);
        }
        // Aborted data is dropped and never supersedes a committed record; markers are kept.
        let aborted = self.aborted_transactions(0, u64::MAX);
        let mut latest: HashMap<Bytes, u64> = HashMap::new();
        for segment in &sealed {
            self.for_each_batch(segment, |bytes, header| {
                if header.is_control() || super::fetch::is_aborted(&aborted, header) {
                    return Ok(());
                }
                batch::for_each_record(bytes, header, |r| {
                    if let Some(key) = r.key {
                        latest.insert(key, r.offset);
                    }
                })
            })?;
        }
        let delete_retention = config.delete_retention_ms as i64;
        for segment in &sealed {
            outcome.bytes_before += segment.size;
            let mut kept: Vec<EncodedBatch> = Vec::new();
            let mut removed = 0u64;
            self.for_each_batch(segment, |bytes, header| {
                if header.is_control() {
                    kept.push(EncodedBatch::from_validated(
                        bytes[..header.total_len()].to_vec(),
                    ));
                    return Ok(());
                }
                if super::fetch::is_aborted(&aborted, header) {
                    removed += u64::from(header.record_count);
                    return Ok(());
                }
                let tombstones_expired =
                    now_ms.saturating_sub(header.max_timestamp) > delete_retention;
                let mut builder = BatchBuilder::with_capacity(header.total_len());
                let mut all_kept = true;
                batch::for_each_record(bytes, header, |r| {
                    let newest = r.key.as_ref().and_then(|k| latest.get(k)) == Some(&r.offset);
                    let keep = newest && !(r.value.is_none() && tombstones_expired);
                    if keep {
                        let delta = (r.offset - header.base_offset) as u32;
                        builder.push_at(
                            delta,
                            r.timestamp,
                            r.key.as_deref(),
                            r.value.as_deref(),
                            &r.headers,
                        );
                    } else {
                        all_kept = false;
                        removed += 1;
                    }
                })?;
                if all_kept {
                    kept.push(EncodedBatch::from_validated(
                        bytes[..header.total_len()].to_vec(),
                    ));
                } else if !builder.is_empty() {
                    let mut rebuilt = builder.finish();
                    if header.timestamp_type() == TimestampType::LogAppendTime {
                        rebuilt.set_log_append_time(header.max_timestamp);
                    }
                    if header.producer_id >= 0 {
                        rebuilt.set_producer(
                            header.producer_id,
                            header.producer_epoch,
                            header.base_sequence,
                            header.is_transactional(),
                        );
                    }
                    rebuilt.set_base_offset(header.base_offset);
                    kept.push(rebuilt);
                }
                Ok(())
            })?;
            if removed == 0 {
                outcome.bytes_after += segment.size;
                continue;
            }
            outcome.bytes_after += self.replace_segment(segment, &kept)?;
            outcome.segments_cleaned += 1;
            outcome.records_removed += removed;
        }
        if outcome.segments_cleaned > 0 {
            tracing::info!(
                topic = %self.topic, partition = self.partition,
                segments = outcome.segments_cleaned, records_removed = outcome.records_removed,
                bytes_before = outcome.bytes_before, bytes_after = outcome.bytes_after,
                "compacted log"
            );
        }
        Ok(outcome)
    }

    /// Calls `f` with each validated batch of a sealed segment, reading in bounded chunks.
    fn for_each_batch(
        &self,
        segment: &SealedSegment,
        mut f: impl FnMut(&Bytes, &BatchHeader) -> std::result::Result<(), String>,
    ) -> Result<()> {
        const CHUNK: usize = 4 << 20;
        let corrupt = |position: u64, reason: String| Error::CorruptBatch {
            topic: self.topic.to_string(),
            partition: self.partition,
            segment: segment.path.clone(),
            position,
            reason,
        };
        let mut position = 0u64;
        while position < segment.size {
            let len = (segment.size - position).min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; len];
            segment
                .file
                .read_exact_at(&mut buf, position)
                .map_err(Error::io(&segment.path))?;
            let header = BatchHeader::parse(&buf)
                .ok_or_else(|| corrupt(position, "truncated batch header".into()))?;
            header
                .check_shape()
                .map_err(|reason| corrupt(position, reason))?;
            if header.total_len() > len {
                buf.resize(header.total_len(), 0);
                segment
                    .file
                    .read_exact_at(&mut buf, position)
                    .map_err(Error::io(&segment.path))?;
            }
            let bytes = Bytes::from(buf);
            let mut pos = 0usize;
            while pos < bytes.len() {
                let rest = bytes.slice(pos..);
                let header = match batch::validate(&rest) {
                    Ok(h) => h,
                    Err(batch::BatchError::Incomplete) if pos > 0 => break,
                    Err(e) => return Err(corrupt(position + pos as u64, format!("{e:?}"))),
                };
                f(&rest, &header).map_err(|reason| corrupt(position + pos as u64, reason))?;
                pos += header.total_len();
            }
            position += pos as u64;
        }
        Ok(())
    }

    /// Writes `batches` as the new content of `segment` and swaps it in; returns its size.
    /// The first segment is kept even when emptied, so compaction never moves the log start.
    fn replace_segment(&self, segment: &SealedSegment, batches: &[EncodedBatch]) -> Result<u64> {
        let first = self.lock().segments.keys().next().copied() == Some(segment.base);
        if batches.is_empty() && !first {
            let mut state = self.lock();
            if state.segments.remove(&segment.base).is_some() {
                self.delete_segment_files(segment.base)?;
                state.dir_dirty = true;
            }
            return Ok(0);
        }
        // Written and fsynced before taking the state lock: appends and reads go on meanwhile.
        let cleaned = self.dir.join(format!("{:020}.log.cleaned", segment.base));
        let file = self
            .storage
            .open(&cleaned, true)
            .map_err(Error::io(&cleaned))?;
        file.set_len(0).map_err(Error::io(&cleaned))?;
        let mut size = 0;
        for batch in batches {
            file.write_all_at(batch.as_bytes(), size)
                .map_err(Error::io(&cleaned))?;
            size += batch.len() as u64;
        }
        file.sync_data().map_err(Error::io(&cleaned))?;
        drop(file);
        let mut state = self.lock();
        if !state.segments.contains_key(&segment.base) {
            let _ = std::fs::remove_file(&cleaned);
            return Ok(0);
        }
        for ext in ["index", "timeindex"] {
            let path = segment_path(&self.dir, segment.base, ext);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path)(e)),
            }
        }
        std::fs::rename(&cleaned, &segment.path).map_err(Error::io(&segment.path))?;
        sync_dir(&self.dir).map_err(Error::io(&self.dir))?;
        let reopened = LogSegment::open_sealed(&*self.storage, &self.dir, segment.base, true)
            .map_err(Error::io(&segment.path))?
            .map_err(|stop| Error::CorruptBatch {
                topic: self.topic.to_string(),
                partition: self.partition,
                segment: segment.path.clone(),
                position: stop.position,
                reason: stop.reason,
            })?;
        state.segments.insert(segment.base, reopened);
        Ok(size)
    }
}
