//! Helpers shared by the core integration tests.
#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use logbrook_core::batch::BatchBuilder;
use logbrook_core::{Broker, BrokerConfig, ConsumerRecord, FlushPolicy, Log, TopicConfig};

/// A small-segment topic config so tests roll often.
pub fn small_topic(partitions: u32, segment_bytes: u64) -> TopicConfig {
    TopicConfig {
        partitions,
        segment_bytes,
        flush: FlushPolicy::Never,
        ..TopicConfig::default()
    }
}

/// Opens a writable broker whose cleaner never runs on its own.
pub async fn open(dir: &Path) -> Broker {
    let mut config = BrokerConfig::new(dir);
    config.cleaner_interval = Duration::from_secs(3600);
    Broker::open_with(config).await.expect("open broker")
}

/// Appends one batch of `(key, value, timestamp)` records to a partition; returns the base offset.
pub async fn append(
    broker: &Broker,
    topic: &str,
    partition: u32,
    records: &[(&str, &str, i64)],
) -> u64 {
    let mut builder = BatchBuilder::with_capacity(256);
    for (k, v, ts) in records {
        builder.push(*ts, Some(k.as_bytes()), Some(v.as_bytes()), &[]);
    }
    let partition = broker
        .topic(topic)
        .expect("topic")
        .partition(partition)
        .expect("partition")
        .clone();
    partition
        .append(builder.finish())
        .await
        .expect("append")
        .base_offset
}

/// The log of one partition.
pub fn log_of(broker: &Broker, topic: &str, partition: u32) -> std::sync::Arc<Log> {
    broker
        .topic(topic)
        .expect("topic")
        .partition(partition)
        .expect("partition")
        .log()
        .clone()
}

/// Reads every visible record of a log from `from`.
pub fn read_all(log: &Log, from: u64) -> logbrook_core::Result<Vec<ConsumerRecord>> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let chunk = log.read(offset, 64 * 1024)?;
        if chunk.is_empty() {
            return Ok(out);
        }
        chunk.records(offset, &mut out)?;
        offset = chunk.next_offset;
    }
}

/// Segment files of a partition, sorted.
pub fn segment_files(partition_dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(partition_dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    files.sort();
    files
}

pub fn value(r: &ConsumerRecord) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}
