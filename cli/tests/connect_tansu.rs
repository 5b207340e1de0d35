//! `logbrook connect run` on Tansu, an independent Kafka-compatible broker without working
//! transactions: sources at-least-once (`exactly_once_source_support = false`), the file
//! connectors move every line, and Kafka Connect's REST paths answer as on the embedded log.
//! Without `LOGBROOK_TEST_TANSU` the test skips locally and fails on CI.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::Logbrook;
use common::connect::{Worker, connector_file, lines_of, wait_for};
use common::tansu::Tansu;
use serde_json::json;

fn append_lines(path: &std::path::Path, ids: std::ops::Range<usize>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = ids.map(|id| format!("line-{id}\n")).collect();
    file.write_all(text.as_bytes()).unwrap();
}

fn distinct(path: &std::path::Path) -> usize {
    lines_of(path).into_iter().collect::<BTreeSet<_>>().len()
}

#[test]
fn file_connectors_and_the_rest_api_on_tansu_at_least_once() {
    let Some(tansu) = Tansu::start() else {
        return;
    };
    let lb = Logbrook::new();
    let input = lb.root().join("in.txt");
    let output = lb.root().join("out.txt");
    append_lines(&input, 0..5_000);
    let source = connector_file(
        &lb,
        "source.toml",
        &format!(
            "name = \"in\"\nconnector = \"file-source\"\ntopic = \"lines\"\npath = \"{}\"\nvalue_converter = \"string\"\n",
            input.display()
        ),
    );
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            "name = \"out\"\nconnector = \"file-sink\"\ntopics = [\"lines\"]\npath = \"{}\"\nvalue_converter = \"string\"\nformat = \"lines\"\n",
            output.display()
        ),
    );
    let worker = Worker::start_configured(
        &lb,
        "exactly_once_source_support = false\n",
        &["--bootstrap-server", tansu.bootstrap.as_str()],
        &[&source, &sink],
    );
    wait_for("every line in the sink's file", 90, || {
        distinct(&output) == 5_000
    });

    let (code, root) = worker.get("/");
    assert_eq!(code, 200);
    assert!(root["version"].is_string(), "{root}");
    assert_eq!(worker.get("/connectors").1, json!(["in", "out"]));
    worker.wait_for_tasks("in", "RUNNING");
    wait_for("the sink's offsets at the end", 30, || {
        let (_, offsets) = worker.get("/connectors/out/offsets");
        offsets["offsets"][0]["offset"]["kafka_offset"].as_u64() >= Some(5_000)
    });
    let (_, offsets) = worker.get("/connectors/in/offsets");
    assert_eq!(
        offsets["offsets"][0]["partition"]["path"],
        json!(input.display().to_string()),
        "{offsets}"
    );

    // Pause, replay the sink from offset 4990, resume: ten lines are written again.
    assert_eq!(worker.call("PUT", "/connectors/out/pause", None).0, 202);
    worker.wait_for_tasks("out", "PAUSED");
    let before = lines_of(&output).len();
    let (code, body) = worker.call(
        "PATCH",
        "/connectors/out/offsets",
        Some(json!({"offsets": [{"partition": {"kafka_topic": "lines", "kafka_partition": 0}, "offset": {"kafka_offset": 4_990}}]})),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(worker.call("PUT", "/connectors/out/resume", None).0, 202);
    worker.wait_for_tasks("out", "RUNNING");
    wait_for("ten lines replayed", 60, || {
        lines_of(&output).len() >= before + 10
    });

    // New lines still flow; a deleted connector is gone.
    append_lines(&input, 5_000..6_000);
    wait_for("the new lines", 60, || distinct(&output) == 6_000);
    assert_eq!(worker.call("DELETE", "/connectors/out", None).0, 204);
    assert_eq!(worker.get("/connectors").1, json!(["in"]));
    assert_eq!(worker.get("/connectors/out/status").0, 404);
    assert_eq!(worker.stop().code, Some(0));
}
