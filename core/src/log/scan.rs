//! Scanning a log from an offset to its end, batch by batch: the one way state is rebuilt from a
//! log (committed group offsets, pending transactions, streams state stores) and whole topics
//! are read by tools.

use std::sync::Arc;

use bytes::Bytes;

use super::{FetchedChunk, Log};
use crate::batch::{self, BatchHeader};
use crate::error::Result;
use crate::record::ConsumerRecord;

/// Bytes a scan reads at a time.
const SCAN_CHUNK_BYTES: usize = 4 << 20;

impl Log {
    /// The batches visible from `from` (at least the log start) to the high watermark, in offset
    /// order, read a few MiB at a time. Batches published while the scan runs are included: it
    /// ends when a read finds nothing more, or after the first error.
    ///
    /// A batch is never split, so the first one may start below `from`;
    /// [`ScannedBatch::records`] leaves out its records below `from`.
    ///
    /// # Examples
    /// ```no_run
    /// # fn demo(log: &logbrook_core::Log) -> logbrook_core::Result<()> {
    /// let mut producers = std::collections::BTreeSet::new();
    /// for batch in log.scan(0) {
    ///     producers.insert(batch?.header().producer_id);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn scan(&self, from: u64) -> LogScan<'_> {
        self.scan_in_chunks(from, SCAN_CHUNK_BYTES)
    }

    fn scan_in_chunks(&self, from: u64, chunk_bytes: usize) -> LogScan<'_> {
        let from = from.max(self.log_start_offset());
        LogScan {
            log: self,
            from,
            next_offset: from,
            chunk_bytes,
            chunk: None,
            position: 0,
            done: false,
        }
    }

    /// Hands every committed record from `from` (at least the log start) to the last stable
    /// offset to `visit`, in offset order: [`Log::scan`], decoded, without transaction markers
    /// and aborted transactions. A batch's records are handed over
    /// once the whole batch decoded. Returns the offset after the last batch read.
    ///
    /// # Errors
    /// As [`LogScan`] and [`ScannedBatch::records`]: I/O errors, [`Error::OffsetOutOfRange`]
    /// when retention overtakes the scan, [`Error::CorruptBatch`].
    ///
    /// [`Error::OffsetOutOfRange`]: crate::Error::OffsetOutOfRange
    /// [`Error::CorruptBatch`]: crate::Error::CorruptBatch
    pub fn for_each_record(&self, from: u64, mut visit: impl FnMut(ConsumerRecord)) -> Result<u64> {
        // Committed records only, as a `read_committed` reader sees them.
        let stable = self.last_stable_offset();
        let aborted = self.aborted_transactions(from, stable);
        let mut scan = self.scan(from);
        let mut records = Vec::new();
        for batch in &mut scan {
            let batch = batch?;
            let header = *batch.header();
            if header.base_offset >= stable {
                return Ok(header.base_offset);
            }
            if header.is_control() || super::fetch::is_aborted(&aborted, &header) {
                continue;
            }
            batch.records(&mut records)?;
            records.drain(..).for_each(&mut visit);
        }
        Ok(scan.next_offset())
    }
}

/// An iterator over a log's batches from an offset to its end; see [`Log::scan`].
///
/// Yields [`Error::CorruptBatch`] for a batch whose header is unsound (its CRC is checked only
/// when its records are decoded), and the errors of [`Log::read`]; the scan ends after one.
///
/// [`Error::CorruptBatch`]: crate::Error::CorruptBatch
#[derive(Debug)]
pub struct LogScan<'a> {
    log: &'a Log,
    /// Where the scan started; records below it are left out.
    from: u64,
    /// The offset after the last batch yielded: where the next read starts.
    next_offset: u64,
    chunk_bytes: usize,
    /// The chunk being walked, shared with the batches yielded from it.
    chunk: Option<Arc<FetchedChunk>>,
    /// Byte position of the next batch in `chunk`.
    position: usize,
    done: bool,
}

impl LogScan<'_> {
    /// The offset after the last batch yielded (where the scan started, before the first).
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }
}

impl Iterator for LogScan<'_> {
    type Item = Result<ScannedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(chunk) = &self.chunk
                && self.position < chunk.bytes().len()
            {
                let position = self.position;
                return Some(match batch::validate_framing(&chunk.bytes()[position..]) {
                    Ok(header) => {
                        self.position += header.total_len();
                        self.next_offset = header.next_offset();
                        Ok(ScannedBatch {
                            chunk: chunk.clone(),
                            position,
                            header,
                            from: self.from,
                        })
                    }
                    Err(e) => {
                        self.done = true;
                        Err(chunk.corrupt(position, format!("{e:?}")))
                    }
                });
            }
            match self.log.read(self.next_offset, self.chunk_bytes) {
                Ok(chunk) if chunk.is_empty() => self.done = true,
                Ok(chunk) => {
                    self.chunk = Some(Arc::new(chunk));
                    self.position = 0;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// One batch met by a [`LogScan`]: its header, sound in shape, and its bytes, CRC not checked
/// yet.
#[derive(Debug, Clone)]
pub struct ScannedBatch {
    chunk: Arc<FetchedChunk>,
    /// Byte position of the batch in `chunk`.
    position: usize,
    header: BatchHeader,
    from: u64,
}

impl ScannedBatch {
    /// The batch's header (offsets, timestamps, producer id and sequence, record count).
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes as stored.
    pub fn bytes(&self) -> Bytes {
        self.chunk
            .bytes()
            .slice(self.position..self.position + self.header.total_len())
    }

    /// Checks the batch's CRC and appends its records at or after the scan's start to `out`.
    ///
    /// # Errors
    /// [`Error::CorruptBatch`] with the segment and byte position of the batch.
    ///
    /// [`Error::CorruptBatch`]: crate::Error::CorruptBatch
    pub fn records(&self, out: &mut Vec<ConsumerRecord>) -> Result<()> {
        self.chunk
            .batch_records(self.position, self.from, out)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::batch::BatchBuilder;
    use crate::config::{FlushPolicy, TopicConfig};
    use crate::error::Error;
    use crate::segment::segment_path;
    use crate::storage::FsStorage;

    /// A log of 20 batches of 3 records (offsets 0..60) over several segments.
    fn filled(dir: &Path) -> Log {
        let config = TopicConfig {
            segment_bytes: 1024,
            flush: FlushPolicy::Always,
            ..TopicConfig::default()
        };
        let log = Log::open(
            Arc::new(FsStorage),
            dir.to_path_buf(),
            "t".into(),
            0,
            config,
            true,
        )
        .unwrap();
        for i in 0..20 {
            let mut b = BatchBuilder::with_capacity(256);
            for j in 0..3 {
                b.push(
                    i,
                    None,
                    Some(format!("{i}-{j}-{}", "x".repeat(40)).as_bytes()),
                    &[],
                );
            }
            let mut batch = b.finish();
            batch.set_producer(i, 0, 0, false);
            log.append(&mut batch, 0).unwrap();
        }
        log.flush().unwrap();
        log.publish();
        log
    }

    #[test]
    fn a_scan_reads_every_batch_to_the_end_across_chunks_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path());
        for chunk_bytes in [1, 300, 4 << 20] {
            let mut scan = log.scan_in_chunks(0, chunk_bytes);
            let producers: Vec<i64> = (&mut scan)
                .map(|b| b.unwrap().header().producer_id)
                .collect();
            assert_eq!(producers, (0..20).collect::<Vec<_>>(), "{chunk_bytes}");
            assert_eq!(scan.next_offset(), 60);
        }
    }

    #[test]
    fn a_scan_from_inside_a_batch_leaves_out_the_records_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path());
        let mut records = Vec::new();
        let end = log.for_each_record(7, |r| records.push(r.offset)).unwrap();
        assert_eq!(records, (7..60).collect::<Vec<_>>());
        assert_eq!(end, 60);
        let first = log.scan(7).next().unwrap().unwrap();
        assert_eq!(first.header().base_offset, 6);
        assert_eq!(first.bytes().len(), first.header().total_len());
        assert_eq!(
            log.for_each_record(60, |_| panic!("past the end")).unwrap(),
            60
        );
    }

    #[test]
    fn a_damaged_batch_is_reported_by_its_records_and_an_unsound_header_ends_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let log = filled(dir.path());
        let first = segment_path(dir.path(), 0, "log");
        let mut bytes = std::fs::read(&first).unwrap();
        let first_len = BatchHeader::parse(&bytes).unwrap().total_len();
        // The first batch's last byte: its header stays sound, its CRC does not.
        bytes[first_len - 1] ^= 0xff;
        // The second batch's magic: its header is unsound.
        bytes[first_len + 16] = 9;
        std::fs::write(&first, &bytes).unwrap();

        let mut scan = log.scan(0);
        let damaged = scan.next().unwrap().unwrap();
        assert_eq!(damaged.header().producer_id, 0);
        let mut records = Vec::new();
        assert!(
            matches!(damaged.records(&mut records), Err(Error::CorruptBatch { position: 0, reason, .. }) if reason.contains("crc"))
        );
        match scan.next() {
            Some(Err(Error::CorruptBatch { position, .. })) => {
                assert_eq!(position, first_len as u64);
            }
            other => panic!("expected a corrupt batch, got {other:?}"),
        }
        assert!(scan.next().is_none());
        assert!(matches!(
            log.for_each_record(0, |_| {}),
            Err(Error::CorruptBatch { .. })
        ));
    }
}
