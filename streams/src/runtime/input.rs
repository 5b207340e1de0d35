//! A task's inputs: one reader per source partition, handing out records in timestamp order
//! across partitions, as Kafka Streams' tasks choose the partition whose next record is oldest.
//! Event time does not depend on this order (see `task::event_time`), but it keeps the readers
//! of a replaying task close together in time, so windows and join buffers stay small.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbrook_core::{Broker, ConsumerRecord, Error as LogError, Log, TopicPartition};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::topology::TimestampExtractors;

/// Bytes read from a partition at a time.
const FETCH_BYTES: usize = 1 << 20;

/// Where a task starts and stops reading one partition.
#[derive(Debug, Clone)]
pub(crate) struct InputRange {
    pub tp: TopicPartition,
    /// First offset to read when the group has none committed further on.
    pub start: Option<u64>,
    /// Offset to stop before (a bounded run); `None` reads on forever.
    pub end: Option<u64>,
}

struct InputPartition {
    tp: TopicPartition,
    log: Arc<Log>,
    high_watermark: watch::Receiver<u64>,
    /// Next offset to read from the log.
    fetch_position: u64,
    end: Option<u64>,
    buffered: VecDeque<ConsumerRecord>,
    /// Since when everything there is to read has been handed out.
    caught_up_since: Option<Instant>,
}

impl InputPartition {
    /// The offset reading stops at now: the end of a bounded run, else the high watermark.
    fn limit(&self) -> u64 {
        let high_watermark = self.log.last_stable_offset();
        self.end
            .map_or(high_watermark, |end| end.min(high_watermark))
    }

    /// The offset of the next record to hand out.
    fn position(&self) -> u64 {
        self.buffered
            .front()
            .map_or(self.fetch_position, |r| r.offset)
    }
}

/// What a task knows of one of its input partitions.
#[derive(Debug, Clone)]
pub(crate) struct InputState {
    pub tp: TopicPartition,
    /// Records not yet handed out, up to the high watermark (or the bounded end).
    pub lag: u64,
    /// Every record there is has been handed out, for this long.
    pub caught_up_for: Option<Duration>,
    /// A bounded run has read it to its end.
    pub finished: bool,
}

/// The source partitions of one task.
pub(crate) struct TaskInputs {
    partitions: Vec<InputPartition>,
    /// Topics that carry their event time in their content.
    timestamps: TimestampExtractors,
}

impl TaskInputs {
    /// Readers for `ranges` of `broker`, from `group`'s committed offsets, else the range's
    /// start, else the log start. Records get the event times `timestamps` extract.
    pub(crate) fn new(
        broker: &Broker,
        group: &str,
        ranges: Vec<InputRange>,
        timestamps: TimestampExtractors,
    ) -> Result<Self> {
        let partitions = ranges
            .into_iter()
            .map(|range| {
                let tp = range.tp;
                let partition = broker.topic(&tp.topic)?.partition(tp.partition)?.clone();
                let log = partition.log().clone();
                let log_start = log.log_start_offset();
                let committed = broker.committed_offset(group, &tp);
                let fetch_position = committed
                    .max(range.start)
                    .unwrap_or(log_start)
                    .max(log_start);
                Ok(InputPartition {
                    high_watermark: partition.subscribe(),
                    log,
                    tp,
                    fetch_position,
                    end: range.end,
                    buffered: VecDeque::new(),
                    caught_up_since: None,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            partitions,
            timestamps,
        })
    }

    /// Reads more from every partition whose buffer is empty and that has unread records.
    async fn fill(&mut self) -> Result<()> {
        for p in &mut self.partitions {
            if !p.buffered.is_empty() {
                continue;
            }
            p.high_watermark.borrow_and_update();
            let limit = p.limit();
            if p.fetch_position >= limit {
                p.caught_up_since.get_or_insert_with(Instant::now);
                continue;
            }
            p.caught_up_since = None;
            let (log, from) = (p.log.clone(), p.fetch_position);
            let fetched = tokio::task::spawn_blocking(move || -> Result<_, LogError> {
                let chunk = log.read_committed(from, FETCH_BYTES)?;
                let mut records = Vec::new();
                chunk.records(from, &mut records)?;
                Ok((records, chunk.next_offset))
            })
            .await
            .map_err(|e| Error::Topology(format!("reading {} panicked: {e}", p.tp)))?;
            match fetched {
                Ok((mut records, next)) => {
                    // A bounded run reads nothing at or past its end.
                    records.retain(|r| r.offset < limit);
                    for record in &mut records {
                        self.timestamps.apply(record);
                    }
                    p.buffered.extend(records);
                    p.fetch_position = next.max(from).min(limit.max(from));
                }
                Err(LogError::OffsetOutOfRange {
                    log_start_offset, ..
                }) => {
                    tracing::warn!(partition = %p.tp, from, log_start_offset, "input was deleted by retention; skipping to the log start");
                    p.fetch_position = log_start_offset;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next record in timestamp order across partitions (ties: the first partition), or
    /// `None` when every partition is read to its end.
    pub(crate) async fn next(&mut self) -> Result<Option<ConsumerRecord>> {
        self.fill().await?;
        let oldest = self
            .partitions
            .iter_mut()
            .filter(|p| !p.buffered.is_empty())
            .min_by_key(|p| p.buffered.front().map_or(i64::MAX, |r| r.timestamp));
        Ok(oldest.and_then(|p| p.buffered.pop_front()))
    }

    /// The reading position of each partition with nothing buffered: past transaction markers
    /// and compaction gaps, which no record shows (Kafka's consumers commit it too).
    pub(crate) fn drained_positions(&self) -> impl Iterator<Item = (&TopicPartition, u64)> + '_ {
        self.partitions
            .iter()
            .filter(|p| p.buffered.is_empty())
            .map(|p| (&p.tp, p.fetch_position))
    }

    /// Where each partition stands.
    pub(crate) fn states(&self) -> impl Iterator<Item = InputState> + '_ {
        self.partitions.iter().map(|p| {
            let limit = p.limit();
            let position = p.position();
            InputState {
                tp: p.tp.clone(),
                lag: limit.saturating_sub(position),
                caught_up_for: p.caught_up_since.map(|since| since.elapsed()),
                finished: p.end.is_some_and(|end| position >= end),
            }
        })
    }

    /// Waits until some partition grows, or `timeout` passes.
    pub(crate) async fn wait_for_data(&mut self, timeout: Duration) {
        let waits = self
            .partitions
            .iter_mut()
            .map(|p| Box::pin(p.high_watermark.changed()));
        let any = futures::future::select_all(waits);
        let _ = tokio::time::timeout(timeout, any).await;
    }
}
