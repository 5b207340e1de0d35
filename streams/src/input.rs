//! A task's inputs: one reader per source partition, handing out records in timestamp order
//! across partitions, as Kafka Streams' tasks choose the partition whose next record is oldest.
//! Without this, a task replaying history would read one topic far ahead of another and event
//! time (windows, joins, grace) would see records out of order that were not.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use logbrook_core::{Broker, ConsumerRecord, Error as LogError, Log, TopicPartition};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// Bytes read from a partition at a time.
const FETCH_BYTES: usize = 1 << 20;

struct InputPartition {
    tp: TopicPartition,
    log: Arc<Log>,
    high_watermark: watch::Receiver<u64>,
    /// Next offset to read from the log.
    fetch_position: u64,
    buffered: VecDeque<ConsumerRecord>,
}

/// The source partitions of one task.
pub(crate) struct TaskInputs {
    partitions: Vec<InputPartition>,
}

impl TaskInputs {
    /// Readers for `partitions` of `broker`, from `group`'s committed offsets, else the start.
    pub(crate) fn new(
        broker: &Broker,
        group: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Self> {
        let partitions = partitions
            .into_iter()
            .map(|tp| {
                let partition = broker.topic(&tp.topic)?.partition(tp.partition)?.clone();
                let log = partition.log().clone();
                let start = log.log_start_offset();
                let fetch_position = broker
                    .committed_offset(group, &tp)
                    .unwrap_or(start)
                    .max(start);
                Ok(InputPartition {
                    high_watermark: partition.subscribe(),
                    log,
                    tp,
                    fetch_position,
                    buffered: VecDeque::new(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { partitions })
    }

    /// Reads more from every partition whose buffer is empty and that has unread records.
    async fn fill(&mut self) -> Result<()> {
        for p in &mut self.partitions {
            if !p.buffered.is_empty() {
                continue;
            }
            p.high_watermark.borrow_and_update();
            if p.fetch_position >= p.log.high_watermark() {
                continue;
            }
            let (log, from) = (p.log.clone(), p.fetch_position);
            let fetched = tokio::task::spawn_blocking(move || -> Result<_, LogError> {
                let chunk = log.read(from, FETCH_BYTES)?;
                let mut records = Vec::new();
                chunk.records(from, &mut records)?;
                Ok((records, chunk.next_offset))
            })
            .await
            .map_err(|e| Error::Topology(format!("reading {} panicked: {e}", p.tp)))?;
            match fetched {
                Ok((records, next)) => {
                    p.buffered.extend(records);
                    p.fetch_position = next.max(from);
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
