//! A connector's offsets, read and changed as types: where a source is in its own data, or
//! where a sink is in the log. The REST layer maps them to Kafka Connect's JSON and back.

use logbrook_core::{ResetTarget, TopicPartition};
use serde_json::Value;

use super::{Worker, group_id, stop};
use crate::api::ConnectorKind;
use crate::error::{Error, Result};

/// Where a source is in one of its partitions. Both are the source's own JSON maps (a file
/// source's `{"path": ...}` and `{"position": ...}`, say), as Kafka Connect keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOffset {
    /// The source partition.
    pub partition: Value,
    /// The last position whose records are in the log.
    pub offset: Value,
}

/// Where a sink is in one log partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOffset {
    /// The log partition.
    pub partition: TopicPartition,
    /// The next offset to read: everything before it is in the sink.
    pub next: u64,
}

/// A connector's committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorOffsets {
    /// A source's, one per source partition it has written from.
    Source(Vec<SourceOffset>),
    /// A sink's, one per log partition with a committed offset.
    Sink(Vec<SinkOffset>),
}

impl ConnectorOffsets {
    /// A sink's records behind it: the sum of its next offsets (0 for a source).
    #[must_use]
    pub fn sink_total(&self) -> u64 {
        match self {
            Self::Source(_) => 0,
            Self::Sink(offsets) => offsets.iter().map(|o| o.next).sum(),
        }
    }

    /// A source's offset field `field` summed over its partitions (0 for a sink).
    #[must_use]
    pub fn source_total(&self, field: &str) -> u64 {
        match self {
            Self::Source(offsets) => offsets
                .iter()
                .filter_map(|o| o.offset.get(field)?.as_u64())
                .sum(),
            Self::Sink(_) => 0,
        }
    }

    /// A source's offset field `field` as a number, in its first partition (`None` for a
    /// sink, or a source with no such number).
    #[must_use]
    pub fn source_position(&self, field: &str) -> Option<u64> {
        match self {
            Self::Source(offsets) => offsets.first()?.offset.get(field)?.as_u64(),
            Self::Sink(_) => None,
        }
    }
}

/// A change of a paused connector's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetChange {
    /// Start over: a source forgets its offsets, a sink goes back to the log start.
    Reset,
    /// Sources: set these partitions' offsets, or forget them (`None`).
    Source(Vec<(Value, Option<Value>)>),
    /// Sinks: move these partitions to a next offset, or to the log start (`None`).
    Sink(Vec<(TopicPartition, Option<u64>)>),
    /// Sinks: each partition to its first record at or after this time (ms since the epoch).
    SinkToTimestamp(i64),
}

impl Worker {
    /// A connector's committed offsets.
    ///
    /// # Errors
    /// [`Error::UnknownConnector`].
    ///
    /// # Cancel safety
    /// Safe: it only reads.
    pub async fn offsets(&self, name: &str) -> Result<ConnectorOffsets> {
        // Read outside the connector table's lock: on a cluster these are network lookups.
        let (kind, topics) = {
            let connectors = self.connectors.lock().await;
            let c = connectors
                .get(name)
                .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
            (c.config.plugin.kind(), c.config.topics.clone())
        };
        let log = &self.shared.log;
        Ok(match kind {
            ConnectorKind::Source => {
                if log.embedded().is_none() {
                    // The cluster's view: other workers' tasks commit too.
                    self.shared.offsets.refresh(log).await?;
                }
                ConnectorOffsets::Source(
                    self.shared
                        .offsets
                        .get(name)
                        .into_iter()
                        .map(|(partition, offset)| SourceOffset { partition, offset })
                        .collect(),
                )
            }
            ConnectorKind::Sink => {
                let mut partitions = Vec::new();
                for topic in &topics {
                    let count = log.partition_count(topic).await?.unwrap_or(0);
                    partitions.extend((0..count).map(|p| TopicPartition::new(topic.as_str(), p)));
                }
                let committed = log.committed(&group_id(name), &partitions).await?;
                ConnectorOffsets::Sink(
                    partitions
                        .into_iter()
                        .zip(committed)
                        .filter_map(|(partition, next)| {
                            Some(SinkOffset {
                                partition,
                                next: next?,
                            })
                        })
                        .collect(),
                )
            }
        })
    }

    /// Changes a paused connector's offsets, then restarts its tasks (still paused) so they
    /// read them. Returns how many partitions changed.
    ///
    /// # Errors
    /// [`Error::WrongState`] unless paused; [`Error::Data`] for a change that does not fit the
    /// connector (a sink change for a source, a topic the sink does not read).
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped after the tasks stopped, the connector stays stopped until
    /// restarted. Run it to completion (the REST layer does).
    pub async fn alter_offsets(&self, name: &str, change: OffsetChange) -> Result<usize> {
        let kind = {
            let connectors = self.connectors.lock().await;
            let c = connectors
                .get(name)
                .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
            if !*c.paused.borrow() {
                return Err(Error::WrongState {
                    name: name.to_string(),
                    state: "RUNNING".into(),
                    needed: "pause it before changing its offsets",
                });
            }
            c.config.plugin.kind()
        };
        let fits = matches!(
            (kind, &change),
            (_, OffsetChange::Reset)
                | (ConnectorKind::Source, OffsetChange::Source(_))
                | (
                    ConnectorKind::Sink,
                    OffsetChange::Sink(_) | OffsetChange::SinkToTimestamp(_)
                )
        );
        if !fits {
            let (kind, other) = match kind {
                ConnectorKind::Source => ("source", "sink"),
                ConnectorKind::Sink => ("sink", "source"),
            };
            return Err(Error::data(format!(
                "connector {name:?} is a {kind}: it has no {other} offsets to change"
            )));
        }
        // Tasks hold positions in memory: stop them before the change, start them after.
        let mut connectors = self.connectors.lock().await;
        let old = connectors
            .remove(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        let (raw, running_config, persisted) = (old.raw.clone(), old.config.clone(), old.persisted);
        stop(old).await;
        let outcome = match kind {
            ConnectorKind::Source => self.alter_source_offsets(name, change).await,
            ConnectorKind::Sink => {
                self.alter_sink_offsets(name, &running_config.topics, change)
                    .await
            }
        };
        connectors.insert(
            name.to_string(),
            self.launch(raw, running_config, persisted, true).await,
        );
        if outcome.is_ok() && self.cluster.is_some() {
            // Tasks on other workers hold positions in memory: they start again from the change.
            self.configs.request_restart(name).await?;
        }
        outcome
    }

    async fn alter_source_offsets(&self, name: &str, change: OffsetChange) -> Result<usize> {
        let changes: Vec<(Value, Option<Value>)> = match change {
            OffsetChange::Source(changes) => changes
                .into_iter()
                .map(|(partition, offset)| (partition, offset.filter(|o| !o.is_null())))
                .collect(),
            _ => self
                .shared
                .offsets
                .get(name)
                .into_iter()
                .map(|(partition, _)| (partition, None))
                .collect(),
        };
        let count = changes.len();
        self.shared
            .offsets
            .alter(&self.shared.log, name, changes)
            .await?;
        Ok(count)
    }

    async fn alter_sink_offsets(
        &self,
        name: &str,
        topics: &[String],
        change: OffsetChange,
    ) -> Result<usize> {
        let group = group_id(name);
        let log = &self.shared.log;
        let partitions = match change {
            OffsetChange::Sink(partitions) => partitions,
            reset => {
                let target = match reset {
                    OffsetChange::SinkToTimestamp(ms) => ResetTarget::Timestamp(ms),
                    _ => ResetTarget::Earliest,
                };
                let mut moved = 0;
                for topic in topics {
                    moved += log
                        .0
                        .reset_group_offsets(&group, topic, target, false)
                        .await?
                        .len();
                }
                return Ok(moved);
            }
        };
        let mut offsets = Vec::with_capacity(partitions.len());
        for (tp, next) in partitions {
            if !topics.contains(&tp.topic) {
                return Err(Error::data(format!(
                    "connector {name:?} does not read topic {:?}",
                    tp.topic
                )));
            }
            let next = match next {
                Some(next) => next,
                None => log.log_start(&tp).await?,
            };
            offsets.push((tp, next));
        }
        log.commit(&group, &offsets).await?;
        Ok(offsets.len())
    }
}
