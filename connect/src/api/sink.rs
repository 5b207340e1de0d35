//! Sinks: write records of topics to an outside system.

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Record;
use crate::error::{ConfigIssue, Error, Result};

/// A sink connector's config, which also opens its tasks. See [`SourceConnector`](super::SourceConnector).
#[async_trait]
pub trait SinkConnector: DeserializeOwned + Serialize + Clone + Send + Sync + 'static {
    /// Checks the config without network I/O (local checks, such as whether a directory is
    /// writable, belong here: they fail `connect validate` and `connect run` up front).
    ///
    /// # Errors
    /// The first bad key and why.
    fn validate(&self) -> Result<(), ConfigIssue>;

    /// Opens one task. The runtime gives each task a share of the topics' partitions.
    ///
    /// # Errors
    /// Retriable errors are retried by the runtime; others fail the task.
    ///
    /// # Cancel safety
    /// Needs none: the runtime runs it to completion.
    async fn open(self, context: SinkContext) -> Result<Box<dyn Sink>>;
}

/// One running sink task.
///
/// The runtime calls `put` with batches, then `flush`; it commits the consumer offsets of
/// everything put only after `flush` returns, so `flush` must make the data durable, except
/// what [`pending_offsets`](Self::pending_offsets) reports as still held.
#[async_trait]
pub trait Sink: Send {
    /// Writes (or buffers) records. Returns the records it rejected as bad data (by index into
    /// `records`); the runtime sends those to the dead-letter topic or fails, by
    /// `errors.tolerance`.
    ///
    /// # Errors
    /// [`Error::Retriable`] is retried with the same batch (so writes should be idempotent or
    /// the sink at-least-once); others fail the task.
    ///
    /// # Cancel safety
    /// Needs none: the runtime never drops a `put` midway, not even when the task stops (a
    /// task stuck longer than 30 s at shutdown is abandoned with the process; its offsets were
    /// not committed, so its records are delivered again).
    async fn put(&mut self, records: &[Record]) -> Result<Vec<Rejected>>;

    /// Makes everything put so far durable.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    ///
    /// # Cancel safety
    /// As [`put`](Self::put): always run to completion, also when the task is stopping.
    async fn flush(&mut self) -> Result<()>;

    /// The records that [`flush`](Self::flush) left buffered on purpose, for a sink that
    /// gathers records into large objects over many flushes: for each topic partition holding
    /// some, as `(topic, partition, offset of the first)`, with the topic and partition the
    /// records had in `put`. The runtime's offset commit after a flush stops at these offsets,
    /// so those records are delivered again after a restart; and while any are held, the
    /// runtime keeps calling `flush` every `offset_flush_interval_ms`, even without new
    /// records, so the sink can write them out on its own schedule.
    ///
    /// The default holds nothing back: `flush` made everything durable.
    fn pending_offsets(&self) -> Vec<(String, u32, u64)> {
        Vec::new()
    }

    /// Releases resources after a final flush.
    ///
    /// # Errors
    /// Logged.
    ///
    /// # Cancel safety
    /// Needs none: run to completion.
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A record a sink refused, and why.
#[derive(Debug)]
pub struct Rejected {
    /// Its index in the batch given to [`Sink::put`].
    pub index: usize,
    /// Why.
    pub error: Error,
}

/// What a sink task is told when it opens.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The connector's name.
    pub connector: String,
    /// This task's number, from 0.
    pub task: usize,
    /// The connector's `topics`.
    pub topics: Vec<String>,
}
