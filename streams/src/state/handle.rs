//! The state-store plumbing every stateful operator shares: one task's handle on a store, with
//! the serdes of its keys and values and errors that name the store.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::serde::Serde;
use crate::task::TaskContext;
use crate::topology::Instantiation;

/// A store as an operator instance sees it.
pub(crate) struct StoreHandle<K, A> {
    id: usize,
    name: Arc<str>,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<A>>,
}

impl<K: 'static, A: 'static> StoreHandle<K, A> {
    /// Registers (or finds) store `name` in the task being built.
    pub(crate) fn register(
        inst: &mut Instantiation,
        name: &str,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<A>>,
    ) -> Self {
        Self {
            id: inst.add_store(name),
            name: name.into(),
            key_serde,
            value_serde,
        }
    }

    /// An error naming the store.
    pub(crate) fn error(&self, reason: impl std::fmt::Display) -> Error {
        Error::State {
            store: self.name.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The store key of `key`; `None` for a null key, which stateful operators skip, as Kafka
    /// Streams does.
    pub(crate) fn key_bytes(&self, key: &K) -> Result<Option<Bytes>> {
        self.key_serde.serialize(key).map_err(|e| self.error(e))
    }

    /// The decoded value at a store key.
    pub(crate) fn get(&self, ctx: &TaskContext, slot: &[u8]) -> Result<Option<A>> {
        ctx.store_get(self.id, slot)?
            .map(|bytes| {
                self.value_serde
                    .deserialize(Some(&bytes))
                    .map_err(|e| self.error(e))
            })
            .transpose()
    }

    /// Encodes and writes a value (`None` deletes), changelog included.
    pub(crate) fn put(
        &self,
        ctx: &mut TaskContext,
        slot: Bytes,
        value: Option<&A>,
        timestamp: i64,
    ) -> Result<()> {
        let bytes = match value {
            Some(value) => self
                .value_serde
                .serialize(value)
                .map_err(|e| self.error(e))?,
            None => None,
        };
        ctx.store_put(self.id, slot, bytes, timestamp)
    }

    /// Every entry, decoded.
    pub(crate) fn entries(&self, ctx: &TaskContext) -> Result<Vec<(Bytes, A)>> {
        ctx.store_entries(self.id)?
            .into_iter()
            .map(|(slot, bytes)| {
                let value = self
                    .value_serde
                    .deserialize(Some(&bytes))
                    .map_err(|e| self.error(e))?;
                Ok((slot, value))
            })
            .collect()
    }

    /// The store's name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The store's index in the task.
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// Decodes a stored value.
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<A> {
        self.value_serde
            .deserialize(Some(bytes))
            .map_err(|e| self.error(e))
    }

    /// Decodes a key encoded by [`StoreHandle::key_bytes`].
    pub(crate) fn decode_key(&self, bytes: &[u8]) -> Result<K> {
        self.key_serde
            .deserialize(Some(bytes))
            .map_err(|e| self.error(e))
    }

    /// The key serde, to decode keys kept in the store.
    pub(crate) fn key_serde(&self) -> &Arc<dyn Serde<K>> {
        &self.key_serde
    }
}
