//! Exactly-once under `kill -9`: a pipeline process is killed again and again while it runs;
//! once it finishes, every output topic holds exactly what a clean run writes (no record lost,
//! none twice), including counts kept in state stores and records that went through a
//! repartition topic.
//!
//! The test re-runs its own binary as the child (selected by an environment variable), so the
//! child is the real runtime in a separate process.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logbrook_core::{
    Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition,
};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{StreamsApp, StreamsBuilder, StreamsConfig, Topology};
use tokio_util::sync::CancellationToken;

const CHILD_DIR: &str = "LOGBROOK_EOS_CHILD_DIR";
const APP: &str = "eos-crash";
const EVENTS: u64 = 12_000;
const OUTPUTS: [&str; 4] = ["doubled", "user-counts", "bucket-counts", "window-finals"];

/// Stateless, stateful and repartitioned outputs; a short sleep per record keeps the run long
/// enough for kills to land in the middle of it.
fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    let events = builder
        .stream_with::<String, u64>("events", Str, Json::new())
        .peek(|_, _| std::thread::sleep(Duration::from_micros(200)));
    common::crash_test_outputs(&events);
    builder.build().unwrap()
}

fn config() -> StreamsConfig {
    StreamsConfig {
        commit_interval: Duration::from_millis(30),
        ..StreamsConfig::new(APP)
    }
}

async fn create_input(dir: &Path) {
    let broker = Broker::open(dir).await.unwrap();
    for topic in std::iter::once("events").chain(OUTPUTS) {
        let config = TopicConfig {
            partitions: 3,
            ..TopicConfig::default()
        };
        broker.create_topic(topic, config).unwrap();
    }
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    for i in 0..EVENTS {
        let record = ProducerRecord::new("events", i.to_string())
            .with_key(format!("user-{}", i % 41))
            .with_timestamp(i as i64);
        producer.send(record).await.unwrap();
    }
    producer.flush().await.unwrap();
    broker.close().await.unwrap();
}

/// How many input records (events and repartitioned) are committed and how many exist.
fn progress(broker: &Broker) -> (u64, u64) {
    let (mut committed, mut total) = (0, 0);
    for topic in ["events", &format!("{APP}-bucket-count-store-repartition")] {
        for p in 0..3 {
            let tp = TopicPartition::new(topic, p);
            committed += broker.committed_offset(APP, &tp).unwrap_or(0);
            total += broker
                .topic(topic)
                .unwrap()
                .partition(p)
                .unwrap()
                .log()
                .high_watermark();
        }
    }
    (committed, total)
}

/// Runs the app in this process until every input record is committed.
async fn run_to_completion(dir: &Path) {
    let broker = Broker::open(dir).await.unwrap();
    let app = StreamsApp::new(broker.clone(), topology(), config()).unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (committed, total) = progress(&broker);
        if committed == total && total >= EVENTS * 2 {
            break;
        }
        assert!(Instant::now() < deadline, "stuck at {committed} of {total}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    broker.close().await.unwrap();
}

/// Every output record as (topic, partition, key, value), sorted.
async fn outputs(dir: &Path) -> Vec<(String, u32, String, u64)> {
    let broker = Broker::open(dir).await.unwrap();
    let all = common::committed_outputs(&broker, &OUTPUTS, 3);
    broker.close().await.unwrap();
    all
}

#[test]
fn outputs_after_repeated_kill_9_equal_a_clean_run() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let broker = Broker::open(&dir).await.unwrap();
            let app = StreamsApp::new(broker, topology(), config()).unwrap();
            app.run(CancellationToken::new()).await.unwrap();
        });
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clean = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    rt.block_on(create_input(clean.path()));
    rt.block_on(create_input(crashed.path()));

    let exe = std::env::current_exe().unwrap();
    let mut kills_mid_run = 0;
    let mut seen = Vec::new();
    for run in 0..30 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "outputs_after_repeated_kill_9_equal_a_clean_run",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, crashed.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(250 + 61 * (run % 6)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (committed, total) = rt.block_on(async {
            let broker = Broker::open(crashed.path()).await.unwrap();
            let progress = progress(&broker);
            broker.close().await.unwrap();
            progress
        });
        seen.push(committed);
        if committed > 0 && committed < total {
            kills_mid_run += 1;
        }
        if kills_mid_run >= 6 || (committed == total && total >= EVENTS * 2) {
            break;
        }
    }
    assert!(
        kills_mid_run >= 3,
        "too few kills landed mid-run (committed inputs after each kill: {seen:?})"
    );
    rt.block_on(run_to_completion(crashed.path()));
    rt.block_on(run_to_completion(clean.path()));

    let expected = rt.block_on(outputs(clean.path()));
    let actual = rt.block_on(outputs(crashed.path()));
    // A clean run writes one doubled record per event, and final window counts summing to
    // every event but those of the windows still open at the end.
    let doubled = expected.iter().filter(|(t, ..)| t == "doubled").count() as u64;
    assert_eq!(doubled, EVENTS, "clean run is incomplete");
    let finals: u64 = expected
        .iter()
        .filter(|(t, ..)| t == "window-finals")
        .map(|(.., count)| count)
        .sum();
    assert!(finals > EVENTS / 2, "few windows closed: {finals}");
    let by_topic = |v: &[(String, u32, String, u64)]| {
        let mut counts = BTreeMap::new();
        for (topic, ..) in v {
            *counts.entry(topic.clone()).or_insert(0) += 1;
        }
        counts
    };
    assert_eq!(
        by_topic(&actual),
        by_topic(&expected),
        "records per output topic differ after kills at {seen:?}"
    );
    assert!(actual == expected, "outputs differ from the clean run");
}
