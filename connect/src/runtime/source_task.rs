//! A source task: poll the source, transform and convert, then append the records, any dead
//! letters and the new source offsets in one log transaction. The source's position can never
//! run ahead of (or behind) the records in the log, so a restart resumes exactly.

use std::collections::HashMap;

use std::sync::Arc;

use bytes::Bytes;
use logbrook_client::{Client, ClusterProducer, ProducerSettings};
use logbrook_core::{Broker, Header, ProducerRecord, Transaction, partition_for_key};
use serde_json::Value;

use super::errors::{Backoff, BadRecord, DeadLetter, Origin, Stage, handle_bad_record};
use super::log::{CLUSTER_TIMEOUT, acknowledged};
use super::stores::OffsetStore;
use super::{TaskScope, TaskState};
use crate::api::{SourceContext, SourceRecord};
use crate::converters::Converter;
use crate::error::{Error, Result};
use crate::transforms::apply_chain;

/// A transaction is committed early once it holds this much.
const MAX_TRANSACTION_BYTES: usize = 8 << 20;

/// Runs one source task until its token is cancelled or it fails.
pub(crate) async fn run(scope: TaskScope, task_config: Value) {
    let outcome = run_inner(&scope, task_config).await;
    scope.finish(outcome);
}

async fn run_inner(scope: &TaskScope, task_config: Value) -> Result<()> {
    let config = &scope.config;
    let topic = config.topic.clone().unwrap_or_default();
    let token = scope.token.clone();
    let mut backoff = Backoff::new(scope);
    // Fencing first: once this task's producer is initialized, an earlier incarnation (on a
    // worker that died, or still stopping) can commit nothing more, so the offsets read next
    // are final.
    // Both may wait long on a cluster (for a dead worker's open transaction to be aborted):
    // a stopping task does not wait for them.
    let fence_and_read = async {
        let output = Output::open(scope).await?;
        if scope.worker.log.embedded().is_none() {
            scope.worker.offsets.refresh(&scope.worker.log).await?;
        }
        Ok::<_, Error>(output)
    };
    let output = tokio::select! {
        () = token.cancelled() => return Ok(()),
        output = fence_and_read => output?,
    };
    let mut source = loop {
        let context = SourceContext::new(
            &config.name,
            scope.task,
            &topic,
            scope.worker.offsets.get(&config.name),
        );
        match config
            .plugin
            .open_source(task_config.clone(), context)
            .await
        {
            Ok(source) => break source,
            Err(e) => {
                backoff
                    .wait_or_fail(e, "opening the source", scope, &token)
                    .await?
            }
        }
    };
    backoff.reset();
    scope.set_state(TaskState::Running);
    let mut writer = BatchWriter::new(scope, output);
    let outcome = async {
        loop {
            if !scope.wait_while_paused().await {
                return Ok(());
            }
            let records = tokio::select! {
                () = token.cancelled() => return Ok(()),
                polled = source.poll() => polled,
            };
            let records = match records {
                Ok(records) => {
                    backoff.reset();
                    records
                }
                Err(e) => {
                    backoff.wait_or_fail(e, "poll", scope, &token).await?;
                    continue;
                }
            };
            if records.is_empty() {
                continue;
            }
            scope.metrics.add_in(records.len() as u64);
            for record in records {
                writer.add(record).await?;
                if writer.output.size_bytes() >= MAX_TRANSACTION_BYTES {
                    writer.commit().await?;
                }
            }
            writer.commit().await?;
            if let Err(e) = source.commit().await {
                tracing::warn!(connector = %config.name, task = scope.task, error = %e, "source commit hook failed");
            }
        }
    }
    .await;
    if let Err(e) = source.close().await {
        tracing::warn!(connector = %config.name, task = scope.task, error = %e, "closing the source failed");
    }
    outcome
}

/// Builds one transaction: records, dead letters and the offsets they cover.
struct BatchWriter<'a> {
    scope: &'a TaskScope,
    key_converter: Converter,
    value_converter: Converter,
    output: Output,
    offsets: Vec<(Value, Value)>,
    records: u64,
    /// Partition counts of the topics written so far: one lookup per topic, not per record.
    partition_counts: HashMap<String, u32>,
    round_robin: u32,
}

impl<'a> BatchWriter<'a> {
    fn new(scope: &'a TaskScope, output: Output) -> Self {
        let (key_kind, key_schemas) = scope.config.key_converter;
        let (value_kind, value_schemas) = scope.config.value_converter;
        Self {
            scope,
            key_converter: Converter::new(key_kind, key_schemas),
            value_converter: Converter::new(value_kind, value_schemas),
            output,
            offsets: Vec::new(),
            records: 0,
            partition_counts: HashMap::new(),
            round_robin: scope.task as u32,
        }
    }

    async fn add(&mut self, source_record: SourceRecord) -> Result<()> {
        let SourceRecord {
            record,
            source_partition,
            source_offset,
            error,
        } = source_record;
        let origin = Origin::Source {
            partition: &source_partition,
            offset: &source_offset,
        };
        // Transforms consume the record: keep the original for the dead-letter topic only then.
        let original = if error.is_some() || !self.scope.config.transforms.is_empty() {
            Some(record.clone())
        } else {
            None
        };
        let outcome = match error {
            Some(message) => Err((Stage::Source, Error::data(message), None)),
            None => self.convert(record).await,
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(record)) => {
                self.output.send(record).await?;
                self.records += 1;
            }
            Err((stage, error, returned)) => {
                let Some(record) = original.or(returned.map(|boxed| *boxed)) else {
                    return Err(error);
                };
                // The dead letter holds the record as read, JSON-encoded.
                let bad = BadRecord {
                    origin,
                    key: record.key.as_ref().map(|k| Bytes::from(k.to_string())),
                    value: record.value.as_ref().map(|v| match v {
                        Value::String(text) => Bytes::from(text.clone()),
                        other => Bytes::from(other.to_string()),
                    }),
                    headers: record.headers.clone(),
                };
                if let Some(letter) = handle_bad_record(self.scope, stage, bad, &error)? {
                    self.dead_letter(letter).await?;
                }
            }
        }
        // Few source partitions per batch: a scan beats serializing each one as a map key.
        match self
            .offsets
            .iter_mut()
            .rev()
            .find(|(partition, _)| *partition == source_partition)
        {
            Some(entry) => entry.1 = source_offset,
            None => self.offsets.push((source_partition, source_offset)),
        }
        Ok(())
    }

    /// The record as it goes into the log (with its partition), `None` when a transform
    /// dropped it; the error keeps the record for the dead-letter topic.
    async fn convert(
        &mut self,
        record: crate::api::Record,
    ) -> Result<Option<ProducerRecord>, (Stage, Error, Option<Box<crate::api::Record>>)> {
        let mut record = record;
        if record.topic.is_empty() {
            record.topic = self.scope.config.topic.clone().unwrap_or_default();
        }
        let Some(mut record) = apply_chain(&self.scope.config.transforms, record)
            .map_err(|e| (Stage::Transform, e, None))?
        else {
            return Ok(None);
        };
        // A restored record's bytes go back as they were; converters only make new bytes.
        let (key, value) = if let Some(original) = record.original.take() {
            (original.key, original.value)
        } else {
            let key = match self
                .key_converter
                .from_data(record.key.as_ref(), record.key_schema.as_ref())
            {
                Ok(key) => key,
                Err(e) => return Err((Stage::KeyConverter, e, Some(Box::new(record)))),
            };
            let value = match self
                .value_converter
                .from_data(record.value.as_ref(), record.value_schema.as_ref())
            {
                Ok(value) => value,
                Err(e) => return Err((Stage::ValueConverter, e, Some(Box::new(record)))),
            };
            (key, value)
        };
        let partitions = match self.ensure_topic(&record.topic).await {
            Ok(partitions) => partitions,
            Err(e) => return Err((Stage::Produce, e, Some(Box::new(record)))),
        };
        let partition = match (record.partition, &key) {
            (Some(p), _) if p < partitions => p,
            (Some(p), _) => {
                let error = Error::data(format!(
                    "topic {:?} has {partitions} partition(s) and this record is for partition {p}: create the topic with at least {} partitions",
                    record.topic,
                    p + 1
                ));
                return Err((Stage::Produce, error, Some(Box::new(record))));
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                self.round_robin = self.round_robin.wrapping_add(1);
                self.round_robin % partitions
            }
        };
        Ok(Some(ProducerRecord {
            topic: record.topic,
            partition: Some(partition),
            key,
            value,
            headers: record.headers,
            timestamp: Some(record.timestamp.unwrap_or_else(logbrook_core::now_ms)),
        }))
    }

    /// The partition count of a topic, creating it (as Kafka Connect's topic creation does) when
    /// a source or a `route` transform names a new one.
    async fn ensure_topic(&mut self, topic: &str) -> Result<u32> {
        if let Some(count) = self.partition_counts.get(topic) {
            return Ok(*count);
        }
        let count = self.scope.worker.ensure_topic(topic).await?;
        self.partition_counts.insert(topic.to_string(), count);
        Ok(count)
    }

    async fn dead_letter(&mut self, letter: DeadLetter) -> Result<()> {
        let partitions = self.ensure_topic(&letter.topic).await?;
        self.round_robin = self.round_robin.wrapping_add(1);
        self.output
            .send(ProducerRecord {
                topic: letter.topic,
                partition: Some(self.round_robin % partitions),
                key: letter.key,
                value: letter.value,
                headers: letter.headers,
                timestamp: Some(logbrook_core::now_ms()),
            })
            .await
    }

    /// Commits records, dead letters and offsets together. Nothing happens for an empty batch.
    async fn commit(&mut self) -> Result<()> {
        if self.offsets.is_empty() {
            return Ok(());
        }
        let name = &self.scope.config.name;
        let now = logbrook_core::now_ms();
        let offsets = self
            .offsets
            .iter()
            .map(|(partition, offset)| ProducerRecord {
                topic: self.scope.worker.offsets.topic().to_string(),
                partition: Some(0),
                key: Some(Bytes::from(OffsetStore::key(name, partition))),
                value: Some(Bytes::from(offset.to_string())),
                headers: Vec::new(),
                timestamp: Some(now),
            })
            .collect();
        self.output.commit(offsets).await?;
        let offsets = std::mem::take(&mut self.offsets);
        self.scope.worker.offsets.committed(name, offsets);
        self.scope
            .metrics
            .add_out(std::mem::take(&mut self.records));
        Ok(())
    }
}

/// Where a source task's batches go with the offsets they cover.
enum Output {
    /// The embedded log: a batch gathers in a transaction written at commit.
    Embedded {
        broker: Broker,
        transaction: Transaction,
    },
    /// A cluster. Exactly-once (the default), as Kafka Connect's exactly-once sources
    /// (KIP-618): a transactional producer of the task's own, id
    /// `{group_id}-{connector}-{task}`, so the task's next incarnation, here or on another
    /// worker, fences this one and aborts what it left open. At-least-once (for brokers without
    /// transactions): the offsets are written once the records are acknowledged.
    Cluster {
        producer: Arc<ClusterProducer>,
        exactly_once: bool,
        in_transaction: bool,
        bytes: usize,
        sent: u64,
    },
}

impl Output {
    async fn open(scope: &TaskScope) -> Result<Self> {
        Ok(match &scope.worker.log.0 {
            Client::Embedded(broker) => Self::Embedded {
                broker: broker.clone(),
                transaction: Transaction::new(),
            },
            Client::Cluster(cluster) => {
                let exactly_once = scope.worker.config.exactly_once_source_support;
                let id = format!(
                    "{}-{}-{}",
                    scope.worker.config.group_id, scope.config.name, scope.task
                );
                let settings = ProducerSettings {
                    transactional_id: exactly_once.then_some(id),
                    ..ProducerSettings::default()
                };
                let producer = Arc::new(cluster.producer(&settings)?);
                if exactly_once {
                    producer.init_transactions(CLUSTER_TIMEOUT).await?;
                }
                Self::Cluster {
                    producer,
                    exactly_once,
                    in_transaction: false,
                    bytes: 0,
                    sent: 0,
                }
            }
        })
    }

    /// Bytes of the open batch.
    fn size_bytes(&self) -> usize {
        match self {
            Self::Embedded { transaction, .. } => transaction.size_bytes(),
            Self::Cluster { bytes, .. } => *bytes,
        }
    }

    /// Adds `record` (its partition chosen) to the open batch.
    async fn send(&mut self, record: ProducerRecord) -> Result<()> {
        match self {
            Self::Embedded { transaction, .. } => transaction.send(
                &record.topic,
                record.partition.unwrap_or(0),
                record.timestamp.unwrap_or_else(logbrook_core::now_ms),
                record.key.as_deref(),
                record.value.as_deref(),
                &record.headers,
            ),
            Self::Cluster {
                producer,
                exactly_once,
                in_transaction,
                bytes,
                sent,
            } => {
                if *exactly_once && !*in_transaction {
                    producer.begin_transaction()?;
                    *in_transaction = true;
                }
                *bytes += record_bytes(&record);
                producer.send(&record, *sent).await?;
                *sent += 1;
            }
        }
        Ok(())
    }

    /// Commits the open batch with `offsets`, the records that store how far it went.
    async fn commit(&mut self, offsets: Vec<ProducerRecord>) -> Result<()> {
        if let Self::Cluster {
            producer,
            exactly_once: false,
            bytes,
            ..
        } = self
        {
            // The records first: offsets never cover records the cluster has not acknowledged.
            let producer = producer.clone();
            acknowledged(&producer).await?;
            for record in &offsets {
                producer.send(record, 0).await?;
            }
            acknowledged(&producer).await?;
            *bytes = 0;
            return Ok(());
        }
        for record in offsets {
            self.send(record).await?;
        }
        match self {
            Self::Embedded {
                broker,
                transaction,
            } => {
                broker
                    .commit_transaction(std::mem::take(transaction))
                    .await?;
            }
            Self::Cluster {
                producer,
                in_transaction,
                bytes,
                ..
            } => {
                if *in_transaction {
                    producer.commit_transaction(CLUSTER_TIMEOUT).await?;
                    *in_transaction = false;
                    *bytes = 0;
                }
            }
        }
        Ok(())
    }
}

fn record_bytes(record: &ProducerRecord) -> usize {
    record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + record
            .headers
            .iter()
            .map(|h: &Header| h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
}
