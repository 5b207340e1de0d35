//! `s3-source` reading JSON lines, CSV and Parquet objects as values, in key order.

mod common;

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use common::{TestBucket, open_source, poll_n};
use parquet::arrow::ArrowWriter;
use serde_json::{Value, json};

fn values(records: &[logbrook_connect::SourceRecord]) -> Vec<Value> {
    records
        .iter()
        .map(|r| r.record.value.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn json_lines_are_read_in_key_order_and_bad_lines_are_flagged() {
    let bucket = TestBucket::new("src-json").await;
    bucket
        .put("in/b.jsonl", "{\"n\": 3}\n\n{\"n\": 4}\r\n")
        .await;
    bucket
        .put("in/a.json", "{\"n\": 1}\nnot json\n{\"n\": 2}")
        .await;
    bucket.put("in/ignored.csv", "n\n9\n").await;
    bucket.put("other/c.json", "{\"n\": 99}\n").await;
    let config = bucket.source_config(json!({"prefix": "in/", "format": "json"}));
    let mut source = open_source(config, "t", vec![]).await;
    let records = poll_n(&mut source, 5).await;
    assert_eq!(
        values(&records),
        [
            json!({"n": 1}),
            json!("not json"),
            json!({"n": 2}),
            json!({"n": 3}),
            json!({"n": 4})
        ]
    );
    assert!(
        records[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("in/a.json")),
        "{:?}",
        records[1].error
    );
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| (i == 1) == r.error.is_some())
    );
    assert_eq!(
        records[0].source_partition,
        json!({"bucket": bucket.name, "directory": "in/"})
    );
    assert_eq!(
        records[2].source_offset,
        json!({"key": "in/a.json", "position": 26, "done": true})
    );
    assert_eq!(
        records[0].record.topic, "t",
        "values go to the connector's topic"
    );
    assert!(
        common::poll_for(&mut source, std::time::Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn csv_rows_become_objects_of_the_header_names() {
    let bucket = TestBucket::new("src-csv").await;
    bucket
        .put(
            "rows.csv",
            "id,name\n1,\"Smith, J\"\n2,Lee\n3\n4,\"multi\nline\"\n",
        )
        .await;
    let config = bucket.source_config(json!({"format": "csv"}));
    let mut source = open_source(config, "t", vec![]).await;
    let records = poll_n(&mut source, 4).await;
    assert_eq!(values(&records)[0], json!({"id": "1", "name": "Smith, J"}));
    assert_eq!(values(&records)[1], json!({"id": "2", "name": "Lee"}));
    assert!(records[2].error.is_some(), "a short row is an error");
    assert_eq!(
        values(&records)[3],
        json!({"id": "4", "name": "multi\nline"})
    );
    assert_eq!(records[3].source_offset["done"], json!(true));
}

#[tokio::test]
async fn parquet_rows_become_objects_of_their_columns() {
    let bucket = TestBucket::new("src-parquet").await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
        ],
    )
    .expect("batch");
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, None).expect("writer");
    writer.write(&batch).expect("write");
    let bytes = writer.into_inner().expect("finish");
    bucket.put("data/part-0.parquet", bytes).await;
    let config = bucket.source_config(json!({"format": "parquet", "batch_records": 2}));
    let mut source = open_source(config, "t", vec![]).await;
    let records = poll_n(&mut source, 3).await;
    assert_eq!(
        values(&records),
        [
            json!({"id": 1, "name": "a"}),
            json!({"id": 2, "name": null}),
            json!({"id": 3, "name": "c"}),
        ]
    );
    assert_eq!(
        records[1].source_offset,
        json!({"key": "data/part-0.parquet", "position": 2, "done": false})
    );
    assert_eq!(records[2].source_offset["done"], json!(true));
}
