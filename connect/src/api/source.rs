//! Sources: read from an outside system and produce records.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::SourceRecord;
use crate::error::{ConfigIssue, Result};

/// A source connector's config, which also builds its tasks.
///
/// The runtime deserializes it from the connector file (it must use
/// `#[serde(deny_unknown_fields)]`), calls [`validate`](Self::validate), splits it with
/// [`task_configs`](Self::task_configs), and [`open`](Self::open)s one [`Source`] per task.
#[async_trait]
pub trait SourceConnector: DeserializeOwned + Serialize + Clone + Send + Sync + 'static {
    /// Checks the config without any I/O.
    ///
    /// # Errors
    /// The first bad key and why.
    fn validate(&self) -> Result<(), ConfigIssue>;

    /// Splits the work into at most `max_tasks` task configs. One task by default.
    ///
    /// # Errors
    /// When the work cannot be listed (e.g. a glob that cannot be read).
    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Self>> {
        let _ = max_tasks;
        Ok(vec![self.clone()])
    }

    /// Whether the source names each record's topic itself (one topic per table, say), so the
    /// connector's `topic` may be left out. `false` by default: `topic` is required.
    fn names_own_topics(&self) -> bool {
        false
    }

    /// Called once when the connector is deleted (not when it stops), after its tasks stopped:
    /// the place to drop what the connector keeps outside the log (a replication slot).
    ///
    /// # Errors
    /// Logged; the connector is deleted anyway.
    ///
    /// # Cancel safety
    /// Needs none: the runtime runs it to completion.
    async fn deleted(self, connector: String) -> Result<()> {
        let _ = connector;
        Ok(())
    }

    /// The partitions that topics must have before this connector's first record, when the
    /// source knows them: an archive restores records into their original partitions. `topic`
    /// is the connector's `topic` (empty when the source names its own).
    ///
    /// Called once when the connector starts, before its tasks: the runtime creates a missing
    /// topic with at least that many partitions, and fails the connector, saying how many are
    /// needed, when an existing topic has fewer. None by default.
    ///
    /// # Errors
    /// The connector fails to start (restart it once the cause is fixed).
    ///
    /// # Cancel safety
    /// Needs none: the runtime runs it to completion.
    async fn partitions_needed(&self, topic: &str) -> Result<Vec<(String, u32)>> {
        let _ = topic;
        Ok(Vec::new())
    }

    /// Opens one task, resuming from the offsets in `context`.
    ///
    /// # Errors
    /// Retriable errors are retried by the runtime; others fail the task.
    ///
    /// # Cancel safety
    /// Needs none: the runtime runs it to completion.
    async fn open(self, context: SourceContext) -> Result<Box<dyn Source>>;
}

/// One running source task.
#[async_trait]
pub trait Source: Send {
    /// Returns the next records, waiting a little (up to about a second) when there are none.
    /// An empty vector is a normal answer.
    ///
    /// # Errors
    /// [`Error::Retriable`](crate::Error::Retriable) is retried with backoff; others fail the task.
    ///
    /// # Cancel safety
    /// Must be cancel safe: a stopping task drops a pending `poll`, then calls
    /// [`close`](Self::close). Records read but not yet returned are then lost to this task,
    /// which is correct only because their offsets were never committed: the next task reads
    /// them again from the committed offsets. A `poll` must not advance anything outside the
    /// task (acknowledge a replication slot, delete a file) before it returns; that belongs in
    /// [`commit`](Self::commit).
    async fn poll(&mut self) -> Result<Vec<SourceRecord>>;

    /// Called after the records returned so far, and their offsets, are durable in the log.
    ///
    /// # Errors
    /// Logged; the offsets are already stored.
    ///
    /// # Cancel safety
    /// Needs none: the runtime runs it to completion.
    async fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    /// Releases resources. Called once, after the last `poll`.
    ///
    /// # Errors
    /// Logged.
    ///
    /// # Cancel safety
    /// Needs none: the runtime runs it to completion.
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What a source task is told when it opens.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The connector's name.
    pub connector: String,
    /// This task's number, from 0.
    pub task: usize,
    /// The connector's `topic`.
    pub topic: String,
    offsets: HashMap<String, Value>,
}

impl SourceContext {
    /// A context with the stored offsets of the connector, keyed by source partition.
    pub fn new(
        connector: impl Into<String>,
        task: usize,
        topic: impl Into<String>,
        offsets: Vec<(Value, Value)>,
    ) -> Self {
        Self {
            connector: connector.into(),
            task,
            topic: topic.into(),
            offsets: offsets
                .into_iter()
                .map(|(partition, offset)| (partition.to_string(), offset))
                .collect(),
        }
    }

    /// The stored offset of a source partition: the position after the last record that reached
    /// the log.
    pub fn offset(&self, source_partition: &Value) -> Option<&Value> {
        self.offsets.get(&source_partition.to_string())
    }
}
