//! `file-sink` rolling: by size and by age, to the first free `<path>.<N>`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::{open_sink, read, sink_record};
use serde_json::json;

#[tokio::test]
async fn roll_bytes_renames_full_files_to_dot_one_then_dot_two() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let mut sink = open_sink(json!({"path": path, "roll_bytes": 20})).await;

    // Each line is 10 bytes: `"record-N"` and a newline.
    let records: Vec<_> = (1..=5)
        .map(|i| sink_record("orders", 0, i, None, Some(json!(format!("record-{i}")))))
        .collect();
    sink.put(&records).await.unwrap();
    sink.flush().await.unwrap();

    let roll = |n: u32| dir.path().join(format!("out.jsonl.{n}"));
    assert_eq!(read(&roll(1)), "\"record-1\"\n\"record-2\"\n");
    assert_eq!(read(&roll(2)), "\"record-3\"\n\"record-4\"\n");
    assert!(!roll(3).exists());
    assert_eq!(read(&path), "\"record-5\"\n");
}

#[tokio::test]
async fn rolling_skips_numbers_already_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    std::fs::write(dir.path().join("out.jsonl.1"), "older\n").unwrap();
    let mut sink = open_sink(json!({"path": path, "roll_bytes": 1})).await;

    sink.put(&[sink_record("orders", 0, 0, None, Some(json!(1)))])
        .await
        .unwrap();
    sink.flush().await.unwrap();

    assert_eq!(read(&dir.path().join("out.jsonl.1")), "older\n");
    assert_eq!(read(&dir.path().join("out.jsonl.2")), "1\n");
    assert!(!path.exists());
}

#[tokio::test]
async fn roll_ms_rolls_a_file_at_the_first_flush_after_it_is_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let mut sink = open_sink(json!({"path": path, "roll_ms": 200})).await;

    sink.put(&[sink_record("orders", 0, 0, None, Some(json!(1)))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let young = path.exists() && !dir.path().join("out.jsonl.1").exists();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sink.flush().await.unwrap();
    sink.put(&[sink_record("orders", 0, 1, None, Some(json!(2)))])
        .await
        .unwrap();
    sink.flush().await.unwrap();

    assert!(young, "rolled too early");
    assert_eq!(read(&dir.path().join("out.jsonl.1")), "1\n");
    assert_eq!(read(&path), "2\n");
}

#[tokio::test]
async fn a_csv_file_started_after_a_roll_gets_its_own_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let mut sink = open_sink(json!({"path": path, "format": "csv", "roll_bytes": 5})).await;

    sink.put(&[
        sink_record("orders", 0, 0, None, Some(json!({"id": 1}))),
        sink_record("orders", 0, 1, None, Some(json!({"id": 2}))),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();

    assert_eq!(read(&dir.path().join("out.csv.1")), "id\n1\n");
    assert_eq!(read(&dir.path().join("out.csv.2")), "id\n2\n");
}
