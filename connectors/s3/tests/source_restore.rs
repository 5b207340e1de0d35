//! `s3-source` with `envelope = "record"`: what `s3-sink` wrote comes back as the same
//! records, with their keys, values, headers, timestamps, partitions and schemas.

mod common;

use arrow_schema::{DataType, Field, Fields};
use common::{TestBucket, open_sink, open_source, poll_n, record, records};
use logbrook_connect::Record;
use serde_json::json;

/// Sink records as a source gives them back (sources carry no offset).
fn restored(mut records: Vec<Record>) -> Vec<Record> {
    for r in &mut records {
        r.offset = None;
    }
    records
}

fn sample() -> Vec<Record> {
    let mut batch = records("orders", 0, 0, 20);
    batch.extend(records("orders", 1, 0, 10));
    batch.push(Record {
        value: None,
        ..record("orders", 1, 10)
    });
    batch.push(Record {
        key: None,
        headers: vec![],
        ..record("orders", 1, 11)
    });
    batch
}

#[tokio::test]
async fn json_objects_restore_every_record_exactly() {
    let bucket = TestBucket::new("restore-json").await;
    let mut sink = open_sink(
        bucket.sink_config(json!({"prefix": "arc", "flush_records": 7})),
        &["orders"],
    )
    .await;
    let mut batch = sample();
    let typed = DataType::Struct(Fields::from(vec![Field::new("id", DataType::Int64, false)]));
    batch.push(Record {
        value: Some(json!({"id": 12})),
        value_schema: Some(typed),
        key_schema: Some(DataType::Utf8),
        ..record("orders", 1, 12)
    });
    sink.put(&batch).await.expect("put");
    sink.close().await.expect("close");

    let config = bucket.source_config(json!({"prefix": "arc/orders", "envelope": "record"}));
    assert!(logbrook_connect::SourceConnector::names_own_topics(&config));
    let mut source = open_source(config.clone(), "", vec![]).await;
    let back: Vec<Record> = poll_n(&mut source, batch.len())
        .await
        .into_iter()
        .map(|r| r.record)
        .collect();
    assert_eq!(back, restored(batch.clone()));

    // Into another topic: the connector's `topic` wins.
    let mut source = open_source(config, "orders-restored", vec![]).await;
    let back = poll_n(&mut source, batch.len()).await;
    assert!(back.iter().all(|r| r.record.topic == "orders-restored"));
    assert_eq!(back[25].record.partition, Some(1));
}

#[tokio::test]
async fn parquet_objects_restore_keys_headers_timestamps_and_partitions() {
    let bucket = TestBucket::new("restore-pq").await;
    let config = bucket.sink_config(json!({"format": "parquet", "flush_records": 9}));
    let mut sink = open_sink(config, &["orders"]).await;
    let batch = sample();
    sink.put(&batch).await.expect("put");
    sink.close().await.expect("close");
    let config = bucket.source_config(json!({"format": "parquet", "envelope": "record"}));
    let mut source = open_source(config, "", vec![]).await;
    let back: Vec<Record> = poll_n(&mut source, batch.len())
        .await
        .into_iter()
        .map(|r| r.record)
        .collect();
    assert_eq!(back, restored(batch));
}
