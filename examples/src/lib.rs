//! Runnable examples of Logbrook; see the `[[example]]` targets (`cargo run -p logbrook-examples --example NAME`).
//!
//! [`Example`] is the scaffolding the streams examples share: a fresh data directory with the
//! topics they need, sample input, a run of the application (exactly-once, the default) until it
//! has processed everything, and a way to print what it wrote.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use logbrook_streams::{StreamsApp, StreamsConfig, Topology};
use tokio_util::sync::CancellationToken;

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

    /// Runs `topology` as application `app_id` until its input is processed, then stops it
    /// gracefully.
    ///
    /// # Errors
    /// If the application fails or does not catch up within a minute.
    pub async fn run(&self, app_id: &str, topology: Topology) -> Result<()> {
        self.producer.flush().await?;
        let app = StreamsApp::new(self.broker.clone(), topology, StreamsConfig::new(app_id))?;
        let shutdown = CancellationToken::new();
        let mut running = tokio::spawn(app.run(shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(60);
        // Caught up when every partition the group reads is committed to its end and stays so.
        let mut settled = 0;
        while settled < 3 {
            tokio::select! {
                result = &mut running => {
                    result??;
                    bail!("application {app_id} stopped early");
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let caught_up = self
                .broker
                .describe_group(app_id)
                .is_ok_and(|g| g.partitions.iter().all(|p| p.lag == 0));
            settled = if caught_up { settled + 1 } else { 0 };
            if Instant::now() > deadline {
                bail!("application {app_id} did not catch up within a minute");
            }
        }
        shutdown.cancel();
        running.await.context("application task")??;
        Ok(())
    }

    /// Every record of `topic`, partition by partition.
    ///
    /// # Errors
    /// If the topic cannot be read.
    pub fn read(&self, topic: &str) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        for partition in self.broker.topic(topic)?.partitions() {
            let log = partition.log();
            let mut offset = log.log_start_offset();
            loop {
                let chunk = log.read(offset, 1 << 20)?;
                if chunk.is_empty() {
                    break;
                }
                let mut records = Vec::new();
                chunk.records(offset, &mut records)?;
                for r in records {
                    let text = |b: Option<bytes::Bytes>| {
                        b.map(|b| String::from_utf8_lossy(&b).into_owned())
                    };
                    out.push(Output {
                        key: text(r.key),
                        value: text(r.value),
                        timestamp: r.timestamp,
                    });
                }
                offset = chunk.next_offset;
            }
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
