//! Stream-stream (windowed) and table-table joins, inner, left and outer, checked against
//! golden files in `tests/golden/`. Set `LOGBROOK_BLESS=1` to rewrite them after an intended
//! change.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::check_golden;

use std::time::Duration;

use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{JoinWindows, Produced, StreamsBuilder, TopologyTestDriver};

/// (topic, key, value or None for a delete, timestamp)
type Script<'a> = &'a [(&'a str, &'a str, Option<&'a str>, i64)];

fn run(topology: &logbrook_streams::Topology, script: Script<'_>) -> String {
    let mut driver = TopologyTestDriver::new(topology).unwrap();
    let mut lines = Vec::new();
    for (topic, key, value, ts) in script {
        let encoded = value.map(|v| bytes::Bytes::from(serde_json::to_vec(v).unwrap()));
        driver
            .pipe_raw(
                topic,
                Some(bytes::Bytes::from(key.to_string())),
                encoded,
                *ts,
            )
            .unwrap();
        let input = format!("{topic} {key}:{}@{ts}", value.unwrap_or("<delete>"));
        let out = driver.output_topic::<String, Option<String>>("out", Str, Json::new());
        for r in driver.read_all(&out).unwrap() {
            let value = r.value.unwrap_or_else(|| "<delete>".into());
            lines.push(format!(
                "in {input} -> {} = {value} @{}",
                r.key, r.timestamp
            ));
        }
    }
    lines.push(format!(
        "late records dropped: {}",
        driver.late_records_dropped()
    ));
    lines.join("\n") + "\n"
}

const ORDERS_PAYMENTS: Script<'static> = &[
    ("orders", "o1", Some("order-1"), 1_000),
    ("payments", "o1", Some("pay-1"), 5_000),
    ("orders", "o2", Some("order-2"), 6_000),
    ("payments", "o3", Some("pay-3"), 8_000),
    ("payments", "o1", Some("pay-1-again"), 9_000),
    ("payments", "o1", Some("pay-1-too-far"), 12_000),
    ("orders", "o3", Some("order-3-too-far"), 20_000),
    ("orders", "o4", Some("advances-stream-time"), 40_000),
    ("orders", "o1", Some("too-late"), 3_000),
    ("payments", "o4", Some("pay-4"), 41_000),
];

fn stream_join(kind: &str) -> logbrook_streams::Topology {
    let builder = StreamsBuilder::new();
    let orders = builder.stream_with::<String, String>("orders", Str, Json::new());
    let payments = builder.stream_with::<String, String>("payments", Str, Json::new());
    let windows = JoinWindows::of(Duration::from_secs(10)).grace(Duration::from_secs(2));
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let joined = match kind {
        "inner" => orders
            .join(&payments, |_, o, p| Some(format!("{o}+{p}")), windows, "op")
            .map_values(|v| v),
        "left" => orders.left_join(
            &payments,
            move |_, o, p| Some(format!("{o}+{}", show(p))),
            windows,
            "op",
        ),
        _ => orders.outer_join(
            &payments,
            move |_, o, p| Some(format!("{}+{}", show(o), show(p))),
            windows,
            "op",
        ),
    };
    joined.to_with("out", Produced::with(Str, Json::new()));
    builder.build().unwrap()
}

#[test]
fn windowed_inner_join_matches_golden() {
    check_golden(
        "stream_join_inner",
        &run(&stream_join("inner"), ORDERS_PAYMENTS),
    );
}

#[test]
fn windowed_left_join_emits_unmatched_orders_when_their_window_closes() {
    check_golden(
        "stream_join_left",
        &run(&stream_join("left"), ORDERS_PAYMENTS),
    );
}

#[test]
fn windowed_outer_join_emits_unmatched_records_of_both_sides() {
    check_golden(
        "stream_join_outer",
        &run(&stream_join("outer"), ORDERS_PAYMENTS),
    );
}

const TABLE_UPDATES: Script<'static> = &[
    ("left", "a", Some("A1"), 1),
    ("right", "a", Some("X1"), 2),
    ("left", "b", Some("B1"), 3),
    ("right", "c", Some("Z1"), 4),
    ("left", "a", Some("A2"), 5),
    ("right", "a", None, 6),
    ("left", "b", None, 7),
    ("right", "c", None, 8),
];

fn table_join(kind: &str) -> logbrook_streams::Topology {
    let builder = StreamsBuilder::new();
    let left = builder.table_with::<String, String>("left", "left-store", Str, Json::new());
    let right = builder.table_with::<String, String>("right", "right-store", Str, Json::new());
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let joined = match kind {
        "inner" => left.join(&right, |_, l, r| format!("{l}+{r}")),
        "left" => left.left_join(&right, move |_, l, r| format!("{l}+{}", show(r))),
        _ => left.outer_join(&right, move |_, l, r| format!("{}+{}", show(l), show(r))),
    };
    joined
        .to_stream()
        .to_with("out", Produced::with(Str, Json::new()));
    builder.build().unwrap()
}

#[test]
fn table_table_inner_join_matches_golden() {
    check_golden(
        "table_join_inner",
        &run(&table_join("inner"), TABLE_UPDATES),
    );
}

#[test]
fn table_table_left_join_matches_golden() {
    check_golden("table_join_left", &run(&table_join("left"), TABLE_UPDATES));
}

#[test]
fn table_table_outer_join_matches_golden() {
    check_golden(
        "table_join_outer",
        &run(&table_join("outer"), TABLE_UPDATES),
    );
}
