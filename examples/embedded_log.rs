//! The log engine embedded in a program: create a topic, produce keyed records, consume them as a
//! consumer group, then replay from a point in time.
//!
//! Run: `cargo run -p logbrook-examples --example embedded_log`

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use logbrook_core::{
    Broker, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    SeekTo, TopicConfig,
};

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::open(dir.path()).await?;
    broker.create_topic(
        "orders",
        TopicConfig {
            partitions: 3,
            ..TopicConfig::default()
        },
    )?;

    // Produce: records with the same key go to the same partition, in order.
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let start = logbrook_core::now_ms();
    for i in 0..30 {
        let customer = format!("customer-{}", i % 4);
        let record = ProducerRecord::new("orders", format!("{{\"order\":{i}}}"))
            .with_key(customer)
            .with_timestamp(start + i * 1_000);
        producer.send(record).await?;
    }
    producer.flush().await?; // every record acknowledged (fsynced: the default flush policy)

    // Consume as a group, committing what was processed.
    let config = ConsumerConfig {
        group_id: Some("billing".into()),
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(broker.clone(), config);
    consumer.subscribe(&["orders"])?;
    let mut seen = 0;
    while seen < 30 {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        seen += records.len();
    }
    consumer.commit().await?;
    println!(
        "billing processed {seen} orders; lag now {:?}",
        broker
            .describe_group("billing")?
            .partitions
            .iter()
            .map(|p| p.lag)
            .sum::<u64>()
    );

    // Replay: everything from 20 seconds after the first order, as a stream.
    consumer.seek_all(SeekTo::Timestamp(start + 20_000))?;
    let replayed: Vec<_> = consumer.stream().take(10).collect().await;
    println!(
        "replayed {} orders from t+20s",
        replayed.into_iter().collect::<Result<Vec<_>, _>>()?.len()
    );
    drop(consumer);
    broker.close().await?;
    Ok(())
}
