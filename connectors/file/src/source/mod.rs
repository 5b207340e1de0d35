//! `file-source`: tails the files matching a path or glob into a topic.
//!
//! [`FileSourceConfig`] is the connector's config; [`tail`] holds the blocking reader that
//! follows the files, and [`decode`] turns lines into records.

mod decode;
mod tail;

use std::time::Duration;

use async_trait::async_trait;
pub use logbrook_connect::TaskShare;
use logbrook_connect::{ConfigIssue, Result, Source, SourceConnector, SourceContext, SourceRecord};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::off_thread::OffThread;
use tail::Tailer;

/// The longest a poll waits when there is nothing new.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);

/// The config of `file-source`.
///
/// ```toml
/// path = "/var/log/app/*.log"   # required: a file, a glob or a directory
/// format = "lines"              # lines | json | csv
/// start = "beginning"           # beginning | end, for files without a stored offset
/// follow = true                 # keep reading appended data
/// poll_interval_ms = 200
/// batch_max_records = 10000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file to read, or a glob (`/var/log/app/*.log`) of files to read, or a directory
    /// (ending in `/`, or one that exists): every file in it. The glob is expanded
    /// again about every second (at most every `poll_interval_ms`) while following, so files
    /// that appear later are read too. It should not match rotated names (`app.log.1`), or a
    /// rotated file is read again as a new one.
    pub path: String,
    /// How lines become records.
    #[serde(default = "default_format")]
    pub format: SourceFormat,
    /// Where to start a file that has no stored offset, among the files that exist when the task
    /// opens; files that appear later are read from their start.
    #[serde(default = "default_start")]
    pub start: StartPosition,
    /// Keep reading data appended to the files, and follow rotation, truncation and new files
    /// (`tail -F`). With `false` the files matching at open are read once to their end (a last
    /// line without a newline included) and polls then return nothing.
    #[serde(default = "default_follow")]
    pub follow: bool,
    /// How long to wait at the end of the files before looking for new data again.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// The most records one poll returns.
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// Set by the connector when it splits the files among tasks: the files this task reads.
    /// Not meant to be set by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_share: Option<TaskShare>,
}

/// How `file-source` turns a line into a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// The line as a string (without its `\n` or `\r\n`), typed `Utf8`. Bytes that are not
    /// UTF-8 are replaced by U+FFFD.
    #[default]
    Lines,
    /// One JSON value per line; blank lines are skipped. A line that does not parse is returned
    /// as a string with an error, for the dead-letter topic.
    Json,
    /// CSV: the first line is the header, and each later line becomes an object of header name
    /// to string field. Blank lines are skipped; a row whose field count differs from the
    /// header's is returned as a string with an error. Quoted fields cannot span lines.
    Csv,
}

/// Where `file-source` starts a file that has no stored offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// At its first byte.
    #[default]
    Beginning,
    /// At its end: only data appended later is read (a line being written when the task
    /// opened is skipped).
    End,
}

fn default_format() -> SourceFormat {
    SourceFormat::Lines
}

fn default_start() -> StartPosition {
    StartPosition::Beginning
}

fn default_follow() -> bool {
    true
}

fn default_poll_interval_ms() -> u64 {
    200
}

fn default_batch_max_records() -> usize {
    10_000
}

impl FileSourceConfig {
    /// Whether this task reads the file at `path`.
    fn owns(&self, path: &str) -> bool {
        self.task_share.is_none_or(|share| share.owns(path))
    }
}

#[async_trait]
impl SourceConnector for FileSourceConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.path.trim().is_empty() {
            return Err(ConfigIssue::new("path", "must name a file or a glob"));
        }
        glob::Pattern::new(&self.path)
            .map_err(|e| ConfigIssue::new("path", format!("not a valid glob: {e}")))?;
        if self.poll_interval_ms == 0 {
            return Err(ConfigIssue::new("poll_interval_ms", "must be at least 1"));
        }
        if self.batch_max_records == 0 {
            return Err(ConfigIssue::new("batch_max_records", "must be at least 1"));
        }
        if let Some(share) = self.task_share
            && share.index >= share.count
        {
            return Err(ConfigIssue::new(
                "task_share",
                format!("index {} is not below count {}", share.index, share.count),
            ));
        }
        Ok(())
    }

    /// Expands the glob and splits the files among up to `max_tasks` tasks (at most one per
    /// file, at least one).
    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Self>> {
        let files = tail::expand(&self.path)?;
        let count = max_tasks.min(files.len()).max(1);
        if files.is_empty() {
            tracing::info!(path = %self.path, "no file matches the path yet; one task will wait for files");
        }
        if count == 1 {
            return Ok(vec![Self {
                task_share: None,
                ..self.clone()
            }]);
        }
        Ok((0..count)
            .map(|index| Self {
                task_share: Some(TaskShare { index, count }),
                ..self.clone()
            })
            .collect())
    }

    async fn open(self, context: SourceContext) -> Result<Box<dyn Source>> {
        tracing::info!(
            connector = %context.connector,
            task = context.task,
            path = %self.path,
            format = ?self.format,
            "file source task opened"
        );
        let poll_interval = Duration::from_millis(self.poll_interval_ms);
        Ok(Box::new(FileSource {
            tailer: OffThread::new(Tailer::new(self, context), "file source"),
            poll_interval,
            next_read: Instant::now(),
        }))
    }
}

/// One `file-source` task: a [`Tailer`] run on the blocking pool.
struct FileSource {
    tailer: OffThread<Tailer, Result<Vec<SourceRecord>>>,
    poll_interval: Duration,
    /// When the files may be read again, after a read that found nothing new.
    next_read: Instant,
}

#[async_trait]
impl Source for FileSource {
    /// Returns the next lines, or nothing after about a second without new data.
    ///
    /// # Cancel safety
    /// Cancel-safe: a read left running is finished, and its records returned, by the next poll.
    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let deadline = Instant::now() + MAX_POLL_WAIT;
        loop {
            let records = match self.tailer.settle().await? {
                Some(outcome) => outcome?,
                None => {
                    if Instant::now() < self.next_read {
                        tokio::time::sleep_until(self.next_read.min(deadline)).await;
                        if Instant::now() < self.next_read {
                            return Ok(Vec::new());
                        }
                    }
                    self.tailer.run(Tailer::read_batch).await??
                }
            };
            if !records.is_empty() {
                return Ok(records);
            }
            self.next_read = Instant::now() + self.poll_interval;
            if self.next_read >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    async fn close(&mut self) -> Result<()> {
        // A read left running by a cancelled poll is finished so its files close now; its
        // records were never returned, so their offsets were not stored and nothing is lost.
        let _ = self.tailer.settle().await?;
        tracing::debug!("file source task closed");
        Ok(())
    }
}
