//! `s3-sink` with the JSON format: object names, every field of every record, schemas.

mod common;

use arrow_schema::{DataType, Field, Fields};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{TestBucket, open_sink, record, records};
use logbrook_connect::Record;
use serde_json::json;

#[tokio::test]
async fn json_objects_hold_every_field_of_every_record() {
    let bucket = TestBucket::new("json-fields").await;
    let config = bucket.sink_config(json!({"prefix": "archive", "flush_records": 100}));
    let mut sink = open_sink(config, &["orders"]).await;
    let mut batch = records("orders", 0, 0, 250);
    batch.extend(records("orders", 1, 0, 30));
    // A tombstone, a typed record and a record without key or headers.
    batch.push(Record {
        value: None,
        ..record("orders", 1, 30)
    });
    let typed = DataType::Struct(Fields::from(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    batch.push(Record {
        value: Some(json!({"id": 31, "name": "typed"})),
        value_schema: Some(typed.clone()),
        key_schema: Some(DataType::Utf8),
        ..record("orders", 1, 31)
    });
    batch.push(Record {
        key: None,
        headers: vec![],
        ..record("orders", 1, 32)
    });
    let rejected = sink.put(&batch).await.expect("put");
    assert!(rejected.is_empty(), "{rejected:?}");
    // 250 records of partition 0: two full objects are on their way, 50 records wait.
    assert_eq!(
        sink.pending_offsets()
            .into_iter()
            .find(|(_, p, _)| *p == 0)
            .map(|(_, _, o)| o),
        Some(0),
        "offsets of records not yet in S3 are held back"
    );
    sink.close().await.expect("close");

    let objects = bucket.json_objects().await;
    let keys: Vec<&str> = objects.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "archive/orders/partition=0/orders+0+00000000000000000000.json",
            "archive/orders/partition=0/orders+0+00000000000000000100.json",
            "archive/orders/partition=0/orders+0+00000000000000000200.json",
            "archive/orders/partition=1/orders+1+00000000000000000000.json",
        ]
    );
    let lines: Vec<_> = objects.values().flatten().collect();
    assert_eq!(lines.len(), batch.len());
    for (line, original) in lines.iter().zip(&batch) {
        assert_eq!(line["topic"], json!(original.topic));
        assert_eq!(line["partition"], json!(original.partition));
        assert_eq!(line["offset"], json!(original.offset));
        assert_eq!(line["timestamp"], json!(original.timestamp));
        assert_eq!(line["key"], original.key.clone().unwrap_or_default());
        assert_eq!(line["value"], original.value.clone().unwrap_or_default());
        let headers: Vec<_> = original
            .headers
            .iter()
            .map(|h| json!({"key": h.key, "value": h.value.as_ref().map(|v| BASE64.encode(v))}))
            .collect();
        assert_eq!(line["headers"], json!(headers));
    }
    let typed_line = lines
        .iter()
        .find(|l| l["offset"] == json!(31) && l["partition"] == json!(1))
        .expect("typed record");
    assert_eq!(typed_line["value_schema"]["type"], json!("struct"));
    assert_eq!(typed_line["key_schema"]["type"], json!("string"));
    let metadata = bucket
        .metadata("archive/orders/partition=0/orders+0+00000000000000000100.json")
        .await;
    assert_eq!(
        metadata
            .get("logbrook-cut-first-offset")
            .map(String::as_str),
        Some("100")
    );
    assert_eq!(
        metadata.get("logbrook-cut-last-offset").map(String::as_str),
        Some("199")
    );
    assert_eq!(
        metadata.get("logbrook-records").map(String::as_str),
        Some("100")
    );
}

#[tokio::test]
async fn records_without_offsets_are_rejected_not_written() {
    let bucket = TestBucket::new("json-reject").await;
    let mut sink = open_sink(bucket.sink_config(json!({})), &["t"]).await;
    let mut bad = record("t", 0, 0);
    bad.offset = None;
    let rejected = sink.put(&[bad, record("t", 0, 1)]).await.expect("put");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].index, 0);
    assert!(
        rejected[0].error.to_string().contains("offset"),
        "{}",
        rejected[0].error
    );
    sink.close().await.expect("close");
    assert_eq!(
        bucket.keys().await,
        ["t/partition=0/t+0+00000000000000000001.json"]
    );
}

#[tokio::test]
async fn a_wrong_bucket_fails_the_task_at_open() {
    let bucket = TestBucket::new("json-nobucket").await;
    let mut config = bucket.sink_config(json!({}));
    config.bucket = "lb-does-not-exist".into();
    let error = logbrook_connect::SinkConnector::open(
        config,
        logbrook_connect::SinkContext {
            connector: "x".into(),
            task: 0,
            topics: vec![],
        },
    )
    .await
    .err()
    .expect("open must fail");
    assert!(error.to_string().contains("lb-does-not-exist"), "{error}");
    assert!(!error.is_retriable(), "{error}");
}
