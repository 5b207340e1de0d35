//! When `s3-sink` writes an object: by record count, by size, by age and when a partition goes
//! idle; and which offsets it holds back meanwhile.

mod common;

use std::time::Duration;

use common::{TestBucket, offsets_of, open_sink, records};
use serde_json::json;

#[tokio::test]
async fn objects_are_cut_by_record_count() {
    let bucket = TestBucket::new("flush-count").await;
    let mut sink = open_sink(bucket.sink_config(json!({"flush_records": 25})), &["t"]).await;
    sink.put(&records("t", 0, 0, 110)).await.expect("put");
    let keys = bucket.wait_for_objects(4).await;
    let names: Vec<&str> = keys.iter().map(|k| &k[k.len() - 25..]).collect();
    assert_eq!(
        names,
        [
            "00000000000000000000.json",
            "00000000000000000025.json",
            "00000000000000000050.json",
            "00000000000000000075.json",
        ]
    );
    // The last 10 records wait for more; their offsets are not to be committed.
    sink.flush().await.expect("flush");
    assert_eq!(sink.pending_offsets(), [("t".to_string(), 0, 100)]);
    drop(sink);
}

#[tokio::test]
async fn objects_are_cut_by_size() {
    let bucket = TestBucket::new("flush-bytes").await;
    let mut sink = open_sink(bucket.sink_config(json!({"flush_bytes": 4000})), &["t"]).await;
    sink.put(&records("t", 0, 0, 200)).await.expect("put");
    sink.close().await.expect("close");
    let objects = bucket.json_objects().await;
    assert!(objects.len() >= 5, "{} objects", objects.len());
    for key in objects.keys() {
        let size = bucket.get(key).await.len();
        // An object is cut by the record that reaches the limit.
        assert!(size < 4000 + 300, "{key}: {size} bytes");
    }
    assert_eq!(offsets_of(&objects), (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_idle_partition_is_written_after_flush_idle_ms() {
    let bucket = TestBucket::new("flush-idle").await;
    let config = bucket.sink_config(json!({"flush_idle_ms": 1000}));
    let mut sink = open_sink(config, &["t"]).await;
    sink.put(&records("t", 0, 0, 5)).await.expect("put");
    sink.put(&records("t", 1, 0, 3)).await.expect("put");
    sink.flush().await.expect("flush");
    assert_eq!(bucket.keys().await.len(), 0, "not idle yet");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Partition 1 gets a record: only partition 0 goes idle.
    sink.put(&records("t", 1, 3, 4)).await.expect("put");
    tokio::time::sleep(Duration::from_millis(600)).await;
    sink.flush().await.expect("flush");
    let keys = bucket.wait_for_objects(1).await;
    assert_eq!(keys, ["t/partition=0/t+0+00000000000000000000.json"]);
    common::flush_until_partition_durable(&mut sink, 0).await;
    assert_eq!(sink.pending_offsets(), [("t".to_string(), 1, 0)]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    sink.flush().await.expect("flush");
    bucket.wait_for_objects(2).await;
    common::flush_until_durable(&mut sink).await;
    assert!(sink.pending_offsets().is_empty());
    assert_eq!(
        offsets_of(&bucket.json_objects().await),
        [0, 1, 2, 3, 4, 0, 1, 2, 3]
    );
}

#[tokio::test]
async fn an_object_is_written_once_its_first_record_is_rotate_interval_ms_old() {
    let bucket = TestBucket::new("flush-rotate").await;
    let config = bucket.sink_config(json!({"rotate_interval_ms": 300, "flush_idle_ms": 60000}));
    let mut sink = open_sink(config, &["t"]).await;
    // A steady trickle never goes idle; rotation still cuts objects.
    for offset in 0..12 {
        sink.put(&records("t", 0, offset, offset + 1))
            .await
            .expect("put");
        sink.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys = bucket.wait_for_objects(2).await;
    assert!(
        keys.len() < 12,
        "rotation cut after every record: {keys:#?}"
    );
    drop(sink);
}
