//! A task's inputs: one reader per source partition, handing out records in timestamp order
//! across partitions, as Kafka Streams' tasks choose the partition whose next record is oldest.
//! Event time does not depend on this order (see `task::event_time`), but it keeps the readers
//! of a replaying task close together in time, so windows and join buffers stay small.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbrook_client::{Client, Consumer};
use logbrook_core::{ConsumerRecord, Error as LogError, Log, SeekTo, TopicPartition};
use tokio::sync::watch;

use super::log::AppLog;
use crate::error::{Error, Result};
use crate::topology::TimestampExtractors;

/// Bytes read from a partition at a time.
const FETCH_BYTES: usize = 1 << 20;
/// How long a task reading a cluster waits for a partition known to have records before it
/// picks the oldest record among the others.
const BEHIND_WAIT: Duration = Duration::from_secs(1);
/// How often a task reading a cluster looks up how far its inputs go, while read to the end.
const END_LOOKUP_INTERVAL: Duration = Duration::from_millis(200);

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
    /// The embedded log's partition and its high watermark; `None` on a cluster.
    embedded: Option<(Arc<Log>, watch::Receiver<u64>)>,
    /// Next offset to read from the log.
    fetch_position: u64,
    /// On a cluster: the end offset last looked up.
    known_end: u64,
    end: Option<u64>,
    buffered: VecDeque<ConsumerRecord>,
    /// Since when everything there is to read has been handed out.
    caught_up_since: Option<Instant>,
}

impl InputPartition {
    /// The offset reading stops at now: the end of a bounded run, else the last stable
    /// offset (on a cluster, the end offset last looked up).
    fn limit(&self) -> u64 {
        let available = match &self.embedded {
            Some((log, _)) => log.last_stable_offset(),
            None => self.known_end,
        };
        self.end.map_or(available, |end| end.min(available))
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
    /// On a cluster: one consumer of every input partition of the task, and the log for end
    /// offsets.
    cluster: Option<(Consumer, AppLog)>,
    /// When the end offsets were last looked up on the cluster.
    ends_looked_up: Option<Instant>,
    /// Topics that carry their event time in their content.
    timestamps: TimestampExtractors,
}

impl TaskInputs {
    /// Readers for `ranges` of `log`, from `group`'s committed offsets, else the range's
    /// start, else the log start. Records get the event times `timestamps` extract.
    pub(crate) async fn new(
        log: &AppLog,
        group: &str,
        ranges: Vec<InputRange>,
        timestamps: TimestampExtractors,
    ) -> Result<Self> {
        let tps: Vec<TopicPartition> = ranges.iter().map(|r| r.tp.clone()).collect();
        let committed = log.committed(group, &tps).await?;
        let mut partitions = Vec::with_capacity(ranges.len());
        for (range, committed) in ranges.into_iter().zip(committed) {
            let tp = range.tp;
            let (embedded, log_start) = match log {
                AppLog::Embedded(broker) => {
                    let partition = broker.topic(&tp.topic)?.partition(tp.partition)?.clone();
                    let partition_log = partition.log().clone();
                    let start = partition_log.log_start_offset();
                    (Some((partition_log, partition.subscribe())), start)
                }
                AppLog::Cluster(_) => (None, 0),
            };
            let fetch_position = committed
                .max(range.start)
                .unwrap_or(log_start)
                .max(log_start);
            partitions.push(InputPartition {
                embedded,
                tp,
                fetch_position,
                known_end: 0,
                end: range.end,
                buffered: VecDeque::new(),
                caught_up_since: None,
            });
        }
        let cluster = match log {
            AppLog::Embedded(_) => None,
            AppLog::Cluster(cluster) => {
                let client = Client::Cluster(cluster.clone());
                let mut consumer = client.consumer(None, FETCH_BYTES)?;
                consumer.assign(tps).await?;
                for p in &mut partitions {
                    // Clamped into the log: a start below it (retention) reads from its start.
                    p.fetch_position = consumer
                        .seek(&p.tp, SeekTo::Offset(p.fetch_position))
                        .await?;
                }
                Some((consumer, log.clone()))
            }
        };
        Ok(Self {
            partitions,
            cluster,
            ends_looked_up: None,
            timestamps,
        })
    }

    /// Reads more from every partition whose buffer is empty and that has unread records.
    async fn fill(&mut self) -> Result<()> {
        if self.cluster.is_some() {
            // Partitions with nothing known to read do not cost a poll per record.
            let behind = self
                .partitions
                .iter()
                .any(|p| p.buffered.is_empty() && p.fetch_position < p.limit());
            if behind || self.partitions.iter().all(|p| p.buffered.is_empty()) {
                self.poll_cluster(Duration::ZERO).await?;
            }
            return Ok(());
        }
        for p in &mut self.partitions {
            if !p.buffered.is_empty() {
                continue;
            }
            let Some((log, high_watermark)) = &mut p.embedded else {
                continue;
            };
            high_watermark.borrow_and_update();
            let log = log.clone();
            let limit = p.limit();
            if p.fetch_position >= limit {
                p.caught_up_since.get_or_insert_with(Instant::now);
                continue;
            }
            p.caught_up_since = None;
            let from = p.fetch_position;
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

    /// Polls the task's cluster consumer (waiting up to `timeout` for a first record) into the
    /// partitions' buffers, and looks up the end offsets of those it read to the end.
    async fn poll_cluster(&mut self, timeout: Duration) -> Result<()> {
        let Some((consumer, log)) = &mut self.cluster else {
            return Ok(());
        };
        let records = consumer.poll_available(timeout).await?;
        for mut record in records {
            let Some(p) = self
                .partitions
                .iter_mut()
                .find(|p| *p.tp.topic == *record.topic && p.tp.partition == record.partition)
            else {
                continue;
            };
            // A bounded run reads nothing at or past its end.
            if p.end.is_some_and(|end| record.offset >= end) {
                continue;
            }
            self.timestamps.apply(&mut record);
            p.buffered.push_back(record);
        }
        for p in &mut self.partitions {
            if let Some(at) = consumer.position(&p.tp) {
                p.fetch_position = p.end.map_or(at, |end| at.min(end.max(p.fetch_position)));
            }
        }
        let stale = self
            .ends_looked_up
            .is_none_or(|at| at.elapsed() >= END_LOOKUP_INTERVAL);
        let drained = self
            .partitions
            .iter()
            .any(|p| p.buffered.is_empty() && p.fetch_position >= p.known_end);
        if stale && (drained || self.ends_looked_up.is_none()) {
            let tps: Vec<TopicPartition> = self.partitions.iter().map(|p| p.tp.clone()).collect();
            let ends = log.end_offsets(&tps).await?;
            for (p, end) in self.partitions.iter_mut().zip(ends) {
                p.known_end = end;
            }
            self.ends_looked_up = Some(Instant::now());
        }
        for p in &mut self.partitions {
            if p.buffered.is_empty() && p.fetch_position >= p.limit() {
                p.caught_up_since.get_or_insert_with(Instant::now);
            } else {
                p.caught_up_since = None;
            }
        }
        Ok(())
    }

    /// The next record in timestamp order across partitions (ties: the first partition), or
    /// `None` when every partition is read to its end.
    pub(crate) async fn next(&mut self) -> Result<Option<ConsumerRecord>> {
        self.fill().await?;
        // On a cluster a partition's committed records may not have been fetched yet: wait for
        // them (up to BEHIND_WAIT, as Kafka Streams' max.task.idle.ms) so the oldest record is
        // chosen among every partition's, not only among those fetched first (a table row
        // must be there before the events it is joined with).
        if self.cluster.is_some() {
            let started = Instant::now();
            while started.elapsed() < BEHIND_WAIT
                && self
                    .partitions
                    .iter()
                    .any(|p| p.buffered.is_empty() && p.fetch_position < p.limit())
            {
                self.poll_cluster(Duration::from_millis(10)).await?;
            }
        }
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
    ///
    /// # Errors
    /// Reading from the cluster failed.
    pub(crate) async fn wait_for_data(&mut self, timeout: Duration) -> Result<()> {
        if self.cluster.is_some() {
            return self.poll_cluster(timeout).await;
        }
        let waits = self
            .partitions
            .iter_mut()
            .filter_map(|p| p.embedded.as_mut())
            .map(|(_, high_watermark)| Box::pin(high_watermark.changed()));
        let any = futures::future::select_all(waits);
        let _ = tokio::time::timeout(timeout, any).await;
        Ok(())
    }
}
