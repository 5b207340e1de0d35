//! `logbrook connect run` with file-source -> topic -> postgres-sink (`exactly_once`, insert
//! mode), killed with `kill -9` while data flows and restarted: the table ends up holding every
//! line exactly once. Needs a PostgreSQL server: `LOGBROOK_TEST_PG_URL` (set by
//! `scripts/test.sh`).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Logbrook;
use common::connect::{Worker, connector_file};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const TOTAL: i64 = 20_000;

/// The admin URL of the test server.
fn server_url() -> String {
    std::env::var("LOGBROOK_TEST_PG_URL").expect(
        "LOGBROOK_TEST_PG_URL is not set: run ./scripts/test.sh, or start a server with \
         scripts/pg-server.sh start and export LOGBROOK_TEST_PG_URL=$(scripts/pg-server.sh url)",
    )
}

/// A fresh database for this test; returns its URL.
fn create_database(runtime: &tokio::runtime::Runtime, label: &str) -> String {
    let admin = server_url();
    let name = format!("lb_{label}_{}", std::process::id());
    runtime.block_on(async {
        let mut conn = PgConnection::connect(&admin).await.unwrap();
        for statement in [
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{name}\""),
        ] {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    });
    let (base, _) = admin
        .rsplit_once('/')
        .expect("LOGBROOK_TEST_PG_URL has no database part");
    format!("{base}/{name}")
}

/// `(count(*), count(DISTINCT id), min(id), max(id))` of the table, zeros while it is missing.
fn counts(runtime: &tokio::runtime::Runtime, url: &str) -> (i64, i64, i64, i64) {
    runtime.block_on(async {
        let mut conn = PgConnection::connect(url).await.unwrap();
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('orders') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if !exists {
            return (0, 0, 0, 0);
        }
        sqlx::query_as(
            "SELECT count(*), count(DISTINCT id), coalesce(min(id), 0), coalesce(max(id), 0)
             FROM orders",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
    })
}

fn append_ids(path: &std::path::Path, ids: std::ops::Range<i64>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for id in ids {
        text.push_str(&format!(
            "{{\"id\":{id},\"note\":\"line {id}\\ttab \\\"quoted\\\"\"}}\n"
        ));
    }
    file.write_all(text.as_bytes()).unwrap();
}

fn wait_until(what: &str, seconds: u64, worker: &Worker, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            worker.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_and_restart_write_every_line_to_postgres_exactly_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = create_database(&runtime, "cli_pg_sink");
    let lb = Logbrook::new();
    let input = lb.root().join("orders.jsonl");
    append_ids(&input, 0..TOTAL / 2);
    let source = connector_file(
        &lb,
        "source.toml",
        &format!(
            "name = \"orders-in\"\nconnector = \"file-source\"\ntopic = \"orders\"\n\
             path = \"{}\"\nformat = \"json\"\nbatch_max_records = 500\n",
            input.display()
        ),
    );
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            "name = \"orders-db\"\nconnector = \"postgres-sink\"\ntopics = [\"orders\"]\n\
             url = \"{url}\"\nmode = \"insert\"\nauto_create = true\nexactly_once = true\n\
             batch_rows = 1000\n"
        ),
    );

    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_until("the first rows", 60, &worker, || {
        counts(&runtime, &url).0 > 0
    });
    worker.kill9();
    let at_kill = counts(&runtime, &url).0;

    // More lines arrive while the worker is down.
    append_ids(&input, TOTAL / 2..TOTAL);
    let worker = Worker::start(&lb, &[&source, &sink]);
    wait_until("every id in the table", 120, &worker, || {
        counts(&runtime, &url).1 == TOTAL
    });
    // Give a late duplicate the time to show up before stopping.
    std::thread::sleep(Duration::from_millis(500));
    let run = worker.stop();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains(&url), "the url leaked: {}", run.stderr);

    assert_eq!(
        counts(&runtime, &url),
        (TOTAL, TOTAL, 0, TOTAL - 1),
        "each line exactly once ({at_kill} rows at the kill)"
    );
    let (note, stored): (String, Vec<(i32, i64)>) = runtime.block_on(async {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let note = sqlx::query_scalar("SELECT note FROM orders WHERE id = 7")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let stored = sqlx::query_as(
            "SELECT partition, next_offset FROM logbrook_sink_offsets \
             WHERE connector = 'orders-db' ORDER BY partition",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        (note, stored)
    });
    assert_eq!(note, "line 7\ttab \"quoted\"");
    // The stored offsets cover every record: each partition's is past its last record (and
    // at most past the commit marker that follows it).
    let mut last: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for record in lb.consume_json("orders", &[]) {
        let (partition, offset) = (record["partition"].as_i64(), record["offset"].as_i64());
        last.insert(partition.unwrap(), offset.unwrap());
    }
    let covered: std::collections::BTreeMap<i64, i64> = stored
        .iter()
        .map(|&(p, next)| (i64::from(p), next))
        .collect();
    assert_eq!(
        covered.keys().collect::<Vec<_>>(),
        last.keys().collect::<Vec<_>>()
    );
    for (partition, last) in &last {
        let next = covered[partition];
        assert!(
            next == last + 1 || next == last + 2,
            "partition {partition}: stored offset {next}, last record {last}"
        );
    }
    eprintln!("{at_kill} rows when killed");
}
