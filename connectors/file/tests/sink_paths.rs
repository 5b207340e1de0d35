//! `file-sink` path templates: records go to the file their topic, partition and time name.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{open_sink, read, sink_record};
use serde_json::json;

/// 2024-01-02T03:04:05Z in milliseconds.
const JAN_2_0304: i64 = 1_704_164_645_000;
const HOUR_MS: i64 = 3_600_000;

#[tokio::test]
async fn records_go_to_the_file_of_their_topic_partition_date_and_hour() {
    let dir = tempfile::tempdir().unwrap();
    let template = format!(
        "{}/{{topic}}/{{date}}/{{hour}}/p{{partition}}.jsonl",
        dir.path().display()
    );
    let mut sink = open_sink(json!({"path": template})).await;

    sink.put(&[
        sink_record("orders", 0, 0, Some(JAN_2_0304), Some(json!(1))),
        sink_record("orders", 1, 0, Some(JAN_2_0304), Some(json!(2))),
        sink_record("orders", 0, 1, Some(JAN_2_0304 + HOUR_MS), Some(json!(3))),
        sink_record(
            "payments",
            0,
            0,
            Some(JAN_2_0304 + 24 * HOUR_MS),
            Some(json!(4)),
        ),
        sink_record("orders", 0, 2, Some(JAN_2_0304 + 60_000), Some(json!(5))),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();

    let file = |rest: &str| read(&dir.path().join(rest));
    assert_eq!(file("orders/2024-01-02/03/p0.jsonl"), "1\n5\n");
    assert_eq!(file("orders/2024-01-02/03/p1.jsonl"), "2\n");
    assert_eq!(file("orders/2024-01-02/04/p0.jsonl"), "3\n");
    assert_eq!(file("payments/2024-01-03/03/p0.jsonl"), "4\n");
}

#[tokio::test]
async fn a_record_without_a_timestamp_goes_to_todays_file() {
    let dir = tempfile::tempdir().unwrap();
    let template = format!("{}/{{date}}.jsonl", dir.path().display());
    let mut sink = open_sink(json!({"path": template})).await;

    let before = chrono::Utc::now().format("%Y-%m-%d").to_string();
    sink.put(&[sink_record("orders", 0, 0, None, Some(json!("now")))])
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let after = chrono::Utc::now().format("%Y-%m-%d").to_string();

    let written: Vec<String> = [before, after]
        .into_iter()
        .filter(|day| dir.path().join(format!("{day}.jsonl")).exists())
        .collect();
    assert!(!written.is_empty());
    assert_eq!(
        read(&dir.path().join(format!("{}.jsonl", written[0]))),
        "\"now\"\n"
    );
}

#[tokio::test]
async fn appending_continues_a_file_written_by_an_earlier_task() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, "0\n").unwrap();
    let mut sink = open_sink(json!({"path": path})).await;

    sink.put(&[sink_record("orders", 0, 1, None, Some(json!(1)))])
        .await
        .unwrap();
    sink.close().await.unwrap();

    assert_eq!(read(&path), "0\n1\n");
}
