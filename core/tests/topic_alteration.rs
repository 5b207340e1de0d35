//! Topics and groups changed while the broker runs: a topic's config altered, partitions
//! added, records deleted below an offset, a group deleted. Each change applies to the live
//! topic at once and is still there after a reopen.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use logbrook_core::{
    BrokerConfig, CommitDetails, Error, Producer, ProducerConfig, ProducerRecord, TopicConfig,
    TopicPartition,
};

#[tokio::test]
async fn an_altered_config_applies_to_the_live_log_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path()).await;
    broker
        .create_topic("t", common::small_topic(2, 4096))
        .unwrap();
    let before = broker.topic("t").unwrap();
    for i in 0..40 {
        let value = format!("{i}-{}", "x".repeat(400));
        common::append(&broker, "t", 0, &[("k", &value, i64::from(i))]).await;
    }
    let segments = common::log_of(&broker, "t", 0).stats().segments;
    assert!(segments > 3);

    // Keep at most about two segments' worth.
    let altered = TopicConfig {
        retention_bytes: Some(8192),
        ..before.config().clone()
    };
    let handle = broker.alter_topic_config("t", altered.clone()).unwrap();
    assert_eq!(handle.config(), &altered);
    assert!(before.is_stale(), "the old handle is out of date");
    assert!(!before.is_closed(), "but its partitions are open");
    assert_eq!(
        common::log_of(&broker, "t", 0).config().retention_bytes,
        Some(8192)
    );
    broker.run_cleaner().await.unwrap();
    let stats = common::log_of(&broker, "t", 0).stats();
    assert!(
        stats.segments < segments && stats.log_start_offset > 0,
        "{stats:?}"
    );

    // The partition count is not a config to alter.
    let err = broker
        .alter_topic_config(
            "t",
            TopicConfig {
                partitions: 3,
                ..altered.clone()
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                key: "partitions",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        broker.alter_topic_config("nope", altered.clone()),
        Err(Error::UnknownTopic(_))
    ));

    broker.close().await.unwrap();
    let broker = common::open(dir.path()).await;
    assert_eq!(broker.topic("t").unwrap().config(), &altered);
    assert_eq!(
        common::log_of(&broker, "t", 1).config().retention_bytes,
        Some(8192)
    );
    broker.close().await.unwrap();
}

#[tokio::test]
async fn added_partitions_take_records_at_once_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path()).await;
    broker
        .create_topic("t", common::small_topic(2, 1 << 20))
        .unwrap();
    let producer = Producer::new(
        broker.clone(),
        ProducerConfig {
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        },
    );
    producer
        .send(ProducerRecord::new("t", "before").with_partition(1))
        .await
        .unwrap()
        .await
        .unwrap();

    let grown = broker.create_partitions("t", 5).unwrap();
    assert_eq!(grown.partition_count(), 5);
    assert_eq!(broker.topic("t").unwrap().partition_count(), 5);
    // A producer that wrote before sees the new partitions.
    let delivered = producer
        .send(ProducerRecord::new("t", "after").with_partition(4))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((delivered.partition, delivered.offset), (4, 0));

    for fewer in [5, 3] {
        let err = broker.create_partitions("t", fewer).unwrap_err();
        assert!(
            matches!(err, Error::InvalidPartitionCount { partitions: 5, .. }),
            "{err}"
        );
    }
    assert!(matches!(
        broker.create_partitions("t", 20_000),
        Err(Error::InvalidConfig {
            key: "partitions",
            ..
        })
    ));

    broker.close().await.unwrap();
    let broker = common::open(dir.path()).await;
    let topic = broker.topic("t").unwrap();
    assert_eq!(topic.partition_count(), 5);
    let records = common::read_all(&common::log_of(&broker, "t", 4), 0).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref().unwrap(), b"after");
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_read_only_view_follows_added_partitions_and_deleted_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path()).await;
    broker
        .create_topic("t", common::small_topic(1, 4096))
        .unwrap();
    for i in 0..30 {
        let value = format!("{i}-{}", "x".repeat(300));
        common::append(&broker, "t", 0, &[("k", &value, 1_000)]).await;
    }
    let view = logbrook_core::Broker::open_with(BrokerConfig::new(dir.path()).read_only())
        .await
        .unwrap();
    broker.create_partitions("t", 3).unwrap();
    assert_eq!(broker.delete_records("t", 0, Some(17)).await.unwrap(), 17);
    view.refresh().unwrap();
    assert_eq!(view.topic("t").unwrap().partition_count(), 3);
    assert_eq!(common::log_of(&view, "t", 0).log_start_offset(), 17);
    view.close().await.unwrap();
    broker.close().await.unwrap();
}

#[tokio::test]
async fn delete_records_moves_the_log_start_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path()).await;
    broker
        .create_topic("t", common::small_topic(2, 4096))
        .unwrap();
    for i in 0..30 {
        let value = format!("{i}-{}", "x".repeat(300));
        common::append(&broker, "t", 1, &[("k", &value, 1_000)]).await;
    }
    assert_eq!(broker.delete_records("t", 1, Some(12)).await.unwrap(), 12);
    assert!(matches!(
        broker.delete_records("t", 1, Some(31)).await,
        Err(Error::OffsetOutOfRange { offset: 31, .. })
    ));
    assert!(matches!(
        broker.delete_records("t", 2, None).await,
        Err(Error::UnknownPartition { partition: 2, .. })
    ));
    broker.close().await.unwrap();
    let broker = common::open(dir.path()).await;
    let log = common::log_of(&broker, "t", 1);
    assert_eq!(log.log_start_offset(), 12);
    assert_eq!(common::read_all(&log, 12).unwrap()[0].offset, 12);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_deleted_group_is_gone_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path()).await;
    broker
        .create_topic("t", common::small_topic(2, 1 << 20))
        .unwrap();
    let offsets = [
        (TopicPartition::new("t", 0), 3),
        (TopicPartition::new("t", 1), 5),
    ];
    broker.commit_offsets("g", &offsets).await.unwrap();
    broker.commit_offsets("kept", &offsets[..1]).await.unwrap();
    assert_eq!(broker.delete_group("g").await.unwrap(), 2);
    assert_eq!(broker.list_groups(), ["kept"]);
    assert!(matches!(
        broker.delete_group("g").await,
        Err(Error::UnknownGroup(_))
    ));
    broker.close().await.unwrap();
    let broker = common::open(dir.path()).await;
    assert_eq!(broker.list_groups(), ["kept"]);
    assert_eq!(broker.committed_offset("g", &offsets[0].0), None);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn commit_metadata_is_kept_with_its_offset_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path()).await;
    broker
        .create_topic("t", common::small_topic(2, 1 << 20))
        .unwrap();
    let (p0, p1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    broker
        .commit_offsets_with_metadata(
            "g",
            &[
                (
                    p0.clone(),
                    4,
                    CommitDetails {
                        metadata: Some("task 0_0 at 1700".into()),
                        leader_epoch: Some(2),
                    },
                ),
                (p1.clone(), 9, CommitDetails::default()),
            ],
        )
        .await
        .unwrap();
    broker.close().await.unwrap();
    let broker = common::open(dir.path()).await;
    let committed = broker.committed("g", &p0).unwrap();
    assert_eq!(
        (
            committed.offset,
            committed.metadata.as_deref(),
            committed.leader_epoch
        ),
        (4, Some("task 0_0 at 1700"), Some(2))
    );
    let committed = broker.committed("g", &p1).unwrap();
    assert_eq!((committed.metadata, committed.leader_epoch), (None, None));
    // A commit without metadata replaces the old note.
    broker
        .commit_offsets("g", &[(p0.clone(), 5)])
        .await
        .unwrap();
    assert_eq!(broker.committed("g", &p0).unwrap().metadata, None);
    broker.close().await.unwrap();
}
