//! End-to-end tests of `logbrook produce` and `logbrook consume`: keys, headers, partitions,
//! offsets, start and stop positions, following a writer, and bad input.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use common::{Logbrook, now_ms, rfc3339};
use logbrook_core::partition_for_key;
use serde_json::{Value, json};

#[test]
fn keys_headers_partitions_and_offsets_round_trip_through_json() {
    let lb = Logbrook::new();
    lb.create_topic("clicks", 3);
    let lines = [
        "user-1:home",
        "user-2:cart",
        "user-1:checkout:paid",
        "user-3:home",
        "user-2:",
        "user-4:search",
        "user-1:logout",
    ];
    let before = now_ms();
    lb.produce(
        "clicks",
        &[
            "--key-separator",
            ":",
            "--header",
            "source=cli",
            "--header",
            "query=a=b",
        ],
        &lines,
    );
    let after = now_ms();
    let records = lb.consume_json("clicks", &[]);
    assert_eq!(records.len(), lines.len());

    // Each partition holds its keys' lines in input order at offsets 0, 1, 2, ...
    let mut expected: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for line in lines {
        let (key, value) = line.split_once(':').expect("every line has a key");
        let partition = u64::from(partition_for_key(key.as_bytes(), 3));
        expected
            .entry(partition)
            .or_default()
            .push((key.to_string(), value.to_string()));
    }
    let mut seen: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for record in &records {
        let partition = record["partition"].as_u64().expect("partition");
        let in_partition = seen.entry(partition).or_default();
        assert_eq!(record["offset"], json!(in_partition.len()), "{record}");
        assert_eq!(record["topic"], "clicks");
        assert_eq!(
            record["headers"],
            json!([{"key": "source", "value": "cli"}, {"key": "query", "value": "a=b"}])
        );
        let timestamp = record["timestamp"].as_i64().expect("timestamp");
        assert!((before..=after).contains(&timestamp), "{record}");
        in_partition.push((
            record["key"].as_str().expect("key").to_string(),
            record["value"].as_str().expect("value").to_string(),
        ));
    }
    assert_eq!(seen, expected);
}

#[test]
fn json_fields_come_in_the_documented_order_with_null_for_no_key() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    lb.produce("t", &["--key-separator", "|"], &["no separator here"]);
    let out = lb.ok(&["consume", "t", "--format", "json"]);
    let record: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    let timestamp = record["timestamp"].as_i64().expect("timestamp");
    assert_eq!(
        out,
        format!(
            "{{\"topic\":\"t\",\"partition\":0,\"offset\":0,\"timestamp\":{timestamp},\"key\":null,\"value\":\"no separator here\",\"headers\":[]}}\n"
        )
    );
}

#[test]
fn without_a_key_separator_the_whole_line_is_the_value() {
    let lb = Logbrook::new();
    lb.create_topic("t", 3);
    lb.produce("t", &["--partition", "2"], &["a:b", "c:d"]);
    let records = lb.consume_json("t", &[]);
    assert_eq!(records.len(), 2);
    for (record, value) in records.iter().zip(["a:b", "c:d"]) {
        assert_eq!(record["key"], Value::Null);
        assert_eq!(record["value"], value);
        assert_eq!(record["partition"], 2, "--partition wins");
    }
    assert_eq!(
        lb.consume_values("t", &["--partition", "0"]),
        Vec::<String>::new()
    );
    assert_eq!(
        lb.consume_values("t", &["--partition", "2"]),
        ["a:b", "c:d"]
    );
}

#[test]
fn from_time_and_until_time_split_the_topic_at_an_instant() {
    let lb = Logbrook::new();
    lb.create_topic("t", 2);
    lb.produce(
        "t",
        &["--key-separator", ":"],
        &["a:early-1", "b:early-2", "c:early-3"],
    );
    std::thread::sleep(Duration::from_millis(30));
    let split = rfc3339(now_ms());
    std::thread::sleep(Duration::from_millis(30));
    lb.produce("t", &["--key-separator", ":"], &["a:late-1", "b:late-2"]);

    let from = format!("time:{split}");
    let mut late = lb.consume_values("t", &["--from", &from]);
    late.sort();
    assert_eq!(late, ["late-1", "late-2"]);
    let until = format!("time:{split}");
    let mut early = lb.consume_values("t", &["--until", &until]);
    early.sort();
    assert_eq!(early, ["early-1", "early-2", "early-3"]);
}

#[test]
fn from_offset_until_offset_and_max_bound_the_output() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    let lines: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    lb.produce("t", &[], &lines);
    assert_eq!(
        lb.consume_values("t", &["--from", "offset:3", "--until", "offset:6"]),
        ["v3", "v4", "v5"]
    );
    assert_eq!(lb.consume_values("t", &["--max", "2"]), ["v0", "v1"]);
    assert_eq!(
        lb.consume_values("t", &["--from", "offset:8"]),
        ["v8", "v9"]
    );
    assert_eq!(
        lb.consume_values("t", &["--from", "latest"]),
        Vec::<String>::new()
    );
    assert_eq!(lb.consume_values("t", &["--from", "earliest"]).len(), 10);
}

#[test]
fn consume_follows_a_writer_from_a_read_only_process() {
    let lb = Logbrook::new();
    lb.create_topic("live", 1);
    let mut follower = lb.spawn(&["consume", "live", "--follow"]);
    let stdout = follower.child().stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.expect("read a line")).is_err() {
                break;
            }
        }
    });
    // The follower does not hold the writer lock, so producing works while it runs.
    lb.produce("live", &[], &["first", "second"]);
    for expected in ["first", "second"] {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the follower prints new records");
        assert_eq!(line, expected);
    }
}

#[test]
fn consume_stops_quietly_with_status_zero_when_stdout_closes() {
    let lb = Logbrook::new();
    lb.create_topic("big", 1);
    let line = "x".repeat(100);
    let lines: Vec<&str> = std::iter::repeat_n(line.as_str(), 5_000).collect();
    lb.produce("big", &[], &lines);
    let mut consumer = lb.spawn(&["consume", "big", "--follow"]);
    let mut stdout = BufReader::new(consumer.child().stdout.take().expect("stdout is piped"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read one line");
    assert_eq!(first.trim_end(), line);
    drop(stdout);
    let run = consumer.wait();
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stderr, "");
}

#[test]
fn unknown_topics_and_partitions_are_rejected_naming_them() {
    let lb = Logbrook::new();
    lb.create_topic("t", 2);
    let stderr = lb.fails(&["consume", "nope"]);
    assert!(stderr.contains("unknown topic \"nope\""), "{stderr}");
    let stderr = lb.fails_with_stdin(&["produce", "nope"], "x\n");
    assert!(stderr.contains("unknown topic \"nope\""), "{stderr}");
    let stderr = lb.fails(&["consume", "t", "--partition", "5"]);
    assert!(
        stderr.contains("topic \"t\" has no partition 5 (it has 2)"),
        "{stderr}"
    );
    let stderr = lb.fails_with_stdin(&["produce", "t", "--partition", "2"], "x\n");
    assert!(stderr.contains("no partition 2"), "{stderr}");
}

#[test]
fn bad_positions_and_headers_are_rejected_naming_the_value() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    for (args, culprit) in [
        (&["consume", "t", "--from", "yesterday"][..], "yesterday"),
        (&["consume", "t", "--from", "offset:abc"], "abc"),
        (&["consume", "t", "--from", "time:noon"], "noon"),
        (&["consume", "t", "--until", "latest"], "latest"),
        (&["consume", "t", "--format", "xml"], "xml"),
        (&["produce", "t", "--header", "novalue"], "novalue"),
        (&["produce", "t", "--header", "=v"], "=v"),
    ] {
        let stderr = lb.fails(args);
        assert!(stderr.contains(culprit), "{args:?}: {stderr}");
    }
    assert_eq!(
        lb.consume_values("t", &[]),
        Vec::<String>::new(),
        "nothing produced"
    );
}

#[test]
fn producing_to_the_internal_offsets_topic_is_refused() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    let stderr = lb.fails_with_stdin(&["produce", "__consumer_offsets"], "x\n");
    assert!(stderr.contains("internal"), "{stderr}");
}
