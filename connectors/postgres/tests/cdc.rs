//! `postgres-source` in `cdc` mode against a real server (`wal_level = logical`): snapshot,
//! inserts/updates/deletes, restarts mid-transaction, the snapshot's consistency with the
//! slot, both envelopes, and the slot's life cycle.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::{TestDb, poll_n, values};
use logbrook_connect::{Source, SourceConnector, SourceContext, SourceRecord};
use logbrook_connector_postgres::source::PostgresSourceConfig;
use serde_json::{Value, json};
use sqlx::Connection;

async fn open(config: &Value, offsets: Vec<(Value, Value)>) -> Box<dyn Source> {
    let config: PostgresSourceConfig = serde_json::from_value(config.clone()).unwrap();
    config.validate().unwrap();
    config
        .open(SourceContext::new("cdc-test", 0, "changes", offsets))
        .await
        .unwrap()
}

/// `op:id` of each change event, e.g. `c:6`.
fn ops(records: &[SourceRecord]) -> Vec<String> {
    values(records)
        .iter()
        .map(|v| {
            let row = if v["after"].is_null() {
                &v["before"]
            } else {
                &v["after"]
            };
            format!("{}:{}", v["op"].as_str().unwrap(), row["id"])
        })
        .collect()
}

async fn confirmed_lsn(db: &TestDb, slot: &str) -> Option<String> {
    let pool = db.pool().await;
    sqlx::query_scalar(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&pool)
    .await
    .unwrap()
    .flatten()
}

fn lsn_value(text: &str) -> u64 {
    let (high, low) = text.split_once('/').unwrap();
    u64::from_str_radix(high, 16).unwrap() << 32 | u64::from_str_radix(low, 16).unwrap()
}

async fn drop_slot(db: &TestDb, slot: &str) {
    db.exec(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ))
    .await;
}

#[tokio::test]
async fn snapshot_then_changes_and_a_restart_in_the_middle_of_a_transaction() {
    let db = TestDb::new("cdc_main").await;
    let slot = format!("t_main_{}", std::process::id());
    db.exec(
        "CREATE TABLE public.orders (id int PRIMARY KEY, item text, qty int); \
             INSERT INTO orders SELECT g, 'item-' || g, g FROM generate_series(1, 5) g",
    )
    .await;
    let config = json!({
        "url": db.url, "table": "public.orders", "mode": "cdc", "slot": slot,
        "batch_rows": 3, "poll_interval_ms": 50, "topic_prefix": "pg."
    });
    let mut source = open(&config, vec![]).await;

    let snapshot = poll_n(&mut source, 5, true).await;
    assert_eq!(ops(&snapshot), ["r:1", "r:2", "r:3", "r:4", "r:5"]);
    assert_eq!(snapshot[0].record.topic, "pg.public.orders");
    assert_eq!(snapshot[0].record.key, Some(json!({"id": 1})));
    assert_eq!(
        values(&snapshot)[4]["after"],
        json!({"id": 5, "item": "item-5", "qty": 5})
    );
    assert_eq!(values(&snapshot)[0]["source"]["snapshot"], true);
    assert!(
        snapshot[..4]
            .iter()
            .all(|r| r.source_offset["snapshot_done"] == false)
    );
    assert_eq!(snapshot[4].source_offset["snapshot_done"], true);

    db.exec("INSERT INTO orders VALUES (6, 'new', 1)").await;
    db.exec("UPDATE orders SET qty = 20 WHERE id = 2").await;
    db.exec("DELETE FROM orders WHERE id = 3").await;
    let changes = poll_n(&mut source, 3, true).await;
    assert_eq!(ops(&changes), ["c:6", "u:2", "d:3"]);
    let update = &values(&changes)[1];
    assert_eq!(
        update["after"],
        json!({"id": 2, "item": "item-2", "qty": 20})
    );
    assert_eq!(update["source"]["table"], "orders");
    assert_eq!(update["source"]["schema"], "public");
    assert!(update["source"]["txid"].as_u64().unwrap() > 0);
    assert!(
        update["source"]["commit_time"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(values(&changes)[2]["before"]["id"], 3);
    assert!(values(&changes)[2]["after"].is_null());
    // The slot was advanced past what reached the log, and no further.
    let confirmed = lsn_value(&confirmed_lsn(&db, &slot).await.unwrap());
    let stored = lsn_value(changes[2].source_offset["lsn"].as_str().unwrap());
    assert_eq!(confirmed, stored);

    // One transaction of four changes; only two reach the log before a crash (no commit).
    db.exec(
        "BEGIN; INSERT INTO orders VALUES (7, 'a', 1), (8, 'b', 1); \
             UPDATE orders SET item = 'c' WHERE id = 7; DELETE FROM orders WHERE id = 8; COMMIT",
    )
    .await;
    let polled = poll_n(&mut source, 4, false).await;
    assert_eq!(ops(&polled), ["c:7", "c:8", "u:7", "d:8"]);
    drop(source);
    assert_eq!(
        lsn_value(&confirmed_lsn(&db, &slot).await.unwrap()),
        confirmed,
        "the slot must not move before the records are in the log"
    );
    let stored = vec![(
        polled[1].source_partition.clone(),
        polled[1].source_offset.clone(),
    )];
    let mut source = open(&config, stored).await;
    let rest = poll_n(&mut source, 2, true).await;
    assert_eq!(
        ops(&rest),
        ["u:7", "d:8"],
        "exactly the changes after the stored offset"
    );
    drop(source);

    // After everything reached the log, a restart brings nothing again.
    let stored = vec![(
        rest[1].source_partition.clone(),
        rest[1].source_offset.clone(),
    )];
    let mut source = open(&config, stored).await;
    for _ in 0..3 {
        assert!(source.poll().await.unwrap().is_empty());
    }
    source.close().await.unwrap();
    drop_slot(&db, &slot).await;
}

#[tokio::test]
async fn the_snapshot_and_the_stream_agree_on_every_transaction() {
    let db = TestDb::new("cdc_consistent").await;
    let slot = format!("t_consistent_{}", std::process::id());
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await;
    // Publication first, then the slot, as the connector does (pgoutput reads the publication
    // as of each change's position).
    db.exec(&format!("CREATE PUBLICATION {slot} FOR TABLE t"))
        .await;
    db.exec(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ))
    .await;
    // Committed after the slot exists: in the stream AND visible to the snapshot.
    db.exec("INSERT INTO t VALUES (100)").await;
    // In progress while the snapshot is taken: not in the snapshot, so it must be streamed.
    let mut open_txn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; INSERT INTO t VALUES (200)")
        .execute(&mut open_txn)
        .await
        .unwrap();

    let config = json!({"url": db.url, "table": "t", "mode": "cdc", "slot": slot, "poll_interval_ms": 50, "topic_prefix": ""});
    let mut source = open(&config, vec![]).await;
    let snapshot = poll_n(&mut source, 1, true).await;
    assert_eq!(ops(&snapshot), ["r:100"]);
    sqlx::raw_sql("COMMIT")
        .execute(&mut open_txn)
        .await
        .unwrap();
    db.exec("INSERT INTO t VALUES (300)").await;
    let streamed = poll_n(&mut source, 2, true).await;
    assert_eq!(
        ops(&streamed),
        ["c:200", "c:300"],
        "100 must not come twice"
    );
    source.close().await.unwrap();
    drop_slot(&db, &slot).await;
}

#[tokio::test]
async fn the_row_envelope_feeds_sinks_rows_and_tombstones() {
    let db = TestDb::new("cdc_row").await;
    let slot = format!("t_row_{}", std::process::id());
    db.exec("CREATE TABLE items (sku text PRIMARY KEY, price numeric(8,2))")
        .await;
    let config = json!({"url": db.url, "table": "items", "mode": "cdc", "slot": slot,
                        "envelope": "row", "poll_interval_ms": 50, "topic_prefix": "x."});
    let mut source = open(&config, vec![]).await;
    db.exec(
        "INSERT INTO items VALUES ('a', 1.50); UPDATE items SET price = 2 WHERE sku = 'a'; \
             DELETE FROM items WHERE sku = 'a'",
    )
    .await;
    let records = poll_n(&mut source, 3, true).await;
    let values: Vec<Option<Value>> = records.iter().map(|r| r.record.value.clone()).collect();
    assert_eq!(
        values,
        [
            Some(json!({"sku": "a", "price": "1.50"})),
            Some(json!({"sku": "a", "price": "2.00"})),
            None
        ]
    );
    assert_eq!(records[2].record.key, Some(json!({"sku": "a"})));
    assert!(
        records[0].record.timestamp.is_some(),
        "commit time as the record time"
    );
    source.close().await.unwrap();
    drop_slot(&db, &slot).await;
}

#[tokio::test]
async fn an_idle_slot_keeps_advancing_and_is_dropped_on_delete() {
    let db = TestDb::new("cdc_idle").await;
    let slot = format!("t_idle_{}", std::process::id());
    db.exec("CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE busy (id int, pad text)")
        .await;
    let config = json!({"url": db.url, "table": "quiet", "mode": "cdc", "slot": slot,
                        "poll_interval_ms": 50, "topic_prefix": "", "drop_slot_on_delete": true});
    let mut source = open(&config, vec![]).await;
    source.poll().await.unwrap();
    let before = lsn_value(&confirmed_lsn(&db, &slot).await.unwrap());
    // WAL from a table the connector does not capture.
    db.exec("INSERT INTO busy SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(source.poll().await.unwrap().is_empty());
        let now = lsn_value(&confirmed_lsn(&db, &slot).await.unwrap());
        if now > before + 1_000_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot stayed at {before:X}");
    }
    source.close().await.unwrap();

    let parsed: PostgresSourceConfig = serde_json::from_value(config).unwrap();
    parsed.deleted("cdc-test".into()).await.unwrap();
    assert_eq!(confirmed_lsn(&db, &slot).await, None, "the slot is dropped");
}
