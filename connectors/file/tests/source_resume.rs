//! `file-source` offsets: resuming exactly at a stored position, and where files without one
//! start.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::{append, inode, lines, open_source, poll_for, poll_records, values};
use serde_json::json;

#[tokio::test]
async fn resuming_from_a_stored_offset_gives_exactly_the_remaining_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "one\ntwo\nthree\nfour\nfive\n");
    let config = json!({"path": path});
    let mut first = open_source(config.clone(), vec![]).await;
    let records = poll_records(first.as_mut(), 5).await;
    first.close().await.unwrap();
    // The runtime stored the offset of the second record before a crash.
    let stored = (
        records[1].source_partition.clone(),
        records[1].source_offset.clone(),
    );

    let mut second = open_source(config, vec![stored]).await;
    let resumed = poll_records(second.as_mut(), 3).await;
    let more = poll_for(second.as_mut(), Duration::from_millis(500)).await;

    assert_eq!(lines(&resumed), ["three", "four", "five"]);
    assert!(more.is_empty(), "{:?}", values(&more));
    assert_eq!(resumed[2].source_offset, records[4].source_offset);
}

#[tokio::test]
async fn a_stored_offset_of_another_inode_restarts_the_file_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "new-1\nnew-2\n");
    let stored = (
        json!({"path": path.to_str().unwrap()}),
        json!({"position": 6, "inode": inode(&path) + 1}),
    );

    let mut source = open_source(json!({"path": path}), vec![stored]).await;

    assert_eq!(
        lines(&poll_records(source.as_mut(), 2).await),
        ["new-1", "new-2"]
    );
}

#[tokio::test]
async fn a_stored_offset_past_the_end_of_the_file_restarts_it_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "short\n");
    let stored = (
        json!({"path": path.to_str().unwrap()}),
        json!({"position": 600, "inode": inode(&path)}),
    );

    let mut source = open_source(json!({"path": path}), vec![stored]).await;

    assert_eq!(lines(&poll_records(source.as_mut(), 1).await), ["short"]);
}

#[tokio::test]
async fn resuming_a_csv_file_mid_way_reads_its_header_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.csv");
    append(&path, "id,name\n1,Ada\n2,Grace\n");
    let stored = (
        json!({"path": path.to_str().unwrap()}),
        json!({"position": 14, "inode": inode(&path)}),
    );

    let mut source = open_source(json!({"path": path, "format": "csv"}), vec![stored]).await;

    let records = poll_records(source.as_mut(), 1).await;
    assert_eq!(values(&records), [json!({"id": "2", "name": "Grace"})]);
}

#[tokio::test]
async fn start_end_skips_existing_data_and_reads_what_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "old-1\nold-2\nhalf-writ");
    let mut source = open_source(
        json!({"path": path, "start": "end", "poll_interval_ms": 20}),
        vec![],
    )
    .await;
    let before = poll_for(source.as_mut(), Duration::from_millis(300)).await;

    append(&path, "ten\nnew\n");
    let after = poll_records(source.as_mut(), 1).await;

    assert!(before.is_empty(), "{:?}", values(&before));
    assert_eq!(lines(&after), ["new"]);
}

#[tokio::test]
async fn start_end_does_not_skip_a_file_with_a_stored_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "done\nnot yet sent\n");
    let stored = (
        json!({"path": path.to_str().unwrap()}),
        json!({"position": 5, "inode": inode(&path)}),
    );

    let mut source = open_source(json!({"path": path, "start": "end"}), vec![stored]).await;

    assert_eq!(
        lines(&poll_records(source.as_mut(), 1).await),
        ["not yet sent"]
    );
}
