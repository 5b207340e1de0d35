//! `logbrook connect run`: file -> topic -> file with transforms, following appended data, and a
//! clean stop on SIGTERM.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::Write;

use common::Logbrook;
use common::connect::{Worker, connector_file, lines_of, wait_for};
use serde_json::{Value, json};

#[test]
fn file_to_topic_to_file_with_transforms_follows_appends_and_stops_cleanly() {
    let lb = Logbrook::new();
    let input = lb.root().join("orders.jsonl");
    let output_dir = lb.root().join("out");
    let mut file = std::fs::File::create(&input).unwrap();
    for i in 0..50 {
        writeln!(
            file,
            r#"{{"id": {i}, "uid": "u{}", "card": "4111-{i}", "debug": true}}"#,
            i % 3
        )
        .unwrap();
    }
    drop(file);
    let source = connector_file(
        &lb,
        "orders-source.toml",
        &format!(
            r#"
name = "orders-in"
connector = "file-source"
topic = "orders"
path = "{}"
format = "json"

[[transforms]]
type = "rename_fields"
renames = {{ uid = "user" }}

[[transforms]]
type = "drop_fields"
fields = ["debug"]

[[transforms]]
type = "mask_fields"
fields = ["card"]

[[transforms]]
type = "value_to_key"
fields = ["user"]
"#,
            input.display()
        ),
    );
    let sink = connector_file(
        &lb,
        "orders-sink.toml",
        &format!(
            r#"
name = "orders-out"
connector = "file-sink"
topics = ["orders"]
path = "{}/{{topic}}-{{partition}}.jsonl"
format = "json"

[[transforms]]
type = "insert_field"
topic_field = "from_topic"
offset_field = "from_offset"
"#,
            output_dir.display()
        ),
    );
    let worker = Worker::start(&lb, &[&source, &sink]);
    let output = output_dir.join("orders-0.jsonl");
    wait_for("50 records in the output file", 20, || {
        lines_of(&output).len() >= 50
    });

    // Appended lines are followed, like tail -F.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    for i in 50..60 {
        writeln!(
            file,
            r#"{{"id": {i}, "uid": "u0", "card": "x", "debug": false}}"#
        )
        .unwrap();
    }
    drop(file);
    wait_for("60 records in the output file", 20, || {
        lines_of(&output).len() >= 60
    });
    worker.wait_for_tasks("orders-in", "RUNNING");
    let run = worker.stop();
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("stopped"), "{run:?}");

    let lines = lines_of(&output);
    assert_eq!(lines.len(), 60, "no duplicates after a clean stop");
    // Each source transaction ends in a marker that takes an offset: the records' offsets are
    // what the topic says, not 0..60.
    let offsets: Vec<Value> = lb
        .consume_json("orders", &[])
        .iter()
        .map(|r| r["offset"].clone())
        .collect();
    assert_eq!(offsets.len(), 60, "{offsets:?}");
    for (i, line) in lines.iter().enumerate() {
        let value: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            value,
            json!({"id": i, "user": format!("u{}", if i < 50 { i % 3 } else { 0 }), "card": "",
                   "from_topic": "orders", "from_offset": offsets[i]})
        );
    }
    // The key was set from the value on the way in.
    let records = lb.consume_json("orders", &["--max", "1"]);
    assert_eq!(records[0]["key"], json!(r#"{"user":"u0"}"#));
}

#[test]
fn lines_and_csv_formats_with_string_converters() {
    let lb = Logbrook::new();
    let input = lb.root().join("people.csv");
    std::fs::write(&input, "name,age\nada,36\ngrace,45\n").unwrap();
    let out = lb.root().join("people.txt");
    let source = connector_file(
        &lb,
        "csv.toml",
        &format!(
            "name = \"people-in\"\nconnector = \"file-source\"\ntopic = \"people\"\npath = \"{}\"\nformat = \"csv\"\n\n[[transforms]]\ntype = \"cast\"\nfields = {{ age = \"int64\" }}\n",
            input.display()
        ),
    );
    let sink = connector_file(
        &lb,
        "lines.toml",
        &format!(
            "name = \"people-out\"\nconnector = \"file-sink\"\ntopics = [\"people\"]\npath = \"{}\"\nformat = \"lines\"\n\n[[transforms]]\ntype = \"extract_field\"\nfield = \"name\"\n",
            out.display()
        ),
    );
    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_for("two lines", 20, || lines_of(&out).len() >= 2);
    assert_eq!(worker.stop().code, Some(0));
    assert_eq!(lines_of(&out), vec!["ada", "grace"]);
    let stored = lb.consume_values("people", &[]);
    assert_eq!(
        stored,
        vec![r#"{"age":36,"name":"ada"}"#, r#"{"age":45,"name":"grace"}"#]
    );
}

#[test]
fn what_produce_writes_flows_into_a_sink_directory_with_default_converters() {
    let lb = Logbrook::new();
    lb.create_topic("events", 2);
    lb.produce(
        "events",
        &["--key-separator", ":", "--partition", "0"],
        &[r#"u1:{"page": "home"}"#, "u2:plain text"],
    );
    lb.produce("events", &["--partition", "1"], &["12"]);
    // An existing directory, and one to create (the trailing `/` says it is a directory).
    let existing = lb.root().join("out");
    std::fs::create_dir(&existing).unwrap();
    let created = lb.root().join("later");
    let sink = |name: &str, path: String, format: &str| {
        connector_file(
            &lb,
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nconnector = \"file-sink\"\ntopics = [\"events\"]\npath = \"{path}\"\nformat = \"{format}\"\n"
            ),
        )
    };
    let json = sink("json-out", existing.display().to_string(), "json");
    let lines = sink("lines-out", format!("{}/", created.display()), "lines");
    let worker = Worker::start(&lb, &[&json, &lines]);
    let (p0, p1) = (
        existing.join("events-0.jsonl"),
        existing.join("events-1.jsonl"),
    );
    let (l0, l1) = (created.join("events-0.txt"), created.join("events-1.txt"));
    wait_for("every record in both directories", 20, || {
        lines_of(&p0).len() == 2
            && lines_of(&p1).len() == 1
            && lines_of(&l0).len() == 2
            && lines_of(&l1).len() == 1
    });
    let status = worker.wait_for_tasks("json-out", "RUNNING");
    assert_eq!(status["connector"]["state"], "RUNNING");
    assert_eq!(worker.stop().code, Some(0));
    assert_eq!(lines_of(&p0), vec![r#"{"page":"home"}"#, r#""plain text""#]);
    assert_eq!(lines_of(&p1), vec!["12"]);
    assert_eq!(lines_of(&l0), vec![r#"{"page":"home"}"#, "plain text"]);
    assert_eq!(lines_of(&l1), vec!["12"]);
}

#[test]
fn a_source_directory_means_every_file_in_it() {
    let lb = Logbrook::new();
    let input = lb.root().join("inbox");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.log"), "a1\na2\n").unwrap();
    std::fs::write(input.join("b.log"), "b1\n").unwrap();
    std::fs::write(input.join(".b.log.swp"), "not read\n").unwrap();
    let source = connector_file(
        &lb,
        "dir.toml",
        &format!(
            "name = \"inbox\"\nconnector = \"file-source\"\ntopic = \"lines\"\npath = \"{}\"\n",
            input.display()
        ),
    );
    let worker = Worker::start(&lb, &[&source]);
    wait_for("three lines in the topic", 20, || {
        let (_, metrics) = worker.get("/metrics");
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("logbrook_connect_records_out_total{connector=\"inbox\",task=\"0\"} 3\n")
    });
    assert_eq!(worker.stop().code, Some(0));
    let mut values = lb.consume_values("lines", &[]);
    values.sort();
    assert_eq!(values, vec!["a1", "a2", "b1"]);
}
