//! Retention: whole sealed segments are deleted once past the topic's time or size limit, or
//! once wholly below a log start offset moved by [`Log::delete_records`] (Kafka's DeleteRecords).

use super::{LOG_START_OFFSET_FILE, Log, LogState};
use crate::config::CleanupPolicy;
use crate::error::{Error, Result};
use crate::storage::sync_dir;

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub deleted_segments: usize,
    /// Bytes of log deleted.
    pub deleted_bytes: u64,
}

impl Log {
    /// Deletes the oldest sealed segments while the log is over `retention_bytes`, or while their
    /// newest record is older than `retention_ms`. The active segment is never deleted, and only
    /// a prefix of the log goes, so the log stays contiguous from its new start offset.
    pub(crate) fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let mut outcome = RetentionOutcome::default();
        let config = self.config();
        if !self.writable || config.cleanup_policy != CleanupPolicy::Delete {
            return Ok(outcome);
        }
        let Some(_maintenance) = self.begin_maintenance() else {
            return Ok(outcome);
        };
        let mut state = self.lock();
        self.delete_segments_below_log_start(&mut state, &mut outcome)?;
        let mut total: u64 = state.segments.values().map(|s| s.size).sum();
        // Only segments wholly below the high watermark: anything above may not be
        // acknowledged (or fsynced) yet.
        let high_watermark = state.high_watermark.offset;
        let sealed: Vec<(u64, u64, i64)> = state
            .segments
            .values()
            .take(state.segments.len() - 1)
            .filter(|s| s.next_offset <= high_watermark)
            .map(|s| (s.base_offset, s.size, s.max_timestamp))
            .collect();
        for (base, size, max_timestamp) in sealed {
            let over_size = config
                .retention_bytes
                .is_some_and(|limit| total - size >= limit);
            let expired = config.retention_ms.is_some_and(|ms| {
                max_timestamp != i64::MIN && max_timestamp < now_ms.saturating_sub(ms as i64)
            });
            if !over_size && !expired {
                break;
            }
            state.segments.remove(&base);
            self.delete_segment_files(base)?;
            state.dir_dirty = true;
            total -= size;
            outcome.deleted_segments += 1;
            outcome.deleted_bytes += size;
            tracing::info!(
                topic = %self.topic, partition = self.partition, base_offset = base, bytes = size,
                reason = if over_size { "retention_bytes" } else { "retention_ms" },
                "deleted segment"
            );
        }
        Ok(outcome)
    }
}

impl Log {
    /// Moves the log start offset forward to `offset` (Kafka's DeleteRecords): records below it
    /// are no longer read, listed or fetched, and sealed segments wholly below it are deleted.
    /// `None` means the high watermark. Returns the new log start offset (the low watermark);
    /// an offset at or below the current start changes nothing.
    ///
    /// The offset is written to `log-start-offset` (temp file, fsync, rename, fsync the
    /// directory) after the log is flushed up to it, so after a crash the log never ends below
    /// its start.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] past the high watermark; [`Error::RecordsNotDeletable`] on a
    /// compacted topic; [`Error::ReadOnly`]; [`Error::Closed`]; I/O errors.
    pub(crate) fn delete_records(&self, offset: Option<u64>) -> Result<u64> {
        if !self.writable {
            return Err(Error::ReadOnly {
                operation: "delete records",
            });
        }
        if self.config().cleanup_policy != CleanupPolicy::Delete {
            return Err(Error::RecordsNotDeletable {
                topic: self.topic.to_string(),
                partition: self.partition,
            });
        }
        // Waits for the cleaner; nothing else moves segments meanwhile.
        let Some(_maintenance) = self.begin_maintenance() else {
            return Err(Error::Closed);
        };
        let (start, high_watermark) = {
            let state = self.lock();
            (state.log_start(), state.high_watermark.offset)
        };
        let offset = offset.unwrap_or(high_watermark);
        if offset > high_watermark {
            return Err(Error::OffsetOutOfRange {
                topic: self.topic.to_string(),
                partition: self.partition,
                offset,
                log_start_offset: start,
                log_end_offset: high_watermark,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        // Everything below the new start is on disk before the start is: recovery can then
        // never cut the log below it.
        self.flush()?;
        self.write_log_start_offset(offset)?;
        let mut state = self.lock();
        state.deleted_below = state.deleted_below.max(offset);
        let mut outcome = RetentionOutcome::default();
        self.delete_segments_below_log_start(&mut state, &mut outcome)?;
        tracing::info!(
            topic = %self.topic, partition = self.partition, log_start_offset = offset,
            deleted_segments = outcome.deleted_segments, "deleted records"
        );
        Ok(state.log_start())
    }

    /// Deletes sealed segments whose every offset is below the log start. The active segment
    /// stays, so the log keeps its end.
    fn delete_segments_below_log_start(
        &self,
        state: &mut LogState,
        outcome: &mut RetentionOutcome,
    ) -> Result<()> {
        let start = state.log_start();
        let below: Vec<(u64, u64)> = state
            .segments
            .values()
            .take(state.segments.len() - 1)
            .take_while(|s| s.next_offset <= start)
            .map(|s| (s.base_offset, s.size))
            .collect();
        for (base, size) in below {
            state.segments.remove(&base);
            self.delete_segment_files(base)?;
            state.dir_dirty = true;
            outcome.deleted_segments += 1;
            outcome.deleted_bytes += size;
            tracing::info!(
                topic = %self.topic, partition = self.partition, base_offset = base, bytes = size,
                reason = "log_start_offset", "deleted segment"
            );
        }
        Ok(())
    }

    fn write_log_start_offset(&self, offset: u64) -> Result<()> {
        let path = self.dir.join(LOG_START_OFFSET_FILE);
        let tmp = self.dir.join(format!("{LOG_START_OFFSET_FILE}.tmp"));
        let file = self.storage.open(&tmp, true).map_err(Error::io(&tmp))?;
        file.set_len(0).map_err(Error::io(&tmp))?;
        file.write_all_at(format!("{offset}\n").as_bytes(), 0)
            .map_err(Error::io(&tmp))?;
        file.sync_data().map_err(Error::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(Error::io(&path))?;
        sync_dir(&self.dir).map_err(Error::io(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::batch::{BatchBuilder, EncodedBatch};
    use crate::config::{FlushPolicy, TopicConfig};
    use crate::storage::FsStorage;

    fn open(dir: &Path, cleanup_policy: CleanupPolicy) -> Log {
        let config = TopicConfig {
            segment_bytes: 4096,
            flush: FlushPolicy::Never,
            cleanup_policy,
            ..TopicConfig::default()
        };
        Log::open(
            Arc::new(FsStorage),
            dir.to_path_buf(),
            "t".into(),
            0,
            config,
            true,
        )
        .unwrap()
    }

    /// Two records per batch, with timestamps `timestamps`.
    fn batch(timestamps: [i64; 2]) -> EncodedBatch {
        let mut b = BatchBuilder::with_capacity(512);
        for t in timestamps {
            b.push(t, Some(b"k"), Some("v".repeat(300).as_bytes()), &[]);
        }
        b.finish()
    }

    fn fill(log: &Log, batches: i64) {
        for i in 0..batches {
            log.append(&mut batch([1_000 + 2 * i, 1_001 + 2 * i]), 0)
                .unwrap();
        }
        log.publish();
    }

    #[test]
    fn deleted_records_stay_deleted_after_a_reopen_without_close() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), CleanupPolicy::Delete);
        fill(&log, 40);
        let segments_before = log.stats().segments;
        assert!(segments_before > 3, "small segments roll");

        assert_eq!(log.delete_records(Some(51)).unwrap(), 51);
        assert_eq!(log.log_start_offset(), 51);
        assert!(log.stats().segments < segments_before, "segments below go");
        assert!(matches!(
            log.read(50, 1 << 20),
            Err(Error::OffsetOutOfRange {
                log_start_offset: 51,
                ..
            })
        ));
        let mut records = Vec::new();
        log.read(51, 1 << 20)
            .unwrap()
            .records(51, &mut records)
            .unwrap();
        assert_eq!(records[0].offset, 51);
        // A time before every record finds the log start, not a deleted record.
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(51));
        // Deleting below the start changes nothing; past the high watermark is out of range.
        assert_eq!(log.delete_records(Some(10)).unwrap(), 51);
        assert!(matches!(
            log.delete_records(Some(81)),
            Err(Error::OffsetOutOfRange { offset: 81, .. })
        ));

        // Dropped without close, as a crash would: the start was written when it moved.
        drop(log);
        let log = open(dir.path(), CleanupPolicy::Delete);
        assert_eq!(log.log_start_offset(), 51);
        assert_eq!(log.stats().log_end_offset, 80);
        assert_eq!(
            log.delete_records(None).unwrap(),
            80,
            "None is the high watermark"
        );
        drop(log);
        let log = open(dir.path(), CleanupPolicy::Delete);
        assert_eq!(log.log_start_offset(), 80);
        assert!(log.read(80, 1 << 20).unwrap().is_empty());
        // The log goes on from its end.
        assert_eq!(log.append(&mut batch([1, 2]), 0).unwrap().base_offset, 80);
    }

    #[test]
    fn compacted_logs_refuse_delete_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), CleanupPolicy::Compact);
        fill(&log, 2);
        assert!(matches!(
            log.delete_records(Some(1)),
            Err(Error::RecordsNotDeletable { partition: 0, .. })
        ));
        assert_eq!(log.log_start_offset(), 0);
    }

    #[test]
    fn the_max_timestamp_is_found_across_segments_and_above_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), CleanupPolicy::Delete);
        assert_eq!(log.offset_of_max_timestamp().unwrap(), None);
        fill(&log, 10); // offsets 0..20, timestamps 1000..1020
        // The largest time sits in the middle of a batch, in an early segment, twice.
        log.append(&mut batch([5, 9_000]), 0).unwrap(); // 20, 21
        fill(&log, 10); // 22..42
        log.append(&mut batch([9_000, 7]), 0).unwrap(); // 42, 43
        fill(&log, 3);
        assert_eq!(log.offset_of_max_timestamp().unwrap(), Some((21, 9_000)));
        // Once the first is deleted, the second.
        log.delete_records(Some(22)).unwrap();
        assert_eq!(log.offset_of_max_timestamp().unwrap(), Some((42, 9_000)));
        // The start inside the batch that holds the maximum: only its later records count.
        log.delete_records(Some(43)).unwrap();
        assert_eq!(
            log.offset_of_max_timestamp().unwrap(),
            Some((49, 1_000 + 2 * 2 + 1))
        );
    }
}
