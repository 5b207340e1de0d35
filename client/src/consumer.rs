//! Reading assigned partitions from the embedded log or a cluster, with a group's committed
//! offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use logbrook_core::{
    Broker, ConsumerConfig, ConsumerRecord, Header, OffsetReset, SeekTo, TimestampType,
    TopicPartition,
};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use crate::cluster::{self, Cluster, blocking};
use crate::error::{Error, KafkaContext, Result};

/// Records handed over by one poll of a cluster, at most.
const MAX_POLL_RECORDS: usize = 100_000;
/// How long a poll waits on for a partition that is behind its end offset.
const BEHIND_WAIT: Duration = Duration::from_secs(10);

/// Reads assigned partitions; made by [`crate::Client::consumer`].
pub enum Consumer {
    /// From the embedded log.
    Embedded {
        /// The log.
        broker: Broker,
        /// Core's consumer.
        consumer: Box<logbrook_core::Consumer>,
        /// The group whose offsets are read and committed.
        group: Option<String>,
    },
    /// From a cluster.
    Cluster(Box<ClusterConsumer>),
}

/// A cluster consumer of assigned partitions at positions chosen here.
pub struct ClusterConsumer {
    cluster: Cluster,
    consumer: Arc<BaseConsumer>,
    group: Option<String>,
    /// Assigned partitions and where reading starts; applied at the next poll.
    positions: BTreeMap<TopicPartition, u64>,
    reassign: bool,
    fetch_max_bytes: usize,
}

impl Consumer {
    pub(crate) fn embedded(broker: &Broker, group: Option<&str>, fetch_max_bytes: usize) -> Self {
        let config = ConsumerConfig {
            group_id: group.map(str::to_string),
            auto_offset_reset: OffsetReset::Earliest,
            fetch_max_bytes,
            // A poll hands over one whole fetch; its bytes already bound the memory.
            max_poll_records: usize::MAX,
            ..ConsumerConfig::default()
        };
        Self::Embedded {
            broker: broker.clone(),
            consumer: Box::new(logbrook_core::Consumer::new(broker.clone(), config)),
            group: group.map(str::to_string),
        }
    }

    pub(crate) fn cluster(
        cluster: &Cluster,
        group: Option<&str>,
        fetch_max_bytes: usize,
    ) -> Result<Self> {
        let mut config = cluster.client_config();
        config
            // Without a group the id only names the client; nothing is committed under it.
            .set("group.id", group.unwrap_or("logbrook-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("max.partition.fetch.bytes", fetch_max_bytes.to_string())
            .set("fetch.max.bytes", (fetch_max_bytes * 4).to_string())
            // librdkafka stops fetching a partition whose local queue holds more than
            // `queued.min.messages` (100,000), then waits this long (default 1 s) before the
            // next fetch: small records drained fast left the reader idle most of each second.
            .set("fetch.queue.backoff.ms", "5");
        let consumer: BaseConsumer = config
            .create()
            .context(|| format!("creating a consumer for {}", cluster.bootstrap()))?;
        Ok(Self::Cluster(Box::new(ClusterConsumer {
            cluster: cluster.clone(),
            consumer: Arc::new(consumer),
            group: group.map(str::to_string),
            positions: BTreeMap::new(),
            reassign: false,
            fetch_max_bytes,
        })))
    }

    /// Reads exactly `partitions` from now on, each from its committed offset (with a group)
    /// or the log start until [`Consumer::seek`] says otherwise.
    ///
    /// # Errors
    /// An unknown topic or partition.
    pub async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        match self {
            Self::Embedded { consumer, .. } => Ok(consumer.assign(partitions)?),
            Self::Cluster(c) => {
                let bounds = c.cluster.bounds(&partitions).await?;
                let old = std::mem::take(&mut c.positions);
                for (tp, (start, _)) in partitions.into_iter().zip(bounds) {
                    let at = old.get(&tp).copied().unwrap_or(start);
                    c.positions.insert(tp, at);
                }
                c.reassign = true;
                Ok(())
            }
        }
    }

    /// Moves `tp`'s position to `to`, clamped into the log; returns the new position.
    ///
    /// # Errors
    /// `tp` is not assigned, or the offsets lookup failed.
    pub async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<u64> {
        match self {
            Self::Embedded { consumer, .. } => Ok(consumer.seek(tp, to)?),
            Self::Cluster(c) => {
                if !c.positions.contains_key(tp) {
                    return Err(Error::Refused(format!("{tp} is not assigned")));
                }
                let one = std::slice::from_ref(tp);
                let (start, end) = c.cluster.bounds(one).await?[0];
                let at = match to {
                    SeekTo::Earliest => start,
                    SeekTo::Latest => end,
                    SeekTo::Offset(n) => n.clamp(start, end),
                    SeekTo::Timestamp(t) => c.cluster.offsets(one, t).await?[0].unwrap_or(end),
                };
                c.positions.insert(tp.clone(), at);
                c.reassign = true;
                Ok(at)
            }
        }
    }

    /// The end offset of each assigned partition now.
    ///
    /// # Errors
    /// The offsets lookup failed.
    pub async fn end_offsets(&self) -> Result<Vec<(TopicPartition, u64)>> {
        match self {
            Self::Embedded { consumer, .. } => Ok(consumer.end_offsets()),
            Self::Cluster(c) => {
                let partitions: Vec<TopicPartition> = c.positions.keys().cloned().collect();
                let ends = c.cluster.offsets(&partitions, -1).await?;
                Ok(partitions
                    .into_iter()
                    .zip(ends)
                    .map(|(tp, end)| (tp, end.unwrap_or(0)))
                    .collect())
            }
        }
    }

    /// The next offset to read from `tp`: past the records handed out and the transaction
    /// markers after them.
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        match self {
            Self::Embedded { consumer, .. } => consumer.position(tp),
            Self::Cluster(c) => c.positions.get(tp).copied(),
        }
    }

    /// The records readable now, waiting up to `timeout` for the first.
    ///
    /// # Errors
    /// A read failed.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        match self {
            Self::Embedded { consumer, .. } => Ok(consumer.poll(timeout).await?),
            Self::Cluster(c) => c.poll(timeout).await,
        }
    }

    /// The records readable now, waiting up to `timeout` for the first, without
    /// [`Consumer::poll`]'s waiting on for partitions behind their end (a streams task must
    /// go on committing while a transaction it reads past stays open).
    ///
    /// # Errors
    /// A read failed.
    pub async fn poll_available(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        match self {
            Self::Embedded { consumer, .. } => Ok(consumer.poll(timeout).await?),
            Self::Cluster(c) => {
                let records = c.poll_once(timeout).await?;
                c.positions_past_markers();
                Ok(records)
            }
        }
    }

    /// The group's committed offset of `tp` (`None` without a group or a commit).
    ///
    /// # Errors
    /// The lookup failed.
    pub async fn committed(&self, tp: &TopicPartition) -> Result<Option<u64>> {
        match self {
            Self::Embedded { broker, group, .. } => {
                Ok(group.as_ref().and_then(|g| broker.committed_offset(g, tp)))
            }
            Self::Cluster(c) => match &c.group {
                Some(group) => Ok(cluster::committed_with(
                    &c.consumer,
                    c.cluster.bootstrap().into(),
                    group,
                    std::slice::from_ref(tp),
                )
                .await?[0]),
                None => Ok(None),
            },
        }
    }

    /// Commits `offsets` for the group.
    ///
    /// # Errors
    /// No group, or the commit was refused.
    pub async fn commit(&self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        match self {
            Self::Embedded { broker, group, .. } => {
                let group = group
                    .as_deref()
                    .ok_or_else(|| Error::Refused("no group to commit for".into()))?;
                Ok(broker.commit_offsets(group, offsets).await?)
            }
            Self::Cluster(c) => {
                let group = c
                    .group
                    .as_deref()
                    .ok_or_else(|| Error::Refused("no group to commit for".into()))?;
                cluster::commit_with(&c.consumer, c.cluster.bootstrap().into(), group, offsets)
                    .await
            }
        }
    }
}

/// Errors a consumer's poll reports while librdkafka goes on by itself (a broker connection
/// dropped or timed out, every broker down for now): not the caller's to act on.
fn connection_trouble(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode::{
        AllBrokersDown, BrokerTransportFailure, OperationTimedOut, RequestTimedOut, Resolve,
    };
    matches!(
        error.rdkafka_error_code(),
        Some(
            AllBrokersDown | BrokerTransportFailure | OperationTimedOut | RequestTimedOut | Resolve
        )
    )
}

impl ClusterConsumer {
    /// As the embedded consumer, answers empty only when nothing is readable: a poll that
    /// times out while a partition is behind its end (librdkafka still fetching, e.g. after a
    /// reassignment) waits on, up to [`BEHIND_WAIT`]; after that the rest is taken to be
    /// offsets compaction removed.
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let started = std::time::Instant::now();
        loop {
            let records = self.poll_once(timeout).await?;
            if !records.is_empty() || started.elapsed() >= BEHIND_WAIT {
                return Ok(records);
            }
            self.positions_past_markers();
            let partitions: Vec<TopicPartition> = self.positions.keys().cloned().collect();
            let ends = self.cluster.offsets(&partitions, -1).await?;
            let behind = partitions
                .iter()
                .zip(ends)
                .any(|(tp, end)| end.is_some_and(|end| self.positions[tp] < end));
            if !behind {
                return Ok(records);
            }
        }
    }

    /// librdkafka's positions, which step over the transaction markers and aborted batches
    /// that hand out no records.
    fn positions_past_markers(&mut self) {
        let Ok(list) = self.consumer.position() else {
            return;
        };
        for element in list.elements() {
            let tp = TopicPartition::new(element.topic(), element.partition() as u32);
            if let (Offset::Offset(at), Some(position)) =
                (element.offset(), self.positions.get_mut(&tp))
            {
                *position = (*position).max(at as u64);
            }
        }
    }

    async fn poll_once(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        if self.reassign {
            let mut list = TopicPartitionList::new();
            for (tp, at) in &self.positions {
                list.add_partition_offset(
                    &tp.topic,
                    tp.partition as i32,
                    Offset::Offset(*at as i64),
                )
                .context(|| format!("assigning {tp}"))?;
            }
            self.consumer
                .assign(&list)
                .context(|| format!("assigning partitions on {}", self.cluster.bootstrap()))?;
            self.reassign = false;
        }
        if self.positions.is_empty() {
            tokio::time::sleep(timeout).await;
            return Ok(Vec::new());
        }
        let consumer = self.consumer.clone();
        let bootstrap: Arc<str> = self.cluster.bootstrap().into();
        let max_bytes = self.fetch_max_bytes;
        let records = blocking(move || {
            let mut topics: HashMap<String, Arc<str>> = HashMap::new();
            let mut records = Vec::new();
            let mut bytes = 0;
            // librdkafka's poll also returns `None` early, after serving another event.
            let deadline = std::time::Instant::now() + timeout;
            while records.len() < MAX_POLL_RECORDS && bytes < max_bytes {
                let wait = if records.is_empty() {
                    deadline.saturating_duration_since(std::time::Instant::now())
                } else {
                    Duration::ZERO
                };
                let Some(message) = consumer.poll(wait) else {
                    if records.is_empty() && !wait.is_zero() {
                        continue;
                    }
                    break;
                };
                let message = match message {
                    Ok(message) => message,
                    // librdkafka reconnects and fetches on by itself: these only inform.
                    Err(e) if connection_trouble(&e) => {
                        tracing::warn!(error = %e, "reading from {bootstrap}; retrying");
                        if wait.is_zero() {
                            break;
                        }
                        continue;
                    }
                    Err(e) => return Err(e).context(|| format!("reading from {bootstrap}")),
                };
                let topic = topics
                    .entry(message.topic().to_string())
                    .or_insert_with(|| message.topic().into())
                    .clone();
                let (timestamp, timestamp_type) = match message.timestamp() {
                    Timestamp::LogAppendTime(t) => (t, TimestampType::LogAppendTime),
                    Timestamp::CreateTime(t) => (t, TimestampType::CreateTime),
                    Timestamp::NotAvailable => (-1, TimestampType::CreateTime),
                };
                let headers = message.headers().map_or_else(Vec::new, |headers| {
                    headers
                        .iter()
                        .map(|h| Header {
                            key: h.key.to_string(),
                            value: h.value.map(Bytes::copy_from_slice),
                        })
                        .collect()
                });
                let key = message.key().map(Bytes::copy_from_slice);
                let value = message.payload().map(Bytes::copy_from_slice);
                bytes += key.as_ref().map_or(0, Bytes::len) + value.as_ref().map_or(0, Bytes::len);
                records.push(ConsumerRecord {
                    topic,
                    partition: message.partition() as u32,
                    offset: message.offset() as u64,
                    timestamp,
                    timestamp_type,
                    key,
                    value,
                    headers,
                });
            }
            Ok(records)
        })
        .await?;
        for record in &records {
            let tp = TopicPartition::new(record.topic.to_string(), record.partition);
            if let Some(at) = self.positions.get_mut(&tp) {
                *at = record.offset + 1;
            }
        }
        Ok(records)
    }
}
