//! State through the runtime: stores, changelogs, repartitioning and restore after a restart.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::word_count;
use std::collections::BTreeMap;
use std::time::Duration;

use logbrook_core::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicConfig,
};
use logbrook_streams::{StreamsApp, StreamsConfig};
use tokio_util::sync::CancellationToken;

/// The latest count per word in the output topic, once `total` updates arrived.
async fn latest_counts(broker: &Broker, updates: usize) -> BTreeMap<String, u64> {
    let mut consumer = Consumer::new(
        broker.clone(),
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    );
    consumer.subscribe(&["word-counts"]).unwrap();
    let mut latest = BTreeMap::new();
    let mut seen = 0;
    while seen < updates {
        let records = consumer.poll(Duration::from_secs(10)).await.unwrap();
        assert!(
            !records.is_empty(),
            "only {seen} of {updates} count updates arrived"
        );
        for r in records {
            let word = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            latest.insert(
                word,
                serde_json::from_slice::<u64>(&r.value.unwrap()).unwrap(),
            );
            seen += 1;
        }
    }
    latest
}

async fn produce_lines(producer: &Producer, lines: &[&str]) {
    for (i, line) in lines.iter().enumerate() {
        producer
            .send(ProducerRecord::new("lines", line.to_string()).with_partition(i as u32 % 3))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_restart_even_without_local_state_files() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let broker = Broker::open_with(BrokerConfig::new(dir.path().join("data")))
        .await
        .unwrap();
    for topic in ["lines", "word-counts"] {
        broker
            .create_topic(
                topic,
                TopicConfig {
                    partitions: 3,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
    }
    let config = || StreamsConfig {
        state_dir: Some(state_dir.clone()),
        ..StreamsConfig::new("wc")
    };
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    // Lines land on different partitions; equal words must still meet in one task.
    produce_lines(&producer, &["a b a", "b a", "c a"]).await;

    let shutdown = CancellationToken::new();
    let app = StreamsApp::new(broker.clone(), word_count(), config()).unwrap();
    assert!(
        broker.topic("wc-counts-repartition").is_ok()
            && broker.topic("wc-counts-changelog").is_ok()
    );
    let running = tokio::spawn(app.run(shutdown.clone()));
    let counts = latest_counts(&broker, 7).await;
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 4), ("b".into(), 2), ("c".into(), 1)])
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();

    // Lose the local stores: the restart restores them from the changelog topic.
    std::fs::remove_dir_all(&state_dir).unwrap();
    produce_lines(&producer, &["a c"]).await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(
        StreamsApp::new(broker.clone(), word_count(), config())
            .unwrap()
            .run(shutdown.clone()),
    );
    let counts = latest_counts(&broker, 9).await;
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 5), ("b".into(), 2), ("c".into(), 2)])
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
    broker.close().await.unwrap();
}
