//! End-to-end tests of `logbrook topic`: create, list, describe, delete and their errors.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;

use common::Logbrook;

/// The `key value` lines before the partition table of `topic describe`.
fn settings(describe: &str) -> HashMap<String, String> {
    describe
        .lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(char::is_whitespace))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The rows of the partition table of `topic describe`, as numbers.
fn partition_rows(describe: &str) -> Vec<Vec<u64>> {
    describe
        .lines()
        .skip_while(|line| !line.starts_with("PARTITION"))
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .map(|cell| cell.parse().expect("numeric cell"))
                .collect()
        })
        .collect()
}

#[test]
fn topic_create_list_describe_and_delete_round_trip() {
    let lb = Logbrook::new();
    let created = lb.ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--retention-ms",
        "60000",
        "--retention-bytes",
        "1048576",
        "--segment-bytes",
        "65536",
        "--segment-ms",
        "3600000",
        "--cleanup-policy",
        "compact",
        "--flush",
        "interval:50",
        "--timestamp-type",
        "log-append-time",
        "--max-message-bytes",
        "100000",
    ]);
    assert_eq!(created, "created topic \"orders\" with 3 partition(s)\n");
    lb.create_topic("payments", 1);
    assert_eq!(lb.ok(&["topic", "list"]), "orders\npayments\n");

    let describe = lb.ok(&["topic", "describe", "orders"]);
    let settings = settings(&describe);
    for (key, value) in [
        ("topic", "orders"),
        ("partitions", "3"),
        ("cleanup_policy", "compact"),
        ("retention_ms", "60000"),
        ("retention_bytes", "1048576"),
        ("segment_bytes", "65536"),
        ("segment_ms", "3600000"),
        ("flush", "interval:50"),
        ("timestamp_type", "log-append-time"),
        ("max_message_bytes", "100000"),
    ] {
        assert_eq!(settings.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert_eq!(
        partition_rows(&describe),
        vec![
            vec![0, 0, 0, 0, 1],
            vec![1, 0, 0, 0, 1],
            vec![2, 0, 0, 0, 1]
        ]
    );

    lb.produce(
        "orders",
        &["--partition", "1", "--key-separator", "="],
        &["a=1", "b=2", "c=3", "d=4", "e=5"],
    );
    let rows = partition_rows(&lb.ok(&["topic", "describe", "orders"]));
    assert_eq!(rows[1][..3], [1, 0, 5], "partition 1 holds offsets 0..5");
    assert!(rows[1][3] > 0, "partition 1 has bytes: {rows:?}");
    assert_eq!(rows[0][2], 0);
    assert_eq!(rows[2][2], 0);

    assert_eq!(
        lb.ok(&["topic", "delete", "orders"]),
        "deleted topic \"orders\"\n"
    );
    assert_eq!(lb.ok(&["topic", "list"]), "payments\n");
    let stderr = lb.fails(&["topic", "describe", "orders"]);
    assert!(stderr.contains("unknown topic \"orders\""), "{stderr}");
}

#[test]
fn unset_options_keep_the_core_defaults_and_none_disables_a_limit() {
    let lb = Logbrook::new();
    lb.ok(&["topic", "create", "t", "--retention-ms", "none"]);
    let settings = settings(&lb.ok(&["topic", "describe", "t"]));
    assert_eq!(settings["partitions"], "1");
    assert_eq!(settings["retention_ms"], "none");
    assert_eq!(settings["retention_bytes"], "none");
    assert_eq!(settings["segment_bytes"], (1u64 << 30).to_string());
    assert_eq!(settings["cleanup_policy"], "delete");
    assert_eq!(settings["flush"], "always");
    assert_eq!(settings["timestamp_type"], "create-time");
}

#[test]
fn keyless_lines_are_rejected_on_a_compacted_topic_naming_the_line() {
    let lb = Logbrook::new();
    lb.ok(&["topic", "create", "latest", "--cleanup-policy", "compact"]);
    let stderr = lb.fails_with_stdin(
        &["produce", "latest", "--key-separator", "="],
        "k=v\nno key here\n",
    );
    assert!(
        stderr.contains("line 2 of stdin has no key") && stderr.contains("\"latest\""),
        "{stderr}"
    );
}

#[test]
fn list_hides_the_internal_topics_unless_asked() {
    let lb = Logbrook::new();
    lb.create_topic("visible", 1);
    assert_eq!(lb.ok(&["topic", "list"]), "visible\n");
    assert_eq!(
        lb.ok(&["topic", "list", "--include-internal"]),
        "__consumer_offsets\n__transaction_state\nvisible\n"
    );
}

#[test]
fn creating_an_existing_topic_fails_naming_it() {
    let lb = Logbrook::new();
    lb.create_topic("dup", 2);
    let stderr = lb.fails(&["topic", "create", "dup"]);
    assert!(stderr.contains("topic \"dup\" already exists"), "{stderr}");
}

#[test]
fn invalid_topic_names_are_rejected_without_touching_other_paths() {
    let lb = Logbrook::new();
    let stderr = lb.fails(&["topic", "create", "../x"]);
    assert!(stderr.contains("invalid topic name \"../x\""), "{stderr}");
    assert!(!lb.root().join("x").exists());
    assert!(!lb.data_dir().join("x").exists());
    let stderr = lb.fails(&["topic", "create", "a b"]);
    assert!(stderr.contains("invalid topic name \"a b\""), "{stderr}");
    assert_eq!(lb.ok(&["topic", "list"]), "");
}

#[test]
fn bad_option_values_are_rejected_naming_option_and_value() {
    let lb = Logbrook::new();
    let stderr = lb.fails(&["topic", "create", "t", "--flush", "sometimes"]);
    assert!(
        stderr.contains("--flush") && stderr.contains("sometimes"),
        "{stderr}"
    );
    let stderr = lb.fails(&["topic", "create", "t", "--flush", "interval:0"]);
    assert!(stderr.contains("interval:0"), "{stderr}");
    let stderr = lb.fails(&["topic", "create", "t", "--cleanup-policy", "shred"]);
    assert!(
        stderr.contains("--cleanup-policy") && stderr.contains("shred"),
        "{stderr}"
    );
    let stderr = lb.fails(&["topic", "create", "t", "--timestamp-type", "now"]);
    assert!(stderr.contains("--timestamp-type"), "{stderr}");
    let stderr = lb.fails(&["topic", "create", "t", "--partitions", "0"]);
    assert!(stderr.contains("partitions"), "{stderr}");
    let stderr = lb.fails(&["topic", "create", "t", "--segment-bytes", "10"]);
    assert!(stderr.contains("segment_bytes"), "{stderr}");
    let stderr = lb.fails(&["topic", "create", "t", "--retention-ms", "soon"]);
    assert!(stderr.contains("soon"), "{stderr}");
}

#[test]
fn read_only_commands_on_a_missing_data_dir_name_the_dir_and_create_nothing() {
    let lb = Logbrook::new();
    let dir = lb.data_dir().display().to_string();
    for args in [
        &["topic", "list"][..],
        &["topic", "describe", "t"],
        &["consume", "t"],
        &["group", "list"],
        &["group", "describe", "g"],
    ] {
        let stderr = lb.fails(args);
        assert!(
            stderr.contains(&dir) && stderr.contains("does not exist"),
            "{args:?}: {stderr}"
        );
    }
    let stderr = lb.fails(&["topic", "delete", "t"]);
    assert!(stderr.contains(&dir), "{stderr}");
    assert!(!lb.data_dir().exists());
}

#[test]
fn deleting_an_unknown_topic_fails_naming_it() {
    let lb = Logbrook::new();
    lb.create_topic("t", 1);
    let stderr = lb.fails(&["topic", "delete", "nope"]);
    assert!(stderr.contains("unknown topic \"nope\""), "{stderr}");
}

#[test]
fn the_data_dir_can_come_from_the_environment() {
    let lb = Logbrook::new();
    let dir = lb.root().join("from-env");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_logbrook"))
        .args(["topic", "create", "env-topic"])
        .env("LOGBROOK_DATA_DIR", &dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run logbrook");
    assert!(status.success());
    assert!(
        dir.join("topics")
            .join("env-topic")
            .join("topic.json")
            .is_file()
    );
}
