//! The failure, live: two partitions written at very different speeds, re-keyed to one
//! key, then a windowed count. Every record is counted in its window; nothing is late.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    CancellationToken, Produced, StreamsApp, StreamsBuilder, StreamsConfig, TimeWindows, Windowed,
};

const EVENTS_PER_PARTITION: i64 = 2_000;
const WINDOW_MS: i64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_partition_loses_nothing_behind_a_fast_one_in_a_live_app() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).await.unwrap();
    let two = TopicConfig {
        partitions: 2,
        ..TopicConfig::default()
    };
    broker.create_topic("events", two.clone()).unwrap();
    broker.create_topic("out", two).unwrap();
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<Option<String>, String>("events", Str, Str)
        .group_by(|_, _| "all".to_string())
        .windowed_by(TimeWindows::of(Duration::from_millis(WINDOW_MS as u64)))
        .count("counts")
        .suppress_until_window_closes("counts-final")
        .to_with("out", Produced::with(Json::new(), Json::new()));
    let config = StreamsConfig {
        commit_interval: Duration::from_millis(20),
        max_task_idle: Duration::from_millis(300),
        ..StreamsConfig::new("live")
    };
    let app = StreamsApp::new(broker.clone(), builder.build().unwrap(), config).unwrap();
    let metrics = app.metrics();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));

    // Partition 0 is written at once; partition 1, with the same timestamps, slowly.
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let send = |partition: u32, ts: i64| {
        ProducerRecord::new("events", "v")
            .with_partition(partition)
            .with_timestamp(ts)
    };
    for ts in 0..EVENTS_PER_PARTITION {
        producer.send(send(0, ts)).await.unwrap();
    }
    producer.flush().await.unwrap();
    for ts in 0..EVENTS_PER_PARTITION {
        producer.send(send(1, ts)).await.unwrap();
        if ts % 100 == 0 {
            producer.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    producer.flush().await.unwrap();

    // Every window but the last closes once the inputs go idle at the end.
    let windows = (EVENTS_PER_PARTITION / WINDOW_MS - 1) as usize;
    let read = |broker: &Broker| {
        let mut finals = Vec::new();
        for partition in broker.topic("out").unwrap().partitions() {
            partition
                .log()
                .for_each_record(0, |r| {
                    let w: Windowed<String> =
                        serde_json::from_slice(r.key.as_ref().unwrap()).unwrap();
                    let n: u64 = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
                    finals.push((w.start, n));
                })
                .unwrap();
        }
        finals.sort();
        finals
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while read(&broker).len() < windows {
        if running.is_finished() {
            panic!("the app stopped: {:?}", running.await.unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "windows did not close: {:?}",
            read(&broker)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let expected: Vec<(i64, u64)> = (0..windows as i64)
        .map(|w| (w * WINDOW_MS, 2 * WINDOW_MS as u64))
        .collect();
    assert_eq!(
        read(&broker),
        expected,
        "every record of both partitions, once"
    );
    assert_eq!(metrics.late_records_dropped(), 0);
    broker.close().await.unwrap();
}
