//! `file-sink`: writes records to files named by a template, rolling them by size or age.
//!
//! [`FileSinkConfig`] is the connector's config; [`writer`] holds the blocking writer, with
//! [`template`] resolving paths and [`encode`] formatting values.

mod encode;
mod template;
mod writer;

use async_trait::async_trait;
use logbrook_connect::{
    ConfigIssue, Error, Record, Rejected, Result, Sink, SinkConnector, SinkContext,
};
use serde::{Deserialize, Serialize};

use crate::off_thread::OffThread;
use encode::Encoder;
use template::{PathResolver, PathTemplate};
use writer::{Batch, SinkWriter};

/// The config of `file-sink`.
///
/// ```toml
/// path = "/data/{topic}/{date}/{partition}.jsonl"   # required; or a directory: "/data/out/"
/// format = "json"                                   # json | lines | csv
/// csv_columns = ["id", "name"]                      # csv only; optional
/// roll_bytes = 134217728                            # optional
/// roll_ms = 3600000                                 # optional
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Where each record goes: a path template with `{topic}`, `{partition}`, `{date}` (UTC
    /// `YYYY-MM-DD` of the record's timestamp, or of now when it has none) and `{hour}` (`HH`).
    /// A directory (a path ending in `/`, or an existing directory) means one file per topic
    /// and partition in it: `{topic}-{partition}.jsonl` (`.txt` for `lines`, `.csv` for `csv`).
    /// Parent directories are created. Files are appended to, so a restarted sink continues
    /// them. `validate` rejects a path whose nearest existing directory is not writable.
    pub path: String,
    /// How a value is written.
    #[serde(default = "default_format")]
    pub format: SinkFormat,
    /// The columns of csv files, in order. Without it a new file takes the keys of its first
    /// record (in the order its object keeps them: sorted by name), and an existing file keeps
    /// the columns of its header row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_columns: Option<Vec<String>>,
    /// Roll a file once it holds this many bytes: it is fsynced and renamed to
    /// `<path>.<N>` (the first free `N` from 1), and the next record starts a new file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll_bytes: Option<u64>,
    /// Roll a file once it has been written for this long (checked at each write and flush).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roll_ms: Option<u64>,
}

/// How `file-sink` writes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkFormat {
    /// One JSON document per line: the value, or `null` for a tombstone.
    #[default]
    Json,
    /// A string value verbatim (it should hold no newline), any other value as its JSON text,
    /// and an empty line for a tombstone.
    Lines,
    /// CSV with a header row written when a file is created. Values must be objects (others are
    /// rejected); strings are written as they are, missing and null fields as empty, other
    /// values as JSON text; keys that are not columns are left out.
    Csv,
}

fn default_format() -> SinkFormat {
    SinkFormat::Json
}

impl SinkFormat {
    /// The extension of the files a directory `path` gets.
    fn extension(self) -> &'static str {
        match self {
            Self::Json => "jsonl",
            Self::Lines => "txt",
            Self::Csv => "csv",
        }
    }
}

impl FileSinkConfig {
    fn template(&self) -> Result<PathTemplate, ConfigIssue> {
        PathTemplate::for_sink(&self.path, self.format.extension())
            .map_err(|why| ConfigIssue::new("path", why))
    }
}

#[async_trait]
impl SinkConnector for FileSinkConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        self.template()?
            .check_writable()
            .map_err(|why| ConfigIssue::new("path", why))?;
        if let Some(columns) = &self.csv_columns {
            if self.format != SinkFormat::Csv {
                return Err(ConfigIssue::new(
                    "csv_columns",
                    "only applies with format = \"csv\"",
                ));
            }
            if columns.is_empty() {
                return Err(ConfigIssue::new(
                    "csv_columns",
                    "must name at least one column",
                ));
            }
            for (index, column) in columns.iter().enumerate() {
                if columns[..index].contains(column) {
                    return Err(ConfigIssue::new(
                        "csv_columns",
                        format!("column {column:?} is listed twice"),
                    ));
                }
            }
        }
        if self.roll_bytes == Some(0) {
            return Err(ConfigIssue::new("roll_bytes", "must be at least 1"));
        }
        if self.roll_ms == Some(0) {
            return Err(ConfigIssue::new("roll_ms", "must be at least 1"));
        }
        Ok(())
    }

    async fn open(self, context: SinkContext) -> Result<Box<dyn Sink>> {
        let template = self
            .template()
            .map_err(|issue| Error::fatal(issue.to_string()))?;
        tracing::info!(
            connector = %context.connector,
            task = context.task,
            path = %self.path,
            format = ?self.format,
            "file sink task opened"
        );
        Ok(Box::new(FileSink {
            resolver: PathResolver::new(template),
            format: self.format,
            encoder: Encoder::new(self.format),
            writer: OffThread::new(SinkWriter::new(&self), "file sink"),
        }))
    }
}

/// One `file-sink` task. Paths are resolved and json and lines values encoded here (CPU only);
/// the file I/O runs in a [`SinkWriter`] on the blocking pool.
struct FileSink {
    resolver: PathResolver,
    format: SinkFormat,
    encoder: Encoder,
    /// Each operation's outcome is the records it rejected, by index, with why.
    writer: OffThread<SinkWriter, Result<Vec<(usize, String)>>>,
}

impl FileSink {
    /// Finishes an operation a cancelled call left running.
    async fn settle(&mut self) -> Result<()> {
        if let Some(outcome) = self.writer.settle().await? {
            let rejected = outcome?;
            if !rejected.is_empty() {
                tracing::warn!(
                    count = rejected.len(),
                    "a cancelled put rejected records that were never reported"
                );
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for FileSink {
    /// # Cancel safety
    /// Cancel-safe: the write goes on, and the next call waits for it.
    async fn put(&mut self, records: &[Record]) -> Result<Vec<Rejected>> {
        self.settle().await?;
        let mut rejected = Vec::new();
        let mut batch = Batch::default();
        for (index, record) in records.iter().enumerate() {
            let path = self.resolver.resolve(record);
            let value = record.value.as_ref();
            let outcome = match self.format {
                SinkFormat::Csv => Encoder::columns_of(value)
                    .map(|_| batch.push_value(index, path, value.cloned().unwrap_or_default())),
                SinkFormat::Json | SinkFormat::Lines => self
                    .encoder
                    .encode(value, &[], false)
                    .map(|line| batch.push_encoded(index, path, line)),
            };
            if let Err(why) = outcome {
                rejected.push((index, why));
            }
        }
        let late = self.writer.run(move |writer| writer.write(batch)).await??;
        rejected.extend(late);
        rejected.sort_unstable_by_key(|(index, _)| *index);
        Ok(rejected
            .into_iter()
            .map(|(index, why)| Rejected {
                index,
                error: Error::data(format!("{}: {why}", describe(&records[index]))),
            })
            .collect())
    }

    /// # Cancel safety
    /// Cancel-safe, as [`put`](Self::put); the flush is only known done when this returns.
    async fn flush(&mut self) -> Result<()> {
        self.settle().await?;
        self.writer
            .run(|writer| writer.flush().map(|()| Vec::new()))
            .await??;
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        self.settle().await?;
        self.writer
            .run(|writer| writer.close().map(|()| Vec::new()))
            .await??;
        tracing::debug!("file sink task closed");
        Ok(())
    }
}

/// Names a record in errors: topic, partition and offset.
fn describe(record: &Record) -> String {
    let known = |n: Option<u64>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
    format!(
        "topic {:?} partition {} offset {}",
        record.topic,
        known(record.partition.map(u64::from)),
        known(record.offset)
    )
}
