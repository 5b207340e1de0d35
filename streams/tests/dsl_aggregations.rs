//! Grouping, repartitioning, count / reduce / aggregate, and tables, through the test driver.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    DRIVER_APPLICATION_ID, Grouped, Produced, StreamsBuilder, TopologyTestDriver,
};
use serde::{Deserialize, Serialize};

#[test]
fn word_count_repartitions_by_word_and_emits_every_update() {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<Option<String>, String>("lines", Str, Str)
        .flat_map_values(|line| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by_with(|_, word| word.clone(), Grouped::with(Str, Str))
        .count("word-counts")
        .to_stream()
        .to_with("counts", Produced::with(Str, Json::<Option<u64>>::new()));
    let topology = builder.build().unwrap();
    assert_eq!(topology.store_names(), vec!["word-counts"]);

    let mut driver = TopologyTestDriver::new(&topology).unwrap();
    let lines = driver.input_topic::<Option<String>, String>("lines", Str, Str);
    driver.pipe(&lines, None, "the cat".into(), 10).unwrap();
    driver.pipe(&lines, None, "The dog the".into(), 20).unwrap();
    let counts = driver.output_topic::<String, Option<u64>>("counts", Str, Json::new());
    let updates: Vec<(String, Option<u64>, i64)> = driver
        .read_all(&counts)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    assert_eq!(
        updates,
        vec![
            ("the".into(), Some(1), 10),
            ("cat".into(), Some(1), 10),
            ("the".into(), Some(2), 20),
            ("dog".into(), Some(1), 20),
            ("the".into(), Some(3), 20),
        ]
    );
    assert_eq!(
        driver
            .store_value("word-counts", &"the".to_string(), &Str, &Json::<u64>::new())
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        driver
            .store_value("word-counts", &"cow".to_string(), &Str, &Json::<u64>::new())
            .unwrap(),
        None
    );
    // Every store write is also a changelog record.
    let changelog = driver.read_raw(&format!("{DRIVER_APPLICATION_ID}-word-counts-changelog"));
    assert_eq!(changelog.len(), 5);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stats {
    count: u32,
    total: u64,
    max: u64,
}

#[test]
fn reduce_and_aggregate_fold_each_key_and_skip_records_without_a_key() {
    let builder = StreamsBuilder::new();
    let amounts = builder.stream_with::<Option<String>, u64>("amounts", Str, Json::new());
    amounts
        .group_by_key_with(Grouped::with(Str, Json::new()))
        .reduce("max-amount", |a, b| a.max(b))
        .to_stream()
        .to_with("max", Produced::with(Str, Json::<Option<u64>>::new()));
    amounts
        .group_by_key_with(Grouped::with(Str, Json::new()))
        .aggregate(
            "stats",
            || Stats {
                count: 0,
                total: 0,
                max: 0,
            },
            |_, amount, s| Stats {
                count: s.count + 1,
                total: s.total + amount,
                max: s.max.max(amount),
            },
        );
    let topology = builder.build().unwrap();
    let mut driver = TopologyTestDriver::new(&topology).unwrap();
    let input = driver.input_topic::<Option<String>, u64>("amounts", Str, Json::new());
    for (key, amount) in [
        (Some("a"), 5u64),
        (Some("b"), 7),
        (None, 1000),
        (Some("a"), 3),
        (Some("a"), 9),
    ] {
        driver
            .pipe(&input, key.map(str::to_string), amount, 0)
            .unwrap();
    }
    let max = driver.output_topic::<Option<String>, Option<u64>>("max", Str, Json::new());
    let maxes: Vec<_> = driver
        .read_all(&max)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.unwrap(), r.value.unwrap()))
        .collect();
    assert_eq!(
        maxes,
        vec![
            ("a".into(), 5),
            ("b".into(), 7),
            ("a".into(), 5),
            ("a".into(), 9)
        ]
    );
    let stats = driver
        .store_value("stats", &Some("a".to_string()), &Str, &Json::<Stats>::new())
        .unwrap();
    assert_eq!(
        stats,
        Some(Stats {
            count: 3,
            total: 17,
            max: 9
        }),
        "the keyless 1000 is not aggregated"
    );
}

#[test]
fn a_table_keeps_the_latest_value_per_key_and_tombstones_delete() {
    let builder = StreamsBuilder::new();
    let prices = builder.table_with::<String, u64>("prices", "prices-store", Str, Json::new());
    prices
        .filter(|_, price| *price < 100)
        .map_values(|price| price * 2)
        .to_stream()
        .to_with(
            "cheap-doubled",
            Produced::with(Str, Json::<Option<u64>>::new()),
        );
    let topology = builder.build().unwrap();
    let mut driver = TopologyTestDriver::new(&topology).unwrap();
    let key = |k: &str| Some(bytes::Bytes::copy_from_slice(k.as_bytes()));
    let value = |v: &str| Some(bytes::Bytes::copy_from_slice(v.as_bytes()));
    driver
        .pipe_raw("prices", key("apple"), value("40"), 1)
        .unwrap();
    driver
        .pipe_raw("prices", key("melon"), value("150"), 2)
        .unwrap();
    driver
        .pipe_raw("prices", key("apple"), value("120"), 3)
        .unwrap();
    driver.pipe_raw("prices", key("melon"), None, 4).unwrap();
    let store = |driver: &TopologyTestDriver, k: &str| {
        driver
            .store_value("prices-store", &k.to_string(), &Str, &Json::<u64>::new())
            .unwrap()
    };
    assert_eq!(store(&driver, "apple"), Some(120));
    assert_eq!(store(&driver, "melon"), None, "the tombstone deleted melon");
    let out = driver.output_topic::<String, Option<u64>>("cheap-doubled", Str, Json::new());
    let updates: Vec<_> = driver
        .read_all(&out)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        updates,
        vec![
            ("apple".into(), Some(80)),
            ("melon".into(), None),
            ("apple".into(), None), // no longer cheap: deleted downstream
            ("melon".into(), None),
        ]
    );
}

#[test]
fn store_names_must_be_unique_and_safe() {
    let builder = StreamsBuilder::new();
    let s = builder.stream_with::<String, String>("in", Str, Str);
    s.group_by_key_with(Grouped::with(Str, Str)).count("same");
    s.group_by_key_with(Grouped::with(Str, Str)).count("same");
    s.group_by_key_with(Grouped::with(Str, Str))
        .count("../escape");
    let err = builder.build().unwrap_err().to_string();
    assert!(
        err.contains("\"same\" is used twice") && err.contains("\"../escape\""),
        "{err}"
    );
}
