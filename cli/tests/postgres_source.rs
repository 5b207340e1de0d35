//! `postgres-source` through the real binary: a CDC source killed with `kill -9` mid-stream and
//! restarted, and a server restarted under a running source. The topic must hold every change
//! exactly once, in commit order.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::Logbrook;
use common::connect::{Worker, connector_file, lines_of, wait_for};
use common::postgres::{create_database, psql, server_url};
use serde_json::Value;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn ids_in(lines: &[String]) -> Vec<i64> {
    lines
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// The ids of the row records in a topic, in order.
fn topic_ids(lb: &Logbrook, topic: &str) -> Vec<i64> {
    lb.consume_values(topic, &[])
        .iter()
        .map(|v| {
            serde_json::from_str::<Value>(v).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

fn cdc_connectors(
    lb: &Logbrook,
    url: &str,
    slot: &str,
    output: &Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let source = connector_file(
        lb,
        "source.toml",
        &format!(
            "name = \"cdc\"\nconnector = \"postgres-source\"\ntopic = \"rows\"\nurl = \"{url}\"\n\
             table = \"public.events\"\nmode = \"cdc\"\nenvelope = \"row\"\nslot = \"{slot}\"\n\
             batch_rows = 500\npoll_interval_ms = 50\ndrop_slot_on_delete = true\n"
        ),
    );
    let sink = connector_file(
        lb,
        "sink.toml",
        &format!(
            "name = \"out\"\nconnector = \"file-sink\"\ntopics = [\"rows\"]\npath = \"{}\"\n",
            output.display()
        ),
    );
    (source, sink)
}

#[test]
fn cdc_survives_kill_9_with_every_change_once_in_the_topic() {
    let url = create_database(
        &server_url(),
        &format!("lb_cdc_kill_{}", std::process::id()),
    );
    let slot = format!("cli_kill_{}", std::process::id());
    psql(&url, "CREATE TABLE events (id int PRIMARY KEY, body text)");
    psql(
        &url,
        "INSERT INTO events SELECT g, 'snap' FROM generate_series(0, 1999) g",
    );
    let lb = Logbrook::new();
    let output = lb.root().join("out.jsonl");
    let (source, sink) = cdc_connectors(&lb, &url, &slot, &output);

    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_for("the snapshot in the output", 60, || {
        lines_of(&output).len() >= 2000
    });
    // Transactions keep committing while the worker dies.
    let writer = {
        let url = url.clone();
        std::thread::spawn(move || {
            for batch in 0..40 {
                let from = 2000 + batch * 250;
                psql(
                    &url,
                    &format!(
                        "INSERT INTO events SELECT g, 'live' FROM generate_series({from}, {}) g",
                        from + 249
                    ),
                );
            }
        })
    };
    wait_for("streamed changes in the output", 60, || {
        lines_of(&output).len() >= 3000
    });
    worker.kill9();
    writer.join().unwrap();

    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_for("every row in the output", 90, || {
        ids_in(&lines_of(&output))
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len()
            == 12_000
    });
    assert_eq!(worker.stop().code, Some(0));
    let ids = topic_ids(&lb, "rows");
    assert_eq!(
        ids,
        (0..12_000).collect::<Vec<_>>(),
        "each row exactly once, in commit order"
    );
}

#[test]
fn a_server_restart_under_a_running_cdc_source_loses_and_repeats_nothing() {
    // A server of its own: restarting the shared one would disturb other tests.
    let port = 55000 + (std::process::id() % 400) as u16 + 440;
    let data = std::env::temp_dir().join(format!("lb-pg-restart-{}", std::process::id()));
    let server = |action: &str| {
        let status = Command::new(repo_root().join("scripts/pg-server.sh"))
            .arg(action)
            .env("LOGBROOK_PG_PORT", port.to_string())
            .env("LOGBROOK_PG_DATA", &data)
            .status()
            .unwrap();
        assert!(status.success(), "pg-server.sh {action}");
    };
    server("start");
    struct Destroy<F: Fn(&str)>(F);
    impl<F: Fn(&str)> Drop for Destroy<F> {
        fn drop(&mut self) {
            (self.0)("destroy");
        }
    }
    let _cleanup = Destroy(server);
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let url = create_database(&admin, "restarted");
    psql(&url, "CREATE TABLE events (id int PRIMARY KEY, body text)");
    let lb = Logbrook::new();
    let output = lb.root().join("out.jsonl");
    let (source, sink) = cdc_connectors(&lb, &url, "restart_slot", &output);
    let worker = Worker::start(&lb, &[&source, &sink]);
    psql(
        &url,
        "INSERT INTO events SELECT g, 'a' FROM generate_series(0, 999) g",
    );
    wait_for("the first rows", 60, || lines_of(&output).len() >= 1000);

    let status = Command::new(repo_root().join("scripts/pg-server.sh"))
        .arg("restart")
        .env("LOGBROOK_PG_PORT", port.to_string())
        .env("LOGBROOK_PG_DATA", &data)
        .status()
        .unwrap();
    assert!(status.success());
    psql(
        &url,
        "INSERT INTO events SELECT g, 'b' FROM generate_series(1000, 2999) g",
    );
    wait_for("the rows after the restart", 90, || {
        ids_in(&lines_of(&output))
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len()
            == 3000
    });
    let (_, status) = worker.get("/connectors/cdc/status");
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    assert_eq!(worker.stop().code, Some(0));
    assert_eq!(topic_ids(&lb, "rows"), (0..3000).collect::<Vec<_>>());
}
