//! `logbrook perf nexmark` checks every query's output row by row against rows computed by
//! hand from the generated events, and fails on any difference or any record dropped as late:
//! on one or many partitions, and with input out of order within the grace period.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::Logbrook;
use serde_json::Value;

/// The queries with windows, a re-key or a join: where results depend on event time.
const WINDOWED: [&str; 4] = ["q5", "q7", "count", "q8"];

/// Runs `perf nexmark --json` with `args`, asserts it succeeded and returns its rows.
fn nexmark(args: &[&str]) -> Vec<Value> {
    let lb = Logbrook::new();
    let mut all = vec!["perf", "nexmark", "--json"];
    all.extend_from_slice(args);
    lb.ok(&all)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Asserts one row per query of `queries`, in order, each with the expected rows and no
/// record dropped as late.
fn assert_checked(rows: &[Value], queries: &[&str]) {
    let names: Vec<&str> = rows.iter().map(|r| r["query"].as_str().unwrap()).collect();
    assert_eq!(names, queries);
    for row in rows {
        assert_eq!(row["check"], "ok", "{row}");
        assert_eq!(row["late_records_dropped"], 0, "{row}");
        assert_eq!(row["rows_missing"], 0, "{row}");
        assert_eq!(row["rows_unexpected"], 0, "{row}");
        assert!(row["outputs"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["outputs"], row["hand_outputs"], "{row}");
        assert!(
            row["events_per_s_per_core"].as_f64().unwrap() > 0.0,
            "{row}"
        );
    }
}

fn windowed_queries_on(partitions: &str, extra: &[&str]) {
    let mut args = vec![
        "--events",
        "20000",
        "--queries",
        "q5,q7,count,q8",
        "--partitions",
        partitions,
    ];
    args.extend_from_slice(extra);
    let rows = nexmark(&args);
    assert_checked(&rows, &WINDOWED);
    for row in &rows {
        assert_eq!(row["partitions"].as_u64().unwrap().to_string(), partitions);
    }
}

#[test]
fn windowed_queries_write_exactly_the_expected_rows_on_one_partition() {
    windowed_queries_on("1", &[]);
}

#[test]
fn windowed_queries_write_exactly_the_expected_rows_on_two_partitions() {
    windowed_queries_on("2", &[]);
}

#[test]
fn windowed_queries_write_exactly_the_expected_rows_on_four_partitions() {
    windowed_queries_on("4", &[]);
}

#[test]
fn windowed_queries_drop_nothing_when_input_is_out_of_order_within_the_grace_period() {
    windowed_queries_on("2", &["--disorder-ms", "500"]);
}

/// The same queries through the Kafka protocol: each app a client of an in-process
/// `logbrook serve` (exactly-once through Kafka transactions, disordered input, a join).
#[test]
fn windowed_queries_write_exactly_the_expected_rows_as_clients_of_a_server() {
    windowed_queries_on("2", &["--serve", "--disorder-ms", "500"]);
}

/// Two instances on the server split each query's tasks (one task each of 3): repartitioned
/// records and end-of-input markers cross between them through the server.
#[test]
fn two_instances_splitting_the_tasks_write_exactly_the_expected_rows() {
    let rows = nexmark(&[
        "--events",
        "20000",
        "--queries",
        "q5,q7,count,q8",
        "--partitions",
        "3",
        "--serve",
        "--instances",
        "2",
        "--disorder-ms",
        "500",
    ]);
    assert_checked(&rows, &WINDOWED);
    assert!(rows.iter().all(|r| r["instances"] == 2), "{rows:?}");
}

/// 3 s of disorder spans more than one read batch: with no grace period this run drops records
/// as late and writes wrong rows (500 ms of disorder is absorbed within a batch).
#[test]
fn windowed_queries_keep_records_out_of_order_by_seconds_within_the_grace_period() {
    windowed_queries_on("2", &["--disorder-ms", "3000"]);
}

#[test]
fn every_query_is_checked_by_default_and_the_table_says_ok() {
    let lb = Logbrook::new();
    let out = lb.ok(&["perf", "nexmark", "--events", "5000"]);
    let mut lines = out.lines().skip_while(|line| !line.starts_with("QUERY"));
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.trim().is_empty())
        .collect();
    let late = header.iter().position(|c| c.trim() == "LATE").unwrap();
    let rows: Vec<Vec<&str>> = lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.split_whitespace().collect())
        .collect();
    let queries: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(queries, ["q1", "q2", "q5", "q7", "count", "q8"], "{out}");
    for row in &rows {
        assert_eq!(row[late], "0", "{out}");
        assert_eq!(row.last(), Some(&"ok"), "{out}");
    }
}
