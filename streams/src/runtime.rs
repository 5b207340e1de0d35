//! [`StreamsApp`]: runs a topology against the log, one task per input partition.
//!
//! Each task is a tokio task with its own consumer (group = the application id, assigned
//! partition `p` of every source topic) and its own operator instances. Outputs go through one
//! shared producer. Every `commit_interval`, a task waits until its outputs are acknowledged and
//! only then commits its input offsets: at-least-once. After a crash, records processed since
//! the last commit are processed again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use logbrook_core::{
    Broker, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    TopicPartition,
};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::topology::{OnError, Topology};

/// Delivery guarantee of a [`StreamsApp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Outputs are acknowledged before input offsets are committed; after a crash, records since
    /// the last commit are processed again, so outputs may repeat.
    #[default]
    AtLeastOnce,
}

/// Settings of a streams application.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Names the consumer group and, later, the internal topics. One id per application.
    pub application_id: String,
    /// How often tasks commit their input offsets.
    pub commit_interval: Duration,
    /// Delivery guarantee.
    pub processing_guarantee: ProcessingGuarantee,
    /// What to do with records that do not deserialize.
    pub on_deserialization_error: OnError,
}

impl StreamsConfig {
    /// Defaults for `application_id`: commit every 100 ms, at-least-once, fail on bad records.
    pub fn new(application_id: impl Into<String>) -> Self {
        Self {
            application_id: application_id.into(),
            commit_interval: Duration::from_millis(100),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            on_deserialization_error: OnError::Fail,
        }
    }
}

/// A topology running against a broker.
#[derive(Debug)]
pub struct StreamsApp {
    broker: Broker,
    topology: Arc<Topology>,
    config: StreamsConfig,
    partitions: u32,
}

impl StreamsApp {
    /// Checks the topology against the log: source and sink topics exist, and sources are
    /// co-partitioned (equal partition counts), as tasks read the same partition of each.
    ///
    /// # Errors
    /// [`Error::Topology`] naming the missing topic or the mismatched partition counts.
    pub fn new(broker: Broker, topology: Topology, config: StreamsConfig) -> Result<Self> {
        let mut counts = Vec::new();
        for topic in topology.source_topics() {
            let t = broker
                .topic(topic)
                .map_err(|_| Error::Topology(format!("source topic {topic:?} does not exist")))?;
            counts.push((topic.to_string(), t.partition_count()));
        }
        let partitions = counts.first().map_or(0, |(_, n)| *n);
        if counts.iter().any(|(_, n)| *n != partitions) {
            let listed: Vec<String> = counts.iter().map(|(t, n)| format!("{t} has {n}")).collect();
            return Err(Error::Topology(format!(
                "source topics are not co-partitioned: {}",
                listed.join(", ")
            )));
        }
        let mut outputs: Vec<&str> = topology.sink_topics();
        if let OnError::DeadLetter(topic) = &config.on_deserialization_error {
            outputs.push(topic);
        }
        for topic in outputs {
            broker
                .topic(topic)
                .map_err(|_| Error::Topology(format!("output topic {topic:?} does not exist")))?;
        }
        Ok(Self {
            broker,
            topology: Arc::new(topology),
            config,
            partitions,
        })
    }

    /// Runs every task until `shutdown` is cancelled, then commits what was processed and
    /// returns. A task's error stops all tasks and is returned.
    ///
    /// # Errors
    /// The first task error (a record failing under `OnError::Fail`, a log error).
    ///
    /// # Cancel safety
    /// Cancel `shutdown` instead of dropping the future: dropping skips the final commit, so the
    /// records since the last commit are processed again on the next run.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let producer = Producer::new(
            self.broker.clone(),
            ProducerConfig {
                linger: Duration::from_millis(1),
                ..ProducerConfig::default()
            },
        );
        let stop = shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        for partition in 0..self.partitions {
            let task = Task {
                partition,
                broker: self.broker.clone(),
                topology: self.topology.clone(),
                config: self.config.clone(),
                producer: producer.clone(),
            };
            let stop = stop.clone();
            tasks.spawn(async move {
                let result = task.run(stop.clone()).await;
                if result.is_err() {
                    stop.cancel(); // one failed task stops the application
                }
                result
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined.map_err(|e| Error::Topology(format!("a task panicked: {e}")))?;
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

struct Task {
    partition: u32,
    broker: Broker,
    topology: Arc<Topology>,
    config: StreamsConfig,
    producer: Producer,
}

impl Task {
    async fn run(self, stop: CancellationToken) -> Result<()> {
        let config = ConsumerConfig {
            group_id: Some(self.config.application_id.clone()),
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(self.broker.clone(), config);
        let assigned = self
            .topology
            .source_topics()
            .into_iter()
            .map(|t| TopicPartition::new(t, self.partition))
            .collect();
        consumer.assign(assigned)?;
        let mut instance = self
            .topology
            .instantiate(self.config.on_deserialization_error.clone());
        for topic in self.topology.sink_topics() {
            if let Ok(t) = self.broker.topic(topic) {
                instance
                    .context
                    .partition_counts
                    .insert(topic.to_string(), t.partition_count());
            }
        }
        tracing::debug!(application = %self.config.application_id, partition = self.partition, "task started");
        let mut last_commit = Instant::now();
        loop {
            let records = tokio::select! {
                () = stop.cancelled() => break,
                records = consumer.poll(self.config.commit_interval) => records?,
            };
            for record in &records {
                instance.process(record)?;
                for out in instance.take_outputs() {
                    let record = ProducerRecord {
                        topic: out.topic.to_string(),
                        partition: out.partition,
                        key: out.key,
                        value: out.value,
                        headers: out.headers,
                        timestamp: Some(out.timestamp),
                    };
                    self.producer.send(record).await?;
                }
            }
            if last_commit.elapsed() >= self.config.commit_interval {
                self.commit(&mut consumer).await?;
                last_commit = Instant::now();
            }
        }
        self.commit(&mut consumer).await?;
        tracing::debug!(application = %self.config.application_id, partition = self.partition, "task stopped");
        Ok(())
    }

    /// Outputs first, then the offsets that produced them.
    async fn commit(&self, consumer: &mut Consumer) -> Result<()> {
        self.producer.flush().await?;
        consumer.commit().await?;
        Ok(())
    }
}
