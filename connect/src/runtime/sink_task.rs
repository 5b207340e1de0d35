//! A sink task: read its partitions, convert and transform, `put` into the sink, and every
//! `offset_flush_interval_ms` `flush` the sink, then the dead letters, then commit the consumer
//! offsets. Offsets never cover data the sink has not made durable: a sink that holds records
//! across flushes reports them (`Sink::pending_offsets`) and the commit stops short of them.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use logbrook_client::Consumer;
use logbrook_core::{ConsumerRecord, ProducerRecord, TopicPartition};
use tokio::time::Instant;

use super::errors::{Backoff, BadRecord, Origin, Stage, handle_bad_record};
use super::log::LogProducer;
use super::{TaskScope, TaskState};
use crate::api::{OriginalBytes, Record, Sink, SinkContext};
use crate::converters::Converter;
use crate::error::Result;
use crate::transforms::apply_chain;

/// The consumer group of a sink connector's offsets.
pub fn group_id(connector: &str) -> String {
    format!("connect-{connector}")
}

/// Runs one sink task over `partitions` until its token is cancelled or it fails.
pub(crate) async fn run(scope: TaskScope, partitions: Vec<TopicPartition>) {
    let outcome = match SinkTask::open(&scope, partitions).await {
        Ok(task) => task.run().await,
        Err(e) => Err(e),
    };
    scope.finish(outcome);
}

/// An open sink and what feeds it: the consumer of its partitions, the converters, the
/// dead-letter producer, and how far the committed offsets are behind.
struct SinkTask<'a> {
    scope: &'a TaskScope,
    sink: Box<dyn Sink>,
    consumer: Consumer,
    partitions: Vec<TopicPartition>,
    /// The group's committed offsets, as this task last committed (or found) them.
    committed: HashMap<TopicPartition, u64>,
    dead_letters: LogProducer,
    backoff: Backoff,
    key_converter: Converter,
    value_converter: Converter,
    /// When the lag was last reported (on a cluster, reading it asks the brokers).
    lag_reported: Option<Instant>,
    /// Dead-letter topics known to exist: checked once, not per bad record (a cluster lookup).
    dead_letter_topics: HashSet<String>,
    /// The log partition of records whose topic or partition a transform changed, so offsets
    /// the sink reports for them reach the right partition.
    origins: HashMap<(String, u32), TopicPartition>,
    /// Positions are past the committed offsets: records were put, or markers skipped.
    unflushed: bool,
    last_flush: Instant,
    flush_interval: Duration,
}

impl<'a> SinkTask<'a> {
    /// Assigns the partitions (reading from the group's committed offsets) and opens the sink,
    /// retrying as the connector's `errors` settings allow.
    async fn open(scope: &'a TaskScope, partitions: Vec<TopicPartition>) -> Result<Self> {
        let config = &scope.config;
        let log = &scope.worker.log;
        let group = group_id(&config.name);
        // Bigger puts: a sink's cost is mostly per batch (a transaction, a COPY, an upload).
        let mut consumer = log.consumer(Some(&group), 4 << 20)?;
        consumer.assign(partitions.clone()).await?;
        let committed = partitions
            .iter()
            .cloned()
            .zip(log.committed(&group, &partitions).await?)
            .filter_map(|(tp, offset)| Some((tp, offset?)))
            .collect();
        let mut backoff = Backoff::new(scope);
        let context = SinkContext {
            connector: config.name.clone(),
            task: scope.task,
            topics: config.topics.clone(),
        };
        let sink = loop {
            match config.plugin.open_sink(&config.own, context.clone()).await {
                Ok(sink) => break sink,
                Err(e) => {
                    backoff
                        .wait_or_fail(e, "opening the sink", scope, &scope.token)
                        .await?
                }
            }
        };
        backoff.reset();
        let (key_kind, key_schemas) = config.key_converter;
        let (value_kind, value_schemas) = config.value_converter;
        Ok(Self {
            scope,
            sink,
            consumer,
            partitions,
            committed,
            dead_letters: log.producer()?,
            backoff,
            key_converter: Converter::new(key_kind, key_schemas),
            value_converter: Converter::new(value_kind, value_schemas),
            lag_reported: None,
            dead_letter_topics: HashSet::new(),
            origins: HashMap::new(),
            unflushed: false,
            last_flush: Instant::now(),
            flush_interval: Duration::from_millis(scope.worker.config.offset_flush_interval_ms),
        })
    }

    /// Polls, puts and flushes until the token is cancelled (then flushes a last time) or an
    /// error stops it (then commits nothing: positions may be past a record that failed).
    async fn run(mut self) -> Result<()> {
        self.scope.set_state(TaskState::Running);
        let outcome = self.poll_and_put().await;
        let finished = if self.unflushed && outcome.is_ok() {
            // What was put is flushed and committed, so a graceful stop repeats nothing.
            self.flush().await
        } else {
            Ok(())
        };
        if let Err(e) = self.sink.close().await {
            tracing::warn!(connector = %self.scope.config.name, task = self.scope.task, error = %e, "closing the sink failed");
        }
        outcome.and(finished)
    }

    async fn poll_and_put(&mut self) -> Result<()> {
        let token = self.scope.token.clone();
        loop {
            if self.scope.is_paused() {
                if self.unflushed {
                    self.flush().await?;
                }
                if !self.scope.wait_while_paused().await {
                    return Ok(());
                }
            }
            let wait = self
                .flush_interval
                .saturating_sub(self.last_flush.elapsed())
                .min(Duration::from_millis(200));
            let polled = tokio::select! {
                () = token.cancelled() => return Ok(()),
                polled = self.consumer.poll(wait) => polled?,
            };
            if polled.is_empty() {
                self.note_skipped_markers();
            } else {
                self.put(&polled).await?;
            }
            if self.unflushed && self.last_flush.elapsed() >= self.flush_interval {
                self.flush().await?;
                self.last_flush = Instant::now();
            }
            let cluster = self.scope.worker.log.embedded().is_none();
            if !cluster
                || self
                    .lag_reported
                    .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
            {
                self.report_lag().await;
                self.lag_reported = Some(Instant::now());
            }
        }
    }

    /// Transaction markers and aborted batches move positions without records: commit them
    /// too, so the group's lag reaches zero.
    fn note_skipped_markers(&mut self) {
        if self.unflushed {
            return;
        }
        self.unflushed = self.partitions.iter().any(|tp| {
            self.consumer
                .position(tp)
                .is_some_and(|p| self.committed.get(tp).is_none_or(|c| *c < p))
        });
    }

    /// Converts and transforms `polled`, puts it into the sink, and dead-letters (or fails on)
    /// what could not be converted or the sink rejected.
    async fn put(&mut self, polled: &[ConsumerRecord]) -> Result<()> {
        let scope = self.scope;
        scope.metrics.add_in(polled.len() as u64);
        let mut batch = Vec::with_capacity(polled.len());
        let mut sources = Vec::with_capacity(polled.len());
        for raw in polled {
            match to_record(scope, raw, self.key_converter, self.value_converter) {
                Ok(Some(record)) => {
                    let partition = record.partition.unwrap_or(raw.partition);
                    if record.topic != *raw.topic || partition != raw.partition {
                        self.origins
                            .entry((record.topic.clone(), partition))
                            .or_insert_with(|| {
                                TopicPartition::new(raw.topic.to_string(), raw.partition)
                            });
                    }
                    batch.push(record);
                    sources.push(raw);
                }
                Ok(None) => {}
                Err((stage, error)) => self.dead_letter_or_fail(stage, raw, &error).await?,
            }
        }
        self.unflushed = true;
        if batch.is_empty() {
            return Ok(());
        }
        let rejected = loop {
            match self.sink.put(&batch).await {
                Ok(rejected) => break rejected,
                Err(e) => {
                    self.backoff
                        .wait_or_fail(e, "put", scope, &scope.token)
                        .await?
                }
            }
        };
        self.backoff.reset();
        let rejected_count = rejected.len() as u64;
        for rejection in rejected {
            if let Some(raw) = sources.get(rejection.index) {
                self.dead_letter_or_fail(Stage::Sink, raw, &rejection.error)
                    .await?;
            }
        }
        scope
            .metrics
            .add_out((batch.len() as u64).saturating_sub(rejected_count));
        Ok(())
    }

    /// Dead-letters `raw` or fails, as the connector's `errors.tolerance` says.
    async fn dead_letter_or_fail(
        &mut self,
        stage: Stage,
        raw: &ConsumerRecord,
        error: &crate::Error,
    ) -> Result<()> {
        let Some(letter) = handle_bad_record(self.scope, stage, bad_record(raw), error)? else {
            return Ok(());
        };
        if !self.dead_letter_topics.contains(&letter.topic) {
            self.scope.worker.ensure_topic(&letter.topic).await?;
            self.dead_letter_topics.insert(letter.topic.clone());
        }
        // Delivery is awaited at the next flush, before offsets are committed.
        self.dead_letters
            .send(ProducerRecord {
                topic: letter.topic,
                partition: None,
                key: letter.key,
                value: letter.value,
                headers: letter.headers,
                timestamp: None,
            })
            .await?;
        Ok(())
    }

    /// Flushes the sink and the dead letters, then commits the consumer offsets, short of what
    /// the sink still holds (then flushing goes on: `unflushed` stays set).
    async fn flush(&mut self) -> Result<()> {
        // Not cancellable: a stopping task still gets its data durable and its offsets committed.
        let never = tokio_util::sync::CancellationToken::new();
        loop {
            match self.sink.flush().await {
                Ok(()) => break,
                Err(e) => {
                    self.backoff
                        .wait_or_fail(e, "flush", self.scope, &never)
                        .await?
                }
            }
        }
        self.backoff.reset();
        self.dead_letters.flush().await?;
        let pending = self.sink.pending_offsets();
        let mut held: HashMap<TopicPartition, u64> = HashMap::new();
        for (topic, partition, offset) in pending {
            let tp = self
                .origins
                .get(&(topic.clone(), partition))
                .cloned()
                .unwrap_or_else(|| TopicPartition::new(topic, partition));
            held.entry(tp)
                .and_modify(|first| *first = (*first).min(offset))
                .or_insert(offset);
        }
        let offsets: Vec<(TopicPartition, u64)> = self
            .partitions
            .iter()
            .filter_map(|tp| {
                let position = self.consumer.position(tp)?;
                let upto = held.get(tp).map_or(position, |first| position.min(*first));
                // Never backwards: what was committed stays covered.
                let ahead = self.committed.get(tp).is_none_or(|c| *c < upto);
                ahead.then(|| (tp.clone(), upto))
            })
            .collect();
        if !offsets.is_empty() {
            self.consumer.commit(&offsets).await?;
            self.committed.extend(offsets);
        }
        // While the sink holds records, flushing goes on without new ones.
        self.unflushed = !held.is_empty();
        Ok(())
    }

    async fn report_lag(&mut self) {
        // On a cluster this asks the brokers: a lag that cannot be read now is reported later.
        let Ok(ends) = self.consumer.end_offsets().await else {
            return;
        };
        let lag: u64 = ends
            .iter()
            .map(|(tp, end)| end.saturating_sub(self.consumer.position(tp).unwrap_or(*end)))
            .sum();
        self.scope.metrics.set_lag(lag);
    }
}

fn to_record(
    scope: &TaskScope,
    raw: &ConsumerRecord,
    key_converter: Converter,
    value_converter: Converter,
) -> Result<Option<Record>, (Stage, crate::Error)> {
    let (key, key_schema) = key_converter
        .to_data(raw.key.as_deref())
        .map_err(|e| (Stage::KeyConverter, e))?;
    let (value, value_schema) = value_converter
        .to_data(raw.value.as_deref())
        .map_err(|e| (Stage::ValueConverter, e))?;
    let record = Record {
        topic: raw.topic.to_string(),
        partition: Some(raw.partition),
        offset: Some(raw.offset),
        timestamp: Some(raw.timestamp),
        key,
        key_schema,
        value,
        value_schema,
        headers: raw.headers.clone(),
        original: Some(OriginalBytes {
            key: raw.key.clone(),
            value: raw.value.clone(),
        }),
    };
    apply_chain(&scope.config.transforms, record).map_err(|e| (Stage::Transform, e))
}

fn bad_record(raw: &ConsumerRecord) -> BadRecord<'_> {
    BadRecord {
        origin: Origin::Log {
            topic: &raw.topic,
            partition: raw.partition,
            offset: raw.offset,
        },
        key: raw.key.clone(),
        value: raw.value.clone(),
        headers: raw.headers.clone(),
    }
}
