//! `logbrook connect run --bootstrap-server` on `logbrook serve`: the worker keeps its configs and
//! source offsets in the cluster's `connect-configs` and `connect-offsets` topics, and a source
//! writes each batch and its offsets in one Kafka transaction (KIP-618), so a `kill -9` and a
//! restart neither lose nor duplicate a line in the topic.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::Logbrook;
use common::connect::{Worker, connector_file, lines_of, wait_for};
use common::serve::Server;
use serde_json::Value;

const TOTAL: usize = 30_000;

fn append_ids(path: &std::path::Path, ids: std::ops::Range<usize>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for id in ids {
        text.push_str(&format!("{{\"id\":{id},\"pad\":\"{}\"}}\n", "x".repeat(40)));
    }
    file.write_all(text.as_bytes()).unwrap();
}

fn id_of(line: &str) -> usize {
    serde_json::from_str::<Value>(line).unwrap()["id"]
        .as_u64()
        .unwrap() as usize
}

#[test]
fn file_connectors_on_serve_resume_exactly_once_after_kill_9() {
    let lb = Logbrook::new();
    let server = Server::start(&lb);
    let on_cluster = ["--bootstrap-server", server.bootstrap.as_str()];
    let input = lb.root().join("in.jsonl");
    let output = lb.root().join("out.jsonl");
    append_ids(&input, 0..TOTAL / 2);
    let source = connector_file(
        &lb,
        "source.toml",
        &format!(
            "name = \"in\"\nconnector = \"file-source\"\ntopic = \"data\"\npath = \"{}\"\nformat = \"json\"\nbatch_max_records = 500\n",
            input.display()
        ),
    );
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            "name = \"out\"\nconnector = \"file-sink\"\ntopics = [\"data\"]\npath = \"{}\"\n",
            output.display()
        ),
    );

    let worker = Worker::start_with(&lb, &on_cluster, &[&source, &sink]);
    wait_for("some output", 30, || !lines_of(&output).is_empty());
    worker.kill9();

    // More data arrives while the worker is down. The restarted worker gets no files: the
    // connectors come from the cluster's config topic.
    append_ids(&input, TOTAL / 2..TOTAL);
    let worker = Worker::start_with(&lb, &on_cluster, &[]);
    let (_, names) = worker.get("/connectors");
    assert_eq!(names, serde_json::json!(["in", "out"]));
    wait_for("every id in the output", 60, || {
        lines_of(&output)
            .iter()
            .map(|l| id_of(l))
            .collect::<BTreeSet<_>>()
            .len()
            == TOTAL
    });
    wait_for("the source's offset at the end of the file", 30, || {
        let (_, offsets) = worker.get("/connectors/in/offsets");
        offsets["offsets"][0]["offset"]["position"].as_u64()
            == Some(std::fs::metadata(&input).unwrap().len())
    });
    let (_, status) = worker.get("/connectors/out/status");
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    assert_eq!(worker.stop().code, Some(0));

    // Read committed, as any Kafka consumer would: each line once, in order.
    let topic: Vec<usize> = lb
        .consume_values("data", &on_cluster)
        .iter()
        .map(|v| id_of(v))
        .collect();
    assert_eq!(
        topic,
        (0..TOTAL).collect::<Vec<_>>(),
        "the topic holds each line exactly once, in order"
    );
    let stored = lb.consume_values("connect-offsets", &on_cluster);
    assert!(
        stored.iter().any(|v| v.contains("\"position\"")),
        "source offsets live in connect-offsets: {stored:?}"
    );
    // Task states are published in connect-status, the last ones written before the worker
    // exits.
    let statuses = lb.consume_values("connect-status", &on_cluster);
    for state in ["\"RUNNING\"", "\"STOPPED\""] {
        assert!(
            statuses
                .iter()
                .any(|v| v.contains(state) && v.contains("worker_id")),
            "{state} in connect-status: {statuses:?}"
        );
    }
    let written: Vec<usize> = lines_of(&output).iter().map(|l| id_of(l)).collect();
    assert_eq!(
        written.iter().copied().collect::<BTreeSet<_>>().len(),
        TOTAL,
        "no record lost by the sink"
    );
    drop(server);
}
