//! The event-time contract, as a property: for random pipelines with re-keys (and a join),
//! random partition counts and random task speeds, a bounded run over input that is in order
//! per partition writes exactly what one task over one partition writes, and drops nothing
//! as late.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    CancellationToken, JoinWindows, Produced, StreamsApp, StreamsBuilder, StreamsConfig,
    TimeWindows, Topology,
};
use proptest::prelude::*;

/// A random pipeline: how it re-keys, its window size and grace, and which task is slow.
#[derive(Debug, Clone)]
struct Pipeline {
    shape: u8,
    groups: u64,
    window_ms: u64,
    slow_key: u64,
}

fn topology(p: &Pipeline) -> Topology {
    let builder = StreamsBuilder::new();
    let events = builder.stream_with::<String, u64>("events", Str, Json::new());
    let (groups, slow_key) = (p.groups, p.slow_key);
    // One key's records are slowed down: its task writes into the repartition topics late.
    let events = events.peek(move |_, v| {
        if v % 5 == slow_key {
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    let window = TimeWindows::of(Duration::from_millis(p.window_ms));
    let counts = |stream: &logbrook_streams::KStream<String, u64>, name: &str| {
        stream
            .select_key(move |_, v| format!("g{}", v % groups))
            .group_by_key()
            .windowed_by(window)
            .count(&format!("{name}-counts"))
            .suppress_until_window_closes(&format!("{name}-final"))
    };
    let out = Produced::with(Str, Json::new());
    match p.shape {
        // Re-key, then a windowed count.
        0 => counts(&events, "a")
            .map(|w, n| (format!("{}@{}", w.key, w.start), n))
            .to_with("out", out),
        // Two windowed stages: the per-group counts re-keyed to a constant, then the largest.
        1 => counts(&events, "a")
            .map(|w, n| ("all".to_string(), (n, w.key)))
            .group_by_key()
            .windowed_by(window)
            .reduce("top", |a, b| if b > a { b } else { a })
            .suppress_until_window_closes("top-final")
            .map(|w, (n, key)| (format!("{}@{}", key, w.start), n))
            .to_with("out", out),
        // A join of two re-keyed streams, then a windowed count of the pairs.
        _ => {
            let left = events.select_key(move |_, v| format!("g{}", v % groups));
            let right = events
                .filter(|_, v| v % 3 == 0)
                .select_key(move |_, v| format!("g{}", v % groups));
            left.join(
                &right,
                |_, l, r| l * 1_000_000 + r,
                JoinWindows::of(Duration::from_millis(p.window_ms / 2)),
                "pairs",
            )
            .group_by_key()
            .windowed_by(window)
            .count("pair-counts")
            .suppress_until_window_closes("pair-final")
            .map(|w, n| (format!("{}@{}", w.key, w.start), n))
            .to_with("out", out)
        }
    }
    builder.build().unwrap()
}

/// Runs the pipeline to the end over `events` in `partitions` partitions; its sorted output
/// and its late drops.
async fn run(p: &Pipeline, events: &[(u64, i64)], partitions: u32) -> (Vec<(String, u64)>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).await.unwrap();
    for topic in ["events", "out"] {
        let config = TopicConfig {
            partitions,
            ..TopicConfig::default()
        };
        broker.create_topic(topic, config).unwrap();
    }
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    for (value, ts) in events {
        let record = ProducerRecord::new("events", value.to_string())
            .with_key(format!("user-{}", value % 11))
            .with_timestamp(*ts);
        producer.send(record).await.unwrap();
    }
    producer.flush().await.unwrap();
    let config = StreamsConfig {
        commit_interval: Duration::from_millis(20),
        ..StreamsConfig::new("prop")
    };
    let app = StreamsApp::new(broker.clone(), topology(p), config).unwrap();
    let metrics = app.metrics();
    tokio::time::timeout(
        Duration::from_secs(120),
        app.run_to_end(CancellationToken::new()),
    )
    .await
    .expect("a bounded run finishes")
    .unwrap();
    let mut out = Vec::new();
    for partition in broker.topic("out").unwrap().partitions() {
        let mut records = Vec::new();
        partition
            .log()
            .for_each_record(0, |r| records.push(r))
            .unwrap();
        for r in records {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            out.push((key, serde_json::from_slice(&r.value.unwrap()).unwrap()));
        }
    }
    broker.close().await.unwrap();
    out.sort();
    (out, metrics.late_records_dropped())
}

fn pipeline() -> impl Strategy<Value = Pipeline> {
    (
        0u8..3,
        1u64..6,
        prop::sample::select(vec![20u64, 50, 200]),
        0u64..5,
    )
        .prop_map(|(shape, groups, window_ms, slow_key)| Pipeline {
            shape,
            groups,
            window_ms,
            slow_key,
        })
}

/// Event values with timestamps that never go back (so every partition is in order).
fn events() -> impl Strategy<Value = Vec<(u64, i64)>> {
    prop::collection::vec((0u64..1_000, 0i64..15), 50..400).prop_map(|steps| {
        let mut ts = 0;
        steps
            .into_iter()
            .map(|(value, gap)| {
                ts += gap;
                (value, ts)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]

    #[test]
    fn partitioned_runs_equal_one_task_over_one_partition(
        p in pipeline(),
        events in events(),
        partitions in 1u32..=8,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (expected, expected_late) = rt.block_on(run(&p, &events, 1));
        let (actual, late) = rt.block_on(run(&p, &events, partitions));
        prop_assert_eq!(expected_late, 0, "one task dropped records as late");
        prop_assert_eq!(late, 0, "{} partitions dropped records as late", partitions);
        prop_assert!(!expected.is_empty(), "the pipeline wrote nothing");
        prop_assert_eq!(actual, expected);
    }
}
