//! The worker's durable state, in compacted internal topics read whole at start:
//! `__connect_offsets` (source offsets) and `__connect_configs` (connectors created over REST,
//! and whether they are paused).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use logbrook_core::{
    Broker, CleanupPolicy, Consumer, ConsumerConfig, FlushPolicy, ProducerRecord, SeekTo,
    TopicConfig, TopicPartition,
};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// Internal topic of source offsets: key `["connector", {source partition}]`, value the offset.
pub const OFFSETS_TOPIC: &str = "__connect_offsets";
/// Internal topic of connector configs: key the name, value `{"config": {...}, "paused": bool}`.
pub const CONFIGS_TOPIC: &str = "__connect_configs";

fn ensure_internal_topic(broker: &Broker, name: &str) -> Result<()> {
    if broker.topic(name).is_ok() {
        return Ok(());
    }
    let config = TopicConfig {
        cleanup_policy: CleanupPolicy::Compact,
        flush: FlushPolicy::Always,
        retention_ms: None,
        ..TopicConfig::default()
    };
    match broker.create_topic(name, config) {
        Ok(_) | Err(logbrook_core::Error::TopicExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reads a compacted topic whole: the latest value of each key (`None` for a tombstone).
async fn read_latest(broker: &Broker, topic: &str) -> Result<BTreeMap<Bytes, Option<Bytes>>> {
    let partitions = broker.topic(topic)?.partition_count();
    let mut consumer = Consumer::new(broker.clone(), ConsumerConfig::default());
    consumer.assign(
        (0..partitions)
            .map(|p| TopicPartition::new(topic, p))
            .collect(),
    )?;
    consumer.seek_all(SeekTo::Earliest)?;
    let ends: HashMap<TopicPartition, u64> = consumer.end_offsets().into_iter().collect();
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

async fn append(broker: &Broker, topic: &str, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
    let producer = logbrook_core::Producer::new(broker.clone(), Default::default());
    let record = ProducerRecord {
        topic: topic.to_string(),
        partition: Some(0),
        key: Some(Bytes::from(key)),
        value: value.map(Bytes::from),
        headers: Vec::new(),
        timestamp: None,
    };
    producer.send(record).await?.await?;
    Ok(())
}

/// One connector's offsets: source partition (as JSON text) -> (partition, offset).
type PartitionOffsets = BTreeMap<String, (Value, Value)>;

/// Source offsets of every connector, as last committed.
#[derive(Debug, Default)]
pub struct OffsetStore {
    offsets: Mutex<HashMap<String, PartitionOffsets>>,
}

impl OffsetStore {
    /// Loads `__connect_offsets`, creating it if needed.
    pub(crate) async fn load(broker: &Broker) -> Result<Self> {
        ensure_internal_topic(broker, OFFSETS_TOPIC)?;
        let store = Self::default();
        for (key, value) in read_latest(broker, OFFSETS_TOPIC).await? {
            let Ok(Value::Array(parts)) = serde_json::from_slice::<Value>(&key) else {
                tracing::warn!(
                    topic = OFFSETS_TOPIC,
                    "skipping an offset with an unreadable key"
                );
                continue;
            };
            let (Some(Value::String(connector)), Some(partition)) = (parts.first(), parts.get(1))
            else {
                continue;
            };
            let offset = value.and_then(|v| serde_json::from_slice::<Value>(&v).ok());
            store.apply(connector, partition.clone(), offset);
        }
        Ok(store)
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
        broker: &Broker,
        connector: &str,
        changes: Vec<(Value, Option<Value>)>,
    ) -> Result<()> {
        for (partition, offset) in changes {
            let value = offset.as_ref().map(|o| o.to_string().into_bytes());
            append(
                broker,
                OFFSETS_TOPIC,
                Self::key(connector, &partition),
                value,
            )
            .await?;
            self.apply(connector, partition, offset);
        }
        Ok(())
    }
}

/// A connector config as stored in `__connect_configs`.
#[derive(Debug, Clone)]
pub(crate) struct StoredConnector {
    pub(crate) config: Map<String, Value>,
    pub(crate) paused: bool,
}

/// Connectors created over REST.
#[derive(Debug)]
pub(crate) struct ConfigStore {
    broker: Broker,
}

impl ConfigStore {
    /// Loads `__connect_configs`, creating it if needed.
    pub(crate) async fn load(broker: &Broker) -> Result<(Self, BTreeMap<String, StoredConnector>)> {
        ensure_internal_topic(broker, CONFIGS_TOPIC)?;
        let mut connectors = BTreeMap::new();
        for (key, value) in read_latest(broker, CONFIGS_TOPIC).await? {
            let name = String::from_utf8_lossy(&key).into_owned();
            let Some(value) = value else {
                continue;
            };
            let stored: Value = serde_json::from_slice(&value).map_err(|e| {
                Error::fatal(format!(
                    "{CONFIGS_TOPIC}: config of {name:?} is not JSON: {e}"
                ))
            })?;
            let config = stored
                .get("config")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let paused = stored
                .get("paused")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            connectors.insert(name, StoredConnector { config, paused });
        }
        Ok((
            Self {
                broker: broker.clone(),
            },
            connectors,
        ))
    }

    /// Stores (or with `None`, deletes) a connector.
    pub(crate) async fn put(&self, name: &str, stored: Option<&StoredConnector>) -> Result<()> {
        let value = stored.map(|s| {
            json!({"config": s.config, "paused": s.paused})
                .to_string()
                .into_bytes()
        });
        append(&self.broker, CONFIGS_TOPIC, name.as_bytes().to_vec(), value).await
    }
}
