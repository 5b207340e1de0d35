//! The admin questions a command asks of the log, answered alike by the embedded broker and by
//! a cluster.

use logbrook_core::{
    Broker, GroupDescription, GroupPartition, OffsetChange, ResetTarget, TopicConfig,
    TopicPartition, kafka_config,
};

use crate::cluster::Cluster;
use crate::consumer::Consumer;
use crate::error::{Error, Result};

/// The log a command works on.
#[derive(Debug, Clone)]
pub enum Client {
    /// The data directory, opened in this process.
    Embedded(Broker),
    /// A Kafka-protocol cluster.
    Cluster(Cluster),
}

/// A topic's config and, per partition, its offsets.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Its config (on a cluster: the Kafka configs Logbrook has, the cluster's defaults for the
    /// rest).
    pub config: TopicConfig,
    /// Per partition, in partition order.
    pub partitions: Vec<PartitionOffsets>,
}

/// Where one partition stands.
#[derive(Debug, Clone, Copy)]
pub struct PartitionOffsets {
    /// First offset still in the log.
    pub log_start_offset: u64,
    /// The offset the next record gets.
    pub log_end_offset: u64,
    /// Bytes stored (known on the embedded log only).
    pub size_bytes: Option<u64>,
    /// Segments (known on the embedded log only).
    pub segments: Option<usize>,
}

impl From<Broker> for Client {
    fn from(broker: Broker) -> Self {
        Self::Embedded(broker)
    }
}

impl From<Cluster> for Client {
    fn from(cluster: Cluster) -> Self {
        Self::Cluster(cluster)
    }
}

impl Client {
    /// Every topic's name, sorted, internal (`__`) ones included.
    ///
    /// # Errors
    /// The cluster did not answer.
    pub async fn topic_names(&self) -> Result<Vec<String>> {
        match self {
            Self::Embedded(broker) => Ok(broker.topic_names()),
            Self::Cluster(cluster) => cluster.topic_names().await,
        }
    }

    /// Creates `name` with `partitions` and Kafka topic `configs` (see
    /// [`logbrook_core::kafka_config`]); returns the partition count.
    ///
    /// # Errors
    /// A bad name or config, an existing topic.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(&str, String)],
    ) -> Result<u32> {
        match self {
            Self::Embedded(broker) => {
                let base = TopicConfig {
                    partitions,
                    ..TopicConfig::default()
                };
                let config =
                    kafka_config::apply(base, configs.iter().map(|(k, v)| (*k, v.as_str())))?;
                Ok(broker.create_topic(name, config)?.partition_count())
            }
            Self::Cluster(cluster) => {
                cluster.create_topic(name, partitions, configs).await?;
                Ok(partitions)
            }
        }
    }

    /// Deletes `name`, its data and (embedded) the groups' committed offsets for it.
    ///
    /// # Errors
    /// An unknown topic.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        match self {
            Self::Embedded(broker) => Ok(broker.delete_topic(name).await?),
            Self::Cluster(cluster) => cluster.delete_topic(name).await,
        }
    }

    /// `name`'s config and partition offsets.
    ///
    /// # Errors
    /// An unknown topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        match self {
            Self::Embedded(broker) => {
                let description = broker.describe_topic(name)?;
                Ok(TopicInfo {
                    name: description.name,
                    config: description.config,
                    partitions: description
                        .partitions
                        .iter()
                        .map(|p| PartitionOffsets {
                            log_start_offset: p.log_start_offset,
                            log_end_offset: p.log_end_offset,
                            size_bytes: Some(p.size_bytes),
                            segments: Some(p.segments),
                        })
                        .collect(),
                })
            }
            Self::Cluster(cluster) => {
                let config = cluster.topic_config(name).await?;
                let partitions = cluster.partitions_of(&[name.to_string()]).await?;
                let bounds = cluster.bounds(&partitions).await?;
                Ok(TopicInfo {
                    name: name.to_string(),
                    config,
                    partitions: bounds
                        .into_iter()
                        .map(|(start, end)| PartitionOffsets {
                            log_start_offset: start,
                            log_end_offset: end,
                            size_bytes: None,
                            segments: None,
                        })
                        .collect(),
                })
            }
        }
    }

    /// The number of partitions of `topic`.
    ///
    /// # Errors
    /// An unknown topic.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        match self {
            Self::Embedded(broker) => Ok(broker.topic(topic)?.partition_count()),
            Self::Cluster(cluster) => cluster.partition_count(topic).await,
        }
    }

    /// Consumer groups, sorted.
    ///
    /// # Errors
    /// The cluster did not answer.
    pub async fn group_names(&self) -> Result<Vec<String>> {
        match self {
            Self::Embedded(broker) => Ok(broker.list_groups()),
            Self::Cluster(cluster) => cluster.group_names().await,
        }
    }

    /// `group`'s committed offsets, end offsets and lag per partition.
    ///
    /// # Errors
    /// A group with neither members nor committed offsets.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let cluster = match self {
            Self::Embedded(broker) => return Ok(broker.describe_group(group)?),
            Self::Cluster(cluster) => cluster,
        };
        let members = cluster.group_members(group).await?;
        // The cluster answers committed offsets for the partitions asked about: all of them.
        let topics: Vec<String> = cluster
            .topic_names()
            .await?
            .into_iter()
            .filter(|t| !t.starts_with("__"))
            .collect();
        let partitions = cluster.partitions_of(&topics).await?;
        let committed = cluster.committed(group, &partitions).await?;
        let mut described = Vec::new();
        let mut with_offsets = Vec::new();
        for (tp, offset) in partitions.into_iter().zip(committed) {
            if let Some(offset) = offset {
                with_offsets.push(tp);
                described.push(offset);
            }
        }
        if with_offsets.is_empty() && members == 0 {
            return Err(Error::Refused(format!(
                "group {group:?} has no members and no committed offsets on {}",
                cluster.bootstrap()
            )));
        }
        let bounds = cluster.bounds(&with_offsets).await?;
        let partitions = with_offsets
            .into_iter()
            .zip(described)
            .zip(bounds)
            .map(|((tp, committed), (start, end))| GroupPartition {
                topic_partition: tp,
                committed: Some(committed),
                log_end_offset: end,
                lag: end.saturating_sub(committed.max(start)),
            })
            .collect();
        Ok(GroupDescription {
            group: group.to_string(),
            members,
            partitions,
        })
    }

    /// Moves `group`'s committed offsets on every partition of `topic` to `target`; with
    /// `dry_run` only computes the moves.
    ///
    /// # Errors
    /// An unknown topic, a group with live members (stop them first).
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        target: ResetTarget,
        dry_run: bool,
    ) -> Result<Vec<OffsetChange>> {
        let cluster = match self {
            Self::Embedded(broker) => {
                return Ok(broker
                    .reset_group_offsets(group, topic, target, dry_run)
                    .await?);
            }
            Self::Cluster(cluster) => cluster,
        };
        let members = cluster.group_members(group).await?;
        if members > 0 {
            return Err(Error::Refused(format!(
                "group {group:?} has {members} live member(s) on {}; stop them before resetting its offsets",
                cluster.bootstrap()
            )));
        }
        let partitions = cluster.partitions_of(&[topic.to_string()]).await?;
        let previous = cluster.committed(group, &partitions).await?;
        let bounds = cluster.bounds(&partitions).await?;
        let at_time = match target {
            ResetTarget::Timestamp(t) => Some(cluster.offsets(&partitions, t).await?),
            _ => None,
        };
        let changes: Vec<OffsetChange> = partitions
            .iter()
            .enumerate()
            .map(|(i, tp)| {
                let (start, end) = bounds[i];
                let new = match target {
                    ResetTarget::Earliest => start,
                    ResetTarget::Latest => end,
                    ResetTarget::Offset(o) => o.clamp(start, end),
                    ResetTarget::Timestamp(_) => {
                        at_time.as_ref().and_then(|found| found[i]).unwrap_or(end)
                    }
                };
                OffsetChange {
                    partition: tp.partition,
                    previous: previous[i],
                    new,
                }
            })
            .collect();
        if !dry_run {
            let offsets: Vec<(TopicPartition, u64)> = partitions
                .into_iter()
                .zip(&changes)
                .map(|(tp, change)| (tp, change.new))
                .collect();
            cluster.commit(group, &offsets).await?;
        }
        Ok(changes)
    }

    /// A consumer of assigned partitions; with `group`, it reads and commits that group's
    /// offsets. `fetch_max_bytes` bounds one fetch per partition.
    ///
    /// # Errors
    /// librdkafka refused the consumer's settings.
    pub fn consumer(&self, group: Option<&str>, fetch_max_bytes: usize) -> Result<Consumer> {
        match self {
            Self::Embedded(broker) => Ok(Consumer::embedded(broker, group, fetch_max_bytes)),
            Self::Cluster(cluster) => Consumer::cluster(cluster, group, fetch_max_bytes),
        }
    }

    /// Closes the embedded log (fsync, lock released); nothing to do for a cluster.
    ///
    /// # Errors
    /// The embedded log failed to flush.
    pub async fn close(&self) -> Result<()> {
        match self {
            Self::Embedded(broker) => Ok(broker.close().await?),
            Self::Cluster(_) => Ok(()),
        }
    }
}
