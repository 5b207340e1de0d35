//! The worker retries retriable sink errors with backoff and fails the task once
//! `errors.retry_timeout_ms` is spent. The sink here is a test double that fails on purpose.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::wait_for;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use logbrook_connect::runtime::TaskState;
use logbrook_connect::{
    ConfigIssue, ConfigOrigin, Error, Plugin, Record, Rejected, Result, Sink, SinkConnector,
    SinkContext,
};
use logbrook_core::{Producer, ProducerRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;

static FAILURES_LEFT: AtomicUsize = AtomicUsize::new(0);
static DELIVERED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Fails `put` with a retriable error while `FAILURES_LEFT` > 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlakySink {}

struct Flaky;

#[async_trait]
impl SinkConnector for FlakySink {
    fn validate(&self) -> Result<(), ConfigIssue> {
        Ok(())
    }

    async fn open(self, _context: SinkContext) -> Result<Box<dyn Sink>> {
        Ok(Box::new(Flaky))
    }
}

#[async_trait]
impl Sink for Flaky {
    async fn put(&mut self, records: &[Record]) -> Result<Vec<Rejected>> {
        if FAILURES_LEFT
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::retriable("server busy"));
        }
        let mut delivered = DELIVERED.lock().unwrap();
        delivered.extend(
            records
                .iter()
                .map(|r| r.value.as_ref().unwrap().to_string()),
        );
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_errors_are_retried_then_fail_the_task_when_the_budget_is_spent() {
    let (_dir, broker, worker) =
        common::worker_with(Plugin::sink::<FlakySink>("flaky-sink"), 3).await;
    let producer = Producer::new(broker.clone(), Default::default());

    // Three failures, then success: everything is delivered once and three retries are counted.
    FAILURES_LEFT.store(3, Ordering::SeqCst);
    let raw = json!({"name": "flaky", "connector": "flaky-sink", "topics": ["in"],
                     "errors": {"retry_timeout_ms": 10000, "retry_max_delay_ms": 200}});
    worker
        .run_file(
            raw.as_object().unwrap().clone(),
            &ConfigOrigin::Rest("flaky".into()),
        )
        .await
        .unwrap();
    wait_for("the records to arrive after retries", async || {
        DELIVERED.lock().unwrap().len() == 3
    })
    .await;
    // The json converter reads the values as numbers.
    assert_eq!(*DELIVERED.lock().unwrap(), ["0", "1", "2"]);
    assert!(
        worker
            .metrics()
            .render()
            .contains(r#"logbrook_connect_retries_total{connector="flaky",task="0"} 3"#)
    );
    wait_for("the offsets to be committed", async || {
        worker.offsets("flaky").await.unwrap().sink_total() == 3
    })
    .await;

    // A sink that never recovers fails the task once the retry budget is spent.
    FAILURES_LEFT.store(usize::MAX, Ordering::SeqCst);
    producer
        .send(ProducerRecord::new("in", "3"))
        .await
        .unwrap()
        .await
        .unwrap();
    let raw = json!({"name": "flaky", "connector": "flaky-sink", "topics": ["in"],
                     "errors": {"retry_timeout_ms": 300, "retry_max_delay_ms": 50}});
    worker
        .run_file(
            raw.as_object().unwrap().clone(),
            &ConfigOrigin::Rest("flaky".into()),
        )
        .await
        .unwrap();
    wait_for("the task to fail", async || {
        matches!(
            worker.status("flaky").await.unwrap().tasks[0],
            TaskState::Failed(_)
        )
    })
    .await;
    let TaskState::Failed(trace) = worker.status("flaky").await.unwrap().tasks[0].clone() else {
        unreachable!()
    };
    assert!(trace.contains("server busy"), "{trace}");
    assert_eq!(
        worker.offsets("flaky").await.unwrap().sink_total(),
        3,
        "the failed record's offset is not committed"
    );
    worker.shutdown().await;
    broker.close().await.unwrap();
}
