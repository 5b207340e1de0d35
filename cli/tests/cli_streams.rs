//! `logbrook streams reset`: a stopped application reprocesses its input from the start or
//! from a time, with its internal topics and local state cleared.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Logbrook;
use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord, TopicPartition};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{Produced, StreamsApp, StreamsBuilder, StreamsConfig};
use tokio_util::sync::CancellationToken;

/// Counts words per key into "counts"; runs until every input record is committed.
fn run_app(data_dir: &Path, expected_committed: u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let broker = Broker::open(data_dir).await.unwrap();
        let builder = StreamsBuilder::new();
        builder
            .stream_with::<Option<String>, String>("words", Str, Str)
            .group_by(|_, word| word.clone())
            .count("word-counts")
            .to_stream()
            .to_with("counts", Produced::with(Str, Json::new()));
        let app = StreamsApp::new(
            broker.clone(),
            builder.build().unwrap(),
            StreamsConfig::new("wc"),
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(app.run(shutdown.clone()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let tp = TopicPartition::new("words", 0);
        // Done when the input and the repartition topic are both fully committed.
        let done = |broker: &Broker| {
            broker.committed_offset("wc", &tp).unwrap_or(0) >= expected_committed
                && broker.describe_group("wc").is_ok_and(|g| {
                    g.partitions.len() == 2 && g.partitions.iter().all(|p| p.lag == 0)
                })
        };
        while !done(&broker) {
            assert!(
                Instant::now() < deadline,
                "the app did not commit its input"
            );
            if running.is_finished() {
                panic!("the app stopped: {:?}", running.await.unwrap());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        running.await.unwrap().unwrap();
        broker.close().await.unwrap();
    });
}

#[test]
fn reset_reprocesses_from_the_start_or_a_time_and_clears_state() {
    let lb = Logbrook::new();
    lb.create_topic("words", 1);
    lb.create_topic("counts", 1);
    // Words at 2024-01-01T00:00:00Z, :01, :02 and :03.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let broker = Broker::open(lb.data_dir()).await.unwrap();
        let producer = Producer::new(broker.clone(), ProducerConfig::default());
        for (i, word) in ["a", "b", "a", "c"].into_iter().enumerate() {
            let record = ProducerRecord::new("words", word)
                .with_timestamp(1_704_067_200_000 + i as i64 * 1000);
            producer.send(record).await.unwrap();
        }
        producer.flush().await.unwrap();
        broker.close().await.unwrap();
    });
    run_app(&lb.data_dir(), 4);
    let counts = |lb: &Logbrook| lb.ok(&["consume", "counts", "--from", "earliest"]);
    let first = counts(&lb);
    assert_eq!(first.lines().count(), 4, "{first}");
    // The repartition topic also holds the tasks' event-time markers; consume shows only data.
    let stored = rt.block_on(async {
        let broker = Broker::open_with(logbrook_core::BrokerConfig::new(lb.data_dir()).read_only())
            .await
            .unwrap();
        let log = broker
            .topic("wc-word-counts-repartition")
            .unwrap()
            .partition(0)
            .unwrap()
            .log()
            .clone();
        log.high_watermark()
    });
    assert!(stored > 4, "markers were written: {stored} records");
    let repartitioned = lb.ok(&[
        "consume",
        "wc-word-counts-repartition",
        "--from",
        "earliest",
    ]);
    assert_eq!(repartitioned.lines().count(), 4, "{repartitioned}");

    let dry = lb.ok(&["streams", "reset", "wc", "--dry-run"]);
    assert!(dry.contains("input words-0: 4 -> 0"), "{dry}");
    assert!(dry.contains("wc-word-counts-changelog"), "{dry}");
    assert!(dry.contains("dry run"), "{dry}");

    let out = lb.ok(&["streams", "reset", "wc"]);
    assert!(out.contains("input words-0: 4 -> 0"), "{out}");
    assert!(
        out.contains("internal topic wc-word-counts-repartition: deleted"),
        "{out}"
    );
    assert!(out.contains("local state"), "{out}");
    assert!(!lb.data_dir().join("streams-state/wc").exists());
    let topics = lb.ok(&["topic", "list"]);
    assert!(
        !topics.contains("wc-"),
        "internal topics are gone: {topics}"
    );

    // Reprocessing counts from zero again: the same four updates once more (not 3, 4, ...).
    run_app(&lb.data_dir(), 4);
    let second = counts(&lb);
    let lines: Vec<&str> = second.lines().collect();
    assert_eq!(lines.len(), 8, "{second}");
    assert_eq!(
        lines[..4],
        lines[4..],
        "state was cleared, so the counts repeat"
    );

    // From a time: only the last two words (at :02 and :03) are reprocessed.
    let out = lb.ok(&[
        "streams",
        "reset",
        "wc",
        "--to-time",
        "2024-01-01T00:00:02Z",
    ]);
    assert!(out.contains("input words-0: 4 -> 2"), "{out}");
}

#[test]
fn reset_names_an_unknown_application_and_a_bad_time() {
    let lb = Logbrook::new();
    lb.create_topic("words", 1);
    let err = lb.fails(&["streams", "reset", "nope"]);
    assert!(err.contains("\"nope\""), "{err}");
    let err = lb.fails(&["streams", "reset", "nope", "--to-time", "yesterday"]);
    assert!(
        err.contains("\"yesterday\" is not an RFC 3339 time"),
        "{err}"
    );
}
