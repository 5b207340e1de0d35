//! Interactive queries: read-only lookups in the state stores of the tasks this instance runs
//! (Kafka Streams' `store()`), and which task holds a key (`queryMetadataForKey`).
//!
//! A store's key lives in task `murmur2(key) % partitions`, the partition Kafka's default
//! partitioner and Logbrook's repartition topics give it. Lookups read what the task last
//! committed; writes since are not visible until its next commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use logbrook_core::partition_for_key;

use crate::error::Result;
use crate::state::StoreReader;

/// Where a key of a store is, as this instance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// The task holding the key runs here: its committed value (`None`: no such key).
    Local(Option<Bytes>),
    /// The key belongs to `task`, which another instance runs (or none, during a rebalance).
    Elsewhere {
        /// The task (partition) holding the key.
        task: u32,
    },
}

/// The stores of the tasks running in this instance; a handle that stays valid after `run`
/// consumed the app. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalStores {
    partitions: u32,
    stores: Arc<Mutex<HashMap<(String, u32), StoreReader>>>,
}

impl LocalStores {
    pub(crate) fn new(partitions: u32) -> Self {
        Self {
            partitions,
            stores: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), StoreReader>> {
        self.stores.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self, task: u32, readers: impl IntoIterator<Item = StoreReader>) {
        let mut stores = self.lock();
        for reader in readers {
            stores.insert((reader.name().to_string(), task), reader);
        }
    }

    pub(crate) fn unregister(&self, task: u32) {
        self.lock().retain(|(_, t), _| *t != task);
    }

    /// The task holding `key` (the bytes the store's key serde writes).
    #[must_use]
    pub fn task_for_key(&self, key: &[u8]) -> u32 {
        partition_for_key(key, self.partitions.max(1))
    }

    /// The committed value of `key` in `store`, if its task runs here.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn get(&self, store: &str, key: &[u8]) -> Result<KeyLookup> {
        let task = self.task_for_key(key);
        let reader = self.lock().get(&(store.to_string(), task)).cloned();
        match reader {
            Some(reader) => Ok(KeyLookup::Local(reader.get(key)?)),
            None => Ok(KeyLookup::Elsewhere { task }),
        }
    }
}
