//! `logbrook serve` with real Kafka clients: kcat 1.7.1 (Debian, librdkafka 2.0.2: an old client),
//! confluent-kafka (librdkafka 2.16), kafka-python (picks versions from ApiVersions) and aiokafka
//! (old, non-flexible encodings only), installed
//! by `scripts/kafka-clients.sh`. Each test ends by stopping the server with SIGTERM and reading
//! what the clients wrote with the embedded `logbrook consume`, so the records are in the log,
//! not only in the server's memory.
//!
//! Without `LOGBROOK_TEST_KCAT` / `LOGBROOK_TEST_PYTHON` the tests skip locally and fail on CI.

mod common;

use std::process::Command;

use common::Logbrook;
use common::serve::{Server, client, client_script, run_client, stop, stored};
use serde_json::{Value, json};

/// How long one client run may take before it is killed and the test fails.
const CLIENT_TIMEOUT_S: u64 = 120;

#[test]
fn kcat_lists_metadata_and_round_trips_keyed_lines() {
    let Some(kcat) = client("LOGBROOK_TEST_KCAT") else {
        return;
    };
    let lb = Logbrook::new();
    // Before the server starts: it holds the data dir's writer lock.
    lb.create_topic("lines", 3);
    let server = Server::start(&lb);
    let kcat = |args: &[&str], stdin: &str, what: &str| {
        let mut command = Command::new(&kcat);
        command.args(["-b", &server.bootstrap]).args(args);
        run_client(&mut command, stdin, CLIENT_TIMEOUT_S, what).stdout
    };

    let metadata = kcat(&["-L", "-J"], "", "kcat -L");
    let metadata: Value = serde_json::from_str(&metadata)
        .unwrap_or_else(|e| panic!("kcat -L -J printed no JSON ({e}): {metadata}"));
    assert_eq!(
        metadata["brokers"],
        json!([{"id": 0, "name": server.bootstrap}]),
        "{metadata}"
    );
    let topics = metadata["topics"].as_array().expect("topics");
    let lines = topics
        .iter()
        .find(|topic| topic["topic"] == "lines")
        .unwrap_or_else(|| panic!("kcat -L does not list the topic: {metadata}"));
    let partitions = lines["partitions"].as_array().expect("partitions");
    let ids: Vec<_> = partitions.iter().map(|p| p["partition"].clone()).collect();
    assert_eq!(ids, [json!(0), json!(1), json!(2)], "{metadata}");
    assert!(
        partitions.iter().all(|p| p["leader"] == 0),
        "every partition is led by node 0: {metadata}"
    );

    // Keyed lines into partition 1; the value of `gamma` holds the key separator.
    let produced = [
        "alpha:1",
        "beta:two words",
        "gamma:x:y",
        "delta:",
        "epsilon:5",
    ];
    let mut stdin = produced.join("\n");
    stdin.push('\n');
    let out = kcat(
        &[
            "-P",
            "-t",
            "lines",
            "-p",
            "1",
            "-K:",
            "-X",
            "enable.idempotence=false",
            "-X",
            "compression.type=none",
        ],
        &stdin,
        "kcat -P",
    );
    assert_eq!(out, "");
    let expected = "alpha=1\nbeta=two words\ngamma=x:y\ndelta=\nepsilon=5\n";

    let read = kcat(
        &[
            "-C",
            "-t",
            "lines",
            "-p",
            "1",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k=%s\n",
        ],
        "",
        "kcat -C -p 1",
    );
    assert_eq!(read, expected, "kcat reads back what it produced");

    // The whole topic: partitions 0 and 2 are empty, offsets count from 0.
    let read = kcat(
        &[
            "-C",
            "-t",
            "lines",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p %o %k=%s\n",
        ],
        "",
        "kcat -C (all partitions)",
    );
    let want: String = expected
        .lines()
        .enumerate()
        .map(|(offset, line)| format!("1 {offset} {line}\n"))
        .collect();
    assert_eq!(read, want);

    // A tail read resolves the end offset through ListOffsets.
    let read = kcat(
        &[
            "-C",
            "-t",
            "lines",
            "-p",
            "1",
            "-o",
            "-2",
            "-e",
            "-q",
            "-f",
            "%o %k=%s\n",
        ],
        "",
        "kcat -C -o -2",
    );
    assert_eq!(read, "3 delta=\n4 epsilon=5\n");

    stop(server);
    let records = stored(&lb, "lines");
    let got: Vec<_> = records
        .iter()
        .map(|(&(partition, offset), record)| {
            (
                partition,
                offset,
                record["key"].as_str().expect("a key").to_string(),
                record["value"].as_str().expect("a value").to_string(),
            )
        })
        .collect();
    let want: Vec<_> = produced
        .iter()
        .enumerate()
        .map(|(offset, line)| {
            let (key, value) = line.split_once(':').unwrap();
            (1, offset as u64, key.to_string(), value.to_string())
        })
        .collect();
    assert_eq!(got, want, "the log holds what kcat produced");
}

/// Record `i` of `produce_consume.py`: (partition, offset, key, value, headers, timestamp).
fn confluent_kafka_record(i: u64) -> (u64, u64, Value, Value, Value, Value) {
    let key = if i.is_multiple_of(100) {
        Value::Null
    } else {
        json!(format!("key-{i:04}"))
    };
    let value = format!("value-{i}-{}", "x".repeat((i % 37) as usize));
    let mut headers = vec![
        json!({"key": "seq", "value": i.to_string()}),
        json!({"key": "client", "value": "confluent-kafka"}),
    ];
    if i.is_multiple_of(10) {
        headers.push(json!({"key": "empty", "value": null}));
    }
    let timestamp = 1_767_225_600_000 + i;
    (
        i % 4,
        i / 4,
        key,
        json!(value),
        json!(headers),
        json!(timestamp),
    )
}

#[test]
fn kcat_produces_to_a_topic_its_metadata_request_creates_unless_turned_off() {
    let Some(kcat) = client("LOGBROOK_TEST_KCAT") else {
        return;
    };
    let lb = Logbrook::new();
    let server = Server::start_with(&lb, &["--num-partitions", "2"]);
    let produce = |server: &Server, topic: &str| {
        let mut command = Command::new(&kcat);
        command.args(["-b", &server.bootstrap]).args([
            "-P",
            "-t",
            topic,
            "-p",
            "1",
            "-K:",
            "-X",
            "enable.idempotence=false",
            "-X",
            "message.timeout.ms=5000",
        ]);
        common::serve::run_client_unchecked(&mut command, "k:v\n", CLIENT_TIMEOUT_S)
    };
    // librdkafka's producer asks Metadata for the topic, gets LEADER_NOT_AVAILABLE as from
    // Kafka, asks again and finds it.
    let run = produce(&server, "created");
    assert_eq!(run.code, Some(0), "kcat -P to a new topic: {run:?}");
    stop(server);
    // Partition 1 exists: `--num-partitions 2`.
    let records = stored(&lb, "created");
    assert_eq!(records.keys().copied().collect::<Vec<_>>(), [(1, 0)]);

    let server = Server::start_with(&lb, &["--auto-create-topics", "false"]);
    let run = produce(&server, "absent");
    assert_ne!(run.code, Some(0), "nothing to produce to: {run:?}");
    stop(server);
    assert!(!lb.run(&["topic", "list"]).stdout.contains("absent"));
}

#[test]
fn confluent_kafka_creates_a_topic_and_round_trips_1000_records_with_headers() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    lb.create_topic("unrelated", 1);
    let server = Server::start(&lb);
    let run = run_client(
        Command::new(&python)
            .arg(client_script("produce_consume.py"))
            .args([&server.bootstrap, "records"]),
        "",
        CLIENT_TIMEOUT_S,
        "produce_consume.py (confluent-kafka)",
    );
    let summary: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON summary");
    assert_eq!(
        summary,
        json!({"topic": "records", "partitions": 4, "records": 1000})
    );

    stop(server);
    let records = stored(&lb, "records");
    assert_eq!(records.len(), 1000, "the log holds every record");
    for i in 0..1000 {
        let (partition, offset, key, value, headers, timestamp) = confluent_kafka_record(i);
        let record = &records[&(partition, offset)];
        let where_ = format!("record {i} (records/{partition}@{offset})");
        assert_eq!(record["key"], key, "{where_}");
        assert_eq!(record["value"], value, "{where_}");
        assert_eq!(record["headers"], headers, "{where_}");
        assert_eq!(record["timestamp"], timestamp, "{where_}");
    }
}

#[test]
fn confluent_kafka_admin_client_and_offset_lookups_answer_as_kafka() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    let server = Server::start(&lb);
    let run = run_client(
        Command::new(&python)
            .arg(client_script("admin.py"))
            .args([&server.bootstrap, "admin"]),
        "",
        CLIENT_TIMEOUT_S,
        "admin.py (confluent-kafka AdminClient)",
    );
    let summary: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON summary");
    // What Apache Kafka answers for the same calls (see the script's docstring).
    assert_eq!(
        summary,
        json!({
            "offsets_for_times": [2, 2, -1],
            "retention_set": "3600000",
            "retention_default": "604800000",
            "partition_2_watermarks": [0, 1],
            "delete_records_low_watermark": 20,
            "partition_0_watermarks": [20, 50],
            "first_after_delete": [20, "v40"],
            "group_offsets": [[1, 7, "checkpoint-7"]],
            "group_offsets_after_delete": [-1001],
            "deleted": true,
        })
    );
    stop(server);
    let err = lb.fails(&["topic", "describe", "admin"]);
    assert!(err.contains("admin"), "{err}");
}

#[test]
fn kafka_python_round_trips_records_into_an_existing_topic() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    lb.create_topic("kp", 3);
    let server = Server::start(&lb);
    let run = run_client(
        Command::new(&python)
            .arg(client_script("kafka_python_round_trip.py"))
            .args([&server.bootstrap, "kp", "3"]),
        "",
        CLIENT_TIMEOUT_S,
        "kafka_python_round_trip.py (kafka-python)",
    );
    let summary: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON summary");
    assert_eq!(
        summary,
        json!({"topic": "kp", "partitions": 3, "records": 200})
    );

    stop(server);
    let records = stored(&lb, "kp");
    assert_eq!(records.len(), 200, "the log holds every record");
    for i in 0..200u64 {
        let (partition, offset) = (i % 3, i / 3);
        let record = &records[&(partition, offset)];
        let where_ = format!("record {i} (kp/{partition}@{offset})");
        assert_eq!(record["key"], json!(format!("kp-{i:03}")), "{where_}");
        assert_eq!(
            record["value"],
            json!(format!("kafka-python {i}")),
            "{where_}"
        );
        assert_eq!(
            record["headers"],
            json!([
                {"key": "seq", "value": i.to_string()},
                {"key": "client", "value": "kafka-python"},
            ]),
            "{where_}"
        );
    }
}

#[test]
fn confluent_kafka_consumer_group_rebalances_as_members_come_and_go() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    let server = Server::start(&lb);
    let run = run_client(
        Command::new(&python)
            .arg(client_script("group_rebalance.py"))
            .args([&server.bootstrap, "events", "readers"]),
        "",
        CLIENT_TIMEOUT_S,
        "group_rebalance.py (confluent-kafka)",
    );
    let summary: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON summary");
    assert_eq!(summary["alone"], json!([[0, 1, 2, 3, 4, 5]]), "{summary}");
    assert_eq!(
        summary["three"],
        json!([[0, 1], [2, 3], [4, 5]]),
        "{summary}"
    );
    assert_eq!(summary["two"], json!([[0, 1, 2], [3, 4, 5]]), "{summary}");
    assert_eq!(summary["read"], 600);
    stop(server);
    // The committed offsets are in the log, where the embedded CLI reads them.
    let described = lb.ok(&["group", "describe", "readers"]);
    assert!(described.contains("total lag 0"), "{described}");
}

#[test]
fn kcat_consumer_group_commits_and_resumes() {
    let Some(kcat) = client("LOGBROOK_TEST_KCAT") else {
        return;
    };
    let lb = Logbrook::new();
    lb.create_topic("clicks", 2);
    let server = Server::start(&lb);
    let kcat = |args: &[&str], stdin: &str, what: &str| {
        let mut command = Command::new(&kcat);
        command.args(["-b", &server.bootstrap]).args(args);
        run_client(&mut command, stdin, CLIENT_TIMEOUT_S, what).stdout
    };
    let produce = [
        "-P",
        "-t",
        "clicks",
        "-K:",
        "-X",
        "enable.idempotence=false",
    ];
    kcat(&produce, "a:1\nb:2\nc:3\nd:4\n", "kcat -P");
    let group = [
        "-G",
        "kc",
        "clicks",
        "-e",
        "-q",
        "-f",
        "%k=%s\n",
        "-X",
        "auto.offset.reset=earliest",
    ];
    let mut first: Vec<String> = kcat(&group, "", "kcat -G (first)")
        .lines()
        .map(str::to_string)
        .collect();
    first.sort();
    assert_eq!(first, ["a=1", "b=2", "c=3", "d=4"]);
    kcat(&produce, "e:5\n", "kcat -P (more)");
    // The group goes on from its committed offsets: only the new record.
    let second = kcat(&group, "", "kcat -G (second)");
    assert_eq!(second, "e=5\n");
    let metrics = server.metrics();
    for line in [
        "logbrook_serve_requests_total{api=\"JoinGroup\"}",
        "logbrook_serve_requests_total{api=\"OffsetCommit\"}",
        "logbrook_serve_group_lag_records{group=\"kc\",topic=\"clicks\",partition=\"0\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    let end_offsets: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("logbrook_serve_log_end_offset{topic=\"clicks\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(end_offsets, 5, "{metrics}");
    stop(server);
    let described = lb.ok(&["group", "describe", "kc"]);
    assert!(described.contains("total lag 0"), "{described}");
}

#[test]
fn records_acknowledged_with_acks_all_survive_kill_9_of_the_server() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    // `flush always` (the default): a produce is answered once its batch is fsynced.
    lb.create_topic("durable", 2);
    let mut acked = Vec::new();
    for round in 0..3 {
        let server = Server::start(&lb);
        let producer = Command::new(&python)
            .arg(client_script("acked_producer.py"))
            .args([&server.bootstrap, "durable", &format!("r{round}"), "20"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start acked_producer.py");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        server.kill9();
        let out = producer.wait_with_output().expect("acked_producer.py runs");
        let lines = String::from_utf8_lossy(&out.stdout).to_string();
        let before = acked.len();
        for line in lines.lines() {
            let mut parts = line.splitn(3, ' ');
            let partition: u64 = parts.next().unwrap().parse().unwrap();
            let offset: u64 = parts.next().unwrap().parse().unwrap();
            acked.push(((partition, offset), parts.next().unwrap().to_string()));
        }
        assert!(
            acked.len() > before,
            "round {round}: nothing was acknowledged before the kill\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let records = stored(&lb, "durable");
    for ((partition, offset), value) in &acked {
        let record = records.get(&(*partition, *offset)).unwrap_or_else(|| {
            panic!("acknowledged durable/{partition}@{offset} ({value}) is gone after kill -9")
        });
        assert_eq!(
            record["value"],
            json!(value),
            "durable/{partition}@{offset}"
        );
    }
}

#[test]
fn batches_compressed_with_every_codec_are_stored_as_produced_and_read_everywhere() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    lb.create_topic("packed", 4);
    let server = Server::start(&lb);
    let run = run_client(
        Command::new(&python)
            .arg(client_script("compression.py"))
            .args([&server.bootstrap, "packed"]),
        "",
        CLIENT_TIMEOUT_S,
        "compression.py (confluent-kafka)",
    );
    let summary: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON summary");
    assert_eq!(summary["records"], 800, "{summary}");
    stop(server);
    // The embedded reader decompresses them too.
    let records = stored(&lb, "packed");
    assert_eq!(records.len(), 800);
    for (partition, codec) in ["gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        for i in 0..200u64 {
            let record = &records[&(partition as u64, i)];
            assert_eq!(record["key"], json!(format!("{codec}-{i}")));
            let value = format!("{codec} record {i} ") + &"compressible ".repeat((i % 20) as usize);
            assert_eq!(record["value"], json!(value), "{codec} record {i}");
        }
    }
}

#[test]
fn a_static_member_that_restarts_gets_its_partitions_back_without_a_rebalance() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    let server = Server::start(&lb);
    let run = run_client(
        Command::new(&python)
            .arg(client_script("static_members.py"))
            .args([&server.bootstrap, "statics", "steady"]),
        "",
        CLIENT_TIMEOUT_S,
        "static_members.py (confluent-kafka)",
    );
    let summary: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON summary");
    assert_eq!(summary["revoked_from_a"], json!([]), "{summary}");
    stop(server);
}

#[test]
fn aiokafka_on_the_old_encodings_produces_and_consumes_as_a_group() {
    let Some(python) = client("LOGBROOK_TEST_PYTHON") else {
        return;
    };
    let lb = Logbrook::new();
    lb.create_topic("ak", 2);
    let server = Server::start(&lb);
    let run = run_client(
        Command::new(&python)
            .arg(client_script("aiokafka_round_trip.py"))
            .args([&server.bootstrap, "ak", "akg"]),
        "",
        CLIENT_TIMEOUT_S,
        "aiokafka_round_trip.py (aiokafka)",
    );
    let summary: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON summary");
    assert_eq!(summary, json!({"records": 100}));
    stop(server);
    assert_eq!(stored(&lb, "ak").len(), 100);
    let described = lb.ok(&["group", "describe", "akg"]);
    assert!(described.contains("total lag 0"), "{described}");
}
