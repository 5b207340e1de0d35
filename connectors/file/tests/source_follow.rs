//! `file-source` following files as `tail -F` does: partial lines, rotation, truncation, new
//! and deleted files, and `follow = false`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::{append, inode, lines, open_source, poll_for, poll_records, values};
use serde_json::json;

#[tokio::test]
async fn a_partial_line_is_held_back_until_its_newline_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "one\ntw");
    let mut source = open_source(json!({"path": path, "poll_interval_ms": 20}), vec![]).await;

    let first = poll_records(source.as_mut(), 1).await;
    let held = poll_for(source.as_mut(), Duration::from_millis(300)).await;
    append(&path, "o\nthr");
    let second = poll_records(source.as_mut(), 1).await;

    assert_eq!(lines(&first), ["one"]);
    assert!(held.is_empty(), "{:?}", values(&held));
    assert_eq!(lines(&second), ["two"]);
    assert_eq!(second[0].source_offset["position"], json!(8));
}

#[tokio::test]
async fn a_poll_with_nothing_new_returns_empty_within_about_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "only\n");
    let mut source = open_source(json!({"path": path}), vec![]).await;
    poll_records(source.as_mut(), 1).await;

    let started = Instant::now();
    let records = source.poll().await.unwrap();

    assert!(records.is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn rotation_reads_the_rest_of_the_old_file_then_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "1\n2\n");
    let mut source = open_source(
        json!({"path": dir.path().join("*.log"), "poll_interval_ms": 20}),
        vec![],
    )
    .await;
    assert_eq!(lines(&poll_records(source.as_mut(), 2).await), ["1", "2"]);
    let old_inode = inode(&path);

    // The writer appends, the file is renamed away (out of the glob), and a new one starts.
    append(&path, "3\n");
    std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    append(&path, "4\n5\n");
    let records = poll_records(source.as_mut(), 3).await;

    assert_eq!(lines(&records), ["3", "4", "5"]);
    assert_eq!(
        records[0].source_offset,
        json!({"position": 6, "inode": old_inode})
    );
    assert_eq!(
        records[2].source_offset,
        json!({"position": 4, "inode": inode(&path)})
    );
}

#[tokio::test]
async fn truncation_restarts_the_file_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "first line\nsecond line\n");
    let mut source = open_source(json!({"path": path, "poll_interval_ms": 20}), vec![]).await;
    poll_records(source.as_mut(), 2).await;

    std::fs::File::create(&path).unwrap(); // `: > app.log`
    append(&path, "again\n");
    let records = poll_records(source.as_mut(), 1).await;

    assert_eq!(lines(&records), ["again"]);
    assert_eq!(records[0].source_offset["position"], json!(6));
}

#[tokio::test]
async fn files_that_start_matching_the_glob_are_read_from_their_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = open_source(
        json!({"path": dir.path().join("*.log"), "start": "end", "poll_interval_ms": 20}),
        vec![],
    )
    .await;
    assert!(source.poll().await.unwrap().is_empty());

    append(&dir.path().join("late.log"), "hello\n");
    append(&dir.path().join("late.txt"), "not matched\n");

    assert_eq!(lines(&poll_records(source.as_mut(), 1).await), ["hello"]);
    let more = poll_for(source.as_mut(), Duration::from_millis(1500)).await;
    assert!(more.is_empty(), "{:?}", values(&more));
}

#[tokio::test]
async fn a_deleted_file_is_dropped_and_a_new_file_at_its_path_is_read_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "before\n");
    let mut source = open_source(
        json!({"path": dir.path().join("*.log"), "poll_interval_ms": 50}),
        vec![],
    )
    .await;
    poll_records(source.as_mut(), 1).await;

    std::fs::remove_file(&path).unwrap();
    let nothing = poll_for(source.as_mut(), Duration::from_millis(2500)).await;
    append(&path, "after, and longer than before\n");

    assert!(nothing.is_empty(), "{:?}", values(&nothing));
    assert_eq!(
        lines(&poll_records(source.as_mut(), 1).await),
        ["after, and longer than before"]
    );
}

#[tokio::test]
async fn without_follow_files_are_read_once_to_their_end_last_line_included() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.log");
    append(&path, "a\nb");
    let mut source = open_source(json!({"path": path, "follow": false}), vec![]).await;

    let records = poll_records(source.as_mut(), 2).await;
    append(&path, "\nc\n");
    let later = poll_for(source.as_mut(), Duration::from_millis(1500)).await;

    assert_eq!(lines(&records), ["a", "b"]);
    assert_eq!(records[1].source_offset["position"], json!(3));
    assert!(later.is_empty(), "{:?}", values(&later));
}

#[tokio::test]
async fn a_busy_file_is_read_in_batches_of_at_most_batch_max_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.log");
    let text: String = (0..25_000).map(|i| format!("line {i}\n")).collect();
    append(&path, &text);
    let mut source = open_source(json!({"path": path, "batch_max_records": 10_000}), vec![]).await;

    let mut sizes = Vec::new();
    let mut all = Vec::new();
    while all.len() < 25_000 {
        let batch = source.poll().await.unwrap();
        sizes.push(batch.len());
        all.extend(batch);
    }

    assert_eq!(sizes[..3], [10_000, 10_000, 5_000]);
    assert_eq!(lines(&all[24_999..]), ["line 24999"]);
    assert_eq!(
        all.last().unwrap().source_offset["position"],
        json!(text.len())
    );
}
