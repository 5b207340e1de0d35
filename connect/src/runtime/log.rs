//! Where a worker's topics live: the embedded log in this process, or a Kafka-protocol cluster
//! (`logbrook serve`, Apache Kafka, Redpanda) reached through librdkafka. What the runtime asks
//! of the log and that differs between the two is here; tasks and stores do not know which
//! log they run on.

use std::sync::Arc;
use std::time::Duration;

use logbrook_client::{Client, ClusterProducer, Consumer, ProducerSettings};
use logbrook_core::{
    Broker, CleanupPolicy, FlushPolicy, Producer, ProducerRecord, TopicConfig, TopicPartition,
};

use crate::error::{Error, Result};

/// How long a cluster call may take before the task (or request) fails.
pub(crate) const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

impl From<logbrook_client::Error> for Error {
    fn from(e: logbrook_client::Error) -> Self {
        match e {
            logbrook_client::Error::Log(e) => Self::Log(e),
            e if e.is_transient() => Self::retriable(e.to_string()),
            e => Self::fatal(e.to_string()),
        }
    }
}

/// The log a worker runs on.
#[derive(Debug, Clone)]
pub(crate) struct WorkerLog(pub(crate) Client);

impl WorkerLog {
    /// The embedded broker, when the log is this process's.
    pub(crate) fn embedded(&self) -> Option<&Broker> {
        match &self.0 {
            Client::Embedded(broker) => Some(broker),
            Client::Cluster(_) => None,
        }
    }

    /// `topic`'s partition count, `None` when it does not exist.
    pub(crate) async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        match &self.0 {
            Client::Embedded(broker) => Ok(broker.topic(topic).ok().map(|t| t.partition_count())),
            Client::Cluster(cluster) => {
                if !cluster.topic_names().await?.iter().any(|t| t == topic) {
                    return Ok(None);
                }
                Ok(Some(cluster.partition_count(topic).await?))
            }
        }
    }

    /// Creates `topic` with `partitions`; `internal` ones (the worker's own state) are
    /// compacted, kept forever and, on the embedded log, fsynced on every write. A topic that
    /// exists by now (another worker made it) is fine.
    pub(crate) async fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
        internal: bool,
    ) -> Result<()> {
        match &self.0 {
            Client::Embedded(broker) => {
                let mut config = TopicConfig {
                    partitions,
                    ..TopicConfig::default()
                };
                if internal {
                    config.cleanup_policy = CleanupPolicy::Compact;
                    config.flush = FlushPolicy::Always;
                    config.retention_ms = None;
                }
                match broker.create_topic(topic, config) {
                    Ok(_) | Err(logbrook_core::Error::TopicExists(_)) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Client::Cluster(cluster) => {
                let configs: Vec<(&str, String)> = if internal {
                    vec![
                        ("cleanup.policy", "compact".into()),
                        ("retention.ms", "-1".into()),
                    ]
                } else {
                    Vec::new()
                };
                match cluster.create_topic(topic, partitions, &configs).await {
                    Ok(()) => Ok(()),
                    // Another worker created it in the meantime.
                    Err(_) if self.partition_count(topic).await?.is_some() => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// `group`'s committed offsets of `partitions`, in their order.
    pub(crate) async fn committed(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<u64>>> {
        match &self.0 {
            Client::Embedded(broker) => Ok(partitions
                .iter()
                .map(|tp| broker.committed_offset(group, tp))
                .collect()),
            Client::Cluster(cluster) => Ok(cluster.committed(group, partitions).await?),
        }
    }

    /// Commits `offsets` for `group`, outside any group membership.
    pub(crate) async fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        match &self.0 {
            Client::Embedded(broker) => Ok(broker.commit_offsets(group, offsets).await?),
            Client::Cluster(cluster) => Ok(cluster.commit(group, offsets).await?),
        }
    }

    /// The first offset still in `tp`.
    pub(crate) async fn log_start(&self, tp: &TopicPartition) -> Result<u64> {
        match &self.0 {
            Client::Embedded(broker) => Ok(broker
                .topic(&tp.topic)?
                .partition(tp.partition)?
                .log()
                .stats()
                .log_start_offset),
            Client::Cluster(cluster) => Ok(cluster.bounds(std::slice::from_ref(tp)).await?[0].0),
        }
    }

    /// A consumer of assigned partitions, reading and committing `group`'s offsets.
    pub(crate) fn consumer(&self, group: Option<&str>, fetch_max_bytes: usize) -> Result<Consumer> {
        Ok(self.0.consumer(group, fetch_max_bytes)?)
    }

    /// A producer (not transactional: source tasks make their own, see `source_task`).
    pub(crate) fn producer(&self) -> Result<LogProducer> {
        match &self.0 {
            Client::Embedded(broker) => Ok(LogProducer::Embedded(Producer::new(
                broker.clone(),
                Default::default(),
            ))),
            Client::Cluster(cluster) => Ok(LogProducer::Cluster {
                producer: Arc::new(cluster.producer(&ProducerSettings::default())?),
                sent: 0,
            }),
        }
    }
}

/// A producer on either log. Records are acknowledged at [`LogProducer::flush`].
pub(crate) enum LogProducer {
    /// The embedded log's.
    Embedded(Producer),
    /// A cluster's, counting what it sent (the tag of its delivery reports).
    Cluster {
        producer: Arc<ClusterProducer>,
        sent: u64,
    },
}

impl LogProducer {
    /// Sends `record`; it is durable once [`LogProducer::flush`] returns.
    pub(crate) async fn send(&mut self, record: ProducerRecord) -> Result<()> {
        match self {
            Self::Embedded(producer) => {
                // Delivery is awaited at flush.
                let _delivery = producer.send(record).await?;
            }
            Self::Cluster { producer, sent } => {
                producer.send(&record, *sent).await?;
                *sent += 1;
            }
        }
        Ok(())
    }

    /// Waits until everything sent is acknowledged; fails if anything was not.
    pub(crate) async fn flush(&self) -> Result<()> {
        match self {
            Self::Embedded(producer) => Ok(producer.flush().await?),
            Self::Cluster { producer, .. } => acknowledged(producer).await,
        }
    }
}

/// Waits until everything `producer` sent is acknowledged; fails if anything was not.
pub(crate) async fn acknowledged(producer: &Arc<ClusterProducer>) -> Result<()> {
    producer.flush(CLUSTER_TIMEOUT).await?;
    match producer.first_failure() {
        Some(failure) => Err(Error::fatal(format!(
            "the cluster did not acknowledge a record: {}",
            failure.error
        ))),
        None => Ok(()),
    }
}
