//! Helpers shared by the streams test files.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

/// Compares `actual` with `tests/golden/{name}.txt`; `LOGBROOK_BLESS=1` rewrites the file first.
#[allow(dead_code)] // golden tests only
pub fn check_golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("LOGBROOK_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

/// Word count: lines split into words, re-keyed by word (a repartition), counted in store
/// `counts`, every count update written to `word-counts`.
#[allow(dead_code)] // not every test file counts words
pub fn word_count() -> logbrook_streams::Topology {
    use logbrook_streams::serde::{Json, Str};
    use logbrook_streams::{Grouped, Produced, StreamsBuilder};
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<Option<String>, String>("lines", Str, Str)
        .flat_map_values(|line| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by_with(|_, word| word.clone(), Grouped::with(Str, Str))
        .count("counts")
        .to_stream()
        .to_with(
            "word-counts",
            Produced::with(Str, Json::<Option<u64>>::new()),
        );
    builder.build().unwrap()
}

/// The outputs the `kill -9` tests check, over `events` (user -> number): doubled values
/// (stateless), counts per user (a store), counts per bucket (a repartition and a store), and
/// final counts of 500 ms windows (suppressed until the window closes).
#[allow(dead_code)] // the crash tests only
pub fn crash_test_outputs(events: &logbrook_streams::KStream<String, u64>) {
    use logbrook_streams::serde::{Json, Str};
    use logbrook_streams::{Produced, TimeWindows};
    use std::time::Duration;
    events
        .map_values(|v| v * 2)
        .to_with("doubled", Produced::with(Str, Json::new()));
    events
        .group_by_key()
        .count("user-count-store")
        .to_stream()
        .to_with("user-counts", Produced::with(Str, Json::new()));
    events
        .group_by_key()
        .windowed_by(TimeWindows::of(Duration::from_millis(500)))
        .count("window-count-store")
        .suppress_until_window_closes("window-final-store")
        .map(|window, count| (format!("{}@{}", window.key, window.start), count))
        .to_with("window-finals", Produced::with(Str, Json::new()));
    events
        .group_by(|_, v| format!("bucket-{}", v % 7))
        .count("bucket-count-store")
        .to_stream()
        .to_with("bucket-counts", Produced::with(Str, Json::new()));
}

/// Every committed record of `topics` (each with `partitions` partitions, JSON numbers for
/// values) as (topic, partition, key, value), sorted.
#[allow(dead_code)] // the crash tests only
pub fn committed_outputs(
    broker: &logbrook_core::Broker,
    topics: &[&str],
    partitions: u32,
) -> Vec<(String, u32, String, u64)> {
    let mut all = Vec::new();
    for topic in topics {
        for p in 0..partitions {
            let log = broker
                .topic(topic)
                .unwrap()
                .partition(p)
                .unwrap()
                .log()
                .clone();
            let mut offset = 0;
            loop {
                let chunk = log.read_committed(offset, 1 << 20).unwrap();
                if chunk.is_empty() {
                    break;
                }
                let mut records = Vec::new();
                chunk.records(offset, &mut records).unwrap();
                for r in records {
                    let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                    let value: u64 = serde_json::from_slice(&r.value.unwrap()).unwrap();
                    all.push((topic.to_string(), p, key, value));
                }
                offset = chunk.next_offset;
            }
        }
    }
    all.sort();
    all
}

/// Logs to the test's output, filtered by `RUST_LOG`.
#[allow(dead_code)] // not every test file logs
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Sends `lines` to topic `lines` of a cluster (line `i` to partition `i % 3`) and waits until
/// every one is acknowledged.
#[allow(dead_code)] // the cluster tests only
pub async fn produce_lines_to(cluster: &logbrook_client::Cluster, lines: &[impl AsRef<str>]) {
    use logbrook_core::ProducerRecord;
    let settings = logbrook_client::ProducerSettings::default();
    let producer = std::sync::Arc::new(cluster.producer(&settings).unwrap());
    for (i, line) in lines.iter().enumerate() {
        let record =
            ProducerRecord::new("lines", line.as_ref().to_string()).with_partition(i as u32 % 3);
        producer.send(&record, i as u64).await.unwrap();
    }
    producer
        .flush(std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        producer.first_failure().is_none(),
        "a line was not acknowledged"
    );
}
