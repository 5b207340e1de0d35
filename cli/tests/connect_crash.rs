//! `kill -9` of `logbrook connect run` and a restart: the file source resumes at its exact byte
//! position (no loss, no duplicates in the topic); the file sink resumes from its committed
//! offsets (no loss; records after the last commit may be written twice).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;

use common::Logbrook;
use common::connect::{Worker, append_ids, file_pipeline, lines_of, wait_for};
use serde_json::Value;

const TOTAL: usize = 40_000;

fn ids_in(lines: &[String]) -> Vec<usize> {
    lines
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_u64()
                .unwrap() as usize
        })
        .collect()
}

#[test]
fn kill_9_and_restart_loses_nothing_and_the_source_duplicates_nothing() {
    let lb = Logbrook::new();
    let input = lb.root().join("in.jsonl");
    let output = lb.root().join("out.jsonl");
    append_ids(&input, 0..TOTAL / 2);
    let (source, sink) = file_pipeline(&lb, &input, &output);

    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_for("some output", 30, || !lines_of(&output).is_empty());
    worker.kill9();
    let after_kill = lines_of(&output).len();

    // More data arrives while the worker is down.
    append_ids(&input, TOTAL / 2..TOTAL);
    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_for("every id in the output", 60, || {
        ids_in(&lines_of(&output))
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len()
            == TOTAL
    });
    wait_for("the source's offset at the end of the file", 30, || {
        let (_, offsets) = worker.get("/connectors/in/offsets");
        offsets["offsets"][0]["offset"]["position"].as_u64()
            == Some(std::fs::metadata(&input).unwrap().len())
    });
    assert_eq!(worker.stop().code, Some(0));

    let topic: Vec<usize> = lb
        .consume_values("data", &[])
        .iter()
        .map(|v| {
            serde_json::from_str::<Value>(v).unwrap()["id"]
                .as_u64()
                .unwrap() as usize
        })
        .collect();
    assert_eq!(
        topic,
        (0..TOTAL).collect::<Vec<_>>(),
        "the topic holds each line exactly once, in order"
    );

    let written = ids_in(&lines_of(&output));
    let distinct: BTreeSet<usize> = written.iter().copied().collect();
    assert_eq!(distinct.len(), TOTAL, "no record lost by the sink");
    eprintln!(
        "sink wrote {} lines for {TOTAL} records ({} before the kill)",
        written.len(),
        after_kill
    );
}
