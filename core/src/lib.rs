//! Logbrook's durable log engine, embeddable in any tokio program.
//!
//! A [`Broker`] opens a data directory of topics. Each topic has partitions; each partition is
//! an append-only log of segments (`{base_offset:020}.log` with sparse `.index` and `.timeindex`
//! files), written in CRC32C-checked batches whose byte layout is in `docs/log-format.md`.
//! [`Producer`] batches and partitions records as Kafka's producer does; [`Consumer`] reads them,
//! waiting for new data, and commits offsets for its consumer group.
//!
//! # Examples
//! ```no_run
//! use logbrook_core::{Broker, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, SeekTo, TopicConfig};
//! # async fn demo() -> logbrook_core::Result<()> {
//! let broker = Broker::open("./logbrook-data").await?;
//! broker.create_topic("clicks", TopicConfig { partitions: 3, ..TopicConfig::default() })?;
//! let producer = Producer::new(broker.clone(), ProducerConfig::default());
//! let delivery = producer.send(ProducerRecord::new("clicks", "hello").with_key("user-1")).await?;
//! let metadata = delivery.await?; // acknowledged: fsynced under the default flush policy
//! let mut consumer = Consumer::new(broker.clone(), ConsumerConfig::default());
//! consumer.subscribe(&["clicks"])?;
//! consumer.seek_all(SeekTo::Earliest)?;
//! let records = consumer.poll(std::time::Duration::from_secs(1)).await?;
//! broker.close().await?;
//! # Ok(()) }
//! ```

pub mod batch;
mod broker;
mod config;
mod consumer;
mod error;
mod groups;
mod index;
mod log;
mod partition;
mod producer;
mod record;
mod segment;
pub mod storage;
mod topic;
mod transactions;

pub use broker::{Broker, BrokerConfig};
/// Kafka's names for topic configs, shared by the server and the Kafka client.
pub use config::kafka as kafka_config;
pub use config::{CleanupPolicy, DEFAULT_SEGMENT_BYTES, FlushPolicy, TopicConfig};
pub use consumer::{Consumer, ConsumerConfig, OffsetReset, SeekTo};
pub use error::{Error, Result};
pub use groups::{
    CommitDetails, CommittedOffset, GroupDescription, GroupPartition, OFFSETS_TOPIC, OffsetChange,
    ResetTarget,
};
pub use log::{
    AbortedTransaction, AppendInfo, CompactionOutcome, FetchedChunk, Log, LogScan, PartitionStats,
    ProducerRefusal, RetentionOutcome, ScannedBatch,
};
pub use partition::Partition;
pub use producer::{DeliveryFuture, Partitioner, Producer, ProducerConfig, partition_for_key};
pub use record::{
    ConsumerRecord, Header, ProducerRecord, RecordMetadata, TimestampType, TopicPartition, now_ms,
};
pub use topic::{Topic, TopicDescription, validate_topic_name};
pub use transactions::{
    CRASH_POINTS, TRANSACTIONS_TOPIC, Transaction, TransactionInfo, TxnRefusal,
};
