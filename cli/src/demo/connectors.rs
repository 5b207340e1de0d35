//! The demo's connectors: `file-source` reads the generated files into topics and `file-sink`
//! writes the results out, in a connect worker embedded as `logbrook connect run` embeds it.
//! Each connector is a TOML file in `demo/connectors/`, so it can also be run by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use logbrook_connect::config::read_config_file;
use logbrook_connect::runtime::{OffsetChange, TaskState};
use logbrook_connect::{ConfigOrigin, Worker, WorkerConfig};
use logbrook_core::{Broker, TopicPartition};

use super::RecordCounter;
use crate::plugins::registry;

/// How long a connector may make no progress before the demo gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connect worker (REST API off) and the directory of its connector files.
pub struct Connectors {
    worker: Arc<Worker>,
    broker: Broker,
    dir: PathBuf,
}

impl Connectors {
    /// Starts a worker on `broker`; connector files go to `dir`.
    ///
    /// # Errors
    /// If the worker cannot read its internal topics, or `dir` cannot be created.
    pub async fn start(broker: &Broker, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = WorkerConfig {
            rest_enabled: false,
            // Sinks commit often, so the demo sees the results file complete soon.
            offset_flush_interval_ms: 200,
            ..WorkerConfig::default()
        };
        let worker = Worker::start(broker.clone(), registry(), config)
            .await
            .context("starting the connect worker")?;
        Ok(Self {
            worker,
            broker: broker.clone(),
            dir: dir.to_path_buf(),
        })
    }

    /// Writes the connector file `file_name` and runs it; returns the connector's name.
    async fn run(&self, file_name: &str, toml: &str) -> Result<String> {
        let path = self.dir.join(file_name);
        std::fs::write(&path, toml).with_context(|| format!("writing {}", path.display()))?;
        let raw = read_config_file(&path)?;
        Ok(self.worker.run_file(raw, &ConfigOrigin::File(path)).await?)
    }

    /// Runs a `file-source` reading the JSON lines of `input` into `topic`, paused and with any
    /// position a previous run stored forgotten, so it reads `input` from its start once
    /// resumed (by [`Connectors::resume`]) even if the file has the same size and inode as then.
    /// With `key_field`, records are keyed by that field (the `value_to_key` transform).
    ///
    /// # Errors
    /// A bad config or a log error.
    pub async fn source(
        &self,
        name: &str,
        input: &Path,
        topic: &str,
        key_field: Option<&str>,
    ) -> Result<String> {
        let mut toml = format!(
            "name = {name:?}\nconnector = \"file-source\"\ntopic = {topic:?}\npath = {}\nformat = \"json\"\n",
            toml_string(input)
        );
        if let Some(field) = key_field {
            toml.push_str(&format!(
                "\n[[transforms]]\ntype = \"value_to_key\"\nfields = [{field:?}]\n"
            ));
        }
        let name = self.run(&format!("{name}.toml"), &toml).await?;
        self.worker.set_paused(&name, true).await?;
        // Kafka Connect's `DELETE /connectors/NAME/offsets`.
        self.worker
            .alter_offsets(&name, OffsetChange::Reset)
            .await?;
        Ok(name)
    }

    /// Resumes a paused connector.
    ///
    /// # Errors
    /// An unknown connector.
    pub async fn resume(&self, name: &str) -> Result<()> {
        Ok(self.worker.set_paused(name, false).await?)
    }

    /// Runs a `file-sink` writing `topic`'s values to `output` as JSON lines, from the
    /// connector's committed offsets (the log start the first time).
    ///
    /// # Errors
    /// A bad config.
    pub async fn sink(
        &self,
        file_name: &str,
        name: &str,
        topic: &str,
        output: &Path,
    ) -> Result<String> {
        let toml = format!(
            "name = {name:?}\nconnector = \"file-sink\"\ntopics = [{topic:?}]\npath = {}\nformat = \"json\"\n",
            toml_string(output)
        );
        self.run(file_name, &toml).await
    }

    /// Waits until `topic` holds `records` records, showing them arrive on `bar`.
    ///
    /// # Errors
    /// If a connector fails, or nothing arrives for [`STALL_TIMEOUT`].
    pub async fn wait_for_records(
        &self,
        sources: &[&str],
        topic: &str,
        records: u64,
        bar: &ProgressBar,
    ) -> Result<()> {
        let mut seen = 0;
        let mut last_progress = Instant::now();
        let mut counter = RecordCounter::new(topic);
        loop {
            let now = counter.count(&self.broker)?;
            bar.set_position(now);
            if now >= records {
                return Ok(());
            }
            if now > seen {
                (seen, last_progress) = (now, Instant::now());
            }
            self.check(sources, last_progress, || {
                format!("{topic:?} has {now} of {records} records")
            })
            .await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until sink `name` has committed every record of `topic`: its file holds them all.
    ///
    /// # Errors
    /// If the sink fails, or commits nothing new for [`STALL_TIMEOUT`].
    pub async fn wait_for_sink(&self, name: &str, topic: &str) -> Result<()> {
        let group = format!("connect-{name}");
        let partitions: Vec<(TopicPartition, u64)> = self
            .broker
            .topic(topic)?
            .partitions()
            .iter()
            .map(|p| {
                let partition = p.log().partition();
                (
                    TopicPartition::new(topic, partition),
                    p.log().high_watermark(),
                )
            })
            .collect();
        let mut seen = 0;
        let mut last_progress = Instant::now();
        loop {
            let committed: u64 = partitions
                .iter()
                .map(|(tp, _)| self.broker.committed_offset(&group, tp).unwrap_or(0))
                .sum();
            let caught_up = partitions.iter().all(|(tp, end)| {
                self.broker
                    .committed_offset(&group, tp)
                    .is_some_and(|c| c >= *end)
            });
            if caught_up {
                return Ok(());
            }
            if committed > seen {
                (seen, last_progress) = (committed, Instant::now());
            }
            self.check(&[name], last_progress, || {
                format!("sink {name:?} committed {committed} records of {topic:?}")
            })
            .await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails if a connector failed or nothing moved for [`STALL_TIMEOUT`].
    async fn check(
        &self,
        names: &[&str],
        last_progress: Instant,
        stalled: impl Fn() -> String,
    ) -> Result<()> {
        for name in names {
            let status = self.worker.status(name).await?;
            let failure = std::iter::once(&status.state)
                .chain(&status.tasks)
                .find_map(|state| match state {
                    TaskState::Failed(message) => Some(message),
                    _ => None,
                });
            if let Some(message) = failure {
                bail!("connector {name:?} failed: {message}");
            }
        }
        if last_progress.elapsed() > STALL_TIMEOUT {
            bail!(
                "no progress for {} s: {}",
                STALL_TIMEOUT.as_secs(),
                stalled()
            );
        }
        Ok(())
    }

    /// Stops and removes a connector (a sink flushes and commits first); its offsets stay.
    ///
    /// # Errors
    /// An unknown connector.
    pub async fn stop(&self, name: &str) -> Result<()> {
        Ok(self.worker.delete(name).await?)
    }

    /// Stops the worker.
    pub async fn shutdown(&self) {
        self.worker.shutdown().await;
    }
}

/// `path` as a TOML basic string (JSON string escapes are valid TOML).
fn toml_string(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}
