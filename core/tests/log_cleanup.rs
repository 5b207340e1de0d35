//! Retention by size and time, and log compaction.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{append, open, read_all, small_topic, value};
use logbrook_core::{
    CleanupPolicy, Consumer, ConsumerConfig, Error, OffsetReset, TopicConfig, now_ms,
};
use std::collections::HashMap;

#[tokio::test]
async fn retention_bytes_deletes_the_oldest_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let config = TopicConfig {
        retention_bytes: Some(8192),
        retention_ms: None,
        ..small_topic(1, 4096)
    };
    broker.create_topic("t", config).unwrap();
    let pad = "x".repeat(900);
    for i in 0..40 {
        append(&broker, "t", 0, &[("k", &pad, now_ms() + i)]).await;
    }
    let before = broker.describe_topic("t").unwrap().partitions[0];
    broker.run_cleaner().await.unwrap();
    let after = broker.describe_topic("t").unwrap().partitions[0];
    assert!(after.log_start_offset > 0);
    assert!(
        after.size_bytes <= 8192 + 4096,
        "size {} still over the limit",
        after.size_bytes
    );
    assert!(after.segments < before.segments);
    assert_eq!(after.log_end_offset, 40);

    let log = common::log_of(&broker, "t", 0);
    assert!(matches!(
        read_all(&log, 0),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let kept = read_all(&log, after.log_start_offset).unwrap();
    assert_eq!(kept.len() as u64, 40 - after.log_start_offset);

    // A consumer starting at "earliest" starts at the new log start.
    let mut consumer = Consumer::new(
        broker.clone(),
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    );
    consumer.subscribe(&["t"]).unwrap();
    let polled = consumer
        .poll(std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(polled[0].offset, after.log_start_offset);
    drop(consumer);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn retention_ms_deletes_segments_whose_newest_record_is_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let day = 24 * 3600 * 1000;
    let config = TopicConfig {
        retention_ms: Some(day as u64),
        ..small_topic(1, 4096)
    };
    broker.create_topic("t", config).unwrap();
    let pad = "x".repeat(900);
    let old = now_ms() - 3 * day;
    for i in 0..20 {
        append(&broker, "t", 0, &[("k", &pad, old + i)]).await;
    }
    for i in 0..20 {
        append(&broker, "t", 0, &[("k", &pad, now_ms() + i)]).await;
    }
    broker.run_cleaner().await.unwrap();
    let log = common::log_of(&broker, "t", 0);
    let start = log.log_start_offset();
    assert!(
        start > 10 && start <= 20,
        "old segments go, new ones stay (start {start})"
    );
    let kept = read_all(&log, start).unwrap();
    assert!(
        kept.iter().filter(|r| r.offset >= 20).count() == 20,
        "every recent record is kept"
    );
    broker.close().await.unwrap();
}

#[tokio::test]
async fn compaction_keeps_the_latest_value_per_key_and_drops_expired_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let config = TopicConfig {
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 60_000,
        ..small_topic(1, 4096)
    };
    broker.create_topic("c", config).unwrap();
    let partition = broker.topic("c").unwrap().partition(0).unwrap().clone();
    let now = now_ms();
    let mut latest: HashMap<String, (u64, Option<String>)> = HashMap::new();
    for round in 0..30 {
        for k in 0..10 {
            let key = format!("k{k}");
            let v = format!("{key}-v{round}-{}", "p".repeat(60));
            let offset = append(&broker, "c", 0, &[(&key, &v, now)]).await;
            latest.insert(key, (offset, Some(v)));
        }
    }
    // An old tombstone (expired) and a fresh one (kept), then filler so both are sealed.
    for (key, ts) in [("k3", now - 3_600_000), ("k4", now)] {
        let mut b = logbrook_core::batch::BatchBuilder::with_capacity(64);
        b.push(ts, Some(key.as_bytes()), None, &[]);
        let info = partition.append(b.finish()).await.unwrap();
        latest.insert(key.to_string(), (info.base_offset, None));
    }
    for i in 0..10 {
        let key = format!("filler{i}");
        let v = "f".repeat(500);
        let offset = append(&broker, "c", 0, &[(&key, &v, now)]).await;
        latest.insert(key, (offset, Some(v)));
    }
    let before = partition.log().stats();
    broker.run_cleaner().await.unwrap();
    let after = partition.log().stats();
    assert!(
        after.size_bytes < before.size_bytes / 2,
        "{} -> {}",
        before.size_bytes,
        after.size_bytes
    );
    assert_eq!(
        after.log_start_offset, 0,
        "compaction never moves the log start"
    );

    let check = |records: Vec<logbrook_core::ConsumerRecord>| {
        let mut seen: HashMap<String, (u64, Option<String>)> = HashMap::new();
        for r in &records {
            let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
            seen.insert(key, (r.offset, r.value.as_ref().map(|_| value(r))));
        }
        let mut expected = latest.clone();
        expected.remove("k3");
        assert_eq!(
            seen, expected,
            "latest record per key, at its original offset"
        );
        let k0 = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(&b"k0"[..]))
            .count();
        assert_eq!(k0, 1, "superseded values are gone");
    };
    let log = partition.log().clone();
    check(read_all(&log, log.log_start_offset()).unwrap());
    broker.close().await.unwrap();

    let broker = open(dir.path()).await;
    let log = common::log_of(&broker, "c", 0);
    check(read_all(&log, log.log_start_offset()).unwrap());
    broker.close().await.unwrap();
}

#[tokio::test]
async fn compacted_topics_reject_records_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker
        .create_topic(
            "c",
            TopicConfig {
                cleanup_policy: CleanupPolicy::Compact,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let mut b = logbrook_core::batch::BatchBuilder::with_capacity(64);
    b.push(1, None, Some(b"v"), &[]);
    let err = broker
        .topic("c")
        .unwrap()
        .partition(0)
        .unwrap()
        .append(b.finish())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs a key"), "{err}");
    broker.close().await.unwrap();
}
