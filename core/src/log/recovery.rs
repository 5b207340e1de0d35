//! Opening a partition log: which segments to trust, which to check batch by batch, and when a
//! bad batch is a torn write to cut off rather than damage to report. See `docs/log-format.md`.

use std::collections::BTreeMap;

use super::{LOG_START_OFFSET_FILE, Log, RECOVERY_POINT_FILE};
use crate::error::{Error, Result};
use crate::segment::{LogSegment, ScanStop, segment_path};
use crate::storage::sync_dir;

impl Log {
    pub(super) fn load(&self) -> Result<()> {
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
        let recovery_point = self.read_offset_file(RECOVERY_POINT_FILE)?;
        let deleted_below = self.read_offset_file(LOG_START_OFFSET_FILE)?;
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
            let preallocate = self.writable && self.config().preallocate && next_base.is_none();
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
            let segment = LogSegment::create(storage, dir, 0, self.config().preallocate)
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
        // Written only after a flush up to it, so the log cannot end below it: the clamp is for a
        // hand-edited file.
        state.deleted_below = deleted_below.min(end.offset);
        state.recovery_point = recovery_point;
        state.checkpointed = recovery_point;
        state.unflushed = scanned;
        state.dir_dirty = needs_flush;
        drop(state);
        if needs_flush {
            self.flush()?;
            self.checkpoint_recovery_point()?;
        }
        {
            let mut state = self.lock();
            state.high_watermark = state.end();
        }
        self.rebuild_producers()
    }

    pub(super) fn list_segments(&self) -> Result<Vec<u64>> {
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

    /// An offset kept in a small text file of the partition directory; 0 when there is none.
    pub(super) fn read_offset_file(&self, name: &str) -> Result<u64> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| Error::CorruptMetadata {
                path,
                reason: format!("{:?} is not an offset", text.trim()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(path)(e)),
        }
    }
}
