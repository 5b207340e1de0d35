//! A worker over a fresh log with one test plugin, for runtime tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use logbrook_connect::{Plugin, Registry, Worker, WorkerConfig};
use logbrook_core::{Broker, Producer, ProducerRecord};

/// A log in a temporary directory holding `records` values `0..records` in topic `in`, and a
/// worker (no REST, offsets flushed every 50 ms) that knows only `plugin`.
pub async fn worker_with(
    plugin: Plugin,
    records: usize,
) -> (tempfile::TempDir, Broker, std::sync::Arc<Worker>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::open(dir.path()).await.expect("open log");
    let producer = Producer::new(broker.clone(), Default::default());
    broker
        .create_topic("in", Default::default())
        .expect("create topic");
    for i in 0..records {
        producer
            .send(ProducerRecord::new("in", format!("{i}")))
            .await
            .expect("send")
            .await
            .expect("ack");
    }
    let config = WorkerConfig {
        rest_enabled: false,
        offset_flush_interval_ms: 50,
        ..WorkerConfig::default()
    };
    let worker = Worker::start(broker.clone(), Registry::new(vec![plugin]), config)
        .await
        .expect("start worker");
    (dir, broker, worker)
}

/// Waits up to 20 s for `done`.
pub async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
