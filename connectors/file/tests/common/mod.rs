//! Helpers shared by the file connector tests: opening connectors from JSON configs, polling
//! until records arrive, and small file operations.
#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use logbrook_connect::{
    Record, Sink, SinkConnector, SinkContext, Source, SourceConnector, SourceContext, SourceRecord,
};
use logbrook_connector_file::{FileSinkConfig, FileSourceConfig};
use serde_json::Value;

/// How long a test waits for records that should come.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A validated source config from JSON.
pub fn source_config(config: Value) -> FileSourceConfig {
    let config: FileSourceConfig = serde_json::from_value(config).unwrap();
    config.validate().unwrap();
    config
}

/// Opens one source task of `config` with stored `offsets`.
pub async fn open_source(config: Value, offsets: Vec<(Value, Value)>) -> Box<dyn Source> {
    source_config(config)
        .open(SourceContext::new("c", 0, "topic", offsets))
        .await
        .unwrap()
}

/// Polls until at least `count` records came, or fails after [`PATIENCE`].
pub async fn poll_records(source: &mut dyn Source, count: usize) -> Vec<SourceRecord> {
    let deadline = Instant::now() + PATIENCE;
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records came: {:?}",
            records.len(),
            values(&records)
        );
        records.extend(source.poll().await.unwrap());
    }
    records
}

/// Polls for `time` and returns everything that came.
pub async fn poll_for(source: &mut dyn Source, time: Duration) -> Vec<SourceRecord> {
    let deadline = Instant::now() + time;
    let mut records = Vec::new();
    while Instant::now() < deadline {
        records.extend(source.poll().await.unwrap());
    }
    records
}

/// The record values.
pub fn values(records: &[SourceRecord]) -> Vec<Value> {
    records
        .iter()
        .map(|r| r.record.value.clone().unwrap())
        .collect()
}

/// The record values, which must be strings.
pub fn lines(records: &[SourceRecord]) -> Vec<String> {
    values(records)
        .into_iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Appends `text` to the file at `path`, creating it.
pub fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// The inode of the file at `path`.
pub fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

/// Opens one sink task of `config`, which must validate.
pub async fn open_sink(config: Value) -> Box<dyn Sink> {
    let config: FileSinkConfig = serde_json::from_value(config).unwrap();
    config.validate().unwrap();
    config
        .open(SinkContext {
            connector: "c".to_string(),
            task: 0,
            topics: vec!["orders".to_string()],
        })
        .await
        .unwrap()
}

/// A sink record of `topic`/`partition` at `offset` with a value and a timestamp.
pub fn sink_record(
    topic: &str,
    partition: u32,
    offset: u64,
    timestamp: Option<i64>,
    value: Option<Value>,
) -> Record {
    Record {
        topic: topic.to_string(),
        partition: Some(partition),
        offset: Some(offset),
        timestamp,
        value,
        ..Record::default()
    }
}

/// The text of a file.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
