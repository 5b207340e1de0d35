//! End-to-end tests of `logbrook demo`: a generated file goes through file-source, a streams
//! pipeline (re-key, join, windowed aggregate) and file-sink, then the pipeline is reset and
//! reprocesses history; the demo checks each step itself and can run again.
//! (`logbrook perf nexmark` is tested in `cli_nexmark.rs`.)
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::Logbrook;
use serde_json::Value;

const RECORDS: &str = "6000";
const USERS: &str = "40";

/// The lines of a results file, sorted (the sink writes partitions in no particular order).
fn sorted_lines(path: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn demo_ingests_processes_writes_resets_and_reprocesses_with_checks() {
    let lb = Logbrook::new();
    let out = lb.ok(&["demo", "--records", RECORDS, "--users", USERS]);
    for step in [
        "generate",
        "file-source",
        "streams",
        "file-sink",
        "check",
        "reset",
        "reprocess",
    ] {
        assert!(
            out.lines().any(|line| line.starts_with(step)),
            "no {step:?} step in:\n{out}"
        );
    }
    assert!(
        out.contains("ingested 6000 clicks into \"demo-clicks\" and 40 users"),
        "{out}"
    );
    assert!(
        out.contains("equals the answer computed directly from the events"),
        "{out}"
    );
    assert!(
        out.contains("results-reprocessed.jsonl equals results.jsonl"),
        "{out}"
    );
    assert!(out.contains("all checks hold"), "{out}");

    // One line per country and minute: 6,000 clicks 50 ms apart span five minutes of event time.
    let demo = lb.data_dir().join("demo");
    let results = sorted_lines(&demo.join("output/results.jsonl"));
    let rows: Vec<Value> = results
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let fields: BTreeSet<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["clicks", "country", "minute", "purchases", "revenue_cents"])
    );
    let clicks: u64 = rows.iter().map(|r| r["clicks"].as_u64().unwrap()).sum();
    assert_eq!(clicks, 6000, "every click counted once");
    let minutes: BTreeSet<&str> = rows.iter().map(|r| r["minute"].as_str().unwrap()).collect();
    assert_eq!(
        minutes,
        BTreeSet::from([
            "2024-01-01T00:00:00.000Z",
            "2024-01-01T00:01:00.000Z",
            "2024-01-01T00:02:00.000Z",
            "2024-01-01T00:03:00.000Z",
            "2024-01-01T00:04:00.000Z",
        ])
    );
    let keys: BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["minute"].as_str().unwrap(),
                r["country"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys.len(), rows.len(), "one result per country and minute");
    assert_eq!(
        sorted_lines(&demo.join("output/results-reprocessed.jsonl")),
        results
    );
    // The connector files it ran are there to be run by hand.
    lb.ok(&[
        "connect",
        "validate",
        demo.join("connectors/demo-clicks-source.toml")
            .to_str()
            .unwrap(),
        demo.join("connectors/results-sink.toml").to_str().unwrap(),
    ]);
}

#[test]
fn demo_starts_over_when_run_again_in_the_same_data_dir() {
    let lb = Logbrook::new();
    let args = ["demo", "--records", "2000", "--users", "30"];
    let first = lb.ok(&args);
    assert!(!first.contains("start over"), "{first}");
    let results = lb.data_dir().join("demo/output/results.jsonl");
    let first_results = sorted_lines(&results);

    let second = lb.ok(&args);
    assert!(second.contains("start over"), "{second}");
    assert!(second.contains("all checks hold"), "{second}");
    assert_eq!(
        sorted_lines(&results),
        first_results,
        "the same answer again"
    );
    // The topics were recreated: the clicks are in once, not twice.
    let clicks = lb.consume_values("demo-clicks", &["--from", "earliest"]);
    assert_eq!(clicks.len(), 2000);
}

#[test]
fn demo_rejects_bad_flags_naming_them() {
    let lb = Logbrook::new();
    let stderr = lb.fails(&["demo", "--records", "0"]);
    assert!(stderr.contains("--records"), "{stderr}");
    let stderr = lb.fails(&["demo", "--recrods", "10"]);
    assert!(stderr.contains("--recrods"), "{stderr}");
    let stderr = lb.fails(&["demo", "--users", "many"]);
    assert!(stderr.contains("--users"), "{stderr}");
}
