//! A Kafka-protocol cluster through librdkafka: admin requests, committed offsets and a
//! producer.
//!
//! librdkafka's metadata, offset and group calls block; they run on tokio's blocking pool so
//! the caller's runtime keeps going.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logbrook_core::{Header, ProducerRecord, TopicConfig, TopicPartition, kafka_config};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::error::{Error, KafkaContext, Result};

/// How long a request to the cluster may take before the command gives up on it.
const TIMEOUT: Duration = Duration::from_secs(15);

/// A Kafka-protocol cluster, reached through its bootstrap servers.
#[derive(Clone)]
pub struct Cluster {
    bootstrap: Arc<str>,
    /// Extra librdkafka properties (security settings, ...) given to every client made here.
    pub(crate) properties: Arc<[(String, String)]>,
    admin: Arc<AdminClient<DefaultClientContext>>,
    /// A group-less consumer for metadata and offset lookups.
    lookups: Arc<BaseConsumer>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the cluster at `bootstrap` (`HOST:PORT[,HOST:PORT...]`) with extra
    /// librdkafka `properties`, and checks that a broker answers.
    ///
    /// # Errors
    /// Bad properties, or no broker answered within 15 s.
    pub async fn connect(bootstrap: &str, properties: Vec<(String, String)>) -> Result<Self> {
        let bootstrap: Arc<str> = bootstrap.into();
        let properties: Arc<[(String, String)]> = properties.into();
        let base = config(&bootstrap, &properties);
        let admin = base
            .create()
            .context(|| format!("creating an admin client for {bootstrap}"))?;
        let lookups: BaseConsumer = base
            .clone()
            .set("enable.auto.commit", "false")
            .create()
            .context(|| format!("creating a client for {bootstrap}"))?;
        let cluster = Self {
            bootstrap,
            properties,
            admin: Arc::new(admin),
            lookups: Arc::new(lookups),
        };
        let check = cluster.clone();
        blocking(move || {
            check
                .lookups
                .fetch_metadata(None, TIMEOUT)
                .map(drop)
                .context(|| format!("no broker at {} answered", check.bootstrap))
        })
        .await?;
        Ok(cluster)
    }

    /// The bootstrap servers, as given.
    #[must_use]
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// A client config for this cluster: bootstrap servers and the extra properties.
    #[must_use]
    pub fn client_config(&self) -> ClientConfig {
        config(&self.bootstrap, &self.properties)
    }

    /// Every topic's name, sorted, internal ones included.
    ///
    /// # Errors
    /// The metadata request failed.
    pub async fn topic_names(&self) -> Result<Vec<String>> {
        let this = self.clone();
        blocking(move || {
            let metadata = this
                .lookups
                .fetch_metadata(None, TIMEOUT)
                .context(|| format!("listing topics on {}", this.bootstrap))?;
            let mut names: Vec<String> = metadata
                .topics()
                .iter()
                .map(|t| t.name().to_string())
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// The number of partitions of `topic`.
    ///
    /// # Errors
    /// [`Error::Refused`] if the cluster has no such topic.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        let this = self.clone();
        let topic = topic.to_string();
        blocking(move || {
            let metadata = this
                .lookups
                .fetch_metadata(Some(&topic), TIMEOUT)
                .context(|| format!("looking up topic {topic:?} on {}", this.bootstrap))?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    Ok(t.partitions().len() as u32)
                }
                Some(t)
                    if t.error().is_some_and(|e| {
                        RDKafkaErrorCode::from(e) != RDKafkaErrorCode::UnknownTopicOrPartition
                    }) =>
                {
                    let code = t.error().map(RDKafkaErrorCode::from);
                    Err(Error::Refused(format!(
                        "topic {topic:?} on {}: {}",
                        this.bootstrap,
                        code.map_or_else(String::new, |c| c.to_string())
                    )))
                }
                _ => Err(Error::Refused(format!(
                    "topic {topic:?} does not exist on {}",
                    this.bootstrap
                ))),
            }
        })
        .await
    }

    /// Creates `name` with `partitions` and the given Kafka topic configs (the cluster's
    /// defaults for the rest).
    ///
    /// # Errors
    /// The cluster refused (the topic exists, a bad config, ...).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(&str, String)],
    ) -> Result<()> {
        // -1: the cluster's default replication factor (KIP-464).
        let mut topic = NewTopic::new(name, partitions as i32, TopicReplication::Fixed(-1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let results = self
            .admin
            .create_topics([&topic], &options())
            .await
            .context(|| format!("asking {} to create it", self.bootstrap))?;
        self.item_outcome(results)
    }

    /// Deletes `name` and its data.
    ///
    /// # Errors
    /// The cluster refused (unknown topic, ...).
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let results = self
            .admin
            .delete_topics(&[name], &options())
            .await
            .context(|| format!("asking {} to delete it", self.bootstrap))?;
        self.item_outcome(results)
    }

    fn item_outcome(
        &self,
        results: Vec<std::result::Result<String, (String, RDKafkaErrorCode)>>,
    ) -> Result<()> {
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, code))) => Err(Error::Refused(format!(
                "the cluster at {} answered {code}",
                self.bootstrap
            ))),
            None => Err(Error::Refused(format!(
                "the cluster at {} did not answer for it",
                self.bootstrap
            ))),
        }
    }

    /// `topic`'s config as Logbrook's [`TopicConfig`]: the Kafka configs that map onto it,
    /// with the partition count from the metadata; configs the cluster has and Logbrook does
    /// not (`min.insync.replicas`, ...) are left out.
    ///
    /// # Errors
    /// An unknown topic, or a config value Logbrook cannot represent.
    pub async fn topic_config(&self, topic: &str) -> Result<TopicConfig> {
        let partitions = self.partition_count(topic).await?;
        let resource = ResourceSpecifier::Topic(topic);
        let results = self
            .admin
            .describe_configs([&resource], &options())
            .await
            .context(|| format!("describing topic {topic:?} on {}", self.bootstrap))?;
        let resource = match results.into_iter().next() {
            Some(Ok(resource)) => resource,
            Some(Err(code)) => {
                return Err(Error::Refused(format!(
                    "describing topic {topic:?} on {}: {code}",
                    self.bootstrap
                )));
            }
            None => return Err(Error::Refused(format!("no config for topic {topic:?}"))),
        };
        let known: Vec<(&str, &str)> = resource
            .entries
            .iter()
            .filter(|e| kafka_config::KEYS.contains(&e.name.as_str()))
            .filter_map(|e| Some((e.name.as_str(), e.value.as_deref()?)))
            .collect();
        let base = TopicConfig {
            partitions,
            ..TopicConfig::default()
        };
        Ok(kafka_config::apply(base, known)?)
    }

    /// Per partition, the offset answered for `at`: Kafka's ListOffsets, where -2 is the log
    /// start, -1 the end, and any other value the first offset with a timestamp at or after it
    /// (`None`: no such record).
    ///
    /// # Errors
    /// The request failed or the cluster refused a partition.
    pub async fn offsets(
        &self,
        partitions: &[TopicPartition],
        at: i64,
    ) -> Result<Vec<Option<u64>>> {
        let at = match at {
            -2 => Offset::Beginning,
            -1 => Offset::End,
            time => Offset::Offset(time),
        };
        let mut list = TopicPartitionList::new();
        for tp in partitions {
            list.add_partition_offset(&tp.topic, tp.partition as i32, at)
                .context(|| format!("listing offsets of {tp}"))?;
        }
        let this = self.clone();
        let wanted = partitions.to_vec();
        blocking(move || {
            let answered = this
                .lookups
                .offsets_for_times(list, TIMEOUT)
                .context(|| format!("listing offsets on {}", this.bootstrap))?;
            wanted
                .iter()
                .map(|tp| {
                    let element = answered
                        .find_partition(&tp.topic, tp.partition as i32)
                        .ok_or_else(|| Error::Refused(format!("no offset answered for {tp}")))?;
                    if let Err(e) = element.error() {
                        return Err(Error::Kafka {
                            context: format!("listing offsets of {tp} on {}", this.bootstrap),
                            source: e,
                        });
                    }
                    Ok(match element.offset() {
                        Offset::Offset(n) => u64::try_from(n).ok(),
                        _ => None,
                    })
                })
                .collect()
        })
        .await
    }

    /// Start and end offsets of each of `partitions`.
    ///
    /// # Errors
    /// As [`Cluster::offsets`].
    pub async fn bounds(&self, partitions: &[TopicPartition]) -> Result<Vec<(u64, u64)>> {
        let starts = self.offsets(partitions, -2).await?;
        let ends = self.offsets(partitions, -1).await?;
        Ok(starts
            .into_iter()
            .zip(ends)
            .map(|(s, e)| (s.unwrap_or(0), e.unwrap_or(0)))
            .collect())
    }

    /// Every partition of each of `topics`.
    ///
    /// # Errors
    /// An unknown topic.
    pub async fn partitions_of(&self, topics: &[String]) -> Result<Vec<TopicPartition>> {
        let mut partitions = Vec::new();
        for topic in topics {
            let count = self.partition_count(topic).await?;
            partitions.extend((0..count).map(|p| TopicPartition::new(topic.clone(), p)));
        }
        Ok(partitions)
    }

    /// Consumer groups the cluster knows, sorted.
    ///
    /// # Errors
    /// The request failed.
    pub async fn group_names(&self) -> Result<Vec<String>> {
        let this = self.clone();
        blocking(move || {
            let list = this
                .lookups
                .fetch_group_list(None, TIMEOUT)
                .context(|| format!("listing groups on {}", this.bootstrap))?;
            let mut names: Vec<String> =
                list.groups().iter().map(|g| g.name().to_string()).collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// How many members `group` has now.
    ///
    /// # Errors
    /// The request failed.
    pub async fn group_members(&self, group: &str) -> Result<usize> {
        Ok(self.describe_group_members(group).await?.len())
    }

    /// Each member of `group`: its client id and its assignment's bytes.
    pub(crate) async fn describe_group_members(
        &self,
        group: &str,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>> {
        let this = self.clone();
        let group = group.to_string();
        blocking(move || {
            let list = this
                .lookups
                .fetch_group_list(Some(&group), TIMEOUT)
                .context(|| format!("describing group {group:?} on {}", this.bootstrap))?;
            Ok(list
                .groups()
                .iter()
                .filter(|g| g.name() == group)
                .flat_map(|g| g.members())
                .map(|m| {
                    (
                        m.client_id().to_string(),
                        m.assignment().map(<[u8]>::to_vec),
                    )
                })
                .collect())
        })
        .await
    }

    /// A consumer in `group` that neither subscribes nor commits by itself: for reading and
    /// writing the group's committed offsets.
    pub(crate) fn group_client(&self, group: &str) -> Result<BaseConsumer> {
        self.client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context(|| format!("creating a client of group {group:?} on {}", self.bootstrap))
    }

    /// `group`'s committed offset of each of `partitions`.
    ///
    /// # Errors
    /// The request failed.
    pub async fn committed(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<u64>>> {
        let client = Arc::new(self.group_client(group)?);
        committed_with(&client, self.bootstrap.clone(), group, partitions).await
    }

    /// Commits `offsets` for `group` as a client outside the group (generation -1), which
    /// Kafka accepts only while the group has no members.
    ///
    /// # Errors
    /// The cluster refused the commit.
    pub async fn commit(&self, group: &str, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        let client = Arc::new(self.group_client(group)?);
        commit_with(&client, self.bootstrap.clone(), group, offsets).await
    }

    /// The identity under which offsets of `group` are committed in transactions by a
    /// process that assigns its partitions itself (no generation: the coordinator does not
    /// fence it by membership).
    ///
    /// # Errors
    /// librdkafka refused the configuration.
    pub fn group_member(&self, group: &str) -> Result<GroupMember> {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config
            .create()
            .context(|| format!("joining group {group:?} on {}", self.bootstrap))?;
        Ok(GroupMember {
            consumer: MemberConsumer::Simple(consumer),
            group: group.to_string(),
        })
    }

    /// A producer with `settings`.
    ///
    /// # Errors
    /// librdkafka refused a setting.
    pub fn producer(&self, settings: &ProducerSettings) -> Result<ClusterProducer> {
        let mut config = self.client_config();
        config
            .set("acks", &settings.acks)
            .set("linger.ms", settings.linger_ms.to_string())
            .set("batch.size", settings.batch_bytes.to_string())
            .set("compression.type", &settings.compression)
            // Keys go to the partitions the Java client and the embedded producer pick.
            .set("partitioner", "murmur2_random")
            // As Kafka clients since 3.0: retries never duplicate or reorder records. Needs
            // acks=all.
            .set("enable.idempotence", (settings.acks == "all").to_string())
            .set(
                "queue.buffering.max.kbytes",
                (settings.buffer_bytes >> 10).to_string(),
            );
        if let Some(id) = &settings.transactional_id {
            config.set("transactional.id", id);
        }
        let producer = config
            .create_with_context(Deliveries::default())
            .context(|| format!("creating a producer for {}", self.bootstrap))?;
        Ok(ClusterProducer {
            producer,
            bootstrap: self.bootstrap.clone(),
            sent: AtomicU64::new(0),
        })
    }
}

fn config(bootstrap: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "logbrook")
        // A broken connection is reported through the calls that need it, not logged twice.
        .set("log.connection.close", "false");
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(TIMEOUT))
        .operation_timeout(Some(TIMEOUT))
}

/// Runs a blocking librdkafka call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(Error::Refused(format!("a librdkafka call panicked: {e}"))))
}

/// As [`blocking`], for a transaction call given `timeout`: librdkafka has been seen to wait
/// on past its timeout (a send of offsets after the group coordinator's broker restarted, on
/// its mock cluster), so the caller stops waiting a little after it, with an error that lets it
/// start over (a new producer with the same transactional id fences the stuck one).
async fn blocking_transaction_call<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    call: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let patience = timeout + Duration::from_secs(10);
    match tokio::time::timeout(patience, blocking(call)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::Refused(format!(
            "{what}: librdkafka did not return within {patience:?}"
        ))),
    }
}

pub(crate) async fn committed_with(
    client: &Arc<BaseConsumer>,
    bootstrap: Arc<str>,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<Vec<Option<u64>>> {
    let mut list = TopicPartitionList::new();
    for tp in partitions {
        list.add_partition(&tp.topic, tp.partition as i32);
    }
    let client = client.clone();
    let group = group.to_string();
    let wanted = partitions.to_vec();
    blocking(move || {
        let answered = client
            .committed_offsets(list, TIMEOUT)
            .context(|| format!("reading group {group:?}'s offsets on {bootstrap}"))?;
        Ok(wanted
            .iter()
            .map(|tp| {
                answered
                    .find_partition(&tp.topic, tp.partition as i32)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(n) => u64::try_from(n).ok(),
                        _ => None,
                    })
            })
            .collect())
    })
    .await
}

/// Offsets to commit, as librdkafka takes them.
fn offset_list(offsets: &[(TopicPartition, u64)]) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for (tp, offset) in offsets {
        list.add_partition_offset(
            &tp.topic,
            tp.partition as i32,
            Offset::Offset(*offset as i64),
        )
        .context(|| format!("committing {tp}"))?;
    }
    Ok(list)
}

pub(crate) async fn commit_with(
    client: &Arc<BaseConsumer>,
    bootstrap: Arc<str>,
    group: &str,
    offsets: &[(TopicPartition, u64)],
) -> Result<()> {
    let list = offset_list(offsets)?;
    let client = client.clone();
    let group = group.to_string();
    blocking(move || {
        client
            .commit(&list, CommitMode::Sync)
            .context(|| format!("committing group {group:?}'s offsets on {bootstrap}"))
    })
    .await
}

/// A consumer group's member, whose identity offset commits carry.
pub struct GroupMember {
    consumer: MemberConsumer,
    group: String,
}

enum MemberConsumer {
    /// Outside the group's membership (generation -1): partitions assigned by the caller.
    Simple(BaseConsumer),
    /// A member of the group ([`crate::Membership`]): its commits carry its generation.
    Joined(Arc<BaseConsumer<crate::membership::MembershipContext>>),
}

impl std::fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMember")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl GroupMember {
    pub(crate) fn joined(
        consumer: Arc<BaseConsumer<crate::membership::MembershipContext>>,
        group: &str,
    ) -> Self {
        Self {
            consumer: MemberConsumer::Joined(consumer),
            group: group.to_string(),
        }
    }

    fn metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        match &self.consumer {
            MemberConsumer::Simple(c) => c.group_metadata(),
            MemberConsumer::Joined(c) => c.group_metadata(),
        }
    }

    /// Commits `offsets` for the group as this member.
    ///
    /// # Errors
    /// The coordinator refused (e.g. the member was fenced by a rebalance).
    pub async fn commit(self: &Arc<Self>, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        let list = offset_list(offsets)?;
        let this = self.clone();
        blocking(move || {
            let committed = match &this.consumer {
                MemberConsumer::Simple(c) => c.commit(&list, CommitMode::Sync),
                MemberConsumer::Joined(c) => c.commit(&list, CommitMode::Sync),
            };
            committed.context(|| format!("committing group {:?}'s offsets", this.group))
        })
        .await
    }
}

/// Runs a transaction call again while librdkafka says its error is retriable (a request timed
/// out, the coordinator is loading or moved) and `deadline` has not passed; each run gets the
/// time left. Retrying is what librdkafka documents for these errors: giving up instead aborts
/// a transaction the cluster may yet commit.
fn retried<T>(
    deadline: Instant,
    mut call: impl FnMut(Duration) -> rdkafka::error::KafkaResult<T>,
) -> rdkafka::error::KafkaResult<T> {
    loop {
        match call(deadline.saturating_duration_since(Instant::now())) {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                tracing::debug!(error = %e, "retrying a transaction call");
                std::thread::sleep(Duration::from_millis(50));
            }
            outcome => return outcome,
        }
    }
}

/// How a [`ClusterProducer`] batches and acknowledges.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// `acks`: `all`, `1` or `0`.
    pub acks: String,
    /// How long a batch waits for more records.
    pub linger_ms: u64,
    /// Largest batch.
    pub batch_bytes: usize,
    /// Bytes of records waiting to be sent before `send` waits.
    pub buffer_bytes: usize,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// A transactional producer's id: records are sent between
    /// [`ClusterProducer::begin_transaction`] and [`ClusterProducer::commit_transaction`].
    pub transactional_id: Option<String>,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            acks: "all".into(),
            linger_ms: 5,
            batch_bytes: 1 << 20,
            buffer_bytes: 64 << 20,
            compression: "none".into(),
            transactional_id: None,
        }
    }
}

/// A record the cluster did not acknowledge: the tag it was sent with, and why.
#[derive(Debug, Clone)]
pub struct Unacknowledged {
    /// The caller's tag (e.g. its input line number).
    pub tag: u64,
    /// The error.
    pub error: KafkaError,
}

/// Counts acknowledgements and keeps the first failure, from librdkafka's delivery reports.
#[derive(Default)]
struct Deliveries {
    acknowledged: AtomicU64,
    /// Delivery reports handled, acknowledgements and failures.
    answered: AtomicU64,
    first_failure: Mutex<Option<Unacknowledged>>,
    /// Send times of the records whose acknowledgement latency is measured, by tag.
    timed: Mutex<HashMap<u64, Instant>>,
    latencies: Mutex<Vec<Duration>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ClientContext for Deliveries {}

/// Counts a delivery report as handled when dropped, at the end of the callback.
struct Answered<'a>(&'a AtomicU64);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Box<u64>) {
        // Counted last, so a count seen by `flush` covers everything the report changed.
        let _answered = Answered(&self.answered);
        match result {
            Ok(_) => {
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
                if let Some(sent) = locked(&self.timed).remove(&tag) {
                    locked(&self.latencies).push(sent.elapsed());
                }
            }
            Err((error, _)) => {
                let mut first = locked(&self.first_failure);
                if first.as_ref().is_none_or(|f| *tag < f.tag) {
                    *first = Some(Unacknowledged {
                        tag: *tag,
                        error: error.clone(),
                    });
                }
            }
        }
    }
}

/// Sends records to a cluster; delivery reports are counted, and the first failure kept, so
/// a bulk load checks them once instead of awaiting a future per record.
pub struct ClusterProducer {
    producer: ThreadedProducer<Deliveries>,
    bootstrap: Arc<str>,
    /// Records librdkafka accepted.
    sent: AtomicU64,
}

impl ClusterProducer {
    /// Queues `record` tagged with `tag`, waiting while librdkafka's queue is full.
    ///
    /// # Errors
    /// librdkafka refused the record (too large, unknown partition, ...).
    pub async fn send(&self, record: &ProducerRecord, tag: u64) -> Result<()> {
        self.send_record(record, tag).await
    }

    /// As [`ClusterProducer::send`], and measures the time to its acknowledgement (see
    /// [`ClusterProducer::take_latencies`]); `tag` must be unique among records in flight.
    ///
    /// # Errors
    /// As [`ClusterProducer::send`].
    pub async fn send_timed(&self, record: &ProducerRecord, tag: u64) -> Result<()> {
        locked(&self.producer.context().timed).insert(tag, Instant::now());
        self.send_record(record, tag).await
    }

    /// The acknowledgement latencies measured since the last call.
    pub fn take_latencies(&self) -> Vec<Duration> {
        std::mem::take(&mut *locked(&self.producer.context().latencies))
    }

    async fn send_record(&self, record: &ProducerRecord, tag: u64) -> Result<()> {
        let headers = (!record.headers.is_empty()).then(|| headers(&record.headers));
        loop {
            let mut base = BaseRecord::with_opaque_to(&record.topic, Box::new(tag));
            if let Some(key) = &record.key {
                base = base.key(&key[..]);
            }
            if let Some(value) = &record.value {
                base = base.payload(&value[..]);
            }
            if let Some(partition) = record.partition {
                base = base.partition(partition as i32);
            }
            if let Some(timestamp) = record.timestamp {
                base = base.timestamp(timestamp);
            }
            if let Some(headers) = &headers {
                base = base.headers(headers.clone());
            }
            match self.producer.send(base) {
                Ok(()) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((source, _)) => {
                    return Err(Error::Kafka {
                        context: format!(
                            "sending to topic {:?} on {}",
                            record.topic, self.bootstrap
                        ),
                        source,
                    });
                }
            }
        }
    }

    /// Records acknowledged so far.
    #[must_use]
    pub fn acknowledged(&self) -> u64 {
        self.producer.context().acknowledged.load(Ordering::Relaxed)
    }

    /// The failed record with the smallest tag so far.
    #[must_use]
    pub fn first_failure(&self) -> Option<Unacknowledged> {
        locked(&self.producer.context().first_failure).clone()
    }

    /// Registers the transactional id (fencing older producers with it) and waits for the
    /// transaction it left open to be aborted.
    ///
    /// # Errors
    /// No transactional id was set, or the cluster refused.
    pub async fn init_transactions(self: &Arc<Self>, timeout: Duration) -> Result<()> {
        let this = self.clone();
        let deadline = Instant::now() + timeout;
        blocking(move || {
            retried(deadline, |left| this.producer.init_transactions(left))
                .context(|| format!("initialising transactions on {}", this.bootstrap))
        })
        .await
    }

    /// Starts a transaction.
    ///
    /// # Errors
    /// Transactions were not initialised, or one is open.
    pub fn begin_transaction(&self) -> Result<()> {
        self.producer
            .begin_transaction()
            .context(|| format!("beginning a transaction on {}", self.bootstrap))
    }

    /// Adds `offsets` of the group that `member` belongs to to the open transaction: they are
    /// committed with it, or not at all (Kafka's `send_offsets_to_transaction`).
    ///
    /// # Errors
    /// The coordinator refused (fenced producer or group member; the transaction must be
    /// aborted), or the offsets are malformed.
    pub async fn send_offsets_to_transaction(
        self: &Arc<Self>,
        offsets: &[(TopicPartition, u64)],
        member: &GroupMember,
        timeout: Duration,
    ) -> Result<()> {
        let list = offset_list(offsets)?;
        let Some(metadata) = member.metadata() else {
            return Err(Error::Refused(format!(
                "group {:?} has no metadata to commit offsets in a transaction with",
                member.group
            )));
        };
        let this = self.clone();
        let group = member.group.clone();
        let deadline = Instant::now() + timeout;
        let what = format!("committing group {group:?}'s offsets in a transaction");
        blocking_transaction_call(&what, timeout, move || {
            retried(deadline, |left| {
                this.producer
                    .send_offsets_to_transaction(&list, &metadata, left)
            })
            .context(|| {
                format!(
                    "committing group {group:?}'s offsets in a transaction on {}",
                    this.bootstrap
                )
            })
        })
        .await
    }

    /// Aborts the open transaction: what it sent is never read by `read_committed`
    /// consumers.
    ///
    /// # Errors
    /// The cluster refused (the producer was fenced).
    pub async fn abort_transaction(self: &Arc<Self>, timeout: Duration) -> Result<()> {
        let this = self.clone();
        let deadline = Instant::now() + timeout;
        blocking(move || {
            retried(deadline, |left| this.producer.abort_transaction(left))
                .context(|| format!("aborting a transaction on {}", this.bootstrap))
        })
        .await
    }

    /// Sends what is queued and commits the open transaction.
    ///
    /// # Errors
    /// A record was not delivered or the commit was refused (the transaction must be aborted).
    pub async fn commit_transaction(self: &Arc<Self>, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        self.drained(deadline).await;
        let this = self.clone();
        blocking_transaction_call("committing a transaction", timeout, move || {
            retried(deadline, |left| this.producer.commit_transaction(left))
                .context(|| format!("committing a transaction on {}", this.bootstrap))
        })
        .await
    }

    /// Waits until every queued record is acknowledged or failed (at most `timeout`).
    ///
    /// # Errors
    /// Records were still unanswered at the timeout.
    pub async fn flush(self: &Arc<Self>, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        self.drained(deadline).await;
        let this = self.clone();
        blocking(move || {
            this.producer
                .flush(deadline.saturating_duration_since(Instant::now()))
                .context(|| format!("waiting for acknowledgements from {}", this.bootstrap))
        })
        .await?;
        // librdkafka's flush returns once the reports are taken off its queue; the polling
        // thread may still be running their callbacks.
        let sent = self.sent.load(Ordering::Relaxed);
        while self.producer.context().answered.load(Ordering::Acquire) < sent {
            if Instant::now() > deadline {
                return Err(Error::Refused(format!(
                    "{} record(s) unanswered by {} after {timeout:?}",
                    sent - self.producer.context().answered.load(Ordering::Acquire),
                    self.bootstrap
                )));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Waits (until `deadline` at most) for librdkafka's queues to empty. rdkafka's own flush,
    /// which its commit calls first, polls in steps of 100 ms, and with a polling thread taking
    /// the delivery reports each step sleeps out its 100 ms: a commit cost 100 ms more than
    /// its data needed. Waiting here in 1 ms steps leaves that flush nothing to wait for.
    async fn drained(&self, deadline: Instant) {
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn headers(headers: &[Header]) -> OwnedHeaders {
    headers
        .iter()
        .fold(OwnedHeaders::new_with_capacity(headers.len()), |all, h| {
            all.insert(KafkaHeader {
                key: &h.key,
                value: h.value.as_deref(),
            })
        })
}
