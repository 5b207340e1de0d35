//! `s3-source` after a restart: it resumes at the record after the stored offset of each
//! directory, in JSON, CSV and Parquet objects, and picks up objects written later.

mod common;

use std::time::Duration;

use common::{TestBucket, open_sink, open_source, poll_for, poll_n, records, stored_offsets};
use serde_json::{Value, json};

fn ids(records: &[logbrook_connect::SourceRecord]) -> Vec<Value> {
    records
        .iter()
        .map(|r| r.record.value.clone().unwrap_or_default()["n"].clone())
        .collect()
}

#[tokio::test]
async fn a_restarted_source_resumes_after_the_last_stored_record() {
    let bucket = TestBucket::new("src-resume").await;
    let lines = |from: u64, to: u64| -> String {
        (from..to).map(|n| format!("{{\"n\": {n}}}\n")).collect()
    };
    bucket.put("d1/a.json", lines(0, 5)).await;
    bucket.put("d1/b.json", lines(5, 10)).await;
    bucket.put("d2/a.json", lines(100, 103)).await;
    let config = bucket.source_config(json!({"batch_records": 3}));
    let mut source = open_source(config.clone(), "t", vec![]).await;
    let mut first = poll_n(&mut source, 7).await;
    // A crash after the log took 7 records: the rest of the batch was lost.
    first.truncate(7);
    assert_eq!(ids(&first), [0, 1, 2, 3, 4, 5, 6].map(Value::from));
    drop(source);

    // Only what reached the log counts: the runtime stored the offsets of the first 7.
    let mut source = open_source(config.clone(), "t", stored_offsets(&first)).await;
    bucket.put("d1/c.json", lines(10, 12)).await;
    bucket.put("d1/0-sorts-first.json", lines(900, 901)).await;
    let rest = poll_n(&mut source, 8).await;
    assert_eq!(
        ids(&rest),
        [7, 8, 9, 10, 11, 100, 101, 102].map(Value::from),
        "resumes inside d1/b.json, reads d1's later object, skips one sorting before the cursor"
    );
    assert!(
        poll_for(&mut source, Duration::from_millis(300))
            .await
            .is_empty()
    );
    drop(source);

    // Everything stored: a restart reads nothing again.
    let mut all = first.clone();
    all.extend(rest);
    let mut source = open_source(config, "t", stored_offsets(&all)).await;
    assert!(
        poll_for(&mut source, Duration::from_millis(500))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_restarted_source_resumes_inside_a_parquet_object() {
    let bucket = TestBucket::new("src-resume-pq").await;
    let mut sink = open_sink(bucket.sink_config(json!({"format": "parquet"})), &["t"]).await;
    sink.put(&records("t", 0, 0, 50)).await.expect("put");
    sink.close().await.expect("close");
    let config = bucket
        .source_config(json!({"format": "parquet", "envelope": "record", "batch_records": 20}));
    let mut source = open_source(config.clone(), "", vec![]).await;
    let mut first = poll_n(&mut source, 20).await;
    first.truncate(20);
    drop(source);
    let mut source = open_source(config, "", stored_offsets(&first)).await;
    let rest = poll_n(&mut source, 30).await;
    let keys: Vec<Value> = first
        .iter()
        .chain(&rest)
        .map(|r| r.record.key.clone().unwrap_or_default())
        .collect();
    let expected: Vec<Value> = (0..50).map(|o| json!(format!("k-{o}"))).collect();
    assert_eq!(keys, expected);
    assert!(
        poll_for(&mut source, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn tasks_share_directories_without_overlap() {
    let bucket = TestBucket::new("src-tasks").await;
    for d in 0..6 {
        bucket
            .put(&format!("d{d}/a.json"), format!("{{\"n\": {d}}}\n"))
            .await;
    }
    let config = bucket.source_config(json!({}));
    let tasks = logbrook_connect::SourceConnector::task_configs(&config, 3).expect("tasks");
    let mut seen = Vec::new();
    for task in tasks {
        let mut source = open_source(task, "t", vec![]).await;
        seen.extend(ids(&poll_for(&mut source, Duration::from_millis(300)).await));
    }
    seen.sort_by_key(|v| v.as_u64());
    assert_eq!(seen, (0..6).map(Value::from).collect::<Vec<_>>());
}
