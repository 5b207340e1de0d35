//! Sparse offset and time indexes of a segment.
//!
//! The active segment keeps its entries in memory (they are rebuilt from the log on open, so the
//! file is only written when the segment is sealed). A sealed segment answers lookups from its
//! file with a binary search of positioned reads, so memory stays flat however long the log grows.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{Storage, StorageFile};

/// A fixed-size index entry.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(buf: &[u8]) -> Self;
}

/// Offset index entry: the batch starting at `position` holds `relative_offset` (its base).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Time index entry: every record with an offset below `base + relative_offset` has a
/// timestamp `<= timestamp` (the largest timestamp seen so far in the segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&self.relative_offset.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        Self {
            timestamp: i64::from_le_bytes(ts),
            relative_offset: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

#[derive(Debug)]
enum Entries<E> {
    Memory(Vec<E>),
    File {
        file: Arc<dyn StorageFile>,
        count: usize,
    },
}

/// A sparse index file (`.index` or `.timeindex`).
#[derive(Debug)]
pub(crate) struct SparseIndex<E> {
    path: PathBuf,
    entries: Entries<E>,
}

impl<E: IndexEntry> SparseIndex<E> {
    /// An empty in-memory index that will be written to `path` when sealed.
    pub(crate) fn in_memory(path: PathBuf, entries: Vec<E>) -> Self {
        Self {
            path,
            entries: Entries::Memory(entries),
        }
    }

    /// Reads every entry of the file at `path`; `Ok(None)` if it is missing, `Err` with a reason
    /// if its size is not a whole number of entries.
    pub(crate) fn read_all(storage: &dyn Storage, path: &Path) -> io::Result<Option<Vec<E>>> {
        let file = match storage.open_read_only(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.len()? as usize;
        if !len.is_multiple_of(E::SIZE) {
            return Ok(None);
        }
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, 0)?;
        Ok(Some(buf.chunks_exact(E::SIZE).map(E::decode).collect()))
    }

    /// Opens a validated index file for lookups without loading it.
    pub(crate) fn open_file(
        storage: &dyn Storage,
        path: PathBuf,
        count: usize,
    ) -> io::Result<Self> {
        let file = storage.open_read_only(&path)?;
        Ok(Self {
            path,
            entries: Entries::File { file, count },
        })
    }

    /// Adds an entry (active segments only).
    pub(crate) fn push(&mut self, entry: E) {
        if let Entries::Memory(v) = &mut self.entries {
            v.push(entry);
        }
    }

    pub(crate) fn len(&self) -> usize {
        match &self.entries {
            Entries::Memory(v) => v.len(),
            Entries::File { count, .. } => *count,
        }
    }

    pub(crate) fn get(&self, i: usize) -> io::Result<E> {
        match &self.entries {
            Entries::Memory(v) => Ok(v[i]),
            Entries::File { file, .. } => {
                let mut buf = [0u8; 16];
                file.read_exact_at(&mut buf[..E::SIZE], (i * E::SIZE) as u64)?;
                Ok(E::decode(&buf[..E::SIZE]))
            }
        }
    }

    pub(crate) fn last(&self) -> io::Result<Option<E>> {
        match self.len() {
            0 => Ok(None),
            n => self.get(n - 1).map(Some),
        }
    }

    /// The last entry for which `before(entry)` holds, assuming entries are sorted so that
    /// `before` is true for a prefix.
    pub(crate) fn last_where(&self, before: impl Fn(&E) -> bool) -> io::Result<Option<E>> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(&self.get(mid)?) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            Ok(None)
        } else {
            self.get(lo - 1).map(Some)
        }
    }

    /// Writes the in-memory entries to the index file and switches to file-backed lookups.
    pub(crate) fn write_to_file(
        &mut self,
        storage: &dyn Storage,
    ) -> io::Result<Arc<dyn StorageFile>> {
        let Entries::Memory(v) = &self.entries else {
            return storage.open(&self.path, false);
        };
        let mut buf = Vec::with_capacity(v.len() * E::SIZE);
        v.iter().for_each(|e| e.encode(&mut buf));
        let file = storage.open(&self.path, true)?;
        file.set_len(0)?;
        file.write_all_at(&buf, 0)?;
        self.entries = Entries::File {
            file: file.clone(),
            count: v.len(),
        };
        Ok(file)
    }
}
