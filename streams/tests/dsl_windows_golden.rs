//! Windowed aggregations, checked against golden files in `tests/golden/`. Each test pipes a
//! scripted input (key, value, timestamp) and renders every output record as one line.
//! Set `LOGBROOK_BLESS=1` to rewrite the golden files after an intended change.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::check_golden;

use std::time::Duration;

use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    Grouped, Produced, SessionWindows, SlidingWindows, StreamsBuilder, TimeWindows,
    TopologyTestDriver, Windowed,
};

type Input<'a> = &'a [(&'a str, &'a str, i64)];

/// Pipes `input` into topic "events" and renders the records of "out" plus the late-drop count.
fn run(
    topology: &logbrook_streams::Topology,
    input: Input<'_>,
    render: fn(&mut TopologyTestDriver) -> Vec<String>,
) -> String {
    let mut driver = TopologyTestDriver::new(topology).unwrap();
    let events = driver.input_topic::<String, String>("events", Str, Str);
    let mut lines = Vec::new();
    for (key, value, ts) in input {
        driver
            .pipe(&events, key.to_string(), value.to_string(), *ts)
            .unwrap();
        for line in render(&mut driver) {
            lines.push(format!("in {key}:{value}@{ts} -> {line}"));
        }
    }
    lines.push(format!(
        "late records dropped: {}",
        driver.late_records_dropped()
    ));
    lines.join("\n") + "\n"
}

fn render_updates(driver: &mut TopologyTestDriver) -> Vec<String> {
    let out = driver.output_topic::<Windowed<String>, Option<u64>>("out", Json::new(), Json::new());
    driver
        .read_all(&out)
        .unwrap()
        .into_iter()
        .map(|r| match r.value {
            Some(v) => format!(
                "{} [{},{}) = {v} @{}",
                r.key.key, r.key.start, r.key.end, r.timestamp
            ),
            None => format!(
                "{} [{},{}) deleted @{}",
                r.key.key, r.key.start, r.key.end, r.timestamp
            ),
        })
        .collect()
}

fn render_finals(driver: &mut TopologyTestDriver) -> Vec<String> {
    let out = driver.output_topic::<Windowed<String>, u64>("out", Json::new(), Json::new());
    driver
        .read_all(&out)
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "final {} [{},{}) = {} @{}",
                r.key.key, r.key.start, r.key.end, r.value, r.timestamp
            )
        })
        .collect()
}

const CLICKS: Input<'static> = &[
    ("alice", "a", 1_000),
    ("bob", "b", 4_000),
    ("alice", "c", 9_999),
    ("alice", "d", 10_000),
    ("bob", "e", 12_500),
    ("alice", "late-but-in-grace", 8_000),
    ("bob", "f", 31_000),
    ("alice", "too-late", 9_000),
    ("alice", "g", 41_000),
];

fn grouped(builder: &StreamsBuilder) -> logbrook_streams::KGroupedStream<String, String> {
    builder
        .stream_with::<String, String>("events", Str, Str)
        .group_by_key_with(Grouped::with(Str, Str))
}

#[test]
fn tumbling_window_counts_with_grace_match_golden() {
    let builder = StreamsBuilder::new();
    let windows = TimeWindows::of(Duration::from_secs(10)).grace(Duration::from_secs(5));
    grouped(&builder)
        .windowed_by(windows)
        .count("counts")
        .to_stream()
        .to_with("out", Produced::with(Json::new(), Json::new()));
    check_golden(
        "tumbling_count",
        &run(&builder.build().unwrap(), CLICKS, render_updates),
    );
}

#[test]
fn hopping_window_counts_match_golden() {
    let builder = StreamsBuilder::new();
    let windows = TimeWindows::of(Duration::from_secs(10))
        .advance_by(Duration::from_secs(5))
        .grace(Duration::from_secs(5));
    grouped(&builder)
        .windowed_by(windows)
        .count("counts")
        .to_stream()
        .to_with("out", Produced::with(Json::new(), Json::new()));
    check_golden(
        "hopping_count",
        &run(&builder.build().unwrap(), CLICKS, render_updates),
    );
}

#[test]
fn suppressed_tumbling_counts_emit_once_per_closed_window_matching_golden() {
    let builder = StreamsBuilder::new();
    let windows = TimeWindows::of(Duration::from_secs(10)).grace(Duration::from_secs(5));
    grouped(&builder)
        .windowed_by(windows)
        .count("counts")
        .suppress_until_window_closes("counts-final")
        .to_with("out", Produced::with(Json::new(), Json::new()));
    check_golden(
        "tumbling_count_suppressed",
        &run(&builder.build().unwrap(), CLICKS, render_finals),
    );
}

const SESSIONS: Input<'static> = &[
    ("u1", "login", 1_000),
    ("u1", "click", 4_000),
    ("u2", "login", 5_000),
    ("u1", "click", 20_000),
    ("u1", "click", 10_000),
    ("u1", "bridge", 7_000),
    ("u2", "click", 60_000),
    ("u1", "too-late", 2_000),
];

#[test]
fn session_windows_merge_and_retract_matching_golden() {
    let builder = StreamsBuilder::new();
    let windows =
        SessionWindows::with_inactivity_gap(Duration::from_secs(5)).grace(Duration::from_secs(10));
    grouped(&builder)
        .windowed_by_session(windows)
        .count("sessions")
        .to_stream()
        .to_with("out", Produced::with(Json::new(), Json::new()));
    check_golden(
        "session_count",
        &run(&builder.build().unwrap(), SESSIONS, render_updates),
    );
}

#[test]
fn suppressed_sessions_emit_each_final_session_once_matching_golden() {
    let builder = StreamsBuilder::new();
    let windows =
        SessionWindows::with_inactivity_gap(Duration::from_secs(5)).grace(Duration::from_secs(10));
    grouped(&builder)
        .windowed_by_session(windows)
        .count("sessions")
        .suppress_until_window_closes("sessions-final")
        .to_with("out", Produced::with(Json::new(), Json::new()));
    check_golden(
        "session_count_suppressed",
        &run(&builder.build().unwrap(), SESSIONS, render_finals),
    );
}

const SLIDING: Input<'static> = &[
    ("u1", "a", 1_000),
    ("u1", "b", 5_000),
    ("u1", "c", 12_000),
    ("u2", "d", 12_500),
    ("u1", "out-of-order", 9_000),
    ("u1", "e", 30_000),
    ("u1", "too-late", 3_000),
];

/// Sliding windows of 10 s with 5 s grace: the window ending at each record, the window just
/// after it once records fall there, and every window an out-of-order record lands in.
#[test]
fn sliding_window_counts_match_golden() {
    let builder = StreamsBuilder::new();
    let windows =
        SlidingWindows::of_time_difference(Duration::from_secs(10)).grace(Duration::from_secs(5));
    grouped(&builder)
        .windowed_by_sliding(windows)
        .count("sliding")
        .to_stream()
        .to_with("out", Produced::with(Json::new(), Json::new()));
    check_golden(
        "sliding_count",
        &run(&builder.build().unwrap(), SLIDING, render_updates),
    );
}

/// Closed windows leave the store (as tombstones in its changelog): state stays bounded.
#[test]
fn closed_time_windows_are_removed_from_the_store() {
    let builder = StreamsBuilder::new();
    let windows = TimeWindows::of(Duration::from_secs(10)).grace(Duration::from_secs(5));
    grouped(&builder)
        .windowed_by(windows)
        .count("counts")
        .to_stream()
        .to_with("out", Produced::with(Json::new(), Json::new()));
    let mut driver = TopologyTestDriver::new(&builder.build().unwrap()).unwrap();
    let events = driver.input_topic::<String, String>("events", Str, Str);
    for minute in 0..100i64 {
        driver
            .pipe(
                &events,
                format!("user-{}", minute % 3),
                "x".into(),
                minute * 60_000,
            )
            .unwrap();
    }
    let stored = driver.store("counts").unwrap().entries().unwrap().len();
    assert_eq!(stored, 1, "only the newest window is still open");
}
