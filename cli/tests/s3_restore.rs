//! A topic archived by s3-sink and restored by s3-source into a topic that does not exist yet,
//! through `logbrook connect run` with default converters: the new topic is created with the
//! archive's partitions and equals the original record for record (partition and order in it,
//! key and value bytes, headers, timestamp; not offsets, as the restore's transaction markers
//! take offsets too). A restore into an existing topic with too few partitions
//! fails up front, saying how many are needed. Needs `LOGBROOK_TEST_S3_*`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Logbrook;
use common::connect::{Worker, connector_file, wait_for};
use common::s3::Bucket;
use logbrook_core::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, Header, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicConfig, TopicPartition,
};

const PARTITIONS: u32 = 3;
const PER_PARTITION: u64 = 400;

/// (partition, timestamp, key, value, headers) of every record, in partition and offset order.
type Row = (u32, i64, Option<Bytes>, Option<Bytes>, Vec<Header>);

async fn rows(broker: &Broker, topic: &str) -> Vec<Row> {
    let partitions = broker.topic(topic).unwrap().partition_count();
    let mut consumer = Consumer::new(
        broker.clone(),
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    );
    consumer
        .assign(
            (0..partitions)
                .map(|p| TopicPartition::new(topic, p))
                .collect(),
        )
        .unwrap();
    let ends = consumer.end_offsets();
    let mut out = Vec::new();
    while !ends
        .iter()
        .all(|(tp, end)| consumer.position(tp).is_some_and(|p| p >= *end))
    {
        for r in consumer.poll(Duration::from_secs(1)).await.unwrap() {
            out.push((r.partition, r.offset, r));
        }
    }
    out.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    out.into_iter()
        .map(|(partition, _, r)| (partition, r.timestamp, r.key, r.value, r.headers))
        .collect()
}

/// Record `i` of partition `p`: every kind of key, value and header.
fn original(p: u32, i: u64) -> ProducerRecord {
    let binary: Vec<u8> = (0..=255u8).cycle().skip(i as usize).take(20).collect();
    ProducerRecord {
        topic: "orders".into(),
        partition: Some(p),
        key: match i % 4 {
            0 => None,
            1 => Some(Bytes::from(binary.clone())),
            _ => Some(Bytes::from(format!("key-{p}-{i}"))),
        },
        value: match i % 7 {
            0 => None, // a tombstone
            1 => Some(Bytes::from(binary)),
            2 => Some(Bytes::from_static(b"{ \"spaced\" : [1, 2.50, \"x\"] }")),
            3 => Some(Bytes::from(format!("{{\"id\": {i}, \"amount\": 0.0}}"))),
            _ => Some(Bytes::from(format!("order {p}/{i} \u{e9}"))),
        },
        headers: match i % 3 {
            0 => vec![],
            1 => vec![Header {
                key: "trace".into(),
                value: Some(Bytes::from(vec![0, 159, 146, 150])),
            }],
            _ => vec![
                Header {
                    key: "a".into(),
                    value: None,
                },
                Header {
                    key: "a".into(),
                    value: Some(Bytes::from_static(b"second")),
                },
            ],
        },
        timestamp: Some(1_600_000_000_000 + (i as i64) * 1_001 + i64::from(p)),
    }
}

#[test]
fn a_topic_restored_from_s3_into_a_fresh_topic_equals_the_original() {
    let bucket = Bucket::new("restore");
    let lb = Logbrook::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let broker = Broker::open_with(BrokerConfig::new(lb.data_dir()))
            .await
            .unwrap();
        for (topic, partitions) in [("orders", PARTITIONS), ("orders-narrow", 1)] {
            broker
                .create_topic(
                    topic,
                    TopicConfig {
                        partitions,
                        ..TopicConfig::default()
                    },
                )
                .unwrap();
        }
        let producer = Producer::new(broker.clone(), ProducerConfig::default());
        for i in 0..PER_PARTITION {
            for p in 0..PARTITIONS {
                let _ = producer.send(original(p, i)).await.unwrap();
            }
        }
        producer.flush().await.unwrap();
        drop(producer);
        broker.close().await.unwrap();
    });
    // Default converters on both sides: the archive keeps the original bytes.
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            "name = \"archive\"\nconnector = \"s3-sink\"\ntopics = [\"orders\"]\n{}\
             prefix = \"backup\"\nflush_records = 150\nflush_idle_ms = 200\n",
            bucket.connector_keys()
        ),
    );
    let worker = Worker::start(&lb, &[&sink]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let total = u64::from(PARTITIONS) * PER_PARTITION;
    loop {
        let lines: usize = bucket.json_objects().iter().map(|(_, l)| l.len()).sum();
        if lines as u64 == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{lines} of {total} records archived\n{}",
            worker.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let run = worker.stop();
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let source = connector_file(
        &lb,
        "restore.toml",
        &format!(
            "name = \"restore\"\nconnector = \"s3-source\"\ntopic = \"orders-restored\"\n\
             {}prefix = \"backup/orders/\"\nformat = \"json\"\nenvelope = \"record\"\n",
            bucket.connector_keys()
        ),
    );
    let narrow = connector_file(
        &lb,
        "narrow.toml",
        &format!(
            "name = \"narrow\"\nconnector = \"s3-source\"\ntopic = \"orders-narrow\"\n\
             {}prefix = \"backup/orders/\"\nformat = \"json\"\nenvelope = \"record\"\n",
            bucket.connector_keys()
        ),
    );
    // A sink of the restored topic in the same worker, started with it: it must not create
    // the topic first with fewer partitions.
    let out = lb.root().join("restored-out");
    let sink = connector_file(
        &lb,
        "restored-sink.toml",
        &format!(
            "name = \"restored-out\"\nconnector = \"file-sink\"\ntopics = [\"orders-restored\"]\npath = \"{}/\"\n",
            out.display()
        ),
    );
    let worker = Worker::start(&lb, &[&sink, &source, &narrow]);
    let (_, status) = worker.get("/connectors/narrow/status");
    let trace = status["connector"]["trace"].as_str().unwrap_or_default();
    assert!(
        status["connector"]["state"] == "FAILED"
            && trace.contains("\"orders-narrow\" has 1 partition(s)")
            && trace.contains(&format!("at least {PARTITIONS} partitions")),
        "{status}"
    );
    let restored_all =
        format!("logbrook_connect_records_out_total{{connector=\"restore\",task=\"0\"}} {total}\n");
    wait_for("every record restored", 60, || {
        let (_, metrics) = worker.get("/metrics");
        metrics.as_str().unwrap_or_default().contains(&restored_all)
    });
    let run = worker.stop();
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    runtime.block_on(async {
        let broker = Broker::open_with(BrokerConfig::new(lb.data_dir()).read_only())
            .await
            .unwrap();
        let original = rows(&broker, "orders").await;
        let restored = rows(&broker, "orders-restored").await;
        let created = broker.topic("orders-restored").unwrap().partition_count();
        assert_eq!(created, PARTITIONS);
        let untouched = rows(&broker, "orders-narrow").await;
        assert!(untouched.is_empty(), "{untouched:?}");
        assert_eq!(original.len() as u64, total);
        assert_eq!(restored.len(), original.len());
        for (a, b) in original.iter().zip(&restored) {
            assert_eq!(a, b);
        }
        broker.close().await.unwrap();
    });
}
