//! The worker's durable state, in compacted topics read whole at start: source offsets
//! (`__connect_offsets` on the embedded log, `connect-offsets` on a cluster) and connectors
//! created over REST with whether they are paused (`__connect_configs`, `connect-configs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use logbrook_core::{ProducerRecord, SeekTo, TopicPartition};
use serde_json::{Map, Value, json};

use super::log::WorkerLog;
use crate::config::WorkerConfig;
use crate::error::{Error, Result};

/// Internal topic of source offsets on the embedded log: key `["connector", {source
/// partition}]`, value the offset (Kafka Connect's format).
pub const OFFSETS_TOPIC: &str = "__connect_offsets";
/// Internal topic of connector configs on the embedded log: key the name, value
/// `{"config": {...}, "paused": bool}`.
pub const CONFIGS_TOPIC: &str = "__connect_configs";

/// The worker's state topics: the worker file's, else the defaults of the log it runs on.
#[derive(Debug, Clone)]
pub(crate) struct StateTopics {
    pub(crate) configs: String,
    pub(crate) offsets: String,
    pub(crate) status: String,
}

impl StateTopics {
    pub(crate) fn new(config: &WorkerConfig, on_cluster: bool) -> Self {
        let pick = |given: &Option<String>, cluster: &str, embedded: &str| {
            given
                .clone()
                .unwrap_or_else(|| if on_cluster { cluster } else { embedded }.to_string())
        };
        Self {
            configs: pick(
                &config.config_storage_topic,
                "connect-configs",
                CONFIGS_TOPIC,
            ),
            offsets: pick(
                &config.offset_storage_topic,
                "connect-offsets",
                OFFSETS_TOPIC,
            ),
            status: pick(
                &config.status_storage_topic,
                "connect-status",
                "__connect_status",
            ),
        }
    }
}

/// A group-less consumer of every partition of `topic`, at its start.
async fn from_start(log: &WorkerLog, topic: &str) -> Result<logbrook_client::Consumer> {
    let partitions = log.partition_count(topic).await?.unwrap_or(0);
    let mut consumer = log.consumer(None, 1 << 20)?;
    let assigned: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(assigned.clone()).await?;
    for tp in &assigned {
        consumer.seek(tp, SeekTo::Earliest).await?;
    }
    Ok(consumer)
}

/// Reads a topic from its start on, as it grows: how a worker of a cluster follows what
/// the others write.
pub(crate) struct Follower {
    consumer: logbrook_client::Consumer,
}

impl Follower {
    pub(crate) async fn new(log: &WorkerLog, topic: &str) -> Result<Self> {
        Ok(Self {
            consumer: from_start(log, topic).await?,
        })
    }

    /// The next records' keys, values and timestamps (none after a while without any).
    pub(crate) async fn next(&mut self) -> Result<Vec<(Bytes, Option<Bytes>, i64)>> {
        let records = self
            .consumer
            .poll_available(Duration::from_millis(500))
            .await?;
        Ok(records
            .into_iter()
            .filter_map(|r| Some((r.key?, r.value, r.timestamp)))
            .collect())
    }
}

/// Reads a compacted topic whole, up to its end now: the latest value of each key (`None`
/// for a tombstone). Only committed records (a source task's open transaction is not read).
async fn read_latest(log: &WorkerLog, topic: &str) -> Result<BTreeMap<Bytes, Option<Bytes>>> {
    let mut consumer = from_start(log, topic).await?;
    let ends: HashMap<TopicPartition, u64> = consumer.end_offsets().await?.into_iter().collect();
    let mut latest = BTreeMap::new();
    loop {
        let done = ends
            .iter()
            .all(|(tp, end)| consumer.position(tp).is_some_and(|p| p >= *end));
        if done {
            break;
        }
        for record in consumer.poll(Duration::from_millis(100)).await? {
            if let Some(key) = record.key {
                latest.insert(key, record.value);
            }
        }
    }
    Ok(latest)
}

async fn append(log: &WorkerLog, topic: &str, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
    let mut producer = log.producer()?;
    producer
        .send(ProducerRecord {
            topic: topic.to_string(),
            partition: Some(0),
            key: Some(Bytes::from(key)),
            value: value.map(Bytes::from),
            headers: Vec::new(),
            timestamp: None,
        })
        .await?;
    producer.flush().await
}

/// One connector's offsets: source partition (as JSON text) -> (partition, offset).
type PartitionOffsets = BTreeMap<String, (Value, Value)>;

/// Source offsets of every connector, as last committed.
#[derive(Debug)]
pub struct OffsetStore {
    topic: String,
    offsets: Mutex<HashMap<String, PartitionOffsets>>,
}

impl OffsetStore {
    /// Loads the offsets topic, creating it if needed.
    pub(crate) async fn load(log: &WorkerLog, topic: &str) -> Result<Self> {
        log.create_topic(topic, 1, true).await?;
        let store = Self {
            topic: topic.to_string(),
            offsets: Mutex::default(),
        };
        store.refresh(log).await?;
        Ok(store)
    }

    /// The topic the offsets live in.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Reads the offsets topic again, for what other workers' tasks committed.
    pub(crate) async fn refresh(&self, log: &WorkerLog) -> Result<()> {
        let topic = self.topic.as_str();
        for (key, value) in read_latest(log, topic).await? {
            let Ok(Value::Array(parts)) = serde_json::from_slice::<Value>(&key) else {
                tracing::warn!(topic, "skipping an offset with an unreadable key");
                continue;
            };
            let (Some(Value::String(connector)), Some(partition)) = (parts.first(), parts.get(1))
            else {
                continue;
            };
            let offset = value.and_then(|v| serde_json::from_slice::<Value>(&v).ok());
            self.apply(connector, partition.clone(), offset);
        }
        Ok(())
    }

    fn apply(&self, connector: &str, partition: Value, offset: Option<Value>) {
        let mut offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        let entries = offsets.entry(connector.to_string()).or_default();
        match offset {
            Some(offset) => {
                entries.insert(partition.to_string(), (partition, offset));
            }
            None => {
                entries.remove(&partition.to_string());
            }
        }
    }

    /// The key a source partition's offset is stored under.
    pub(crate) fn key(connector: &str, partition: &Value) -> Vec<u8> {
        json!([connector, partition]).to_string().into_bytes()
    }

    /// Records offsets that are now durable in the log.
    pub(crate) fn committed(
        &self,
        connector: &str,
        offsets: impl IntoIterator<Item = (Value, Value)>,
    ) {
        for (partition, offset) in offsets {
            self.apply(connector, partition, Some(offset));
        }
    }

    /// A connector's offsets: (source partition, offset) pairs.
    pub fn get(&self, connector: &str) -> Vec<(Value, Value)> {
        let offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        offsets
            .get(connector)
            .map(|entries| entries.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Writes (or with `None`, removes) offsets of a stopped connector.
    pub(crate) async fn alter(
        &self,
        log: &WorkerLog,
        connector: &str,
        changes: Vec<(Value, Option<Value>)>,
    ) -> Result<()> {
        for (partition, offset) in changes {
            let value = offset.as_ref().map(|o| o.to_string().into_bytes());
            append(log, &self.topic, Self::key(connector, &partition), value).await?;
            self.apply(connector, partition, offset);
        }
        Ok(())
    }
}

/// The key prefix of restart requests in the configs topic; not a connector.
pub(crate) const RESTART_PREFIX: &str = "restart-connector-";

/// A connector config as stored in `__connect_configs`.
#[derive(Debug, Clone)]
pub(crate) struct StoredConnector {
    pub(crate) config: Map<String, Value>,
    pub(crate) paused: bool,
}

impl StoredConnector {
    /// A config record's value.
    pub(crate) fn parse(topic: &str, name: &str, value: &[u8]) -> Result<Self> {
        let stored: Value = serde_json::from_slice(value)
            .map_err(|e| Error::fatal(format!("{topic}: config of {name:?} is not JSON: {e}")))?;
        let config = stored
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let paused = stored
            .get("paused")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self { config, paused })
    }
}

/// Connectors created over REST.
#[derive(Debug)]
pub(crate) struct ConfigStore {
    log: WorkerLog,
    topic: String,
}

impl ConfigStore {
    /// Loads the configs topic, creating it if needed.
    pub(crate) async fn load(
        log: &WorkerLog,
        topic: &str,
    ) -> Result<(Self, BTreeMap<String, StoredConnector>)> {
        log.create_topic(topic, 1, true).await?;
        let mut connectors = BTreeMap::new();
        for (key, value) in read_latest(log, topic).await? {
            let name = String::from_utf8_lossy(&key).into_owned();
            let Some(value) = value else {
                continue;
            };
            if name.starts_with(RESTART_PREFIX) {
                continue;
            }
            let stored = StoredConnector::parse(topic, &name, &value)?;
            connectors.insert(name, stored);
        }
        Ok((
            Self {
                log: log.clone(),
                topic: topic.to_string(),
            },
            connectors,
        ))
    }

    /// The configs topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Asks every worker following the configs topic to restart its tasks of `name` (Kafka
    /// Connect's `restart-connector-NAME` record).
    pub(crate) async fn request_restart(&self, name: &str) -> Result<()> {
        let key = format!("{RESTART_PREFIX}{name}").into_bytes();
        let value = json!({ "requested_ms": logbrook_core::now_ms() });
        append(
            &self.log,
            &self.topic,
            key,
            Some(value.to_string().into_bytes()),
        )
        .await
    }

    /// Stores (or with `None`, deletes) a connector.
    pub(crate) async fn put(&self, name: &str, stored: Option<&StoredConnector>) -> Result<()> {
        let value = stored.map(|s| {
            json!({"config": s.config, "paused": s.paused})
                .to_string()
                .into_bytes()
        });
        append(&self.log, &self.topic, name.as_bytes().to_vec(), value).await
    }
}

/// Connector and task states, written to the status topic on a cluster so that every worker,
/// and tooling that reads Kafka Connect's status topic, sees them: keys
/// `status-connector-NAME` and `status-task-NAME-ID`, values `{"state", "trace", "worker_id",
/// "generation"}` as Kafka Connect writes them. Written in the background: a state change never
/// waits on the cluster.
#[derive(Debug)]
pub(crate) struct StatusWriter {
    sender: tokio::sync::mpsc::UnboundedSender<StatusMessage>,
    worker_id: String,
    topic: String,
}

#[derive(Debug)]
enum StatusMessage {
    State { key: String, value: Value },
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl StatusWriter {
    /// Creates the status topic if needed and starts writing.
    pub(crate) async fn start(log: &WorkerLog, topic: &str, worker_id: String) -> Result<Self> {
        log.create_topic(topic, 1, true).await?;
        let mut producer = log.producer()?;
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let own_topic = topic.to_string();
        let topic = topic.to_string();
        tokio::spawn(async move {
            while let Some(message) = receiver.recv().await {
                let mut waiting = Vec::new();
                let mut next = Some(message);
                while let Some(message) = next {
                    match message {
                        StatusMessage::State { key, value } => {
                            let record = ProducerRecord {
                                topic: topic.clone(),
                                partition: Some(0),
                                key: Some(Bytes::from(key)),
                                value: Some(Bytes::from(value.to_string())),
                                headers: Vec::new(),
                                timestamp: None,
                            };
                            if let Err(e) = producer.send(record).await {
                                tracing::warn!(topic, error = %e, "writing a status failed");
                            }
                        }
                        StatusMessage::Flush(done) => waiting.push(done),
                    }
                    next = receiver.try_recv().ok();
                }
                if let Err(e) = producer.flush().await {
                    tracing::warn!(topic, error = %e, "writing statuses failed");
                }
                for done in waiting {
                    let _ = done.send(());
                }
            }
        });
        Ok(Self {
            sender,
            worker_id,
            topic: own_topic,
        })
    }

    /// The status topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Records a task's state.
    pub(crate) fn task(&self, connector: &str, task: usize, state: &super::TaskState) {
        self.write(format!("status-task-{connector}-{task}"), state);
    }

    /// Records a connector's own state.
    pub(crate) fn connector(&self, connector: &str, state: &super::TaskState) {
        self.write(format!("status-connector-{connector}"), state);
    }

    fn write(&self, key: String, state: &super::TaskState) {
        let trace = match state {
            super::TaskState::Failed(message) => Value::String(message.clone()),
            _ => Value::Null,
        };
        let value = json!({
            "state": state.name(),
            "trace": trace,
            "worker_id": self.worker_id,
            "generation": 0,
        });
        let _ = self.sender.send(StatusMessage::State { key, value });
    }

    /// Waits until every state recorded so far is written.
    pub(crate) async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.sender.send(StatusMessage::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}
