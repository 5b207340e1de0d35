//! Damaged files: flipped bytes, torn tails, truncated segments, lost or garbage indexes.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};

use common::{append, open, read_all, segment_files, small_topic};
use logbrook_core::batch::BatchHeader;
use logbrook_core::{Error, FlushPolicy, TopicConfig};

/// Byte positions of the batches in a segment file.
fn batch_positions(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let mut positions = Vec::new();
    let mut pos = 0;
    while let Some(h) = BatchHeader::parse(&bytes[pos..]) {
        positions.push(pos);
        pos += h.total_len();
    }
    positions
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

async fn filled_topic(dir: &Path, flush: FlushPolicy) -> PathBuf {
    let broker = open(dir).await;
    broker
        .create_topic(
            "t",
            TopicConfig {
                flush,
                ..small_topic(1, 4096)
            },
        )
        .unwrap();
    let pad = "v".repeat(700);
    for i in 0..30 {
        append(&broker, "t", 0, &[("k", &pad, i)]).await;
    }
    broker.close().await.unwrap();
    dir.join("topics/t/0")
}

#[tokio::test]
async fn flipped_byte_in_a_sealed_segment_is_reported_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = filled_topic(dir.path(), FlushPolicy::Never).await;
    let first = &segment_files(&pdir, "log")[0];
    let positions = batch_positions(first);
    flip_byte(first, positions[2] + 80);

    let broker = open(dir.path()).await;
    let log = common::log_of(&broker, "t", 0);
    match read_all(&log, 0) {
        Err(Error::CorruptBatch {
            topic,
            partition,
            segment,
            position,
            reason,
        }) => {
            assert_eq!((topic.as_str(), partition), ("t", 0));
            assert_eq!(&segment, first);
            assert_eq!(position, positions[2] as u64);
            assert!(reason.contains("crc"), "{reason}");
        }
        other => panic!("expected CorruptBatch, got {other:?}"),
    }
    // Records after the damaged batch stay readable.
    assert_eq!(read_all(&log, 3).unwrap().len(), 27);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn torn_tail_of_the_active_segment_is_truncated_after_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = filled_topic(dir.path(), FlushPolicy::Always).await;
    let active = segment_files(&pdir, "log").last().unwrap().clone();
    let whole_len = std::fs::metadata(&active).unwrap().len();
    // Half of a copy of the last batch, as a crash mid-write leaves it.
    let bytes = std::fs::read(&active).unwrap();
    let last = *batch_positions(&active).last().unwrap();
    let torn = &bytes[last..last + (bytes.len() - last) / 2];
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap();
    std::io::Write::write_all(&mut file, torn).unwrap();
    drop(file);

    let broker = open(dir.path()).await;
    let log = common::log_of(&broker, "t", 0);
    assert_eq!(read_all(&log, 0).unwrap().len(), 30);
    assert_eq!(
        std::fs::metadata(&active).unwrap().len(),
        whole_len,
        "torn bytes are cut off"
    );
    assert_eq!(append(&broker, "t", 0, &[("k", "next", 99)]).await, 30);
    assert_eq!(read_all(&log, 30).unwrap()[0].timestamp, 99);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn damaged_durable_batch_in_the_active_segment_fails_open_instead_of_truncating() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = filled_topic(dir.path(), FlushPolicy::Always).await;
    let active = segment_files(&pdir, "log").last().unwrap().clone();
    let positions = batch_positions(&active);
    assert!(positions.len() >= 3);
    flip_byte(&active, positions[0] + 70);

    let err = logbrook_core::Broker::open(dir.path()).await.unwrap_err();
    match err {
        Error::CorruptBatch {
            segment, position, ..
        } => {
            assert_eq!(segment, active);
            assert_eq!(position, positions[0] as u64);
        }
        other => panic!("expected CorruptBatch, got {other}"),
    }
    // Nothing was cut: the records after the damage are still on disk.
    assert_eq!(batch_positions(&active).len(), positions.len());
}

#[tokio::test]
async fn truncated_sealed_segment_is_reported_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = filled_topic(dir.path(), FlushPolicy::Never).await;
    let first = segment_files(&pdir, "log")[0].clone();
    let len = std::fs::metadata(&first).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 100)
        .unwrap();

    let err = logbrook_core::Broker::open(dir.path()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::CorruptBatch { .. }), "{message}");
    assert!(
        message.contains("topic \"t\" partition 0") && message.contains("00000000000000000000.log"),
        "{message}"
    );
}

#[tokio::test]
async fn missing_and_garbage_indexes_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = filled_topic(dir.path(), FlushPolicy::Never).await;
    let broker = open(dir.path()).await;
    let log = common::log_of(&broker, "t", 0);
    let expected = read_all(&log, 0).unwrap();
    let expected_seek = log.offset_for_timestamp(17).unwrap();
    broker.close().await.unwrap();

    let indexes = segment_files(&pdir, "index");
    let time_indexes = segment_files(&pdir, "timeindex");
    std::fs::remove_file(&indexes[0]).unwrap();
    std::fs::write(&indexes[1], b"garbage!garbage!").unwrap();
    std::fs::write(&time_indexes[2], [0xffu8; 24]).unwrap();

    let broker = open(dir.path()).await;
    let log = common::log_of(&broker, "t", 0);
    assert_eq!(read_all(&log, 0).unwrap(), expected);
    assert_eq!(log.offset_for_timestamp(17).unwrap(), expected_seek);
    assert_eq!(expected_seek, Some(17));
    assert!(indexes[0].exists(), "rebuilt index is written back");
    assert_ne!(std::fs::read(&indexes[1]).unwrap(), b"garbage!garbage!");
    broker.close().await.unwrap();
}

#[tokio::test]
async fn damage_followed_by_valid_batches_is_reported_even_above_a_stale_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = filled_topic(dir.path(), FlushPolicy::Always).await;
    let active = segment_files(&pdir, "log").last().unwrap().clone();
    let positions = batch_positions(&active);
    flip_byte(&active, positions[1] + 70);
    // As after a crash before the checkpoint: the scan covers the whole segment.
    std::fs::write(pdir.join("recovery-point"), "0\n").unwrap();
    let err = logbrook_core::Broker::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(err, Error::CorruptBatch { position, .. } if position == positions[1] as u64),
        "{err}"
    );
    assert_eq!(
        batch_positions(&active).len(),
        positions.len(),
        "nothing was truncated"
    );
}

#[tokio::test]
async fn zeroed_durable_bytes_fail_the_open_instead_of_ending_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = filled_topic(dir.path(), FlushPolicy::Always).await;
    let active = segment_files(&pdir, "log").last().unwrap().clone();
    let positions = batch_positions(&active);
    let mut bytes = std::fs::read(&active).unwrap();
    bytes[positions[1]..positions[2]].fill(0);
    std::fs::write(&active, bytes).unwrap();
    let err = logbrook_core::Broker::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, Error::CorruptBatch { .. }), "{err}");
}

#[tokio::test]
async fn batches_over_64_mib_are_refused_at_append() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker.create_topic("t", TopicConfig::default()).unwrap();
    let mut builder = logbrook_core::batch::BatchBuilder::with_capacity(1024);
    builder.push(1, None, Some(&vec![7u8; 65 << 20]), &[]);
    let partition = broker.topic("t").unwrap().partition(0).unwrap().clone();
    let err = partition.append(builder.finish()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("larger than its max.message.bytes (67108864)"),
        "{err}"
    );
    assert_eq!(partition.log().high_watermark(), 0);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_data_dir_of_another_format_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker.create_topic("t", TopicConfig::default()).unwrap();
    append(&broker, "t", 0, &[("k", "kept", 1)]).await;
    broker.close().await.unwrap();
    let marker = dir.path().join("format");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "2\n");
    let segment = segment_files(&dir.path().join("topics/t/0"), "log")[0].clone();
    let before = std::fs::read(&segment).unwrap();
    // Format 1 had no `format` file; a later format would write another number.
    for (found, setup) in [("1", None), ("3", Some("3\n"))] {
        match setup {
            None => std::fs::remove_file(&marker).unwrap(),
            Some(text) => std::fs::write(&marker, text).unwrap(),
        }
        let err = logbrook_core::Broker::open(dir.path()).await.unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedFormat { found: f, .. } if f == found),
            "{err}"
        );
        assert!(err.to_string().contains("RecordBatch v2"), "{err}");
        assert_eq!(
            std::fs::read(&segment).unwrap(),
            before,
            "nothing was changed"
        );
    }
    std::fs::write(&marker, "2\n").unwrap();
    let broker = open(dir.path()).await;
    let records = read_all(broker.topic("t").unwrap().partition(0).unwrap().log(), 0).unwrap();
    assert_eq!(records[0].value.as_deref(), Some(&b"kept"[..]));
    broker.close().await.unwrap();
}
