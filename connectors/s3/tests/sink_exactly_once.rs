//! `s3-sink` after a crash: records delivered again from the last committed offset are neither
//! duplicated nor lost, even when the new run cuts objects elsewhere.

mod common;

use std::collections::BTreeMap;

use common::{TestBucket, offsets_of, open_sink, record, records};
use logbrook_connect::{Record, Sink};
use serde_json::{Value, json};

/// What the runtime would commit after a flush: the first offset the sink still holds, or the
/// position.
fn committed(sink: &dyn Sink, position: u64) -> u64 {
    sink.pending_offsets()
        .into_iter()
        .map(|(_, _, offset)| offset)
        .min()
        .unwrap_or(position)
        .min(position)
}

/// Checks the objects of one partition: each offset in `0..n` exactly once, in order, and each
/// object named by its first record.
fn assert_exactly_once(objects: &BTreeMap<String, Vec<Value>>, n: u64) {
    let offsets = offsets_of(objects);
    let expected: Vec<u64> = (0..n).collect();
    assert_eq!(offsets, expected, "objects: {:#?}", objects.keys());
    for (key, lines) in objects {
        let first = lines[0]["offset"].as_u64().expect("offset");
        assert!(
            key.ends_with(&format!("+{first:020}.json")),
            "{key} starts at {first}"
        );
    }
}

#[tokio::test]
async fn a_restarted_sink_skips_the_objects_it_wrote_and_duplicates_nothing() {
    let bucket = TestBucket::new("eos-restart").await;
    // Run 1: cuts of 100. Offsets are committed at each flush, the last flush's commit is lost.
    let mut sink = open_sink(bucket.sink_config(json!({"flush_records": 100})), &["t"]).await;
    let mut commit = 0;
    for from in (0..350).step_by(50) {
        sink.put(&records("t", 0, from, from + 50))
            .await
            .expect("put");
        sink.flush().await.expect("flush");
        commit = committed(sink.as_ref(), from + 50);
    }
    bucket.wait_for_objects(3).await;
    drop(sink); // kill -9: no close, no further commit
    assert!(
        commit < 300,
        "the test needs uncommitted objects (committed {commit})"
    );

    // Run 2 cuts at other offsets (70) and starts from the committed offset.
    let mut sink = open_sink(bucket.sink_config(json!({"flush_records": 70})), &["t"]).await;
    sink.put(&records("t", 0, commit, 500)).await.expect("put");
    sink.close().await.expect("close");
    assert_exactly_once(&bucket.json_objects().await, 500);
}

#[tokio::test]
async fn a_retried_put_takes_each_record_once() {
    let bucket = TestBucket::new("eos-retry").await;
    let mut sink = open_sink(bucket.sink_config(json!({"flush_records": 1000})), &["t"]).await;
    sink.put(&records("t", 0, 0, 40)).await.expect("put");
    // The runtime retries a failed put with the same batch.
    sink.put(&records("t", 0, 20, 60)).await.expect("put");
    sink.put(&records("t", 0, 20, 60)).await.expect("put");
    sink.close().await.expect("close");
    assert_exactly_once(&bucket.json_objects().await, 60);
}

#[tokio::test]
async fn an_unfinished_cut_of_a_crashed_run_is_replaced_object_by_object() {
    let bucket = TestBucket::new("eos-field").await;
    let region = |offset: u64| if offset % 2 == 1 { "b" } else { "a" };
    let with_region = |offset: u64| {
        let mut r: Record = record("t", 0, offset);
        r.value = Some(json!({"id": offset, "region": region(offset)}));
        r
    };
    // A crashed run's cut [4, 8] finished its region=b object (records 5 and 7) but not its
    // anchor region=a/...4: the cut is not proven, and records from 4 come again.
    let stale: String = [5u64, 7]
        .iter()
        .map(|o| format!("{{\"topic\":\"t\",\"partition\":0,\"offset\":{o},\"stale\":true}}\n"))
        .collect();
    bucket
        .put("t/region=b/t+0+00000000000000000005.json", stale)
        .await;
    let config = bucket.sink_config(json!({
        "partitioner": "field", "partition_fields": ["region"], "flush_records": 3,
    }));
    let mut sink = open_sink(config, &["t"]).await;
    let batch: Vec<Record> = (4..20).map(with_region).collect();
    sink.put(&batch).await.expect("put");
    sink.close().await.expect("close");
    let objects = bucket.json_objects().await;
    let mut offsets = offsets_of(&objects);
    offsets.sort_unstable();
    assert_eq!(offsets, (4..20).collect::<Vec<_>>(), "{objects:#?}");
    assert!(
        objects.values().flatten().all(|l| l.get("stale").is_none()),
        "the stale object was not replaced: {objects:#?}"
    );
    for (key, lines) in &objects {
        let first = lines[0]["offset"].as_u64().expect("offset");
        assert!(
            key.starts_with(&format!("t/region={}/", region(first))),
            "{key}"
        );
        assert!(key.ends_with(&format!("+{first:020}.json")), "{key}");
    }
}
