//! State stores: key-value stores that survive restarts and may outgrow memory.
//!
//! Each task's store is a redb database on local disk (in memory for the test driver): redb
//! keeps hot pages cached and the rest on disk, with crash-consistent commits, so a store larger
//! than RAM still works. The source of truth is a compacted changelog topic in the log
//! (`{application_id}-{store}-changelog`, one partition per task): every write is also a
//! changelog record. Writes are cached in memory and committed to redb at each task commit,
//! together with the changelog offset they cover; on start-up a task replays the changelog from
//! that checkpoint (from the start if the local file is gone), so the local file is only a cache.

mod handle;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use crate::error::{Error, Result};

pub(crate) use handle::StoreHandle;

const DATA: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("data");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const CHECKPOINT: &str = "changelog_offset";

/// One task's key-value store.
pub struct KeyValueStore {
    name: String,
    db: Arc<Database>,
    /// Writes since the last flush (`None` deletes), read before the database.
    dirty: BTreeMap<Bytes, Option<Bytes>>,
    /// Keys written since their last changelog record: a key written many times between two
    /// commits is logged once, with its latest value (as Kafka Streams' caching does).
    unlogged: std::collections::BTreeSet<Bytes>,
}

/// What a store committed (at the task's last commit), read from any thread while the task
/// goes on writing.
#[derive(Clone)]
pub struct StoreReader {
    name: String,
    db: Arc<Database>,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl StoreReader {
    /// The store's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The committed value of `key` (its bytes as the store's key serde wrote them).
    ///
    /// # Errors
    /// [`Error::State`] if the database cannot be read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let read = self
            .db
            .begin_read()
            .map_err(|e| state_error(&self.name, e))?;
        let table = match read.open_table(DATA) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(state_error(&self.name, e)),
        };
        let value = table.get(key).map_err(|e| state_error(&self.name, e))?;
        Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
    }
}

impl std::fmt::Debug for KeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStore")
            .field("name", &self.name)
            .field("dirty", &self.dirty.len())
            .finish()
    }
}

impl KeyValueStore {
    /// Opens (or creates) the store file at `path`.
    pub(crate) fn open(name: &str, path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| state_error(name, e))?;
        }
        let db = Database::create(path).map_err(|e| state_error(name, e))?;
        Ok(Self {
            name: name.to_string(),
            db: Arc::new(db),
            dirty: BTreeMap::new(),
            unlogged: std::collections::BTreeSet::new(),
        })
    }

    /// A store kept in memory only (test driver).
    pub(crate) fn in_memory(name: &str) -> Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| state_error(name, e))?;
        Ok(Self {
            name: name.to_string(),
            db: Arc::new(db),
            dirty: BTreeMap::new(),
            unlogged: std::collections::BTreeSet::new(),
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// [`Error::State`] if the database cannot be read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        if let Some(value) = self.dirty.get(key) {
            return Ok(value.clone());
        }
        self.reader().get(key)
    }

    /// A read-only view of what the store committed, for other threads (interactive queries).
    pub(crate) fn reader(&self) -> StoreReader {
        StoreReader {
            name: self.name.clone(),
            db: self.db.clone(),
        }
    }

    /// Sets (or with `None` deletes) `key`; durable at the next flush.
    pub(crate) fn put(&mut self, key: Bytes, value: Option<Bytes>) {
        self.unlogged.insert(key.clone());
        self.dirty.insert(key, value);
    }

    /// Writes without a changelog record (restoring from the changelog itself).
    pub(crate) fn put_logged(&mut self, key: Bytes, value: Option<Bytes>) {
        self.dirty.insert(key, value);
    }

    /// The latest value of every key written since the last call, for the changelog.
    pub(crate) fn take_unlogged(&mut self) -> Vec<(Bytes, Option<Bytes>)> {
        let keys = std::mem::take(&mut self.unlogged);
        keys.into_iter()
            .map(|k| {
                let value = self.dirty.get(&k).cloned().flatten();
                (k, value)
            })
            .collect()
    }

    /// Every entry, in key order (dirty writes included).
    ///
    /// # Errors
    /// [`Error::State`] if the database cannot be read.
    pub fn entries(&self) -> Result<Vec<(Bytes, Bytes)>> {
        self.scan((Bound::Unbounded, Bound::Unbounded))
    }

    /// Entries with keys in `from..=to`, in key order (dirty writes included).
    ///
    /// # Errors
    /// [`Error::State`] if the database cannot be read.
    pub fn range(&self, from: &[u8], to: &[u8]) -> Result<Vec<(Bytes, Bytes)>> {
        self.scan((Bound::Included(from), Bound::Included(to)))
    }

    /// Committed entries in `bounds`, overlaid with the dirty writes there.
    fn scan(&self, bounds: (Bound<&[u8]>, Bound<&[u8]>)) -> Result<Vec<(Bytes, Bytes)>> {
        let mut all: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
        let read = self
            .db
            .begin_read()
            .map_err(|e| state_error(&self.name, e))?;
        match read.open_table(DATA) {
            Ok(table) => {
                for entry in table
                    .range::<&[u8]>(bounds)
                    .map_err(|e| state_error(&self.name, e))?
                {
                    let (k, v) = entry.map_err(|e| state_error(&self.name, e))?;
                    all.insert(
                        Bytes::copy_from_slice(k.value()),
                        Some(Bytes::copy_from_slice(v.value())),
                    );
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(state_error(&self.name, e)),
        }
        let owned = |b: Bound<&[u8]>| b.map(Bytes::copy_from_slice);
        let dirty = self.dirty.range((owned(bounds.0), owned(bounds.1)));
        all.extend(dirty.map(|(k, v)| (k.clone(), v.clone())));
        Ok(all
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    /// Entries committed to the store (writes since the last flush not counted).
    ///
    /// # Errors
    /// [`Error::State`] if the database cannot be read.
    pub fn committed_entries(&self) -> Result<u64> {
        let read = self
            .db
            .begin_read()
            .map_err(|e| state_error(&self.name, e))?;
        match read.open_table(DATA) {
            Ok(table) => table.len().map_err(|e| state_error(&self.name, e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(state_error(&self.name, e)),
        }
    }

    /// Commits the cached writes, and the changelog offset they bring the store to.
    pub(crate) fn flush(&mut self, changelog_offset: u64) -> Result<()> {
        let name = self.name.clone();
        let err = |e: &dyn std::fmt::Display| Error::State {
            store: name.clone(),
            reason: e.to_string(),
        };
        let write = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut table = write.open_table(DATA).map_err(|e| err(&e))?;
            for (key, value) in &self.dirty {
                match value {
                    Some(value) => table
                        .insert(&key[..], &value[..])
                        .map(drop)
                        .map_err(|e| err(&e))?,
                    None => table.remove(&key[..]).map(drop).map_err(|e| err(&e))?,
                }
            }
            let mut meta = write.open_table(META).map_err(|e| err(&e))?;
            meta.insert(CHECKPOINT, changelog_offset)
                .map_err(|e| err(&e))?;
        }
        write.commit().map_err(|e| err(&e))?;
        self.dirty.clear();
        Ok(())
    }

    /// Empties the store and its checkpoint, to rebuild it from the changelog's start.
    pub(crate) fn clear(&mut self) -> Result<()> {
        let name = self.name.clone();
        let err = |e: &dyn std::fmt::Display| Error::State {
            store: name.clone(),
            reason: e.to_string(),
        };
        let write = self.db.begin_write().map_err(|e| err(&e))?;
        write.delete_table(DATA).map_err(|e| err(&e))?;
        write.delete_table(META).map_err(|e| err(&e))?;
        write.commit().map_err(|e| err(&e))?;
        self.dirty.clear();
        Ok(())
    }

    /// The changelog offset the committed state covers; 0 for a new store.
    pub(crate) fn checkpoint(&self) -> Result<u64> {
        let read = self
            .db
            .begin_read()
            .map_err(|e| state_error(&self.name, e))?;
        match read.open_table(META) {
            Ok(meta) => Ok(meta
                .get(CHECKPOINT)
                .map_err(|e| state_error(&self.name, e))?
                .map_or(0, |v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(state_error(&self.name, e)),
        }
    }
}

fn state_error(store: &str, e: impl std::fmt::Display) -> Error {
    Error::State {
        store: store.to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_visible_at_once_and_durable_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut store = KeyValueStore::open("s", &path).unwrap();
        store.put(Bytes::from_static(b"a"), Some(Bytes::from_static(b"1")));
        store.put(Bytes::from_static(b"b"), Some(Bytes::from_static(b"2")));
        assert_eq!(store.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        store.flush(7).unwrap();
        store.put(Bytes::from_static(b"a"), None);
        store.put(Bytes::from_static(b"c"), Some(Bytes::from_static(b"3")));
        assert_eq!(
            store.get(b"a").unwrap(),
            None,
            "a dirty delete hides the committed value"
        );
        drop(store);

        let store = KeyValueStore::open("s", &path).unwrap();
        assert_eq!(store.checkpoint().unwrap(), 7);
        assert_eq!(
            store.get(b"a").unwrap().as_deref(),
            Some(&b"1"[..]),
            "unflushed writes are gone"
        );
        assert_eq!(store.get(b"c").unwrap(), None);
        let keys: Vec<_> = store
            .entries()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
    }
}
