//! The runtime against a real broker under both guarantees: tasks per partition, commits,
//! restarts, validation.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use logbrook_core::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicConfig,
};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{ProcessingGuarantee, Produced, StreamsApp, StreamsBuilder, StreamsConfig};
use tokio_util::sync::CancellationToken;

fn topology() -> logbrook_streams::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, u64>("orders", Str, Json::new())
        .filter(|_, amount| *amount >= 10)
        .map_values(|amount| amount * 100)
        .to_with("big-orders-cents", Produced::with(Str, Json::new()));
    builder.build().unwrap()
}

async fn read_values(broker: &Broker, topic: &str, expected: usize) -> Vec<(String, u64)> {
    let mut consumer = Consumer::new(
        broker.clone(),
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    );
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while out.len() < expected {
        let records = consumer.poll(Duration::from_secs(10)).await.unwrap();
        assert!(
            !records.is_empty(),
            "only {} of {expected} outputs arrived",
            out.len()
        );
        for r in records {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let value: u64 = serde_json::from_slice(&r.value.unwrap()).unwrap();
            out.push((key, value));
        }
    }
    // Nothing more than expected.
    assert!(
        consumer
            .poll(Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "unexpected extra outputs"
    );
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_app_processes_every_partition_commits_and_resumes_after_a_restart() {
    let config = StreamsConfig::new("orders-app");
    assert_eq!(
        config.processing_guarantee,
        ProcessingGuarantee::ExactlyOnce
    );
    restart_scenario(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_least_once_app_on_its_own_worker_threads_resumes_after_a_restart() {
    let config = StreamsConfig {
        processing_guarantee: ProcessingGuarantee::AtLeastOnce,
        worker_threads: Some(2),
        ..StreamsConfig::new("orders-app")
    };
    restart_scenario(config).await;
}

async fn restart_scenario(config: StreamsConfig) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(BrokerConfig::new(dir.path()))
        .await
        .unwrap();
    for topic in ["orders", "big-orders-cents"] {
        broker
            .create_topic(
                topic,
                TopicConfig {
                    partitions: 3,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
    }
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    for i in 0..60u64 {
        let record =
            ProducerRecord::new("orders", i.to_string()).with_key(format!("customer-{}", i % 7));
        producer.send(record).await.unwrap();
    }
    producer.flush().await.unwrap();

    let shutdown = CancellationToken::new();
    let app = StreamsApp::new(broker.clone(), topology(), config.clone()).unwrap();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let outputs = read_values(&broker, "big-orders-cents", 50).await;
    assert_eq!(outputs.len(), 50);
    assert!(
        outputs
            .iter()
            .all(|(_, cents)| cents % 100 == 0 && *cents >= 1000)
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let lag: u64 = broker
        .describe_group("orders-app")
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.lag)
        .sum();
    assert_eq!(lag, 0, "a clean stop commits everything processed");

    // New input after a restart is processed once; old input is not reprocessed.
    for i in 100..105u64 {
        producer
            .send(ProducerRecord::new("orders", i.to_string()).with_key("late"))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let shutdown = CancellationToken::new();
    let app = StreamsApp::new(broker.clone(), topology(), config.clone()).unwrap();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let outputs = read_values(&broker, "big-orders-cents", 55).await;
    assert_eq!(outputs.iter().filter(|(k, _)| k == "late").count(), 5);
    shutdown.cancel();
    running.await.unwrap().unwrap();
    broker.close().await.unwrap();
}

#[tokio::test]
async fn missing_topics_and_unequal_partition_counts_are_rejected_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(BrokerConfig::new(dir.path()))
        .await
        .unwrap();
    let err = StreamsApp::new(broker.clone(), topology(), StreamsConfig::new("a")).unwrap_err();
    assert!(
        err.to_string()
            .contains("source topic \"orders\" does not exist"),
        "{err}"
    );
    broker
        .create_topic("orders", TopicConfig::default())
        .unwrap();
    let err = StreamsApp::new(broker.clone(), topology(), StreamsConfig::new("a")).unwrap_err();
    assert!(
        err.to_string()
            .contains("output topic \"big-orders-cents\" does not exist"),
        "{err}"
    );

    broker
        .create_topic(
            "other",
            TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let builder = StreamsBuilder::new();
    let a = builder.stream_with::<String, String>("orders", Str, Str);
    let b = builder.stream_with::<String, String>("other", Str, Str);
    a.merge(&b);
    let err = StreamsApp::new(
        broker.clone(),
        builder.build().unwrap(),
        StreamsConfig::new("a"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not co-partitioned"), "{err}");
    broker.close().await.unwrap();
}
