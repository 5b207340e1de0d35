//! The consumer: reads assigned partitions from a position, waits for new data without polling,
//! and commits positions for its group.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::record::{ConsumerRecord, TopicPartition};

/// Where to start when a partition has no committed offset (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The log end: only new records (Kafka's default).
    #[default]
    Latest,
}

/// A position to seek to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first offset in the log.
    Earliest,
    /// The end of the log.
    Latest,
    /// An offset (clamped into the log).
    Offset(u64),
    /// The first offset whose timestamp is `>=` this (ms since the epoch), or the end.
    Timestamp(i64),
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Group id; with one, `subscribe` shares partitions with the group's other members and
    /// starts from committed offsets.
    pub group_id: Option<String>,
    /// Start for partitions without a committed offset.
    pub auto_offset_reset: OffsetReset,
    /// Most records one `poll` returns.
    pub max_poll_records: usize,
    /// Bytes read per partition fetch.
    pub fetch_max_bytes: usize,
    /// How often a read-only consumer re-reads the writer's files.
    pub read_only_refresh: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            group_id: None,
            auto_offset_reset: OffsetReset::Latest,
            max_poll_records: 10_000,
            fetch_max_bytes: 1 << 20,
            read_only_refresh: Duration::from_millis(100),
        }
    }
}

#[derive(Debug)]
struct Assigned {
    tp: TopicPartition,
    partition: Arc<Partition>,
    /// Next offset to hand to the caller; `None` until resolved from the group or the reset policy.
    position: Option<u64>,
    /// Next offset to fetch (ahead of `position` by what is buffered).
    fetch_position: u64,
    high_watermark: watch::Receiver<u64>,
}

#[derive(Debug)]
struct Membership {
    group: String,
    member: u64,
    generation: watch::Receiver<u64>,
}

/// Reads records from partitions of the log.
#[derive(Debug)]
pub struct Consumer {
    broker: Broker,
    config: ConsumerConfig,
    assigned: Vec<Assigned>,
    /// Records of one fetch not yet handed out, all from partition `assigned[buffered_from]`.
    buffer: VecDeque<ConsumerRecord>,
    buffered_from: usize,
    next_fetch: usize,
    membership: Option<Membership>,
}

impl Consumer {
    /// A consumer with no assignment yet.
    pub fn new(broker: Broker, config: ConsumerConfig) -> Self {
        Self {
            broker,
            config,
            assigned: Vec::new(),
            buffer: VecDeque::new(),
            buffered_from: 0,
            next_fetch: 0,
            membership: None,
        }
    }

    /// Subscribes to topics. With a group id, joins the group and gets a share of the partitions;
    /// without one, reads every partition.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`].
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        let mut subscribed = Vec::new();
        for name in topics {
            subscribed.push((name.to_string(), self.broker.topic(name)?.partition_count()));
        }
        self.leave_group();
        match self.config.group_id.clone() {
            Some(group) => {
                let (member, generation) = self.broker.groups().join(&group, subscribed);
                self.membership = Some(Membership {
                    group,
                    member,
                    generation,
                });
                self.rebalance()
            }
            None => {
                let all = subscribed
                    .iter()
                    .flat_map(|(t, n)| (0..*n).map(|p| TopicPartition::new(t.clone(), p)))
                    .collect();
                self.set_assignment(all)
            }
        }
    }

    /// Reads exactly these partitions, outside any group membership.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::UnknownPartition`].
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.leave_group();
        self.set_assignment(partitions)
    }

    fn set_assignment(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        let mut assigned = Vec::with_capacity(partitions.len());
        for tp in partitions {
            let partition = self
                .broker
                .topic(&tp.topic)?
                .partition(tp.partition)?
                .clone();
            let high_watermark = partition.subscribe();
            assigned.push(Assigned {
                tp,
                partition,
                position: None,
                fetch_position: 0,
                high_watermark,
            });
        }
        self.assigned = assigned;
        self.buffer.clear();
        self.next_fetch = 0;
        Ok(())
    }

    fn rebalance(&mut self) -> Result<()> {
        let Some(m) = &mut self.membership else {
            return Ok(());
        };
        m.generation.borrow_and_update();
        let partitions = self.broker.groups().assignment(&m.group, m.member);
        tracing::debug!(group = %m.group, member = m.member, partitions = partitions.len(), "assignment changed");
        self.set_assignment(partitions)
    }

    fn leave_group(&mut self) {
        if let Some(m) = self.membership.take() {
            self.broker.groups().leave(&m.group, m.member);
        }
    }

    /// The partitions this consumer reads.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assigned.iter().map(|a| a.tp.clone()).collect()
    }

    /// Moves one assigned partition's position.
    ///
    /// # Errors
    /// [`Error::Consumer`] if `tp` is not assigned; I/O errors for timestamp lookups.
    pub fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<u64> {
        let index = self
            .assigned
            .iter()
            .position(|a| &a.tp == tp)
            .ok_or(Error::Consumer("seek on a partition that is not assigned"))?;
        self.seek_index(index, to)
    }

    /// Moves every assigned partition's position.
    ///
    /// # Errors
    /// As [`Consumer::seek`].
    pub fn seek_all(&mut self, to: SeekTo) -> Result<()> {
        for i in 0..self.assigned.len() {
            self.seek_index(i, to)?;
        }
        Ok(())
    }

    fn seek_index(&mut self, index: usize, to: SeekTo) -> Result<u64> {
        let a = &mut self.assigned[index];
        let log = a.partition.log();
        let stats = log.stats();
        let offset = match to {
            SeekTo::Earliest => stats.log_start_offset,
            SeekTo::Latest => stats.log_end_offset,
            SeekTo::Offset(o) => o.clamp(stats.log_start_offset, stats.log_end_offset),
            SeekTo::Timestamp(ts) => log
                .offset_for_timestamp(ts)?
                .unwrap_or(stats.log_end_offset),
        };
        a.position = Some(offset);
        a.fetch_position = offset;
        if self.buffered_from == index {
            self.buffer.clear();
        }
        Ok(offset)
    }

    /// The next offset this consumer will return for `tp`, once resolved.
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.assigned
            .iter()
            .find(|a| &a.tp == tp)
            .and_then(|a| a.position)
    }

    fn resolve_positions(&mut self) -> Result<()> {
        for i in 0..self.assigned.len() {
            if self.assigned[i].position.is_some() {
                continue;
            }
            let committed = self
                .config
                .group_id
                .as_ref()
                .and_then(|g| self.broker.committed_offset(g, &self.assigned[i].tp));
            let to = match (committed, self.config.auto_offset_reset) {
                (Some(offset), _) => SeekTo::Offset(offset),
                (None, OffsetReset::Earliest) => SeekTo::Earliest,
                (None, OffsetReset::Latest) => SeekTo::Latest,
            };
            self.seek_index(i, to)?;
        }
        Ok(())
    }

    /// Returns the records available now, or waits up to `timeout` for some. An empty vector
    /// means the timeout passed with nothing new.
    ///
    /// # Errors
    /// [`Error::CorruptBatch`] when a stored batch fails its CRC; I/O errors.
    ///
    /// # Cancel safety
    /// Cancel safe: records are only handed out (and positions moved) when this returns.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = tokio::time::Instant::now() + timeout;
        if !self.fill(deadline).await? {
            return Ok(Vec::new());
        }
        let n = self.buffer.len().min(self.config.max_poll_records);
        let out: Vec<ConsumerRecord> = if n == self.buffer.len() {
            // The common case hands over the fetched vector without moving each record.
            Vec::from(std::mem::take(&mut self.buffer))
        } else {
            self.buffer.drain(..n).collect()
        };
        if let Some(last) = out.last() {
            self.handed_out(last.offset);
        }
        Ok(out)
    }

    /// Waits for the next record.
    ///
    /// # Errors
    /// As [`Consumer::poll`].
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Consumer::poll`].
    pub async fn recv(&mut self) -> Result<ConsumerRecord> {
        loop {
            if self
                .fill(tokio::time::Instant::now() + Duration::from_secs(3600))
                .await?
                && let Some(record) = self.buffer.pop_front()
            {
                self.handed_out(record.offset);
                return Ok(record);
            }
        }
    }

    /// Moves the position past the last record handed out, and past the batches without
    /// records for readers (transaction markers, aborted data) that ended its fetch once the
    /// buffer is drained, so positions, lag and commits reach the end of the partition.
    fn handed_out(&mut self, last_offset: u64) {
        let a = &mut self.assigned[self.buffered_from];
        a.position = Some(if self.buffer.is_empty() {
            a.fetch_position
        } else {
            last_offset + 1
        });
    }

    /// Makes the buffer non-empty, fetching and waiting until `deadline`; false on timeout.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> Result<bool> {
        loop {
            if let Some(m) = &self.membership
                && m.generation.has_changed().unwrap_or(false)
            {
                self.rebalance()?;
            }
            self.resolve_positions()?;
            let progressed = self.buffer.is_empty() && self.fetch().await?;
            if !self.buffer.is_empty() {
                return Ok(true);
            }
            if progressed {
                continue;
            }
            if !self.wait_for_data(deadline).await? {
                return Ok(false);
            }
        }
    }

    /// The records as a stream. Ends never; errors are items.
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold(self, |consumer| async move {
            let item = consumer.recv().await;
            Some((item, consumer))
        })
    }

    /// Fetches from the assigned partitions in turn until one has data. Returns whether any
    /// position moved (records buffered, or a gap stepped over).
    async fn fetch(&mut self) -> Result<bool> {
        let n = self.assigned.len();
        let mut progressed = false;
        for step in 0..n {
            let index = (self.next_fetch + step) % n;
            let a = &mut self.assigned[index];
            a.high_watermark.borrow_and_update();
            let log = a.partition.log().clone();
            let from = a.fetch_position;
            let max_bytes = self.config.fetch_max_bytes;
            let fetched =
                tokio::task::spawn_blocking(move || -> Result<(Vec<ConsumerRecord>, u64)> {
                    let chunk = log.read_committed(from, max_bytes)?;
                    let mut records = Vec::new();
                    chunk.records(from, &mut records)?;
                    Ok((records, chunk.next_offset))
                })
                .await
                .map_err(|_| Error::Closed)?;
            let (records, next_offset) = match fetched {
                Ok(r) => r,
                Err(Error::OffsetOutOfRange {
                    log_start_offset, ..
                }) => {
                    tracing::warn!(partition = %self.assigned[index].tp, from, log_start_offset, "position was deleted by retention; resetting");
                    let to = match self.config.auto_offset_reset {
                        OffsetReset::Earliest => SeekTo::Earliest,
                        OffsetReset::Latest => SeekTo::Latest,
                    };
                    self.seek_index(index, to)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(last) = records.last() {
                self.assigned[index].fetch_position = next_offset.max(last.offset + 1);
                self.buffer = VecDeque::from(records);
                self.buffered_from = index;
                self.next_fetch = (index + 1) % n;
                return Ok(true);
            }
            if next_offset > from {
                // Batches whose records compaction removed: step over the gap.
                let a = &mut self.assigned[index];
                a.fetch_position = next_offset;
                if a.position == Some(from) {
                    a.position = Some(next_offset);
                }
                progressed = true;
            }
        }
        Ok(progressed)
    }

    /// Waits until a partition's high watermark moves, the group rebalances, or `deadline`.
    /// Returns false on timeout.
    async fn wait_for_data(&mut self, deadline: tokio::time::Instant) -> Result<bool> {
        if self.broker.is_read_only() {
            // No writer in this process to wake us: follow the files.
            let wait = self
                .config
                .read_only_refresh
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::time::sleep(wait).await;
            let broker = self.broker.clone();
            tokio::task::spawn_blocking(move || broker.refresh())
                .await
                .map_err(|_| Error::Closed)??;
            return Ok(tokio::time::Instant::now() < deadline);
        }
        let mut waits: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
        for a in &mut self.assigned {
            waits.push(Box::pin(async {
                let _ = a.high_watermark.changed().await;
            }));
        }
        if let Some(m) = &mut self.membership {
            waits.push(Box::pin(async {
                let _ = m.generation.changed().await;
            }));
        }
        if waits.is_empty() {
            tokio::time::sleep_until(deadline).await;
            return Ok(false);
        }
        tokio::select! {
            _ = futures::future::select_all(waits) => Ok(true),
            () = tokio::time::sleep_until(deadline) => Ok(false),
        }
    }

    /// Commits the current position of every assigned partition for the group.
    ///
    /// # Errors
    /// [`Error::Consumer`] without a group id; append errors.
    ///
    /// # Cancel safety
    /// If dropped, the commit may or may not have been written.
    pub async fn commit(&mut self) -> Result<()> {
        let group = self
            .config
            .group_id
            .clone()
            .ok_or(Error::Consumer("commit needs a group_id"))?;
        let offsets: Vec<_> = self
            .assigned
            .iter()
            .filter_map(|a| a.position.map(|p| (a.tp.clone(), p)))
            .filter(|(tp, p)| self.broker.committed_offset(&group, tp) != Some(*p))
            .collect();
        self.broker.commit_offsets(&group, &offsets).await
    }

    /// The high watermark of each assigned partition.
    pub fn end_offsets(&self) -> Vec<(TopicPartition, u64)> {
        self.assigned
            .iter()
            .map(|a| (a.tp.clone(), a.partition.log().high_watermark()))
            .collect()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.leave_group();
    }
}
