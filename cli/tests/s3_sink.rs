//! `logbrook connect run` with file-source -> topic -> s3-sink on a real S3-compatible server:
//! `kill -9` while objects upload, then a restart, leaves each record in exactly one object;
//! an idle partition is written out and committed; records held at a graceful stop are written
//! by the stop and skipped by the restart. Needs `LOGBROOK_TEST_S3_*` (set by `scripts/test.sh`).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Logbrook;
use common::connect::{Worker, connector_file};
use common::s3::Bucket;
use logbrook_core::{Broker, BrokerConfig, TopicPartition};

const TOTAL: u64 = 30_000;

fn append_ids(path: &std::path::Path, ids: std::ops::Range<u64>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for id in ids {
        text.push_str(&format!(
            "{{\"id\":{id},\"note\":\"order {id} {}\"}}\n",
            "x".repeat(200)
        ));
    }
    file.write_all(text.as_bytes()).unwrap();
}

/// Offsets of every line of every object, in key order.
fn offsets(bucket: &Bucket) -> Vec<u64> {
    bucket
        .json_objects()
        .iter()
        .flat_map(|(_, lines)| lines.iter().map(|l| l["offset"].as_u64().unwrap()))
        .collect()
}

/// The `id` in the value of every line of every object, in key order.
fn ids(bucket: &Bucket) -> Vec<u64> {
    bucket
        .json_objects()
        .iter()
        .flat_map(|(_, lines)| {
            lines.iter().map(|l| {
                let value = match &l["value"] {
                    serde_json::Value::String(text) => serde_json::from_str(text).unwrap(),
                    other => other.clone(),
                };
                value["id"].as_u64().unwrap()
            })
        })
        .collect()
}

/// Whether offsets only grow (the file source's transaction markers leave gaps).
fn increasing(offsets: &[u64]) -> bool {
    offsets.windows(2).all(|w| w[0] < w[1])
}

fn wait_until(what: &str, seconds: u64, worker: &Worker, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            worker.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The group's committed offset of `topic`/0, and the partition's end offset.
fn committed(lb: &Logbrook, group: &str, topic: &str) -> (Option<u64>, u64) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let broker = Broker::open_with(BrokerConfig::new(lb.data_dir()).read_only())
            .await
            .unwrap();
        let tp = TopicPartition::new(topic, 0);
        let offset = broker.committed_offset(group, &tp);
        let end = broker
            .topic(topic)
            .unwrap()
            .partition(0)
            .unwrap()
            .log()
            .high_watermark();
        broker.close().await.unwrap();
        (offset, end)
    })
}

#[test]
fn kill_9_while_uploading_then_restart_writes_every_record_to_exactly_one_object() {
    let bucket = Bucket::new("kill9");
    let lb = Logbrook::new();
    let input = lb.root().join("orders.jsonl");
    append_ids(&input, 0..TOTAL / 2);
    let source = connector_file(
        &lb,
        "source.toml",
        &format!(
            "name = \"orders-in\"\nconnector = \"file-source\"\ntopic = \"orders\"\n\
             path = \"{}\"\nformat = \"json\"\n",
            input.display()
        ),
    );
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            "name = \"archive\"\nconnector = \"s3-sink\"\ntopics = [\"orders\"]\n{}\
             prefix = \"arc\"\nflush_records = 1500\nflush_idle_ms = 400\n",
            bucket.connector_keys()
        ),
    );
    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_until("the first objects", 60, &worker, || {
        bucket.keys().len() >= 2
    });
    worker.kill9();
    let at_kill = bucket.keys().len();

    append_ids(&input, TOTAL / 2..TOTAL);
    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_until("every record in S3", 120, &worker, || {
        let mut seen = ids(&bucket);
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u64 == TOTAL
    });
    std::thread::sleep(Duration::from_millis(800)); // room for a late duplicate
    let run = worker.stop();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        !run.stderr.contains(&bucket.secret()),
        "the secret leaked: {}",
        run.stderr
    );

    assert_eq!(
        ids(&bucket),
        (0..TOTAL).collect::<Vec<_>>(),
        "each record once, in order ({at_kill} objects at the kill)"
    );
    assert!(increasing(&offsets(&bucket)), "objects in offset order");
    let objects = bucket.json_objects();
    for (key, lines) in &objects {
        let first = lines[0]["offset"].as_u64().unwrap();
        assert_eq!(
            key,
            &format!("arc/orders/partition=0/orders+0+{first:020}.json"),
            "objects are named by their first offset"
        );
    }
}

#[test]
fn idle_partitions_are_written_and_committed_and_a_graceful_stop_repeats_nothing() {
    let bucket = Bucket::new("idle");
    let lb = Logbrook::new();
    let input = lb.root().join("orders.jsonl");
    append_ids(&input, 0..10);
    let source = connector_file(
        &lb,
        "source.toml",
        &format!(
            "name = \"orders-in\"\nconnector = \"file-source\"\ntopic = \"orders\"\n\
             path = \"{}\"\nformat = \"json\"\n",
            input.display()
        ),
    );
    let sink_with = |idle_ms: u64| {
        connector_file(
            &lb,
            "sink.toml",
            &format!(
                "name = \"archive\"\nconnector = \"s3-sink\"\ntopics = [\"orders\"]\n{}\
                 flush_records = 1000\nflush_idle_ms = {idle_ms}\n",
                bucket.connector_keys()
            ),
        )
    };
    // Idle after 300 ms: the 10 records are written and their offsets committed.
    let sink = sink_with(300);
    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_until("the idle object", 30, &worker, || bucket.keys().len() == 1);
    std::thread::sleep(Duration::from_millis(500)); // a flush interval or two: the commit
    let run = worker.stop();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (idle_commit, end) = committed(&lb, "connect-archive", "orders");
    assert_eq!(
        idle_commit,
        Some(end),
        "everything committed, markers included"
    );

    // Never idle: 10 more records are held; the graceful stop writes them, without a commit.
    append_ids(&input, 10..20);
    let sink = sink_with(3_600_000);
    let worker = Worker::start(&lb, &[&source, &sink]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        bucket.keys().len(),
        1,
        "held records are not written before they are due"
    );
    let run = worker.stop();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(bucket.keys().len(), 2, "the stop writes what it held");
    assert_eq!(
        committed(&lb, "connect-archive", "orders").0,
        idle_commit,
        "the stop commits nothing"
    );

    // The restart is delivered records 10.. again, finds their object and skips them.
    let worker = Worker::start(&lb, &[&source, &sink]);
    std::thread::sleep(Duration::from_millis(1500));
    let run = worker.stop();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("skips records a previous run already wrote"),
        "{}",
        run.stderr
    );
    assert_eq!(ids(&bucket), (0..20).collect::<Vec<_>>());
    assert!(increasing(&offsets(&bucket)));
    let (commit, end) = committed(&lb, "connect-archive", "orders");
    assert_eq!(commit, Some(end));
}
