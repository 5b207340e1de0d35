//! A task reads its partitions in timestamp order: replaying two topics that already hold
//! their data, a windowed join sees each payment next to its order, not after every order.
//! Timestamps can come from the records' content (a timestamp extractor). An idle upstream task
//! moves event time but does not end a bounded run.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    Grouped, JoinWindows, MARKER_HEADER, Produced, StreamsApp, StreamsBuilder, StreamsConfig,
    TimeWindows,
};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_over_existing_data_follows_event_time_across_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).await.unwrap();
    for topic in ["orders", "payments", "status"] {
        broker.create_topic(topic, TopicConfig::default()).unwrap();
    }
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let minute = 60_000;
    // All orders first, then the payments: the log order is not the event order.
    for (topic, key, ts) in [
        ("orders", "o1", 0),
        ("orders", "o2", minute),
        ("orders", "o3", 40 * minute),
        ("payments", "o1", 2 * minute),
    ] {
        let record = ProducerRecord::new(topic, "1")
            .with_key(key)
            .with_timestamp(ts);
        producer.send(record).await.unwrap();
    }
    producer.flush().await.unwrap();

    let builder = StreamsBuilder::new();
    let orders = builder.stream_with::<String, u64>("orders", Str, Json::new());
    let payments = builder.stream_with::<String, u64>("payments", Str, Json::new());
    orders
        .left_join(
            &payments,
            |id, _, paid| format!("{id} {}", if paid.is_some() { "paid" } else { "unpaid" }),
            JoinWindows::of(Duration::from_secs(600)),
            "orders-payments",
        )
        .to_with("status", Produced::with(Str, Str));
    let app = StreamsApp::new(
        broker.clone(),
        builder.build().unwrap(),
        StreamsConfig::new("ep"),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let log = broker
        .topic("status")
        .unwrap()
        .partition(0)
        .unwrap()
        .log()
        .clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Transaction markers take offsets too: wait for two committed records.
    let committed_records = |log: &logbrook_core::Log| {
        let mut n = 0;
        log.for_each_record(0, |_| n += 1).unwrap();
        n
    };
    while committed_records(&log) < 2 {
        assert!(Instant::now() < deadline, "no join results");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let mut records = Vec::new();
    log.read(0, 1 << 20)
        .unwrap()
        .records(0, &mut records)
        .unwrap();
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, ["o1 paid", "o2 unpaid"]);
    broker.close().await.unwrap();
}

/// Events written to the log long after they happened (as a connector ingests a file) carry
/// their time in their content: with a timestamp extractor, windows follow that time, through a
/// repartition topic, and nothing is dropped as late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_extractor_windows_records_by_the_time_in_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).await.unwrap();
    let two = TopicConfig {
        partitions: 2,
        ..TopicConfig::default()
    };
    for topic in ["clicks", "per-minute"] {
        broker.create_topic(topic, two.clone()).unwrap();
    }
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let minute = 60_000;
    // Log timestamps are now; the events happened in minutes 0, 0, 1 and 3 of the epoch.
    for (i, (user, at)) in [
        ("ann", 0),
        ("bob", 10_000),
        ("ann", minute),
        ("cy", 3 * minute),
    ]
    .into_iter()
    .enumerate()
    {
        let value = serde_json::json!({ "user": user, "at": at }).to_string();
        producer
            .send(ProducerRecord::new("clicks", value).with_key(format!("k{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();

    let builder = StreamsBuilder::new();
    builder.timestamp_extractor("clicks", |record| {
        let click: serde_json::Value = serde_json::from_slice(record.value.as_deref()?).ok()?;
        click["at"].as_i64()
    });
    builder
        .stream_with::<String, serde_json::Value>("clicks", Str, Json::new())
        .group_by_with(|_, _| "all".to_string(), Grouped::with(Str, Json::new()))
        .windowed_by(TimeWindows::of(Duration::from_secs(60)))
        .count("clicks-per-minute")
        .suppress_until_window_closes("clicks-per-minute-final")
        .map(move |window, count| (window.key, format!("{} {count}", window.start / minute)))
        .to_with("per-minute", Produced::with(Str, Str));
    let app = StreamsApp::new(
        broker.clone(),
        builder.build().unwrap(),
        StreamsConfig::new("extracted"),
    )
    .unwrap();
    let metrics = app.metrics();
    app.run_to_end(CancellationToken::new()).await.unwrap();

    let mut values = Vec::new();
    for partition in broker.topic("per-minute").unwrap().partitions() {
        partition
            .log()
            .for_each_record(0, |r| {
                values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            })
            .unwrap();
    }
    values.sort();
    assert_eq!(values, ["0 2", "1 1", "3 1"], "minute and count");
    assert_eq!(metrics.late_records_dropped(), 0);
    broker.close().await.unwrap();
}

/// A bounded run whose task 0 hears first that upstream task 1 is idle (a marker a crashed live
/// run left unread) and that its other inputs ended: event time reaches infinity, but task 0
/// still reads what task 1 writes later, until task 1 says it has finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_reads_what_an_idle_upstream_task_writes_later() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).await.unwrap();
    let two = TopicConfig {
        partitions: 2,
        ..TopicConfig::default()
    };
    broker.create_topic("in", two.clone()).unwrap();
    broker.create_topic("out", two).unwrap();
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    // Everything is in partition 1 (task 1); re-keyed, it goes to both tasks.
    for i in 0..10 {
        let record = ProducerRecord::new("in", i.to_string())
            .with_key("k")
            .with_partition(1)
            .with_timestamp(1_000 + i);
        producer.send(record).await.unwrap();
    }
    producer.flush().await.unwrap();

    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, String>("in", Str, Str)
        .peek(|_, v| {
            if v == "0" {
                // Task 1 writes nothing until task 0 could have finished.
                std::thread::sleep(Duration::from_millis(1_000));
            }
        })
        .select_key(|_, v| format!("k{v}"))
        .repartition_with("moved", Str, Str)
        .to_with("out", Produced::with(Str, Str));
    let app = StreamsApp::new(
        broker.clone(),
        builder.build().unwrap(),
        StreamsConfig::new("idle"),
    )
    .unwrap();
    // Writer 1, idle at 100: its marker, found first in task 0's repartition partition.
    let mut marker = Vec::new();
    marker.extend_from_slice(&1u32.to_be_bytes());
    marker.extend_from_slice(&100i64.to_be_bytes());
    marker.push(1);
    let stale = ProducerRecord {
        topic: "idle-moved-repartition".into(),
        partition: Some(0),
        timestamp: Some(100),
        ..ProducerRecord::default()
    };
    producer
        .send(stale.with_header(MARKER_HEADER, marker))
        .await
        .unwrap();
    producer.flush().await.unwrap();

    let run = app.run_to_end(CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the bounded run ends")
        .unwrap();
    let mut values = Vec::new();
    for partition in broker.topic("out").unwrap().partitions() {
        partition
            .log()
            .for_each_record(0, |r| {
                values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            })
            .unwrap();
    }
    values.sort_by_key(|v| v.parse::<u32>().unwrap());
    let all: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(values, all, "every record, whichever task it went through");
    broker.close().await.unwrap();
}
