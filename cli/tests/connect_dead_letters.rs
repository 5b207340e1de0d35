//! Bad records: with `errors.tolerance = "all"` they go to the dead-letter topic with headers
//! naming the connector, origin and error; with `"none"` the task fails and says where.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::Logbrook;
use common::connect::{Worker, connector_file, lines_of, wait_for};
use serde_json::Value;

fn header<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record["headers"]
        .as_array()?
        .iter()
        .find(|h| h["key"] == key)
        .and_then(|h| h["value"].as_str())
}

#[test]
fn sink_dead_letters_name_topic_partition_offset_and_error() {
    let lb = Logbrook::new();
    lb.create_topic("events", 1);
    lb.produce(
        "events",
        &[],
        &[r#"{"n": 1}"#, "not json", r#"{"n": 3}"#, r#"{"n": "four"}"#],
    );
    let out = lb.root().join("events.jsonl");
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            r#"name = "events-out"
connector = "file-sink"
topics = ["events"]
path = "{}"
value_converter = "json"

[[transforms]]
type = "cast"
fields = {{ n = "int64" }}

[errors]
tolerance = "all"
dead_letter_topic = "events-dlq"
"#,
            out.display()
        ),
    );
    let worker = Worker::start(&lb, &[&sink]);
    wait_for("good records written", 20, || lines_of(&out).len() >= 2);
    wait_for("dead letters committed", 20, || {
        let (_, offsets) = worker.get("/connectors/events-out/offsets");
        offsets["offsets"][0]["offset"]["kafka_offset"] == 4
    });
    let (_, metrics) = worker.get("/metrics");
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics
            .contains(r#"logbrook_connect_dead_lettered_total{connector="events-out",task="0"} 2"#),
        "{metrics}"
    );
    assert_eq!(worker.stop().code, Some(0));
    assert_eq!(lines_of(&out), vec![r#"{"n":1}"#, r#"{"n":3}"#]);

    let letters = lb.consume_json("events-dlq", &[]);
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["value"], "not json");
    assert_eq!(
        header(&letters[0], "__connect.errors.topic"),
        Some("events")
    );
    assert_eq!(header(&letters[0], "__connect.errors.partition"), Some("0"));
    assert_eq!(header(&letters[0], "__connect.errors.offset"), Some("1"));
    assert_eq!(
        header(&letters[0], "__connect.errors.connector.name"),
        Some("events-out")
    );
    assert_eq!(
        header(&letters[0], "__connect.errors.stage"),
        Some("VALUE_CONVERTER")
    );
    assert!(
        header(&letters[0], "__connect.errors.exception.message")
            .unwrap()
            .contains("not JSON")
    );
    assert_eq!(header(&letters[1], "__connect.errors.offset"), Some("3"));
    assert_eq!(
        header(&letters[1], "__connect.errors.stage"),
        Some("TRANSFORMATION")
    );
    assert!(
        header(&letters[1], "__connect.errors.exception.message")
            .unwrap()
            .contains("\"n\"")
    );
}

#[test]
fn source_dead_letters_carry_the_raw_line_and_its_position() {
    let lb = Logbrook::new();
    let input = lb.root().join("in.jsonl");
    std::fs::write(&input, "{\"a\": 1}\n{broken\n{\"a\": 2}\n").unwrap();
    let source = connector_file(
        &lb,
        "source.toml",
        &format!(
            "name = \"in\"\nconnector = \"file-source\"\ntopic = \"good\"\npath = \"{}\"\nformat = \"json\"\n\n[errors]\ntolerance = \"all\"\ndead_letter_topic = \"bad\"\n",
            input.display()
        ),
    );
    let worker = Worker::start(&lb, &[&source]);
    wait_for("source offsets past the last line", 20, || {
        let (_, offsets) = worker.get("/connectors/in/offsets");
        offsets["offsets"][0]["offset"]["position"] == 26
    });
    assert_eq!(worker.stop().code, Some(0));
    assert_eq!(
        lb.consume_values("good", &[]),
        vec![r#"{"a":1}"#, r#"{"a":2}"#]
    );
    let letters = lb.consume_json("bad", &[]);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["value"], "{broken");
    assert_eq!(
        header(&letters[0], "__connect.errors.stage"),
        Some("SOURCE")
    );
    assert!(
        header(&letters[0], "__connect.errors.source.offset")
            .unwrap()
            .contains("\"position\":17")
    );
}

#[test]
fn with_tolerance_none_a_bad_record_fails_the_task_and_commits_nothing_past_it() {
    let lb = Logbrook::new();
    lb.create_topic("events", 1);
    lb.produce("events", &[], &[r#"{"n": 1}"#, "not json", r#"{"n": 3}"#]);
    let out = lb.root().join("events.jsonl");
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            "name = \"strict\"\nconnector = \"file-sink\"\ntopics = [\"events\"]\npath = \"{}\"\nvalue_converter = \"json\"\n",
            out.display()
        ),
    );
    let worker = Worker::start(&lb, &[&sink]);
    let status = worker.wait_for_tasks("strict", "FAILED");
    let trace = status["tasks"][0]["trace"].as_str().unwrap();
    assert!(
        trace.contains("topic \"events\" partition 0 offset 1"),
        "{trace}"
    );
    assert!(trace.contains("not JSON"), "{trace}");
    let (_, offsets) = worker.get("/connectors/strict/offsets");
    assert_eq!(
        offsets["offsets"],
        serde_json::json!([]),
        "nothing may be committed past the bad record"
    );
    assert_eq!(worker.stop().code, Some(0));
}

#[test]
fn a_key_the_key_converter_refuses_is_labelled_as_the_key() {
    let lb = Logbrook::new();
    lb.create_topic("events", 1);
    lb.produce(
        "events",
        &["--key-separator", ":"],
        &[r#"u1:{"n": 1}"#, r#""u2":{"n": 2}"#],
    );
    let out = lb.root().join("events.jsonl");
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            "name = \"strict-keys\"\nconnector = \"file-sink\"\ntopics = [\"events\"]\npath = \"{}\"\n\
             key_converter = \"json\"\n\n[errors]\ntolerance = \"all\"\ndead_letter_topic = \"keys-dlq\"\n",
            out.display()
        ),
    );
    let worker = Worker::start(&lb, &[&sink]);
    wait_for("the good record written", 20, || !lines_of(&out).is_empty());
    wait_for("the dead letter committed", 20, || {
        let (_, offsets) = worker.get("/connectors/strict-keys/offsets");
        offsets["offsets"][0]["offset"]["kafka_offset"] == 2
    });
    assert_eq!(worker.stop().code, Some(0));
    assert_eq!(lines_of(&out), vec![r#"{"n":2}"#]);
    let letters = lb.consume_json("keys-dlq", &[]);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["key"], "u1");
    assert_eq!(
        header(&letters[0], "__connect.errors.stage"),
        Some("KEY_CONVERTER")
    );
}
