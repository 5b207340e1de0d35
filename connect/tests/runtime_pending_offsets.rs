//! A sink that holds records across flushes (as `s3-sink` gathers objects) reports them with
//! `Sink::pending_offsets`: the runtime commits no further than the first record held, keeps
//! flushing while anything is held (so the sink can write on its own schedule), and maps
//! offsets of records a transform renamed back to their log partition.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::wait_for;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use logbrook_connect::runtime::ConnectorOffsets;
use logbrook_connect::{
    ConfigIssue, ConfigOrigin, Plugin, Record, Rejected, Result, Sink, SinkConnector, SinkContext,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

static RELEASE: AtomicBool = AtomicBool::new(false);
static FLUSHES: AtomicUsize = AtomicUsize::new(0);
static TOPICS_SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Holds every record until `RELEASE` is set, then makes them durable at the next flush.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldingSink {}

#[derive(Default)]
struct Holding {
    /// (topic, partition, first offset held).
    held: Vec<(String, u32, u64)>,
}

#[async_trait]
impl SinkConnector for HoldingSink {
    fn validate(&self) -> Result<(), ConfigIssue> {
        Ok(())
    }

    async fn open(self, _context: SinkContext) -> Result<Box<dyn Sink>> {
        Ok(Box::new(Holding::default()))
    }
}

#[async_trait]
impl Sink for Holding {
    async fn put(&mut self, records: &[Record]) -> Result<Vec<Rejected>> {
        for record in records {
            TOPICS_SEEN.lock().unwrap().push(record.topic.clone());
            let (partition, offset) = (record.partition.unwrap(), record.offset.unwrap());
            if !self
                .held
                .iter()
                .any(|(t, p, _)| *t == record.topic && *p == partition)
            {
                self.held.push((record.topic.clone(), partition, offset));
            }
        }
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> Result<()> {
        FLUSHES.fetch_add(1, Ordering::SeqCst);
        if RELEASE.load(Ordering::SeqCst) {
            self.held.clear();
        }
        Ok(())
    }

    fn pending_offsets(&self) -> Vec<(String, u32, u64)> {
        self.held.clone()
    }
}

fn committed(offsets: &ConnectorOffsets) -> Option<u64> {
    match offsets {
        ConnectorOffsets::Sink(sink) => sink.first().map(|o| o.next),
        ConnectorOffsets::Source(_) => panic!("a sink's offsets are sink offsets"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_records_hold_the_commit_back_until_the_sink_releases_them() {
    let (_dir, broker, worker) =
        common::worker_with(Plugin::sink::<HoldingSink>("holding-sink"), 5).await;
    // A transform renames the topic: the sink reports offsets under the new name.
    let raw = json!({"name": "holding", "connector": "holding-sink", "topics": ["in"],
                     "transforms": [{"type": "route", "regex": "in", "replacement": "renamed"}]});
    worker
        .run_file(
            raw.as_object().unwrap().clone(),
            &ConfigOrigin::Rest("holding".into()),
        )
        .await
        .unwrap();
    wait_for("the records to be put", async || {
        TOPICS_SEEN.lock().unwrap().len() == 5
    })
    .await;
    assert!(TOPICS_SEEN.lock().unwrap().iter().all(|t| t == "renamed"));
    // No new records, yet the runtime keeps flushing while records are held; nothing is
    // committed past the first held record.
    let before = FLUSHES.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        FLUSHES.load(Ordering::SeqCst) >= before + 3,
        "flushes go on while records are held"
    );
    let offsets = worker.offsets("holding").await.unwrap();
    assert!(
        committed(&offsets).is_none_or(|o| o == 0),
        "held records were committed: {offsets:?}"
    );

    RELEASE.store(true, Ordering::SeqCst);
    wait_for("the released records to be committed", async || {
        committed(&worker.offsets("holding").await.unwrap()) == Some(5)
    })
    .await;
    // Nothing held: flushing stops until new records come.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let settled = FLUSHES.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(FLUSHES.load(Ordering::SeqCst), settled);
    worker.shutdown().await;
    broker.close().await.unwrap();
}
