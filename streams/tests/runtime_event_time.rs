//! A task reads its partitions in timestamp order: replaying two topics that already hold
//! their data, a windowed join sees each payment next to its order, not after every order.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{JoinWindows, Produced, StreamsApp, StreamsBuilder, StreamsConfig};
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
    while log.high_watermark() < 2 {
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
