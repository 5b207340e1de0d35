//! Windows close when event time passes them, not when their key gets another record; a
//! bounded run closes every window at the end; late drops are counted per operator and exported.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    CancellationToken, Produced, StreamsApp, StreamsBuilder, StreamsConfig, TimeWindows, Topology,
    TopologyTestDriver, Windowed,
};

/// Counts per key in 10 s tumbling windows, final results only; records valued "skip" are
/// filtered out before the window.
fn counts() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, String>("events", Str, Str)
        .filter(|_, v| v != "skip")
        .group_by_key()
        .windowed_by(TimeWindows::of(Duration::from_secs(10)))
        .count("counts")
        .suppress_until_window_closes("counts-final")
        .to_with("out", Produced::with(Json::new(), Json::new()));
    builder.build().unwrap()
}

fn finals(driver: &mut TopologyTestDriver) -> Vec<(String, i64, u64, i64)> {
    let out = driver.output_topic::<Windowed<String>, u64>("out", Json::new(), Json::new());
    driver
        .read_all(&out)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.key, r.key.start, r.value, r.timestamp))
        .collect()
}

#[test]
fn a_window_closes_when_event_time_passes_it_without_a_record_of_its_own() {
    let mut driver = TopologyTestDriver::new(&counts()).unwrap();
    let events = driver.input_topic::<String, String>("events", Str, Str);
    driver.pipe(&events, "a".into(), "x".into(), 1_000).unwrap();
    driver.pipe(&events, "a".into(), "y".into(), 2_000).unwrap();
    assert!(finals(&mut driver).is_empty(), "the window is still open");
    // A record that never reaches the window operator still moves event time.
    driver
        .pipe(&events, "b".into(), "skip".into(), 10_000)
        .unwrap();
    assert_eq!(
        finals(&mut driver),
        [("a".to_string(), 0, 2, 9_999)],
        "the closed window's result carries its last millisecond"
    );
    driver
        .pipe(&events, "c".into(), "z".into(), 15_000)
        .unwrap();
    driver.advance_stream_time(20_000).unwrap();
    assert_eq!(finals(&mut driver), [("c".to_string(), 10_000, 1, 19_999)]);
}

#[test]
fn the_end_of_input_closes_every_window() {
    let mut driver = TopologyTestDriver::new(&counts()).unwrap();
    let events = driver.input_topic::<String, String>("events", Str, Str);
    driver.pipe(&events, "a".into(), "x".into(), 1_000).unwrap();
    driver.pipe(&events, "b".into(), "x".into(), 3_000).unwrap();
    driver.end_input().unwrap();
    assert_eq!(
        finals(&mut driver),
        [
            ("a".to_string(), 0, 1, 9_999),
            ("b".to_string(), 0, 1, 9_999)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_closes_every_window_and_counts_late_drops_per_operator() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).await.unwrap();
    for topic in ["events", "out"] {
        broker.create_topic(topic, TopicConfig::default()).unwrap();
    }
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    // In order but for one record 25 s behind (late: its window closed 15 s earlier).
    for (key, ts) in [
        ("a", 1_000),
        ("a", 5_000),
        ("b", 30_000),
        ("a", 5_500),
        ("b", 31_000),
    ] {
        let record = ProducerRecord::new("events", "v")
            .with_key(key)
            .with_timestamp(ts);
        producer.send(record).await.unwrap();
    }
    producer.flush().await.unwrap();
    let app = StreamsApp::new(broker.clone(), counts(), StreamsConfig::new("closing")).unwrap();
    let metrics = app.metrics();
    app.run_to_end(CancellationToken::new()).await.unwrap();

    let log = broker
        .topic("out")
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
    let mut finals: Vec<(String, i64, u64)> = records
        .iter()
        .map(|r| {
            let window: Windowed<String> = serde_json::from_slice(r.key.as_ref().unwrap()).unwrap();
            let count: u64 = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
            (window.key, window.start, count)
        })
        .collect();
    finals.sort();
    assert_eq!(
        finals,
        [("a".to_string(), 0, 2), ("b".to_string(), 30_000, 2)],
        "the last window closed at the end of the input"
    );
    assert_eq!(metrics.late_records_dropped(), 1);
    let task = metrics.task(0);
    assert_eq!(task.late_records_by_operator()["counts"], 1);
    assert_eq!(task.records_in(), 5);
    assert!(task.commits() >= 1);
    assert_eq!(metrics.lag(), 0);
    assert_eq!(task.event_time(), i64::MAX, "the end of input is infinity");
    let text = metrics.render_prometheus();
    assert!(
        text.contains(
            "logbrook_streams_late_records_dropped_total{application=\"closing\",task=\"0\",operator=\"counts\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("logbrook_streams_lag_records{application=\"closing\",task=\"0\",partition=\"events-0\"} 0"), "{text}");
    broker.close().await.unwrap();
}

/// Re-keyed counts per 10 s window (through a repartition topic), final results only.
fn rekeyed_counts() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, String>("events", Str, Str)
        .group_by(|_, v| v.clone())
        .windowed_by(TimeWindows::of(Duration::from_secs(10)))
        .count("counts")
        .suppress_until_window_closes("counts-final")
        .to_with("out", Produced::with(Json::new(), Json::new()));
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_bounded_run_over_more_input_goes_on_from_real_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).await.unwrap();
    for topic in ["events", "out"] {
        let config = TopicConfig {
            partitions: 2,
            ..TopicConfig::default()
        };
        broker.create_topic(topic, config).unwrap();
    }
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let send = |from: i64| {
        let producer = producer.clone();
        async move {
            for i in 0..40 {
                let record = ProducerRecord::new("events", if i % 2 == 0 { "x" } else { "y" })
                    .with_key(format!("k{i}"))
                    .with_timestamp(from + i * 500);
                producer.send(record).await.unwrap();
            }
            producer.flush().await.unwrap();
        }
    };
    let mut late = 0;
    for from in [0, 20_000] {
        send(from).await;
        let app = StreamsApp::new(
            broker.clone(),
            rekeyed_counts(),
            StreamsConfig::new("twice"),
        )
        .unwrap();
        let metrics = app.metrics();
        app.run_to_end(CancellationToken::new()).await.unwrap();
        late += metrics.late_records_dropped();
    }
    assert_eq!(late, 0, "the second run did not start at infinity");
    let mut finals = Vec::new();
    for partition in broker.topic("out").unwrap().partitions() {
        partition
            .log()
            .for_each_record(0, |r| {
                let window: Windowed<String> =
                    serde_json::from_slice(r.key.as_ref().unwrap()).unwrap();
                let count: u64 = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
                finals.push((window.start, window.key, count));
            })
            .unwrap();
    }
    finals.sort();
    let expected: Vec<(i64, String, u64)> = [0, 10_000, 20_000, 30_000]
        .into_iter()
        .flat_map(|start| [(start, "x".to_string(), 10), (start, "y".to_string(), 10)])
        .collect();
    assert_eq!(finals, expected);
    broker.close().await.unwrap();
}
