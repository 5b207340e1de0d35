//! `file-sink` formats: JSON lines, plain lines and CSV with its header, and the records a
//! format cannot hold.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{open_sink, read, sink_record};
use logbrook_connect::Error;
use serde_json::json;

#[tokio::test]
async fn json_writes_one_document_per_line_and_null_for_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let mut sink = open_sink(json!({"path": path})).await;

    let rejected = sink
        .put(&[
            sink_record(
                "orders",
                0,
                0,
                None,
                Some(json!({"id": 1, "items": [2, 3]})),
            ),
            sink_record("orders", 0, 1, None, None),
            sink_record("orders", 0, 2, None, Some(json!("text"))),
        ])
        .await
        .unwrap();
    sink.flush().await.unwrap();

    assert!(rejected.is_empty());
    assert_eq!(read(&path), "{\"id\":1,\"items\":[2,3]}\nnull\n\"text\"\n");
}

#[tokio::test]
async fn lines_write_strings_verbatim_and_other_values_as_json_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.log");
    let mut sink = open_sink(json!({"path": path, "format": "lines"})).await;

    sink.put(&[
        sink_record("orders", 0, 0, None, Some(json!("plain \"quoted\" text"))),
        sink_record("orders", 0, 1, None, Some(json!({"a": true}))),
        sink_record("orders", 0, 2, None, Some(json!(7))),
    ])
    .await
    .unwrap();
    sink.close().await.unwrap();

    assert_eq!(read(&path), "plain \"quoted\" text\n{\"a\":true}\n7\n");
}

#[tokio::test]
async fn csv_files_start_with_a_header_of_the_first_records_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let mut sink = open_sink(json!({"path": path, "format": "csv"})).await;

    sink.put(&[
        sink_record("orders", 0, 0, None, Some(json!({"name": "Ada", "id": 1}))),
        sink_record("orders", 0, 1, None, Some(json!({"id": 2, "extra": "x"}))),
        sink_record(
            "orders",
            0,
            2,
            None,
            Some(json!({"id": 3, "name": "a, \"b\""})),
        ),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();

    assert_eq!(read(&path), "id,name\n1,Ada\n2,\n3,\"a, \"\"b\"\"\"\n");
}

#[tokio::test]
async fn csv_columns_choose_and_order_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let config = json!({"path": path, "format": "csv", "csv_columns": ["name", "id", "note"]});
    let mut sink = open_sink(config).await;

    sink.put(&[sink_record(
        "orders",
        0,
        0,
        None,
        Some(json!({"id": 1, "name": "Ada", "other": 5})),
    )])
    .await
    .unwrap();
    sink.flush().await.unwrap();

    assert_eq!(read(&path), "name,id,note\nAda,1,\n");
}

#[tokio::test]
async fn a_reopened_csv_file_keeps_its_header_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let config = json!({"path": path, "format": "csv"});
    let mut first = open_sink(config.clone()).await;
    first
        .put(&[sink_record(
            "orders",
            0,
            0,
            None,
            Some(json!({"b": 1, "c": 2})),
        )])
        .await
        .unwrap();
    first.close().await.unwrap();

    let mut second = open_sink(config).await;
    second
        .put(&[sink_record(
            "orders",
            0,
            1,
            None,
            Some(json!({"a": 0, "c": 4, "b": 3})),
        )])
        .await
        .unwrap();
    second.close().await.unwrap();

    assert_eq!(read(&path), "b,c\n1,2\n3,4\n");
}

#[tokio::test]
async fn csv_rejects_values_that_are_not_objects_and_writes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let mut sink = open_sink(json!({"path": path, "format": "csv"})).await;

    let rejected = sink
        .put(&[
            sink_record("orders", 2, 10, None, Some(json!("not an object"))),
            sink_record("orders", 2, 11, None, Some(json!({"id": 1}))),
            sink_record("orders", 2, 12, None, None),
            sink_record("orders", 2, 13, None, Some(json!({"id": 2}))),
        ])
        .await
        .unwrap();
    sink.flush().await.unwrap();

    let indexes: Vec<_> = rejected.iter().map(|r| r.index).collect();
    assert_eq!(indexes, [0, 2]);
    assert!(
        rejected
            .iter()
            .all(|r| matches!(r.error, Error::Data { .. }))
    );
    let message = rejected[0].error.to_string();
    assert!(
        message.contains("\"orders\"") && message.contains("offset 10"),
        "{message}"
    );
    assert!(message.contains("a string"), "{message}");
    assert_eq!(read(&path), "id\n1\n2\n");
}

#[tokio::test]
async fn records_stay_buffered_until_flush_makes_them_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let mut sink = open_sink(json!({"path": path})).await;

    sink.put(&[sink_record("orders", 0, 0, None, Some(json!(1)))])
        .await
        .unwrap();
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    sink.flush().await.unwrap();

    assert_eq!(before, "");
    assert_eq!(read(&path), "1\n");
}
