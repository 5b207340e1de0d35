//! The processor API (stores, stream-time and wall-clock punctuation, close) and the handling
//! of panics in user code.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use logbrook_core::{Broker, Consumer, ConsumerConfig, OffsetReset, TopicConfig};
use logbrook_streams::processor::{Processor, ProcessorContext, PunctuationType};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    OnError, Produced, Record, Result, StreamsApp, StreamsBuilder, StreamsConfig,
    TopologyTestDriver,
};
use tokio_util::sync::CancellationToken;

/// Sums values per key in a store; every wall-clock minute forwards and clears the sums; on
/// close forwards a marker.
struct MinuteSums;

impl Processor<String, u64> for MinuteSums {
    type KeyOut = String;
    type ValueOut = u64;

    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, u64>) -> Result<()> {
        ctx.schedule(Duration::from_secs(60), PunctuationType::WallClockTime);
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, u64>,
        record: Record<String, u64>,
    ) -> Result<()> {
        let mut sums = ctx.store::<String, u64>("sums")?;
        let sum = sums.get(&record.key)?.unwrap_or(0) + record.value;
        sums.put(&record.key, &sum)
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, u64>,
        kind: PunctuationType,
        timestamp: i64,
    ) -> Result<()> {
        assert_eq!(kind, PunctuationType::WallClockTime);
        let sums = ctx.store::<String, u64>("sums")?.all()?;
        for (key, sum) in sums {
            ctx.store::<String, u64>("sums")?.delete(&key)?;
            ctx.forward(Record::new(key, sum, timestamp))?;
        }
        Ok(())
    }

    fn close(&mut self, ctx: &mut ProcessorContext<'_, String, u64>) -> Result<()> {
        let now = ctx.stream_time();
        ctx.forward(Record::new("closed".into(), 0, now))
    }
}

fn sums_topology() -> logbrook_streams::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, u64>("amounts", Str, Json::new())
        .process(|| MinuteSums, &["sums"])
        .to_with("sums-per-minute", Produced::with(Str, Json::new()));
    builder.build().unwrap()
}

#[test]
fn wall_clock_punctuation_fires_when_the_virtual_clock_advances() {
    let mut driver = TopologyTestDriver::new(&sums_topology()).unwrap();
    let input = driver.input_topic::<String, u64>("amounts", Str, Json::new());
    let output = driver.output_topic::<String, u64>("sums-per-minute", Str, Json::new());
    driver.pipe(&input, "a".into(), 5, 1).unwrap();
    driver.pipe(&input, "a".into(), 7, 2).unwrap();
    driver.pipe(&input, "b".into(), 1, 3).unwrap();
    driver.advance_wall_clock(Duration::from_secs(59)).unwrap();
    assert!(driver.read_all(&output).unwrap().is_empty(), "not due yet");
    let a_sum = driver
        .store_value::<String, u64>("sums", &"a".to_string(), &Json::new(), &Json::new())
        .unwrap();
    assert_eq!(a_sum, Some(12), "summed in the store until the punctuation");

    driver.advance_wall_clock(Duration::from_secs(1)).unwrap();
    let out: Vec<_> = driver
        .read_all(&output)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    assert_eq!(out, [("a".into(), 12, 60_000), ("b".into(), 1, 60_000)]);
    assert!(driver.store("sums").unwrap().entries().unwrap().is_empty());

    // Three minutes at once fire once, at the new time.
    driver.pipe(&input, "c".into(), 2, 4).unwrap();
    driver.advance_wall_clock(Duration::from_secs(180)).unwrap();
    let out = driver.read_all(&output).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].value, out[0].timestamp), (2, 240_000));
}

#[test]
fn a_store_not_named_for_the_processor_is_an_error() {
    struct Stray;
    impl Processor<String, u64> for Stray {
        type KeyOut = String;
        type ValueOut = u64;
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, u64>,
            _: Record<String, u64>,
        ) -> Result<()> {
            ctx.store::<String, u64>("elsewhere").map(drop)
        }
    }
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, u64>("amounts", Str, Json::new())
        .process(|| Stray, &[])
        .to_with("out", Produced::with(Str, Json::new()));
    let mut driver = TopologyTestDriver::new(&builder.build().unwrap()).unwrap();
    let input = driver.input_topic::<String, u64>("amounts", Str, Json::new());
    let err = driver.pipe(&input, "a".into(), 1, 1).unwrap_err();
    assert!(err.to_string().contains("elsewhere"), "{err}");
}

fn panicky_topology() -> logbrook_streams::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, u64>("numbers", Str, Json::new())
        .map_values(|n| {
            assert!(n != 13, "unlucky number");
            n * 10
        })
        .to_with("tens", Produced::with(Str, Json::new()));
    builder.build().unwrap()
}

#[test]
fn panics_in_user_code_fail_skip_or_go_to_the_dead_letter_topic() {
    let topology = panicky_topology();
    let mut failing = TopologyTestDriver::new(&topology).unwrap();
    let input = failing.input_topic::<String, u64>("numbers", Str, Json::new());
    let err = failing.pipe(&input, "k".into(), 13, 1).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("numbers-0@0") && message.contains("unlucky number"),
        "{message}"
    );

    let mut skipping =
        TopologyTestDriver::with_error_policies(&topology, OnError::Fail, OnError::LogAndSkip)
            .unwrap();
    let output = skipping.output_topic::<String, u64>("tens", Str, Json::new());
    for n in [1, 13, 2] {
        skipping.pipe(&input, "k".into(), n, 1).unwrap();
    }
    let values: Vec<u64> = skipping
        .read_all(&output)
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(values, [10, 20]);
    assert_eq!(skipping.skipped_records(), 1);

    let mut dead_letter = TopologyTestDriver::with_error_policies(
        &topology,
        OnError::Fail,
        OnError::DeadLetter("numbers-dlq".into()),
    )
    .unwrap();
    dead_letter.pipe(&input, "k".into(), 13, 1).unwrap();
    let dlq = dead_letter.read_raw("numbers-dlq");
    assert_eq!(dlq.len(), 1);
    let (_, value, headers) = &dlq[0];
    assert_eq!(value.as_deref(), Some(&b"13"[..]));
    let message = headers
        .iter()
        .find(|h| h.key == "logbrook.error.message")
        .and_then(|h| h.value.clone())
        .unwrap();
    assert!(String::from_utf8_lossy(&message).contains("unlucky number"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_restores_processor_stores_and_closes_processors_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).await.unwrap();
    for topic in ["amounts", "sums-per-minute"] {
        broker.create_topic(topic, TopicConfig::default()).unwrap();
    }
    let producer = logbrook_core::Producer::new(broker.clone(), Default::default());
    for (key, amount) in [("a", 5), ("a", 7)] {
        let record =
            logbrook_core::ProducerRecord::new("amounts", amount.to_string()).with_key(key);
        producer.send(record).await.unwrap();
    }
    producer.flush().await.unwrap();
    for _ in 0..2 {
        let app =
            StreamsApp::new(broker.clone(), sums_topology(), StreamsConfig::new("sums")).unwrap();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(app.run(shutdown.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while broker.committed_offset("sums", &logbrook_core::TopicPartition::new("amounts", 0))
            != Some(2)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "input never committed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        running.await.unwrap().unwrap();
    }
    // The sums survived the restart in the store (restored from its changelog or local file).
    let state = dir.path().join("streams-state/sums/task-0/sums.redb");
    assert!(state.exists());
    let mut consumer = Consumer::new(
        broker.clone(),
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    );
    consumer.subscribe(&["sums-per-minute"]).unwrap();
    let records = consumer.poll(Duration::from_secs(5)).await.unwrap();
    let keys: Vec<_> = records
        .iter()
        .map(|r| String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(keys, ["closed", "closed"], "close ran once per run");
    // The changelog's latest record for "a" holds the sum (writes between commits are logged
    // once, with their latest value).
    let log = broker
        .topic("sums-sums-changelog")
        .unwrap()
        .partition(0)
        .unwrap()
        .log()
        .clone();
    let mut records = Vec::new();
    log.read(0, 1 << 20)
        .unwrap()
        .records(0, &mut records)
        .unwrap();
    let last = records.last().unwrap();
    assert_eq!(last.key.as_deref(), Some(&b"\"a\""[..]));
    assert_eq!(last.value.as_deref(), Some(&b"12"[..]));
    broker.close().await.unwrap();
}
