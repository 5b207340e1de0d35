//! Retention: whole sealed segments are deleted once past the topic's time or size limit.

use super::Log;
use crate::config::CleanupPolicy;
use crate::error::Result;

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
        if !self.writable || self.config.cleanup_policy != CleanupPolicy::Delete {
            return Ok(outcome);
        }
        let Some(_maintenance) = self.begin_maintenance() else {
            return Ok(outcome);
        };
        let mut state = self.lock();
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
            let over_size = self
                .config
                .retention_bytes
                .is_some_and(|limit| total - size >= limit);
            let expired = self.config.retention_ms.is_some_and(|ms| {
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
