//! Runnable examples of Logbrook; see the `[[example]]` targets (`cargo run -p logbrook-examples --example NAME`).
//!
//! [`Example`] is the scaffolding the streams examples share: a fresh data directory with the
//! topics they need, sample input, a run of the application (exactly-once, the default) until it
//! has processed everything, and a way to print what it wrote.

use anyhow::{Context, Result};
use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use logbrook_streams::{CancellationToken, InputBounds, StreamsApp, StreamsConfig, Topology};

/// A data directory with topics, for one example run.
pub struct Example {
    broker: Broker,
    producer: Producer,
    _dir: tempfile::TempDir,
}

/// A record read back from an output topic.
#[derive(Debug)]
pub struct Output {
    /// Key, as UTF-8.
    pub key: Option<String>,
    /// Value, as UTF-8.
    pub value: Option<String>,
    /// Timestamp (ms).
    pub timestamp: i64,
}

impl Example {
    /// Opens a fresh data directory and creates `topics` (name, partitions).
    ///
    /// # Errors
    /// If the log cannot be opened or a topic created.
    pub async fn start(topics: &[(&str, u32)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let broker = Broker::open(dir.path()).await?;
        for (name, partitions) in topics {
            let config = TopicConfig {
                partitions: *partitions,
                ..TopicConfig::default()
            };
            broker.create_topic(name, config)?;
        }
        let producer = Producer::new(broker.clone(), ProducerConfig::default());
        Ok(Self {
            broker,
            producer,
            _dir: dir,
        })
    }

    /// Appends a record with a JSON value (and a string key) at `timestamp` (ms).
    ///
    /// # Errors
    /// If the append fails.
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        value: &serde_json::Value,
        timestamp: i64,
    ) -> Result<()> {
        let record = ProducerRecord::new(topic, value.to_string())
            .with_key(key.to_string())
            .with_timestamp(timestamp);
        self.producer.send(record).await?;
        Ok(())
    }

    /// Runs `topology` as application `app_id` to the end of its input: every window closes,
    /// as when reprocessing history.
    ///
    /// # Errors
    /// If the application fails.
    pub async fn run(&self, app_id: &str, topology: Topology) -> Result<()> {
        self.run_bounded(app_id, topology, InputBounds::default())
            .await
    }

    /// As [`Example::run`], keeping only records with timestamps within `bounds` (a replay of
    /// a time range).
    ///
    /// # Errors
    /// If the application fails.
    pub async fn run_bounded(
        &self,
        app_id: &str,
        topology: Topology,
        bounds: InputBounds,
    ) -> Result<()> {
        self.producer.flush().await?;
        let app = StreamsApp::new(self.broker.clone(), topology, StreamsConfig::new(app_id))?;
        let metrics = app.metrics();
        // A bounded run: every input to its current end, then every window closes.
        app.run_bounded(bounds, CancellationToken::new())
            .await
            .with_context(|| format!("application {app_id}"))?;
        let late = metrics.late_records_dropped();
        if late > 0 {
            println!("({app_id}: {late} late records dropped)");
        }
        Ok(())
    }

    /// Every record of `topic`, partition by partition.
    ///
    /// # Errors
    /// If the topic cannot be read.
    pub fn read(&self, topic: &str) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        let text = |b: Option<bytes::Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
        for partition in self.broker.topic(topic)?.partitions() {
            partition.log().for_each_record(0, |r| {
                out.push(Output {
                    key: text(r.key),
                    value: text(r.value),
                    timestamp: r.timestamp,
                });
            })?;
        }
        Ok(out)
    }

    /// Closes the log.
    ///
    /// # Errors
    /// If the final flush fails.
    pub async fn finish(self) -> Result<()> {
        self.broker.close().await?;
        Ok(())
    }
}

/// Milliseconds for `minutes:seconds` after 2024-01-01T00:00:00Z, to keep sample data readable.
pub fn at(minutes: i64, seconds: i64) -> i64 {
    1_704_067_200_000 + (minutes * 60 + seconds) * 1000
}

/// `HH:MM:SS` of a sample timestamp.
pub fn clock(ms: i64) -> String {
    let s = (ms - 1_704_067_200_000)
        .div_euclid(1000)
        .rem_euclid(24 * 3600);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
