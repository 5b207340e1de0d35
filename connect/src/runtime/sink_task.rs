//! A sink task: read its partitions, convert and transform, `put` into the sink, and every
//! `offset_flush_interval_ms` `flush` the sink, then the dead letters, then commit the consumer
//! offsets. Offsets never cover data the sink has not made durable: a sink that holds records
//! across flushes reports them (`Sink::pending_offsets`) and the commit stops short of them.

use std::collections::HashMap;
use std::time::Duration;

use logbrook_core::{
    Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use tokio::time::Instant;

use super::errors::{Backoff, BadRecord, DeadLetter, Origin, Stage, handle_bad_record};
use super::{TaskScope, TaskState};
use crate::api::{OriginalBytes, Record, SinkContext};
use crate::converters::Converter;
use crate::error::Result;
use crate::transforms::apply_chain;

/// The consumer group of a sink connector's offsets.
pub fn group_id(connector: &str) -> String {
    format!("connect-{connector}")
}

/// Runs one sink task over `partitions` until its token is cancelled or it fails.
pub(crate) async fn run(scope: TaskScope, partitions: Vec<TopicPartition>) {
    let outcome = run_inner(&scope, partitions).await;
    scope.finish(outcome);
}

async fn run_inner(scope: &TaskScope, partitions: Vec<TopicPartition>) -> Result<()> {
    let config = &scope.config;
    let token = scope.token.clone();
    let broker = scope.worker.broker.clone();
    let mut consumer = Consumer::new(
        broker.clone(),
        ConsumerConfig {
            group_id: Some(group_id(&config.name)),
            auto_offset_reset: OffsetReset::Earliest,
            // Bigger puts: a sink's cost is mostly per batch (a transaction, a COPY, an upload).
            fetch_max_bytes: 4 << 20,
            ..ConsumerConfig::default()
        },
    );
    consumer.assign(partitions)?;
    let mut backoff = Backoff::new(scope);
    let context = SinkContext {
        connector: config.name.clone(),
        task: scope.task,
        topics: config.topics.clone(),
    };
    let mut sink = loop {
        match config.plugin.open_sink(&config.own, context.clone()).await {
            Ok(sink) => break sink,
            Err(e) => {
                backoff
                    .wait_or_fail(e, "opening the sink", scope, &token)
                    .await?
            }
        }
    };
    backoff.reset();
    scope.set_state(TaskState::Running);
    let (key_kind, key_schemas) = config.key_converter;
    let (value_kind, value_schemas) = config.value_converter;
    let key_converter = Converter::new(key_kind, key_schemas);
    let value_converter = Converter::new(value_kind, value_schemas);
    let dead_letters = Producer::new(broker.clone(), ProducerConfig::default());
    let flush_interval = Duration::from_millis(scope.worker.config.offset_flush_interval_ms);
    let mut last_flush = Instant::now();
    let mut unflushed = false;
    // The log partition of records whose topic or partition a transform changed, so offsets the
    // sink reports for them reach the right partition.
    let mut origins: HashMap<(String, u32), TopicPartition> = HashMap::new();

    let outcome: Result<()> = async {
        loop {
            if scope.is_paused() {
                if unflushed {
                    unflushed = flush(
                        scope,
                        &mut *sink,
                        &dead_letters,
                        &mut consumer,
                        &mut backoff,
                        &origins,
                    )
                    .await?;
                }
                if !scope.wait_while_paused().await {
                    return Ok(());
                }
            }
            let wait = flush_interval
                .saturating_sub(last_flush.elapsed())
                .min(Duration::from_millis(200));
            let polled = tokio::select! {
                () = token.cancelled() => return Ok(()),
                polled = consumer.poll(wait) => polled?,
            };
            if polled.is_empty() && !unflushed {
                // Transaction markers and aborted batches move positions without records:
                // commit them too, so the group's lag reaches zero.
                let group = group_id(&config.name);
                unflushed = consumer.assignment().iter().any(|tp| {
                    consumer
                        .position(tp)
                        .is_some_and(|p| broker.committed_offset(&group, tp).is_none_or(|c| c < p))
                });
            }
            if !polled.is_empty() {
                scope.metrics.add_in(polled.len() as u64);
                let mut batch = Vec::with_capacity(polled.len());
                let mut sources = Vec::with_capacity(polled.len());
                for raw in &polled {
                    match to_record(scope, raw, key_converter, value_converter) {
                        Ok(Some(record)) => {
                            let partition = record.partition.unwrap_or(raw.partition);
                            if (record.topic != *raw.topic || partition != raw.partition)
                                && !origins.contains_key(&(record.topic.clone(), partition))
                            {
                                origins.insert(
                                    (record.topic.clone(), partition),
                                    TopicPartition::new(raw.topic.to_string(), raw.partition),
                                );
                            }
                            batch.push(record);
                            sources.push(raw);
                        }
                        Ok(None) => {}
                        Err((stage, error)) => {
                            if let Some(letter) =
                                handle_bad_record(scope, stage, bad_record(raw), &error)?
                            {
                                send_dead_letter(scope, &dead_letters, letter).await?;
                            }
                        }
                    }
                }
                if !batch.is_empty() {
                    let rejected = loop {
                        match sink.put(&batch).await {
                            Ok(rejected) => break rejected,
                            Err(e) => backoff.wait_or_fail(e, "put", scope, &token).await?,
                        }
                    };
                    backoff.reset();
                    let rejected_count = rejected.len() as u64;
                    for rejection in rejected {
                        let Some(raw) = sources.get(rejection.index) else {
                            continue;
                        };
                        if let Some(letter) = handle_bad_record(
                            scope,
                            Stage::Sink,
                            bad_record(raw),
                            &rejection.error,
                        )? {
                            send_dead_letter(scope, &dead_letters, letter).await?;
                        }
                    }
                    scope
                        .metrics
                        .add_out((batch.len() as u64).saturating_sub(rejected_count));
                }
                unflushed = true;
            }
            if unflushed && last_flush.elapsed() >= flush_interval {
                unflushed = flush(
                    scope,
                    &mut *sink,
                    &dead_letters,
                    &mut consumer,
                    &mut backoff,
                    &origins,
                )
                .await?;
                last_flush = Instant::now();
            }
            let lag: u64 = consumer
                .end_offsets()
                .iter()
                .map(|(tp, end)| end.saturating_sub(consumer.position(tp).unwrap_or(*end)))
                .sum();
            scope.metrics.set_lag(lag);
        }
    }
    .await;
    // Stopping: what was put is flushed and committed, so a graceful stop repeats nothing.
    // After an error nothing is committed: positions may already be past a record that failed.
    let finished = if unflushed && outcome.is_ok() {
        flush(
            scope,
            &mut *sink,
            &dead_letters,
            &mut consumer,
            &mut backoff,
            &origins,
        )
        .await
        .map(|_| ())
    } else {
        Ok(())
    };
    if let Err(e) = sink.close().await {
        tracing::warn!(connector = %config.name, task = scope.task, error = %e, "closing the sink failed");
    }
    outcome.and(finished)
}

/// Flushes the sink and the dead letters, then commits the consumer offsets, short of what the
/// sink still holds. Returns whether it still holds records (so flushing must go on).
async fn flush(
    scope: &TaskScope,
    sink: &mut dyn crate::api::Sink,
    dead_letters: &Producer,
    consumer: &mut Consumer,
    backoff: &mut Backoff,
    origins: &HashMap<(String, u32), TopicPartition>,
) -> Result<bool> {
    // Not cancellable: a stopping task still gets its data durable and its offsets committed.
    let never = tokio_util::sync::CancellationToken::new();
    loop {
        match sink.flush().await {
            Ok(()) => break,
            Err(e) => backoff.wait_or_fail(e, "flush", scope, &never).await?,
        }
    }
    backoff.reset();
    dead_letters.flush().await?;
    let pending = sink.pending_offsets();
    if pending.is_empty() {
        consumer.commit().await?;
        return Ok(false);
    }
    let mut held: HashMap<TopicPartition, u64> = HashMap::new();
    for (topic, partition, offset) in pending {
        let tp = origins
            .get(&(topic.clone(), partition))
            .cloned()
            .unwrap_or_else(|| TopicPartition::new(topic, partition));
        held.entry(tp)
            .and_modify(|first| *first = (*first).min(offset))
            .or_insert(offset);
    }
    let group = group_id(&scope.config.name);
    let broker = &scope.worker.broker;
    let offsets: Vec<(TopicPartition, u64)> = consumer
        .assignment()
        .into_iter()
        .filter_map(|tp| {
            let position = consumer.position(&tp)?;
            let upto = held.get(&tp).map_or(position, |first| position.min(*first));
            let committed = broker.committed_offset(&group, &tp);
            // Never backwards: what was committed stays covered.
            (committed.is_none_or(|c| c < upto)).then_some((tp, upto))
        })
        .collect();
    if !offsets.is_empty() {
        broker.commit_offsets(&group, &offsets).await?;
    }
    Ok(true)
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

async fn send_dead_letter(
    scope: &TaskScope,
    producer: &Producer,
    letter: DeadLetter,
) -> Result<()> {
    scope.worker.ensure_topic(&letter.topic)?;
    // Delivery is awaited at the next flush, before offsets are committed.
    let _delivery = producer
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
