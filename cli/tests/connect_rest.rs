//! The REST API: Kafka Connect's paths and bodies, for the whole lifecycle of a connector, and
//! connectors created over REST surviving a restart.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::Logbrook;
use common::connect::{Worker, lines_of, wait_for};
use serde_json::json;

#[test]
fn rest_lifecycle_create_pause_offsets_restart_delete_and_survive_a_restart() {
    let lb = Logbrook::new();
    lb.create_topic("clicks", 2);
    let clicks: Vec<String> = (0..20).map(|i| format!(r#"{{"i": {i}}}"#)).collect();
    let clicks: Vec<&str> = clicks.iter().map(String::as_str).collect();
    lb.produce("clicks", &["--partition", "0"], &clicks[..10]);
    lb.produce("clicks", &["--partition", "1"], &clicks[10..]);
    let out_dir = lb.root().join("out");
    let worker = Worker::start(&lb, &[]);

    let (code, body) = worker.get("/connectors");
    assert_eq!((code, body), (200, json!([])));
    let (code, plugins) = worker.get("/connector-plugins");
    assert_eq!(code, 200);
    assert!(
        plugins
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["class"] == "file-sink" && p["type"] == "sink")
    );

    // Validation reports the bad key without creating anything.
    let (code, report) = worker.call(
        "PUT",
        "/connector-plugins/file-sink/config/validate",
        Some(json!({"topics": ["clicks"], "path": "/tmp/x", "format": "yaml"})),
    );
    assert_eq!(code, 200);
    assert_eq!(report["error_count"], 1, "{report}");
    let format = report["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["value"]["name"] == "format")
        .unwrap();
    assert!(
        format["value"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("unknown variant"),
        "{report}"
    );

    let config = json!({
        "connector": "file-sink",
        "topics": ["clicks"],
        "path": format!("{}/{{topic}}-{{partition}}.jsonl", out_dir.display()),
        "tasks": 2,
        "roll_bytes": 1_000_000,
    });
    let (code, created) = worker.call(
        "POST",
        "/connectors",
        Some(json!({"name": "clicks-out", "config": config})),
    );
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["type"], "sink");
    assert_eq!(created["tasks"].as_array().unwrap().len(), 2);
    let (code, _) = worker.call(
        "POST",
        "/connectors",
        Some(json!({"name": "clicks-out", "config": config})),
    );
    assert_eq!(code, 409);
    let (code, bad) = worker.call(
        "POST",
        "/connectors",
        Some(json!({"name": "bad", "config": {"connector": "file-sink", "topics": ["clicks"]}})),
    );
    assert_eq!(code, 400);
    assert!(bad["message"].as_str().unwrap().contains("path"), "{bad}");

    worker.wait_for_tasks("clicks-out", "RUNNING");
    let out0 = out_dir.join("clicks-0.jsonl");
    let out1 = out_dir.join("clicks-1.jsonl");
    wait_for("all 20 clicks written", 20, || {
        lines_of(&out0).len() + lines_of(&out1).len() == 20
    });

    // The config comes back as given.
    let (_, stored) = worker.get("/connectors/clicks-out/config");
    assert_eq!(stored["roll_bytes"], 1_000_000);
    assert_eq!(stored["name"], "clicks-out");

    // Offsets: all partitions committed to their ends.
    wait_for("offsets committed", 20, || {
        let (_, offsets) = worker.get("/connectors/clicks-out/offsets");
        let total: u64 = offsets["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["offset"]["kafka_offset"].as_u64().unwrap())
            .sum();
        total == 20
    });
    // Changing offsets needs a pause.
    let (code, body) = worker.call("DELETE", "/connectors/clicks-out/offsets", None);
    assert_eq!(code, 409);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("PUT /connectors/clicks-out/pause"),
        "{body}"
    );
    let (code, _) = worker.call("PUT", "/connectors/clicks-out/pause", None);
    assert_eq!(code, 202);
    let status = worker.wait_for_tasks("clicks-out", "PAUSED");
    assert_eq!(status["connector"]["state"], "PAUSED");

    // A source's offsets, or a topic the sink does not read, are refused with the reason.
    let (code, body) = worker.call(
        "PATCH",
        "/connectors/clicks-out/offsets",
        Some(json!({"offsets": [{"partition": {"path": "/in.txt"}, "offset": {"position": 1}}]})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("kafka_topic"),
        "{body}"
    );
    let (code, body) = worker.call(
        "PATCH",
        "/connectors/clicks-out/offsets",
        Some(json!({"offsets": [{"partition": {"kafka_topic": "views", "kafka_partition": 0}, "offset": {"kafka_offset": 1}}]})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("does not read topic \"views\""),
        "{body}"
    );

    // Replay partition 0 from offset 5: five records are written again after resume.
    let partition0 = 0;
    let before = lines_of(&out0).len();
    assert_eq!(before, 10);
    let (code, body) = worker.call(
        "PATCH",
        "/connectors/clicks-out/offsets",
        Some(json!({"offsets": [{"partition": {"kafka_topic": "clicks", "kafka_partition": partition0}, "offset": {"kafka_offset": 5}}]})),
    );
    assert_eq!(code, 200, "{body}");
    let (_, offsets) = worker.get("/connectors/clicks-out/offsets");
    assert!(
        offsets["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["partition"]["kafka_partition"] == partition0
                && o["offset"]["kafka_offset"] == 5),
        "{offsets}"
    );
    let (code, _) = worker.call("PUT", "/connectors/clicks-out/resume", None);
    assert_eq!(code, 202);
    worker.wait_for_tasks("clicks-out", "RUNNING");
    let replayed = out_dir.join(format!("clicks-{partition0}.jsonl"));
    wait_for("five records replayed", 20, || {
        lines_of(&replayed).len() == before + 5
    });

    // Update the config in place: 200, not 201.
    let mut updated = config.clone();
    updated["tasks"] = json!(1);
    let (code, body) = worker.call("PUT", "/connectors/clicks-out/config", Some(updated));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["tasks"].as_array().unwrap().len(), 1);
    let (code, _) = worker.call("POST", "/connectors/clicks-out/restart", None);
    assert_eq!(code, 204);
    worker.wait_for_tasks("clicks-out", "RUNNING");

    // Pause it, then restart the worker: it comes back, still paused, with its config.
    worker.call("PUT", "/connectors/clicks-out/pause", None);
    worker.wait_for_tasks("clicks-out", "PAUSED");
    let (_, metrics) = worker.get("/metrics");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains(r#"logbrook_connect_records_out_total{connector="clicks-out""#)
    );
    assert_eq!(worker.stop().code, Some(0));

    let worker = Worker::start(&lb, &[]);
    let (_, names) = worker.get("/connectors");
    assert_eq!(names, json!(["clicks-out"]));
    let status = worker.wait_for_tasks("clicks-out", "PAUSED");
    assert_eq!(status["tasks"].as_array().unwrap().len(), 1);
    let (code, _) = worker.call("DELETE", "/connectors/clicks-out", None);
    assert_eq!(code, 204);
    let (code, missing) = worker.get("/connectors/clicks-out");
    assert_eq!(code, 404);
    assert_eq!(missing["error_code"], 404);
    assert_eq!(worker.stop().code, Some(0));

    // Deleted connectors stay deleted.
    let worker = Worker::start(&lb, &[]);
    assert_eq!(worker.get("/connectors").1, json!([]));
    assert_eq!(worker.stop().code, Some(0));
}

#[test]
fn a_sink_replays_a_topic_from_a_timestamp() {
    let lb = Logbrook::new();
    lb.create_topic("events", 1);
    let base = common::now_ms() - 60_000;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let broker = logbrook_core::Broker::open(lb.data_dir()).await.unwrap();
        let producer = logbrook_core::Producer::new(broker.clone(), Default::default());
        for i in 0..6 {
            let mut record =
                logbrook_core::ProducerRecord::new("events", format!(r#"{{"i": {i}}}"#));
            record.timestamp = Some(base + i * 1000);
            producer.send(record).await.unwrap().await.unwrap();
        }
        broker.close().await.unwrap();
    });
    let out = lb.root().join("events.jsonl");
    let worker = Worker::start(&lb, &[]);
    let (code, _) = worker.call(
        "PUT",
        "/connectors/replay/config",
        Some(json!({"connector": "file-sink", "topics": ["events"], "path": out.display().to_string()})),
    );
    assert_eq!(code, 201);
    wait_for("six records", 20, || lines_of(&out).len() == 6);
    worker.call("PUT", "/connectors/replay/pause", None);
    worker.wait_for_tasks("replay", "PAUSED");
    let (code, body) = worker.call(
        "PATCH",
        "/connectors/replay/offsets",
        Some(json!({"to_timestamp": common::rfc3339(base + 3000)})),
    );
    assert_eq!(code, 200, "{body}");
    worker.call("PUT", "/connectors/replay/resume", None);
    wait_for("three replayed", 20, || lines_of(&out).len() == 9);
    assert_eq!(
        &lines_of(&out)[6..],
        &[r#"{"i":3}"#, r#"{"i":4}"#, r#"{"i":5}"#]
    );
    assert_eq!(worker.stop().code, Some(0));
}
