//! Where an application's topics live: the embedded log in this process, or a Kafka-protocol
//! cluster (`logbrook serve`, Apache Kafka, Redpanda) reached through librdkafka. What the
//! runtime asks of the log and that differs between the two is here: topic metadata, input
//! bounds, committed offsets, changelog reads, and how a task's outputs and offsets are
//! committed. The task loop and its inputs do not know which log they run on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use logbrook_client::{Cluster, ClusterProducer, GroupMember, ProducerSettings};
use logbrook_core::{
    Broker, CleanupPolicy, Producer, ProducerRecord, SeekTo, TopicConfig, TopicPartition,
    Transaction,
};

use crate::error::{Error, Result};

/// How long a cluster call of a commit may take before the task fails.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// The log an application runs on.
#[derive(Debug, Clone)]
pub(crate) enum AppLog {
    /// The data directory, opened in this process.
    Embedded(Broker),
    /// A Kafka-protocol cluster.
    Cluster(Cluster),
}

impl AppLog {
    /// `topic`'s partition count, `None` when it does not exist.
    pub(crate) async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        match self {
            Self::Embedded(broker) => Ok(broker.topic(topic).ok().map(|t| t.partition_count())),
            Self::Cluster(cluster) => {
                if !cluster.topic_names().await?.iter().any(|t| t == topic) {
                    return Ok(None);
                }
                Ok(Some(cluster.partition_count(topic).await?))
            }
        }
    }

    /// Creates an internal topic: changelogs compacted, repartition topics kept until deleted.
    pub(crate) async fn create_internal_topic(
        &self,
        topic: &str,
        partitions: u32,
        compacted: bool,
    ) -> Result<()> {
        let config = TopicConfig {
            partitions,
            cleanup_policy: if compacted {
                CleanupPolicy::Compact
            } else {
                CleanupPolicy::Delete
            },
            retention_ms: None,
            ..TopicConfig::default()
        };
        match self {
            Self::Embedded(broker) => {
                broker.create_topic(topic, config)?;
            }
            Self::Cluster(cluster) => {
                let mut configs = vec![
                    (
                        "cleanup.policy",
                        if compacted { "compact" } else { "delete" }.to_string(),
                    ),
                    ("retention.ms", "-1".to_string()),
                ];
                configs.retain(|(key, _)| compacted || *key != "cleanup.policy");
                cluster.create_topic(topic, partitions, &configs).await?;
            }
        }
        Ok(())
    }

    /// Where a bounded run reads `tp`: from the first offset at or after `start_time` (if
    /// given) to the end it has now.
    pub(crate) async fn bounds(
        &self,
        tp: &TopicPartition,
        start_time: Option<i64>,
    ) -> Result<(Option<u64>, u64)> {
        match self {
            Self::Embedded(broker) => {
                let log = embedded_log(broker, tp)?;
                let end = log.last_stable_offset();
                let start = match start_time {
                    Some(time) => Some(
                        log.offset_for_timestamp(time)?
                            .unwrap_or(log.high_watermark()),
                    ),
                    None => None,
                };
                Ok((start, end))
            }
            Self::Cluster(cluster) => {
                let one = std::slice::from_ref(tp);
                let end = riding_out_outages(|| cluster.offsets(one, -1)).await?[0].unwrap_or(0);
                let start = match start_time {
                    Some(time) => Some(
                        riding_out_outages(|| cluster.offsets(one, time)).await?[0].unwrap_or(end),
                    ),
                    None => None,
                };
                Ok((start, end))
            }
        }
    }

    /// `group`'s committed offsets of `partitions`.
    pub(crate) async fn committed(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<u64>>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Embedded(broker) => Ok(partitions
                .iter()
                .map(|tp| broker.committed_offset(group, tp))
                .collect()),
            Self::Cluster(cluster) => {
                Ok(riding_out_outages(|| cluster.committed(group, partitions)).await?)
            }
        }
    }

    /// The offset after the last record of each of `partitions`.
    pub(crate) async fn end_offsets(&self, partitions: &[TopicPartition]) -> Result<Vec<u64>> {
        if partitions.is_empty() {
            return Ok(Vec::new()); // a task without stores: nothing to ask the cluster
        }
        match self {
            Self::Embedded(broker) => partitions
                .iter()
                .map(|tp| Ok(embedded_log(broker, tp)?.high_watermark()))
                .collect(),
            Self::Cluster(cluster) => Ok(riding_out_outages(|| cluster.offsets(partitions, -1))
                .await?
                .into_iter()
                .map(|end| end.unwrap_or(0))
                .collect()),
        }
    }

    /// The default state directory: beside the data on the embedded log, else
    /// `./logbrook-state`.
    pub(crate) fn default_state_dir(&self, application_id: &str) -> PathBuf {
        match self {
            Self::Embedded(broker) => super::default_state_dir(broker, application_id),
            Self::Cluster(_) => PathBuf::from("logbrook-state").join(application_id),
        }
    }

    /// Hands every committed record of `tp` from `from` to its end now, in order, to
    /// `apply` with `target` (a changelog replayed into its store); returns the target and the
    /// offset reached.
    pub(crate) async fn replay<T: Send + 'static>(
        &self,
        tp: &TopicPartition,
        from: u64,
        mut target: T,
        apply: fn(&mut T, logbrook_core::ConsumerRecord),
    ) -> Result<(T, u64)> {
        match self {
            Self::Embedded(broker) => {
                let log = embedded_log(broker, tp)?;
                tokio::task::spawn_blocking(move || {
                    let from = from.max(log.log_start_offset());
                    let end = log.last_stable_offset();
                    log.for_each_record(from, |r| apply(&mut target, r))?;
                    Ok((target, end))
                })
                .await
                .map_err(|e| Error::Topology(format!("replaying a changelog panicked: {e}")))?
            }
            Self::Cluster(cluster) => {
                let client = logbrook_client::Client::Cluster(cluster.clone());
                let mut consumer = client.consumer(None, 1 << 20)?;
                consumer.assign(vec![tp.clone()]).await?;
                let end = self.end_offsets(std::slice::from_ref(tp)).await?[0];
                consumer.seek(tp, SeekTo::Offset(from)).await?;
                while consumer.position(tp).is_some_and(|at| at < end) {
                    for record in consumer.poll_available(Duration::from_millis(200)).await? {
                        apply(&mut target, record);
                    }
                }
                Ok((target, end))
            }
        }
    }
}

/// Runs a cluster lookup again while it fails for a while only (a partition leader or
/// coordinator down or moving), up to [`CLUSTER_TIMEOUT`]: a broker restart must not fail the
/// tasks, whose partitions are known to exist.
async fn riding_out_outages<T, F>(mut lookup: impl FnMut() -> F) -> logbrook_client::Result<T>
where
    F: std::future::Future<Output = logbrook_client::Result<T>>,
{
    let deadline = std::time::Instant::now() + CLUSTER_TIMEOUT;
    loop {
        match lookup().await {
            Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "cluster lookup failed; asking again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            outcome => return outcome,
        }
    }
}

/// The embedded log's partition `tp`.
fn embedded_log(broker: &Broker, tp: &TopicPartition) -> Result<Arc<logbrook_core::Log>> {
    Ok(broker
        .topic(&tp.topic)?
        .partition(tp.partition)?
        .log()
        .clone())
}

/// How a task's outputs reach the log and its offsets get committed.
pub(crate) enum TaskWriter {
    /// Exactly-once on the embedded log: outputs gather in a transaction written at commit.
    EmbeddedTransaction { broker: Broker, txn: Transaction },
    /// At-least-once on the embedded log: outputs go through the app's shared producer.
    EmbeddedProducer { broker: Broker, producer: Producer },
    /// On a cluster: a producer of the task's own. Exactly-once: transactional (id
    /// `{application_id}-{task}`, so the task's next owner fences this one), outputs and offsets
    /// committed together. At-least-once: offsets committed once the outputs are acknowledged.
    Cluster(Box<ClusterWriter>),
}

pub(crate) struct ClusterWriter {
    producer: Arc<ClusterProducer>,
    /// The identity the offsets are committed under.
    member: Arc<GroupMember>,
    exactly_once: bool,
    in_transaction: bool,
    sent: u64,
}

impl TaskWriter {
    /// The writer of task `task` of `application_id`; on a cluster its offsets are committed
    /// as `member` (the instance's group membership), or outside the group's membership.
    pub(crate) async fn new(
        log: &AppLog,
        shared_producer: Option<&Producer>,
        member: Option<GroupMember>,
        application_id: &str,
        task: u32,
        exactly_once: bool,
    ) -> Result<Self> {
        Ok(match log {
            AppLog::Embedded(broker) => match (exactly_once, shared_producer) {
                (false, Some(producer)) => Self::EmbeddedProducer {
                    broker: broker.clone(),
                    producer: producer.clone(),
                },
                _ => Self::EmbeddedTransaction {
                    broker: broker.clone(),
                    txn: Transaction::new(),
                },
            },
            AppLog::Cluster(cluster) => {
                let settings = ProducerSettings {
                    linger_ms: 5,
                    transactional_id: exactly_once.then(|| format!("{application_id}-{task}")),
                    ..ProducerSettings::default()
                };
                let producer = Arc::new(cluster.producer(&settings)?);
                if exactly_once {
                    // Fences the task's previous owner, and aborts what it left open.
                    producer.init_transactions(CLUSTER_TIMEOUT).await?;
                }
                let member = match member {
                    Some(member) => member,
                    None => cluster.group_member(application_id)?,
                };
                Self::Cluster(Box::new(ClusterWriter {
                    producer,
                    member: Arc::new(member),
                    exactly_once,
                    in_transaction: false,
                    sent: 0,
                }))
            }
        })
    }

    /// Bytes gathered for the next commit, where the writer holds them.
    pub(crate) fn pending_bytes(&self) -> usize {
        match self {
            Self::EmbeddedTransaction { txn, .. } => txn.size_bytes(),
            _ => 0,
        }
    }

    /// Whether outputs are waiting for the next commit.
    pub(crate) fn has_pending(&self) -> bool {
        match self {
            Self::EmbeddedTransaction { txn, .. } => !txn.is_empty(),
            Self::EmbeddedProducer { .. } => false,
            Self::Cluster(w) => w.in_transaction,
        }
    }

    /// Writes one output record into `partition`.
    pub(crate) async fn send(&mut self, record: ProducerRecord, partition: u32) -> Result<()> {
        match self {
            Self::EmbeddedTransaction { txn, .. } => {
                txn.send(
                    &record.topic,
                    partition,
                    record.timestamp.unwrap_or(0),
                    record.key.as_deref(),
                    record.value.as_deref(),
                    &record.headers,
                );
            }
            Self::EmbeddedProducer { producer, .. } => {
                producer
                    .send(ProducerRecord {
                        partition: Some(partition),
                        ..record
                    })
                    .await?;
            }
            Self::Cluster(w) => {
                if w.exactly_once && !w.in_transaction {
                    w.producer.begin_transaction()?;
                    w.in_transaction = true;
                }
                let record = ProducerRecord {
                    partition: Some(partition),
                    ..record
                };
                w.producer.send(&record, w.sent).await?;
                w.sent += 1;
            }
        }
        Ok(())
    }

    /// Exactly-once: commits the outputs and `offsets` of `group` atomically. At-least-once:
    /// waits until the outputs are acknowledged (the offsets follow in
    /// [`TaskWriter::commit_offsets`], once the stores are flushed).
    pub(crate) async fn commit(
        &mut self,
        group: &str,
        offsets: Vec<(TopicPartition, u64)>,
    ) -> Result<()> {
        match self {
            Self::EmbeddedTransaction { broker, txn } => {
                let mut full = std::mem::take(txn);
                full.commit_offsets(group.to_string(), offsets);
                broker.commit_transaction(full).await?;
            }
            Self::EmbeddedProducer { producer, .. } => producer.flush().await?,
            Self::Cluster(w) if w.exactly_once => {
                if !w.in_transaction && offsets.is_empty() {
                    return Ok(());
                }
                if !w.in_transaction {
                    w.producer.begin_transaction()?;
                    w.in_transaction = true;
                }
                if !offsets.is_empty() {
                    w.producer
                        .send_offsets_to_transaction(&offsets, &w.member, CLUSTER_TIMEOUT)
                        .await?;
                }
                w.producer.commit_transaction(CLUSTER_TIMEOUT).await?;
                w.in_transaction = false;
            }
            Self::Cluster(w) => {
                w.producer.flush(CLUSTER_TIMEOUT).await?;
                if let Some(failure) = w.producer.first_failure() {
                    return Err(logbrook_client::Error::Refused(format!(
                        "an output record was not acknowledged: {}",
                        failure.error
                    ))
                    .into());
                }
            }
        }
        Ok(())
    }

    /// At-least-once: commits `offsets` of `group` (after [`TaskWriter::commit`]).
    pub(crate) async fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        match self {
            Self::EmbeddedTransaction { .. } => Ok(()),
            Self::EmbeddedProducer { broker, .. } => {
                Ok(broker.commit_offsets(group, offsets).await?)
            }
            Self::Cluster(w) if !w.exactly_once => Ok(w.member.commit(offsets).await?),
            Self::Cluster(_) => Ok(()),
        }
    }
}

/// Partition counts of the topics a task writes, looked up once.
#[derive(Debug, Default)]
pub(crate) struct PartitionCounts(HashMap<Arc<str>, u32>);

impl PartitionCounts {
    pub(crate) async fn of(&mut self, log: &AppLog, topic: &Arc<str>) -> Result<u32> {
        if let Some(count) = self.0.get(topic) {
            return Ok(*count);
        }
        let count = log
            .partition_count(topic)
            .await?
            .ok_or_else(|| Error::Topology(format!("output topic {topic:?} does not exist")))?;
        self.0.insert(topic.clone(), count);
        Ok(count)
    }
}
