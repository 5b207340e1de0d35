//! `logbrook serve` with confluent-kafka's idempotent and transactional producers: producer ids
//! and sequence numbers through `kill -9`, aborted and committed transactions as read_committed
//! and read_uncommitted consumers see them, consume-transform-produce with offsets sent to the
//! transaction, zombie fencing and transaction timeouts.
//!
//! The clients are `cli/tests/clients/idempotent_producer.py` and `transactions.py`; each prints
//! what it read, and the tests compare those records with what Apache Kafka answers. Without
//! `LOGBROOK_TEST_PYTHON` the tests skip locally and fail on CI.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Logbrook;
use common::serve::{RunningClient, Server, client, client_script, run_client, stop, stored};
use serde_json::{Value, json};

/// How long one client run may take before it is killed and the test fails.
const CLIENT_TIMEOUT_S: u64 = 120;

/// Runs `transactions.py SCENARIO BOOTSTRAP ARGS` and parses its JSON summary.
fn transactions(python: &Path, server: &Server, scenario: &str, args: &[&str]) -> Value {
    let run = run_client(
        Command::new(python)
            .arg(client_script("transactions.py"))
            .args([scenario, &server.bootstrap])
            .args(args),
        "",
        CLIENT_TIMEOUT_S,
        &format!("transactions.py {scenario}"),
    );
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "transactions.py {scenario} printed no JSON summary ({e}):\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        )
    })
}

/// `[partition, offset, value]` records as the client script prints them.
fn records<'a>(records: impl IntoIterator<Item = (u64, u64, &'a str)>) -> Value {
    records
        .into_iter()
        .map(|(partition, offset, value)| json!([partition, offset, value]))
        .collect()
}

/// The values of `records` (as the client prints them) per partition, in offset order.
fn values_by_partition(records: &Value) -> BTreeMap<u64, Vec<String>> {
    let mut by_partition: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for record in records.as_array().expect("a list of records") {
        let partition = record[0].as_u64().expect("a partition");
        let value = record[2].as_str().expect("a value").to_string();
        by_partition.entry(partition).or_default().push(value);
    }
    by_partition
}

/// Waits until `producer` has printed `count` `acked` lines.
fn wait_for_acks(producer: &RunningClient, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let acked = producer
            .stdout()
            .lines()
            .filter(|line| line.starts_with("acked "))
            .count();
        if acked >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "idempotent_producer.py had {acked} of {count} records acknowledged after 60 s\n\
             --- stderr\n{}",
            producer.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_idempotent_producer_stores_each_record_once_and_in_order_through_kill_9_restarts() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    const PARTITIONS: u64 = 3;
    let lb = Logbrook::new();
    lb.create_topic("numbered", PARTITIONS as u32);
    let mut server = Server::start(&lb);
    let bootstrap = server.bootstrap.clone();
    let mut producer = RunningClient::spawn(
        Command::new(&python)
            .arg(client_script("idempotent_producer.py"))
            .args([&bootstrap, "numbered", &PARTITIONS.to_string()]),
    );
    // Each kill lands while records are produced, so some requests are in flight: written
    // and unanswered, or not written at all. The client resends them to the restarted server.
    for restart in 1..=3 {
        wait_for_acks(&producer, restart * 1000);
        server.kill9();
        std::thread::sleep(Duration::from_millis(300));
        server = Server::start_at(&lb, &bootstrap, &[]);
    }
    wait_for_acks(&producer, 4 * 1000);
    producer.close_stdin();
    let run = producer.wait(CLIENT_TIMEOUT_S);
    assert_eq!(
        run.code,
        Some(0),
        "idempotent_producer.py failed\n--- stderr\n{}",
        run.stderr
    );
    stop(server);

    let mut acked = Vec::new();
    let mut failed = Vec::new();
    let mut produced = BTreeMap::new();
    for line in run.stdout.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let number = |i: usize| -> u64 {
            fields[i]
                .parse()
                .unwrap_or_else(|e| panic!("{line:?}: {e}"))
        };
        match fields[0] {
            "acked" => acked.push((number(1), number(2), number(3))),
            "failed" => failed.push(line.to_string()),
            "produced" => {
                produced.insert(number(1), number(2));
            }
            _ => panic!("idempotent_producer.py printed {line:?}"),
        }
    }
    assert_eq!(failed, Vec::<String>::new(), "undelivered records");
    assert_eq!(
        produced.keys().copied().collect::<Vec<_>>(),
        (0..PARTITIONS).collect::<Vec<_>>()
    );
    assert_eq!(
        acked.len() as u64,
        produced.values().sum::<u64>(),
        "one acknowledgement per record"
    );
    // Record N of a partition is its Nth record, at offset N: a duplicate or a gap moves every
    // record after it.
    for &(partition, offset, n) in &acked {
        assert_eq!(
            offset, n,
            "record {partition}-{n} was acknowledged at numbered/{partition}@{offset}"
        );
    }
    let records = stored(&lb, "numbered");
    for (&partition, &count) in &produced {
        let got: Vec<(u64, String)> = records
            .range((partition, 0)..(partition + 1, 0))
            .map(|(&(_, offset), record)| {
                let value = record["value"].as_str().expect("a value").to_string();
                (offset, value)
            })
            .collect();
        let want: Vec<(u64, String)> = (0..count)
            .map(|n| (n, format!("{partition}-{n}")))
            .collect();
        if let Some(at) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
            panic!(
                "numbered/{partition} holds {} records for {count} produced; record {at} is {:?}, \
                 expected {:?} (then {:?})",
                got.len(),
                got.get(at),
                want.get(at),
                &got[(at + 1).min(got.len())..(at + 4).min(got.len())]
            );
        }
    }
}

#[test]
fn read_committed_skips_an_aborted_transaction_and_read_uncommitted_sees_both() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    lb.create_topic("txn", 2);
    let server = Server::start(&lb);
    let summary = transactions(&python, &server, "abort-commit", &["txn"]);
    // Record i goes to partition i % 2. Each partition: 4 aborted records at offsets 0..=3, the
    // abort marker at 4, 4 committed records at 5..=8, the commit marker at 9. Consumers never
    // see the markers.
    let aborted: Vec<_> = (0..8u64)
        .map(|i| (i % 2, i / 2, format!("aborted-{i}")))
        .collect();
    let committed: Vec<_> = (0..8u64)
        .map(|i| (i % 2, 5 + i / 2, format!("committed-{i}")))
        .collect();
    let mut both: Vec<_> = aborted.iter().chain(&committed).cloned().collect();
    both.sort();
    let as_records =
        |list: &[(u64, u64, String)]| records(list.iter().map(|(p, o, v)| (*p, *o, v.as_str())));
    let mut committed_sorted = committed.clone();
    committed_sorted.sort();
    assert_eq!(
        summary["read_committed"],
        as_records(&committed_sorted),
        "{summary}"
    );
    assert_eq!(summary["read_uncommitted"], as_records(&both), "{summary}");
    assert_eq!(
        summary["watermarks"],
        json!([[0, 10], [0, 10]]),
        "{summary}"
    );

    // After a crash the restarted server still knows which records were aborted.
    let bootstrap = server.bootstrap.clone();
    server.kill9();
    let server = Server::start_at(&lb, &bootstrap, &[]);
    let summary = transactions(&python, &server, "read", &["txn", "2"]);
    assert_eq!(
        summary,
        json!({
            "read_committed": as_records(&committed_sorted),
            "read_uncommitted": as_records(&both),
        }),
        "after kill -9 and restart"
    );
    stop(server);
}

#[test]
fn consume_transform_produce_writes_each_output_once_and_commits_the_input_offsets() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    lb.create_topic("in", 2);
    lb.create_topic("out", 2);
    let server = Server::start_with(&lb, &["--group-initial-rebalance-delay-ms", "0"]);
    let summary = transactions(&python, &server, "transform", &["out", "in", "xform"]);
    // Input record i: in/(i % 2)@(i / 2), value `in-i`; its output goes to out/(i % 2) as
    // `in-i@PARTITION:OFFSET`.
    let input: Vec<_> = (0..60u64)
        .map(|i| (i % 2, i / 2, format!("in-{i}")))
        .collect();
    let mut input_sorted = input.clone();
    input_sorted.sort();
    assert_eq!(
        summary["input"],
        records(input_sorted.iter().map(|(p, o, v)| (*p, *o, v.as_str()))),
        "{summary}"
    );
    let mut want: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (partition, offset, value) in &input_sorted {
        want.entry(*partition)
            .or_default()
            .push(format!("{value}@{partition}:{offset}"));
    }
    let read_committed = values_by_partition(&summary["read_committed"]);
    assert_eq!(
        read_committed, want,
        "read_committed output is the transformed input, each record once and in input order"
    );

    // The aborted round really wrote records: read_uncommitted sees them beside the committed.
    let aborted: Vec<String> = summary["aborted"]
        .as_array()
        .expect("aborted values")
        .iter()
        .map(|value| value.as_str().expect("a value").to_string())
        .collect();
    assert!(!aborted.is_empty(), "no round was aborted: {summary}");
    let mut uncommitted: Vec<String> = values_by_partition(&summary["read_uncommitted"])
        .into_values()
        .flatten()
        .collect();
    let mut expected_uncommitted: Vec<String> = want.values().flatten().cloned().collect();
    expected_uncommitted.extend(aborted.iter().cloned());
    uncommitted.sort();
    expected_uncommitted.sort();
    assert_eq!(
        uncommitted, expected_uncommitted,
        "read_uncommitted sees the committed output and the aborted round's"
    );

    assert_eq!(
        summary["committed"],
        json!([[0, 30], [1, 30]]),
        "the group's committed offsets are the end of the input: {summary}"
    );
    stop(server);
    // The offsets committed with the transaction are in the log.
    let described = lb.ok(&["group", "describe", "xform"]);
    assert!(described.contains("total lag 0"), "{described}");
}

#[test]
fn a_producer_fenced_by_a_newer_one_with_its_transactional_id_cannot_commit() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    lb.create_topic("fenced", 2);
    let server = Server::start(&lb);
    let summary = transactions(&python, &server, "fence", &["fenced"]);
    let error = &summary["a_error"];
    assert!(
        ["_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"]
            .contains(&error["name"].as_str().unwrap_or_default()),
        "the fenced producer's commit fails as fenced: {summary}"
    );
    assert_eq!(error["fatal"], json!(true), "{summary}");
    // B's init_transactions aborted A's transaction: A's records at fenced/0@0..=2, the abort
    // marker at 3, B's records from 4, B's commit marker after them. A's record for partition 1
    // was never written: its AddPartitionsToTxn was refused.
    let b = [(0, 4, "b-0"), (0, 5, "b-1"), (0, 6, "b-2"), (1, 0, "b-3")];
    assert_eq!(summary["read_committed"], records(b), "{summary}");
    let a = [(0, 0, "a-0"), (0, 1, "a-1"), (0, 2, "a-2")];
    assert_eq!(
        summary["read_uncommitted"],
        records(a.into_iter().chain(b)),
        "{summary}"
    );
    stop(server);
}

#[test]
fn a_transaction_open_past_its_timeout_is_aborted_and_no_longer_holds_back_readers() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    lb.create_topic("slow", 1);
    let server = Server::start(&lb);
    let summary = transactions(&python, &server, "timeout", &["slow"]);
    // While A's transaction (transaction.timeout.ms 3000) is open, its 3 records are below the
    // high watermark and above the last stable offset.
    let open = &summary["open"];
    assert!(
        summary["open_for_s"].as_f64().expect("open_for_s") < 3.0,
        "the open transaction's checks took longer than its timeout: {summary}"
    );
    assert_eq!(
        open["watermarks_read_uncommitted"],
        json!([[0, 3]]),
        "{summary}"
    );
    assert_eq!(
        open["watermarks_read_committed"],
        json!([[0, 0]]),
        "{summary}"
    );
    assert_eq!(open["read_committed"], json!([]), "{summary}");

    // The server aborted A: B's later transaction is visible, A's records are not.
    let read_committed = summary["read_committed"].as_array().expect("records");
    let values: Value = read_committed.iter().map(|r| r[2].clone()).collect();
    assert_eq!(values, json!(["b-0", "b-1", "b-2"]), "{summary}");
    let offsets: Vec<u64> = read_committed
        .iter()
        .map(|r| r[1].as_u64().expect("an offset"))
        .collect();
    assert!(
        offsets[0] >= 3 && offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "B's records follow A's: {summary}"
    );
    let mut uncommitted = records([(0, 0, "a-0"), (0, 1, "a-1"), (0, 2, "a-2")]);
    uncommitted
        .as_array_mut()
        .unwrap()
        .extend(read_committed.iter().cloned());
    assert_eq!(summary["read_uncommitted"], uncommitted, "{summary}");
    assert!(
        !summary["a_commit_error"].is_null(),
        "the timed-out producer's commit succeeded: {summary}"
    );
    stop(server);
}

#[test]
fn a_server_crash_at_any_step_of_ending_a_transaction_leaves_it_in_all_partitions_or_in_none() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    for action in ["commit", "abort"] {
        for point in logbrook_core::CRASH_POINTS {
            let lb = Logbrook::new();
            lb.create_topic("crash", 3);
            let server =
                Server::start_with_env(&lb, "127.0.0.1:0", &[], &[("LOGBROOK_CRASH_AT", point)]);
            let bootstrap = server.bootstrap.clone();
            let mut producer = RunningClient::spawn(
                Command::new(&python)
                    .arg(client_script("transactions.py"))
                    .args(["crash-txn", &bootstrap, "crash", "group", action]),
            );
            let crashed = server.wait_for_exit(60);
            assert!(
                crashed.code.is_none()
                    && crashed
                        .stderr
                        .contains(&format!("LOGBROOK_CRASH_AT={point}")),
                "the server did not stop at {point} ({action}): {crashed:?}\n--- client\n{}",
                producer.stderr()
            );
            producer.close_stdin();
            drop(producer);
            let server = Server::start_at(&lb, &bootstrap, &[]);
            let summary = transactions(&python, &server, "crash-check", &["crash", "group"]);
            // A commit is decided once PrepareCommit is durable; an abort never commits.
            let committed = action == "commit" && point != "txn-before-decision";
            let want = if committed {
                json!({
                    "values": (0..3).map(|p| (0..3).map(|i| format!("{p}-{i}")).collect::<Vec<_>>()).collect::<Vec<_>>(),
                    "committed": 42,
                })
            } else {
                json!({"values": [[], [], []], "committed": null})
            };
            assert_eq!(
                summary,
                want,
                "{action} crashed at {point}\n{}",
                server.stderr()
            );
            stop(server);
        }
    }
}
