//! Producer batching and partitioning, consumer waking, seeking and group commits.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::open;
use logbrook_core::{
    Consumer, ConsumerConfig, FlushPolicy, OffsetReset, Partitioner, Producer, ProducerConfig,
    ProducerRecord, ResetTarget, SeekTo, TopicConfig, TopicPartition, partition_for_key,
};

fn earliest(group: Option<&str>) -> ConsumerConfig {
    ConsumerConfig {
        group_id: group.map(str::to_string),
        auto_offset_reset: OffsetReset::Earliest,
        max_poll_records: 100_000,
        ..ConsumerConfig::default()
    }
}

/// A fresh data dir with topic `name` (flush always); keep the dir alive as long as the broker.
async fn broker_with_topic(
    name: &str,
    partitions: u32,
) -> (tempfile::TempDir, logbrook_core::Broker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker
        .create_topic(
            name,
            TopicConfig {
                partitions,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    (dir, broker)
}

async fn drain(consumer: &mut Consumer, expected: usize) -> Vec<logbrook_core::ConsumerRecord> {
    let mut out = Vec::new();
    while out.len() < expected {
        let batch = consumer.poll(Duration::from_secs(5)).await.unwrap();
        assert!(
            !batch.is_empty(),
            "timed out after {} of {expected} records",
            out.len()
        );
        out.extend(batch);
    }
    out
}

#[tokio::test]
async fn keyed_records_land_where_kafka_puts_them_and_keep_per_key_order() {
    let (_dir, broker) = broker_with_topic("t", 4).await;
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let mut deliveries = Vec::new();
    for i in 0..400 {
        let key = format!("user-{}", i % 13);
        let record = ProducerRecord::new("t", format!("{i}"))
            .with_key(key.clone())
            .with_header("seq", i.to_string());
        deliveries.push((key, producer.send(record).await.unwrap()));
    }
    for (key, delivery) in deliveries {
        let meta = delivery.await.unwrap();
        assert_eq!(
            meta.partition,
            partition_for_key(key.as_bytes(), 4),
            "{key}"
        );
    }
    let mut consumer = Consumer::new(broker.clone(), earliest(None));
    consumer.subscribe(&["t"]).unwrap();
    let records = drain(&mut consumer, 400).await;
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        assert_eq!(r.partition, partition_for_key(key.as_bytes(), 4));
        assert_eq!(r.headers[0].key, "seq");
        per_key.entry(key).or_default().push(
            String::from_utf8_lossy(r.value.as_deref().unwrap())
                .parse()
                .unwrap(),
        );
    }
    assert_eq!(per_key.len(), 13);
    for seqs in per_key.values() {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "per-key order kept: {seqs:?}"
        );
    }
    drop(consumer);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn keyless_records_spread_over_partitions_sticky_and_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 3,
                flush: FlushPolicy::Never,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    for partitioner in [Partitioner::Default, Partitioner::RoundRobin] {
        let config = ProducerConfig {
            batch_size: 1024,
            partitioner,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(broker.clone(), config);
        let mut partitions = HashSet::new();
        let mut deliveries = Vec::new();
        for i in 0..300 {
            deliveries.push(
                producer
                    .send(ProducerRecord::new("t", format!("value-{i:040}")))
                    .await
                    .unwrap(),
            );
        }
        for d in deliveries {
            partitions.insert(d.await.unwrap().partition);
        }
        assert_eq!(partitions.len(), 3, "{partitioner:?} used {partitions:?}");
    }
    broker.close().await.unwrap();
}

#[tokio::test]
async fn linger_sends_a_partial_batch_without_flush() {
    let (_dir, broker) = broker_with_topic("t", 1).await;
    let producer = Producer::new(
        broker.clone(),
        ProducerConfig {
            linger: Duration::from_millis(20),
            ..ProducerConfig::default()
        },
    );
    let delivery = producer
        .send(ProducerRecord::new("t", "only one"))
        .await
        .unwrap();
    let meta = tokio::time::timeout(Duration::from_secs(5), delivery)
        .await
        .expect("linger elapsed")
        .unwrap();
    assert_eq!(meta.offset, 0);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_waiting_consumer_wakes_when_data_arrives() {
    let (_dir, broker) = broker_with_topic("t", 1).await;
    let mut consumer = Consumer::new(broker.clone(), ConsumerConfig::default());
    consumer.subscribe(&["t"]).unwrap();
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let started = std::time::Instant::now();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        producer
            .send(ProducerRecord::new("t", "late"))
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let records = consumer.poll(Duration::from_secs(30)).await.unwrap();
    assert_eq!(records.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woke on data, not on the timeout"
    );
    send.await.unwrap();
    // A poll with nothing new returns empty at its timeout.
    assert!(
        consumer
            .poll(Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    drop(consumer);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn seeking_to_offsets_timestamps_and_ends() {
    let (_dir, broker) = broker_with_topic("t", 1).await;
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    for i in 0..100i64 {
        producer
            .send(ProducerRecord::new("t", i.to_string()).with_timestamp(10_000 + i * 100))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let tp = TopicPartition::new("t", 0);
    let mut consumer = Consumer::new(broker.clone(), ConsumerConfig::default());
    consumer.assign(vec![tp.clone()]).unwrap();
    assert_eq!(
        consumer
            .seek(&tp, SeekTo::Timestamp(10_000 + 42 * 100 - 50))
            .unwrap(),
        42
    );
    assert_eq!(
        consumer.poll(Duration::from_secs(1)).await.unwrap()[0].offset,
        42
    );
    assert_eq!(consumer.seek(&tp, SeekTo::Latest).unwrap(), 100);
    assert_eq!(consumer.seek(&tp, SeekTo::Offset(7)).unwrap(), 7);
    assert_eq!(
        consumer.poll(Duration::from_secs(1)).await.unwrap()[0].offset,
        7
    );
    assert_eq!(consumer.seek(&tp, SeekTo::Earliest).unwrap(), 0);
    assert_eq!(consumer.position(&tp), Some(0));
    broker.close().await.unwrap();
}

#[tokio::test]
async fn groups_commit_durably_read_independently_and_can_be_reset() {
    let (dir, broker) = broker_with_topic("t", 2).await;
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    for i in 0..50 {
        producer
            .send(ProducerRecord::new("t", i.to_string()).with_partition(i % 2))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();

    let mut a = Consumer::new(broker.clone(), earliest(Some("a")));
    a.subscribe(&["t"]).unwrap();
    assert_eq!(drain(&mut a, 50).await.len(), 50);
    a.commit().await.unwrap();
    drop(a);
    let mut b = Consumer::new(broker.clone(), earliest(Some("b")));
    b.subscribe(&["t"]).unwrap();
    assert_eq!(
        drain(&mut b, 50).await.len(),
        50,
        "group b reads everything on its own"
    );
    drop(b);
    broker.close().await.unwrap();

    let broker = open(dir.path()).await;
    assert_eq!(broker.list_groups(), vec!["a".to_string()]);
    let description = broker.describe_group("a").unwrap();
    assert_eq!(
        description
            .partitions
            .iter()
            .map(|p| (p.committed, p.lag))
            .collect::<Vec<_>>(),
        vec![(Some(25), 0), (Some(25), 0)]
    );
    let mut a = Consumer::new(broker.clone(), earliest(Some("a")));
    a.subscribe(&["t"]).unwrap();
    assert!(
        a.poll(Duration::from_millis(100)).await.unwrap().is_empty(),
        "committed offsets survive a reopen"
    );
    drop(a);

    let dry = broker
        .reset_group_offsets("a", "t", ResetTarget::Earliest, true)
        .await
        .unwrap();
    assert_eq!(
        dry.iter().map(|c| (c.previous, c.new)).collect::<Vec<_>>(),
        vec![(Some(25), 0), (Some(25), 0)]
    );
    assert_eq!(
        broker.committed_offset("a", &TopicPartition::new("t", 0)),
        Some(25),
        "dry run changes nothing"
    );
    broker
        .reset_group_offsets("a", "t", ResetTarget::Offset(20), false)
        .await
        .unwrap();
    let mut a = Consumer::new(broker.clone(), earliest(Some("a")));
    a.subscribe(&["t"]).unwrap();
    assert_eq!(
        drain(&mut a, 10).await.len(),
        10,
        "replays 5 per partition after the reset"
    );
    drop(a);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn members_of_a_group_share_partitions_and_take_over_when_one_leaves() {
    let (_dir, broker) = broker_with_topic("t", 4).await;
    let mut first = Consumer::new(broker.clone(), earliest(Some("g")));
    first.subscribe(&["t"]).unwrap();
    assert_eq!(first.assignment().len(), 4);
    let mut second = Consumer::new(broker.clone(), earliest(Some("g")));
    second.subscribe(&["t"]).unwrap();
    first.poll(Duration::from_millis(10)).await.unwrap();
    let (a, b) = (first.assignment(), second.assignment());
    assert_eq!((a.len(), b.len()), (2, 2));
    assert!(a.iter().all(|tp| !b.contains(tp)), "disjoint: {a:?} {b:?}");
    assert!(matches!(
        broker
            .reset_group_offsets("g", "t", ResetTarget::Earliest, false)
            .await,
        Err(logbrook_core::Error::GroupNotEmpty { members: 2, .. })
    ));
    drop(second);
    first.poll(Duration::from_millis(10)).await.unwrap();
    assert_eq!(
        first.assignment().len(),
        4,
        "the remaining member takes every partition"
    );
    drop(first);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_consumer_is_a_stream_of_records() {
    use futures::StreamExt;
    let (_dir, broker) = broker_with_topic("t", 1).await;
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    for i in 0..5 {
        producer
            .send(ProducerRecord::new("t", format!("v{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let mut consumer = Consumer::new(broker.clone(), earliest(None));
    consumer.subscribe(&["t"]).unwrap();
    let values: Vec<String> = consumer
        .stream()
        .take(5)
        .map(|r| String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap())
        .collect()
        .await;
    assert_eq!(values, vec!["v0", "v1", "v2", "v3", "v4"]);
    drop(consumer);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_fetch_size_smaller_than_a_batch_still_returns_whole_records() {
    let (_dir, broker) = broker_with_topic("t", 1).await;
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    for i in 0..3 {
        producer
            .send(ProducerRecord::new(
                "t",
                format!("value-{i}-{}", "z".repeat(500)),
            ))
            .await
            .unwrap();
        producer.flush().await.unwrap();
    }
    let mut consumer = Consumer::new(
        broker.clone(),
        ConsumerConfig {
            fetch_max_bytes: 1,
            ..earliest(None)
        },
    );
    consumer.subscribe(&["t"]).unwrap();
    let records = drain(&mut consumer, 3).await;
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    drop(consumer);
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_producer_keeps_working_after_its_topic_is_deleted_and_recreated() {
    let (_dir, broker) = broker_with_topic("t", 1).await;
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    producer
        .send(ProducerRecord::new("t", "old"))
        .await
        .unwrap()
        .await
        .unwrap();
    broker.delete_topic("t").await.unwrap();
    assert!(matches!(
        producer.send(ProducerRecord::new("t", "nowhere")).await,
        Err(logbrook_core::Error::UnknownTopic(_))
    ));
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let meta = producer
        .send(ProducerRecord::new("t", "new").with_partition(1))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((meta.partition, meta.offset), (1, 0));
    broker.close().await.unwrap();
}

#[tokio::test]
async fn batches_stay_under_the_topics_max_message_bytes_and_a_larger_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let config = TopicConfig {
        max_message_bytes: 2_000,
        ..TopicConfig::default()
    };
    broker.create_topic("small", config).unwrap();
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let mut deliveries = Vec::new();
    for i in 0..300u32 {
        // Headers make the producer's size estimate loose: batches must still fit.
        let record = ProducerRecord::new("small", format!("{i:0>90}"))
            .with_key(format!("key-{i}"))
            .with_header("h1", "x")
            .with_header("h2", "y");
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.expect("every record fits in some batch");
    }
    let too_large = producer
        .send(ProducerRecord::new("small", vec![b'x'; 3_000]))
        .await
        .unwrap()
        .await
        .expect_err("a record larger than max.message.bytes is refused");
    assert!(
        too_large.to_string().contains("max.message.bytes (2000)")
            && too_large.to_string().contains("\"small\""),
        "{too_large}"
    );
    let mut consumer = Consumer::new(broker.clone(), earliest(None));
    consumer
        .assign(vec![TopicPartition::new("small", 0)])
        .unwrap();
    let records = drain(&mut consumer, 300).await;
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..300u32).map(|i| format!("{i:0>90}")).collect();
    assert_eq!(values, expected);
    broker.close().await.unwrap();
}
