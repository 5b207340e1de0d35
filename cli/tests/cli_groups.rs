//! End-to-end tests of consumer groups through `logbrook consume --group` and `logbrook group`:
//! commits, lag, resets, and the writer lock they need.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader};

use common::{Logbrook, now_ms, rfc3339};
use logbrook_core::partition_for_key;

/// `(topic, partition, committed, end, lag)` rows of `group describe`.
fn describe_rows(lb: &Logbrook, group: &str) -> Vec<(String, u32, u64, u64, u64)> {
    lb.ok(&["group", "describe", group])
        .lines()
        .skip_while(|line| !line.starts_with("TOPIC"))
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| cells[i].parse::<u64>().expect("numeric cell");
            (
                cells[0].to_string(),
                number(1) as u32,
                number(2),
                number(3),
                number(4),
            )
        })
        .collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}-{i}:{prefix}{i}"))
        .collect()
}

/// Produces `lines` keyed by the text before `:`.
fn produce_keyed(lb: &Logbrook, topic: &str, lines: &[String]) {
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    lb.produce(topic, &["--key-separator", ":"], &lines);
}

#[test]
fn a_second_consume_with_the_same_group_prints_nothing_new() {
    let lb = Logbrook::new();
    lb.create_topic("t", 2);
    produce_keyed(&lb, "t", &numbered("k", 10));
    let mut first = lb.consume_values("t", &["--group", "g"]);
    first.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    expected.sort();
    assert_eq!(first, expected);
    assert_eq!(
        lb.consume_values("t", &["--group", "g"]),
        Vec::<String>::new()
    );

    produce_keyed(&lb, "t", &["new-1:n1".to_string()]);
    assert_eq!(lb.consume_values("t", &["--group", "g"]), ["n1"]);
    // Another group starts from the beginning.
    assert_eq!(lb.consume_values("t", &["--group", "other"]).len(), 11);
}

#[test]
fn group_consume_with_max_commits_only_what_it_printed() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    produce_keyed(&lb, "t", &numbered("k", 5));
    assert_eq!(
        lb.consume_values("t", &["--group", "g", "--max", "2"]),
        ["k0", "k1"]
    );
    assert_eq!(describe_rows(&lb, "g"), [("t".to_string(), 0, 2, 5, 3)]);
    assert_eq!(
        lb.consume_values("t", &["--group", "g"]),
        ["k2", "k3", "k4"]
    );
}

#[test]
fn group_list_and_describe_show_committed_offsets_and_lag() {
    let lb = Logbrook::new();
    lb.create_topic("t", 2);
    let lines = numbered("user", 8);
    produce_keyed(&lb, "t", &lines);
    lb.consume_values("t", &["--group", "readers"]);
    let mut ends = [0u64; 2];
    for line in &lines {
        let key = line.split_once(':').expect("keyed").0;
        ends[partition_for_key(key.as_bytes(), 2) as usize] += 1;
    }
    assert_eq!(
        describe_rows(&lb, "readers"),
        [
            ("t".to_string(), 0, ends[0], ends[0], 0),
            ("t".to_string(), 1, ends[1], ends[1], 0)
        ]
    );

    let more = ["user-0:again".to_string(), "user-0:and again".to_string()];
    produce_keyed(&lb, "t", &more);
    let p = partition_for_key(b"user-0", 2) as usize;
    let rows = describe_rows(&lb, "readers");
    assert_eq!(rows[p].2, ends[p], "committed offset unchanged");
    assert_eq!(rows[p].3, ends[p] + 2, "end offset moved");
    assert_eq!(rows[p].4, 2, "lag");
    assert_eq!(rows[1 - p].4, 0);
    assert!(
        lb.ok(&["group", "describe", "readers"])
            .starts_with("group \"readers\", total lag 2\n"),
    );

    lb.consume_values("t", &["--group", "second"]);
    assert_eq!(lb.ok(&["group", "list"]), "readers\nsecond\n");
    let stderr = lb.fails(&["group", "describe", "nobody"]);
    assert!(
        stderr.contains("unknown consumer group \"nobody\""),
        "{stderr}"
    );
}

#[test]
fn group_reset_to_earliest_replays_everything_and_dry_run_changes_nothing() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    produce_keyed(&lb, "t", &numbered("k", 4));
    assert_eq!(lb.consume_values("t", &["--group", "g"]).len(), 4);

    let dry = lb.ok(&[
        "group",
        "reset",
        "g",
        "--topic",
        "t",
        "--to-earliest",
        "--dry-run",
    ]);
    assert_eq!(dry, "t-0: 4 -> 0\ndry run: nothing was changed\n");
    assert_eq!(describe_rows(&lb, "g"), [("t".to_string(), 0, 4, 4, 0)]);
    assert_eq!(
        lb.consume_values("t", &["--group", "g"]),
        Vec::<String>::new()
    );

    let reset = lb.ok(&["group", "reset", "g", "--topic", "t", "--to-earliest"]);
    assert_eq!(
        reset,
        "t-0: 4 -> 0\ncommitted the new offsets of group \"g\"\n"
    );
    assert_eq!(
        lb.consume_values("t", &["--group", "g"]),
        ["k0", "k1", "k2", "k3"]
    );
}

#[test]
fn group_reset_moves_to_an_offset_the_latest_or_a_time() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    produce_keyed(&lb, "t", &numbered("old", 3));
    std::thread::sleep(std::time::Duration::from_millis(30));
    let split = rfc3339(now_ms());
    std::thread::sleep(std::time::Duration::from_millis(30));
    produce_keyed(&lb, "t", &numbered("new", 2));

    let out = lb.ok(&["group", "reset", "g", "--topic", "t", "--to-offset", "1"]);
    assert!(out.starts_with("t-0: none -> 1\n"), "{out}");
    assert_eq!(
        lb.consume_values("t", &["--group", "g"]),
        ["old1", "old2", "new0", "new1"]
    );
    lb.ok(&["group", "reset", "g", "--topic", "t", "--to-time", &split]);
    assert_eq!(lb.consume_values("t", &["--group", "g"]), ["new0", "new1"]);
    let out = lb.ok(&["group", "reset", "g", "--topic", "t", "--to-offset", "99"]);
    assert!(
        out.starts_with("t-0: 5 -> 5\n"),
        "clamped to the end: {out}"
    );
    lb.ok(&["group", "reset", "g", "--topic", "t", "--to-earliest"]);
    lb.ok(&["group", "reset", "g", "--topic", "t", "--to-latest"]);
    assert_eq!(
        lb.consume_values("t", &["--group", "g"]),
        Vec::<String>::new()
    );
}

#[test]
fn group_reset_needs_exactly_one_target_and_a_known_topic() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    let stderr = lb.fails(&["group", "reset", "g", "--topic", "t"]);
    assert!(stderr.contains("--to-earliest"), "{stderr}");
    let stderr = lb.fails(&[
        "group",
        "reset",
        "g",
        "--topic",
        "t",
        "--to-earliest",
        "--to-latest",
    ]);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let stderr = lb.fails(&["group", "reset", "g", "--topic", "t", "--to-time", "noon"]);
    assert!(stderr.contains("noon"), "{stderr}");
    let stderr = lb.fails(&["group", "reset", "g", "--topic", "nope", "--to-earliest"]);
    assert!(stderr.contains("unknown topic \"nope\""), "{stderr}");
}

#[test]
fn a_second_writer_on_a_locked_data_dir_fails_naming_the_holder_pid() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    produce_keyed(&lb, "t", &numbered("k", 3));
    let mut holder = lb.spawn(&["consume", "t", "--group", "g", "--follow"]);
    let pid = holder.id();
    lb.wait_for_lock_holder(pid);

    let expected = format!("is locked by another logbrook process (pid {pid})");
    for args in [
        &["topic", "create", "other"][..],
        &["topic", "delete", "t"],
        &["consume", "t", "--group", "g2"],
        &["group", "reset", "g", "--topic", "t", "--to-earliest"],
    ] {
        let stderr = lb.fails(args);
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
    }
    let stderr = lb.fails_with_stdin(&["produce", "t"], "x\n");
    assert!(stderr.contains(&expected), "{stderr}");

    // Readers need no lock.
    assert_eq!(lb.consume_values("t", &[]), ["k0", "k1", "k2"]);
    assert_eq!(lb.ok(&["topic", "list"]), "t\n");
    drop(holder);
    lb.ok(&["topic", "create", "other"]);
}

#[test]
fn sigterm_stops_a_following_group_consumer_cleanly_with_its_offsets_committed() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    produce_keyed(&lb, "t", &numbered("k", 3));
    let mut follower = lb.spawn(&["consume", "t", "--group", "g", "--follow"]);
    let mut stdout = BufReader::new(follower.child().stdout.take().expect("stdout is piped"));
    for expected in ["k0", "k1", "k2"] {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read a line");
        assert_eq!(line.trim_end(), expected);
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &follower.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    let run = follower.wait();
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(describe_rows(&lb, "g"), [("t".to_string(), 0, 3, 3, 0)]);
}
