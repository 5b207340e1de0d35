//! Stateless operators, through the test driver.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{OnError, Produced, StreamsBuilder, TestRecord, TopologyTestDriver};

fn strings() -> Produced<String, String> {
    Produced::with(Str, Str)
}

fn pairs(records: Vec<TestRecord<String, String>>) -> Vec<(String, String)> {
    records.into_iter().map(|r| (r.key, r.value)).collect()
}

#[test]
fn filter_map_and_select_key_transform_records_and_keep_timestamps() {
    let builder = StreamsBuilder::new();
    let input = builder.stream_with::<String, String>("in", Str, Str);
    input
        .filter(|_, v| v.len() > 2)
        .map_values(|v| v.to_uppercase())
        .to_with("upper", strings());
    input
        .filter_not(|_, v| v.len() > 2)
        .to_with("short", strings());
    input.map(|k, v| (v, k)).to_with("swapped", strings());
    input
        .select_key(|_, v| format!("len-{}", v.len()))
        .to_with("by-length", strings());
    input
        .map_values_with_key(|k, v| format!("{k}={v}"))
        .to_with("joined", strings());
    let topology = builder.build().unwrap();

    let mut driver = TopologyTestDriver::new(&topology).unwrap();
    let topic = driver.input_topic("in", Str, Str);
    driver
        .pipe(&topic, "a".to_string(), "hello".to_string(), 100)
        .unwrap();
    driver
        .pipe(&topic, "b".to_string(), "hi".to_string(), 200)
        .unwrap();

    let out = |driver: &mut TopologyTestDriver, name: &str| {
        let topic = driver.output_topic(name, Str, Str);
        driver.read_all::<String, String>(&topic).unwrap()
    };
    let upper = out(&mut driver, "upper");
    assert_eq!(pairs(upper.clone()), vec![("a".into(), "HELLO".into())]);
    assert_eq!(upper[0].timestamp, 100);
    assert_eq!(
        pairs(out(&mut driver, "short")),
        vec![("b".into(), "hi".into())]
    );
    assert_eq!(
        pairs(out(&mut driver, "swapped")),
        vec![("hello".into(), "a".into()), ("hi".into(), "b".into())]
    );
    assert_eq!(
        pairs(out(&mut driver, "by-length")),
        vec![
            ("len-5".into(), "hello".into()),
            ("len-2".into(), "hi".into())
        ]
    );
    assert_eq!(
        pairs(out(&mut driver, "joined")),
        vec![("a".into(), "a=hello".into()), ("b".into(), "b=hi".into())]
    );
}

#[test]
fn flat_map_and_flat_map_values_emit_zero_or_more_records() {
    let builder = StreamsBuilder::new();
    let lines = builder.stream_with::<Option<String>, String>("lines", Str, Str);
    lines
        .flat_map_values(|line| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .to_with("words", Produced::with(Str, Str));
    lines
        .flat_map(|_, line| {
            line.chars()
                .filter(|c| c.is_ascii_digit())
                .map(|c| (c.to_string(), line.clone()))
                .collect::<Vec<_>>()
        })
        .to_with("digits", strings());
    let topology = builder.build().unwrap();
    let mut driver = TopologyTestDriver::new(&topology).unwrap();
    let input = driver.input_topic("lines", Str, Str);
    driver
        .pipe(&input, None, "to be or".to_string(), 1)
        .unwrap();
    driver.pipe(&input, None, "".to_string(), 2).unwrap();
    driver
        .pipe(&input, Some("k".into()), "a1b2".to_string(), 3)
        .unwrap();
    let words = driver.output_topic("words", Str, Str);
    let words: Vec<(Option<String>, String)> = driver
        .read_all(&words)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        words,
        vec![
            (None, "to".into()),
            (None, "be".into()),
            (None, "or".into()),
            (Some("k".into()), "a1b2".into())
        ]
    );
    let digits = driver.output_topic("digits", Str, Str);
    assert_eq!(
        pairs(driver.read_all(&digits).unwrap()),
        vec![("1".into(), "a1b2".into()), ("2".into(), "a1b2".into())]
    );
}

#[test]
fn split_sends_each_record_to_the_first_matching_named_branch() {
    let builder = StreamsBuilder::new();
    let numbers = builder.stream_with::<String, u32>("numbers", Str, Json::new());
    let branches = numbers
        .split_named("n-")
        .branch("big", |_, v| *v >= 100)
        .branch("even", |_, v| v % 2 == 0)
        .default_branch("rest");
    let mut names: Vec<_> = branches.keys().cloned().collect();
    names.sort();
    assert_eq!(names, vec!["n-big", "n-even", "n-rest"]);
    for (name, stream) in branches {
        stream.to_with(&name, Produced::with(Str, Json::new()));
    }
    let topology = builder.build().unwrap();
    let mut driver = TopologyTestDriver::new(&topology).unwrap();
    let input = driver.input_topic("numbers", Str, Json::<u32>::new());
    for (i, v) in [200u32, 4, 7, 102, 8].into_iter().enumerate() {
        driver.pipe(&input, format!("k{i}"), v, i as i64).unwrap();
    }
    let read = |driver: &mut TopologyTestDriver, topic: &str| -> Vec<u32> {
        let out = driver.output_topic(topic, Str, Json::<u32>::new());
        driver
            .read_all::<String, u32>(&out)
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect()
    };
    assert_eq!(
        read(&mut driver, "n-big"),
        vec![200, 102],
        "200 and 102 are even too, but big comes first"
    );
    assert_eq!(read(&mut driver, "n-even"), vec![4, 8]);
    assert_eq!(read(&mut driver, "n-rest"), vec![7]);
}

#[test]
fn merge_interleaves_two_streams_through_one_downstream_instance() {
    let builder = StreamsBuilder::new();
    let left = builder.stream_with::<String, String>("left", Str, Str);
    let right = builder.stream_with::<String, String>("right", Str, Str);
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    left.merge(&right)
        .peek(move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .to_with("merged", strings());
    let topology = builder.build().unwrap();
    assert_eq!(topology.source_topics(), vec!["left", "right"]);
    let mut driver = TopologyTestDriver::new(&topology).unwrap();
    let (l, r) = (
        driver.input_topic::<String, String>("left", Str, Str),
        driver.input_topic::<String, String>("right", Str, Str),
    );
    driver.pipe(&l, "1".into(), "l1".into(), 1).unwrap();
    driver.pipe(&r, "2".into(), "r1".into(), 2).unwrap();
    driver.pipe(&l, "3".into(), "l2".into(), 3).unwrap();
    let out = driver.output_topic("merged", Str, Str);
    let values: Vec<String> = driver
        .read_all::<String, String>(&out)
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(values, vec!["l1", "r1", "l2"]);
    assert_eq!(
        seen.load(Ordering::Relaxed),
        3,
        "peek saw every record once"
    );
}

#[test]
fn a_custom_partitioner_chooses_the_output_partition() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, u32>("in", Str, Json::new())
        .to_with(
            "out",
            Produced::with(Str, Json::new()).partitioner(|_, v, partitions| v % partitions),
        );
    let topology = builder.build().unwrap();
    let mut driver = TopologyTestDriver::new(&topology).unwrap();
    driver.set_partition_count("out", 4);
    let input = driver.input_topic::<String, u32>("in", Str, Json::<u32>::new());
    for v in [5u32, 6, 11] {
        driver.pipe(&input, "k".into(), v, 0).unwrap();
    }
    let out = driver.output_topic("out", Str, Json::<u32>::new());
    let partitions: Vec<_> = driver
        .read_all::<String, u32>(&out)
        .unwrap()
        .into_iter()
        .map(|r| r.partition)
        .collect();
    assert_eq!(partitions, vec![Some(1), Some(2), Some(3)]);
}

#[test]
fn bad_records_fail_or_are_skipped_or_dead_lettered_as_configured() {
    let build = || {
        let builder = StreamsBuilder::new();
        builder
            .stream_with::<String, u32>("in", Str, Json::new())
            .to_with("out", Produced::with(Str, Json::new()));
        builder.build().unwrap()
    };
    let topology = build();
    let mut failing = TopologyTestDriver::new(&topology).unwrap();
    let err = failing
        .pipe_raw(
            "in",
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"not json")),
            5,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("in-0@0") && err.to_string().contains("value"),
        "{err}"
    );

    let mut skipping =
        TopologyTestDriver::with_error_policy(&topology, OnError::LogAndSkip).unwrap();
    skipping
        .pipe_raw(
            "in",
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"oops")),
            5,
        )
        .unwrap();
    skipping
        .pipe_raw(
            "in",
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"7")),
            6,
        )
        .unwrap();
    let out = skipping.output_topic("out", Str, Json::<u32>::new());
    assert_eq!(skipping.read_all::<String, u32>(&out).unwrap().len(), 1);
    assert_eq!(skipping.skipped_records(), 1);

    let mut dead =
        TopologyTestDriver::with_error_policy(&topology, OnError::DeadLetter("in-dlq".into()))
            .unwrap();
    dead.pipe_raw(
        "in",
        Some(Bytes::from_static(b"k")),
        Some(Bytes::from_static(b"oops")),
        5,
    )
    .unwrap();
    let letters = dead.read_raw("in-dlq");
    assert_eq!(letters.len(), 1);
    let (key, value, headers) = &letters[0];
    assert_eq!(
        (key.as_deref(), value.as_deref()),
        (Some(&b"k"[..]), Some(&b"oops"[..]))
    );
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value.clone())
    };
    assert_eq!(header("logbrook.error.topic").as_deref(), Some(&b"in"[..]));
    assert_eq!(header("logbrook.error.offset").as_deref(), Some(&b"0"[..]));
    assert!(header("logbrook.error.message").is_some());
}

#[test]
fn building_rejects_topologies_without_sources_or_with_a_topic_read_twice() {
    assert!(
        StreamsBuilder::new()
            .build()
            .unwrap_err()
            .to_string()
            .contains("no source")
    );
    let builder = StreamsBuilder::new();
    builder.stream_with::<String, String>("t", Str, Str);
    builder.stream_with::<String, String>("t", Str, Str);
    assert!(
        builder
            .build()
            .unwrap_err()
            .to_string()
            .contains("read by two sources")
    );
}
