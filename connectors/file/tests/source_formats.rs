//! `file-source` formats: lines, JSON and CSV records, and bad lines returned with an error.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use arrow_schema::DataType;
use common::{append, lines, open_source, poll_records, values};
use serde_json::json;

#[tokio::test]
async fn lines_become_utf8_strings_without_their_line_endings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "first\r\nsecond\n\nthird\n");
    let mut source = open_source(json!({"path": path}), vec![]).await;

    let records = poll_records(source.as_mut(), 4).await;

    assert_eq!(lines(&records), ["first", "second", "", "third"]);
    let record = &records[0].record;
    assert_eq!(record.topic, "topic");
    assert_eq!(record.value_schema, Some(DataType::Utf8));
    assert_eq!((record.key.as_ref(), record.timestamp), (None, None));
    assert_eq!(
        records[0].source_partition,
        json!({"path": path.to_str().unwrap()})
    );
    assert_eq!(
        records[0].source_offset,
        json!({"position": 7, "inode": common::inode(&path)})
    );
    assert_eq!(records[3].source_offset["position"], json!(21));
}

#[tokio::test]
async fn json_lines_become_their_parsed_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    append(&path, "{\"id\":1,\"tags\":[\"a\"]}\n\n42\n\"text\"\n");
    let mut source = open_source(json!({"path": path, "format": "json"}), vec![]).await;

    let records = poll_records(source.as_mut(), 3).await;

    assert_eq!(
        values(&records),
        [json!({"id": 1, "tags": ["a"]}), json!(42), json!("text")]
    );
    assert!(records.iter().all(|r| r.record.value_schema.is_none()));
    assert!(records.iter().all(|r| r.error.is_none()));
}

#[tokio::test]
async fn a_bad_json_line_comes_back_as_text_with_an_error_and_later_lines_still_flow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    append(&path, "{\"a\":1}\nnot json\n{\"b\":2}\n");
    let mut source = open_source(json!({"path": path, "format": "json"}), vec![]).await;

    let records = poll_records(source.as_mut(), 3).await;

    assert_eq!(
        values(&records),
        [json!({"a": 1}), json!("not json"), json!({"b": 2})]
    );
    let error = records[1].error.as_deref().unwrap();
    assert!(
        error.starts_with(&format!("{}:2: ", path.display())),
        "{error}"
    );
    assert_eq!(records[1].source_offset["position"], json!(17));
    assert!(records[0].error.is_none() && records[2].error.is_none());
}

#[tokio::test]
async fn csv_rows_become_objects_keyed_by_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.csv");
    append(
        &path,
        "id,name,city\r\n1,Ada,London\r\n2,\"Hopper, Grace\",\r\n",
    );
    let mut source = open_source(json!({"path": path, "format": "csv"}), vec![]).await;

    let records = poll_records(source.as_mut(), 2).await;

    assert_eq!(
        values(&records),
        [
            json!({"id": "1", "name": "Ada", "city": "London"}),
            json!({"id": "2", "name": "Hopper, Grace", "city": ""}),
        ]
    );
}

#[tokio::test]
async fn a_csv_row_with_the_wrong_field_count_comes_back_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.csv");
    append(&path, "id,name\n1,Ada\n2\n3,Grace\n");
    let mut source = open_source(json!({"path": path, "format": "csv"}), vec![]).await;

    let records = poll_records(source.as_mut(), 3).await;

    assert_eq!(records[1].record.value, Some(json!("2")));
    let error = records[1].error.as_deref().unwrap();
    assert!(error.contains(":3: "), "{error}");
    assert!(error.contains("1 fields"), "{error}");
    assert_eq!(
        records[2].record.value,
        Some(json!({"id": "3", "name": "Grace"}))
    );
}
