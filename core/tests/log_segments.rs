//! Appending, rolling, indexes and reopening a partition log.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{append, open, read_all, segment_files, small_topic, value};
use logbrook_core::{Error, TopicConfig};

#[tokio::test]
async fn appended_batches_read_back_in_order_with_offsets_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker.create_topic("t", TopicConfig::default()).unwrap();
    assert_eq!(
        append(&broker, "t", 0, &[("a", "1", 10), ("b", "2", 20)]).await,
        0
    );
    assert_eq!(append(&broker, "t", 0, &[("c", "3", 30)]).await, 2);
    let log = common::log_of(&broker, "t", 0);
    let records = read_all(&log, 0).unwrap();
    let got: Vec<_> = records
        .iter()
        .map(|r| (r.offset, value(r), r.timestamp))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "1".into(), 10),
            (1, "2".into(), 20),
            (2, "3".into(), 30)
        ]
    );
    // Reading from the middle of a batch skips the records before the requested offset.
    assert_eq!(read_all(&log, 1).unwrap()[0].offset, 1);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn segments_roll_by_size_with_kafka_file_names_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker.create_topic("t", small_topic(1, 4096)).unwrap();
    let big = "x".repeat(900);
    for i in 0..40 {
        append(&broker, "t", 0, &[("k", &big, i)]).await;
    }
    let pdir = dir.path().join("topics/t/0");
    let logs = segment_files(&pdir, "log");
    assert!(
        logs.len() >= 8,
        "expected many segments, got {}",
        logs.len()
    );
    assert_eq!(logs[0].file_name().unwrap(), "00000000000000000000.log");
    assert_eq!(
        segment_files(&pdir, "index").len(),
        logs.len() - 1,
        "sealed segments have index files"
    );
    assert_eq!(segment_files(&pdir, "timeindex").len(), logs.len() - 1);
    let stats = broker.describe_topic("t").unwrap().partitions[0];
    assert_eq!(
        (stats.log_start_offset, stats.log_end_offset, stats.segments),
        (0, 40, logs.len())
    );
    broker.close().await.unwrap();

    let broker = open(dir.path()).await;
    let log = common::log_of(&broker, "t", 0);
    let records = read_all(&log, 0).unwrap();
    assert_eq!(records.len(), 40);
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as u64 && r.timestamp == i as i64)
    );
    // Appends continue after the last offset.
    assert_eq!(append(&broker, "t", 0, &[("k", "after", 99)]).await, 40);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn seek_by_timestamp_finds_first_offset_at_or_after_it_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker.create_topic("t", small_topic(1, 4096)).unwrap();
    let pad = "p".repeat(300);
    // Timestamps rise by 10 per record, with one out-of-order record at offset 50.
    for i in 0..200i64 {
        let ts = if i == 50 { 5 } else { 1000 + i * 10 };
        append(&broker, "t", 0, &[("k", &pad, ts)]).await;
    }
    let log = common::log_of(&broker, "t", 0);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some(1));
    assert_eq!(
        log.offset_for_timestamp(1000 + 120 * 10).unwrap(),
        Some(120)
    );
    assert_eq!(
        log.offset_for_timestamp(1000 + 120 * 10 - 3).unwrap(),
        Some(120)
    );
    assert_eq!(
        log.offset_for_timestamp(1000 + 199 * 10).unwrap(),
        Some(199)
    );
    assert_eq!(log.offset_for_timestamp(1000 + 199 * 10 + 1).unwrap(), None);
    broker.close().await.unwrap();
    // The same answers come from index files after a reopen.
    let broker = open(dir.path()).await;
    let log = common::log_of(&broker, "t", 0);
    assert_eq!(
        log.offset_for_timestamp(1000 + 120 * 10 - 3).unwrap(),
        Some(120)
    );
    broker.close().await.unwrap();
}

#[tokio::test]
async fn log_append_time_topics_stamp_records_with_the_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let config = TopicConfig {
        timestamp_type: logbrook_core::TimestampType::LogAppendTime,
        ..TopicConfig::default()
    };
    broker.create_topic("t", config).unwrap();
    let before = logbrook_core::now_ms();
    append(&broker, "t", 0, &[("k", "v", 1)]).await;
    let log = common::log_of(&broker, "t", 0);
    let r = &read_all(&log, 0).unwrap()[0];
    assert!(
        r.timestamp >= before,
        "timestamp {} is the producer's, not the append time",
        r.timestamp
    );
    assert_eq!(
        r.timestamp_type,
        logbrook_core::TimestampType::LogAppendTime
    );
    broker.close().await.unwrap();
}

#[tokio::test]
async fn invalid_topic_names_are_rejected_without_touching_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    for name in ["../escape", "a/b", "..", ".", "", "white space"] {
        let err = broker
            .create_topic(name, TopicConfig::default())
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidTopicName { .. }),
            "{name:?}: {err}"
        );
    }
    assert!(!dir.path().join("escape").exists());
    assert!(!dir.path().join("topics/a").exists());
    assert!(matches!(
        broker.create_topic(
            "ok",
            TopicConfig {
                partitions: 0,
                ..TopicConfig::default()
            }
        ),
        Err(Error::InvalidConfig {
            key: "partitions",
            ..
        })
    ));
    broker.create_topic("ok", TopicConfig::default()).unwrap();
    assert!(matches!(
        broker.create_topic("ok", TopicConfig::default()),
        Err(Error::TopicExists(_))
    ));
    broker.close().await.unwrap();
}

#[tokio::test]
async fn deleted_topics_are_gone_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker.create_topic("t", small_topic(2, 4096)).unwrap();
    append(&broker, "t", 1, &[("k", "v", 1)]).await;
    broker.delete_topic("t").await.unwrap();
    assert!(matches!(broker.topic("t"), Err(Error::UnknownTopic(_))));
    broker.close().await.unwrap();
    let broker = open(dir.path()).await;
    assert!(!broker.topic_names().contains(&"t".to_string()));
    assert!(!dir.path().join("topics/t").exists());
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_second_writer_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let err = logbrook_core::Broker::open(dir.path()).await.unwrap_err();
    match err {
        Error::Locked { pid, .. } => assert_eq!(pid, std::process::id().to_string()),
        other => panic!("expected Locked, got {other}"),
    }
    broker.create_topic("t", TopicConfig::default()).unwrap();
    append(&broker, "t", 0, &[("k", "v", 1)]).await;
    // Readers may open the directory while it is written.
    let reader =
        logbrook_core::Broker::open_with(logbrook_core::BrokerConfig::new(dir.path()).read_only())
            .await
            .unwrap();
    let log = common::log_of(&reader, "t", 0);
    assert_eq!(read_all(&log, 0).unwrap().len(), 1);
    append(&broker, "t", 0, &[("k", "v2", 2)]).await;
    reader.refresh().unwrap();
    assert_eq!(
        read_all(&log, 0).unwrap().len(),
        2,
        "read-only view follows the writer"
    );
    broker.close().await.unwrap();
}

#[tokio::test]
async fn segments_roll_by_age_of_their_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let config = TopicConfig {
        segment_ms: Some(60_000),
        ..small_topic(1, 1 << 20)
    };
    broker.create_topic("t", config).unwrap();
    append(&broker, "t", 0, &[("k", "a", 1_000_000)]).await;
    append(&broker, "t", 0, &[("k", "b", 1_030_000)]).await;
    assert_eq!(
        broker.describe_topic("t").unwrap().partitions[0].segments,
        1,
        "30 s later: same segment"
    );
    append(&broker, "t", 0, &[("k", "c", 1_060_000)]).await;
    assert_eq!(
        broker.describe_topic("t").unwrap().partitions[0].segments,
        2,
        "60 s after the first batch: rolled"
    );
    broker.close().await.unwrap();
}

#[tokio::test]
async fn interval_flush_policy_fsyncs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let config = TopicConfig {
        flush: logbrook_core::FlushPolicy::Interval { ms: 20 },
        ..TopicConfig::default()
    };
    broker.create_topic("t", config).unwrap();
    append(&broker, "t", 0, &[("k", "v", 1)]).await;
    let log = common::log_of(&broker, "t", 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.fsync_count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background fsync within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    broker.close().await.unwrap();
}

#[tokio::test]
async fn flush_never_acknowledges_without_fsync_and_always_fsyncs_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker
        .create_topic("never", small_topic(1, 1 << 20))
        .unwrap();
    broker
        .create_topic("always", TopicConfig::default())
        .unwrap();
    let fsyncs = |t: &str| {
        broker
            .topic(t)
            .unwrap()
            .partition(0)
            .unwrap()
            .log()
            .fsync_count()
    };
    // Creating a partition fsyncs once, so its files are durable; count from there.
    let (never_before, always_before) = (fsyncs("never"), fsyncs("always"));
    for i in 0..5 {
        append(&broker, "never", 0, &[("k", "v", i)]).await;
        append(&broker, "always", 0, &[("k", "v", i)]).await;
    }
    assert_eq!(fsyncs("never") - never_before, 0);
    assert_eq!(
        fsyncs("always") - always_before,
        5,
        "one fsync per acknowledged append when they come one by one"
    );
    broker.close().await.unwrap();
}
