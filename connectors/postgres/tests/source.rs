//! `postgres-source` against a real server: every query mode, exact types, resume from stored
//! offsets, CDC with a consistent snapshot, both envelopes, slot handling.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{TestDb, poll_n, values};
use logbrook_connect::{Source, SourceConnector, SourceContext, SourceRecord};
use logbrook_connector_postgres::source::PostgresSourceConfig;
use serde_json::{Value, json};

async fn open(config: Value, offsets: Vec<(Value, Value)>) -> Box<dyn Source> {
    let config: PostgresSourceConfig = serde_json::from_value(config).unwrap();
    config.validate().unwrap();
    config
        .open(SourceContext::new("pgsrc", 0, "rows", offsets))
        .await
        .unwrap()
}

async fn poll_quiet(source: &mut Box<dyn Source>, polls: usize) -> Vec<SourceRecord> {
    let mut out = Vec::new();
    for _ in 0..polls {
        let batch = source.poll().await.unwrap();
        if !batch.is_empty() {
            source.commit().await.unwrap();
        }
        out.extend(batch);
    }
    out
}

fn ids(records: &[SourceRecord], field: &str) -> Vec<i64> {
    values(records)
        .iter()
        .map(|v| v[field].as_i64().unwrap())
        .collect()
}

/// The stored offsets after these records, as the runtime keeps them.
fn offsets_after(records: &[SourceRecord]) -> Vec<(Value, Value)> {
    let last = records.last().unwrap();
    vec![(last.source_partition.clone(), last.source_offset.clone())]
}

#[tokio::test]
async fn every_column_type_arrives_exact_with_its_arrow_type() {
    let db = TestDb::new("types").await;
    db.exec(
        "CREATE TABLE t (id int8 PRIMARY KEY, small int2, medium int4, price numeric(10,2), \
         big numeric, name text, flag bool, at timestamptz, local timestamp, day date, \
         uid uuid, doc jsonb, raw bytea, nums int4[], words text[], ratio float8, nothing text); \
         INSERT INTO t VALUES (9007199254740993, -3, 70000, 12.50, 123456789012345678901234567890.5, \
         'a \"quoted\"\ttab', true, '2024-05-01 12:00:00.123456+02', '2024-05-01 12:00:00.5', \
         '2024-05-01', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"k\": [1, 2]}', '\\x00ff41', \
         '{1,NULL,3}', '{\"a b\",\"c,d\"}', 0.1, NULL)",
    )
    .await;
    let mut source = open(json!({"url": db.url, "table": "t", "mode": "bulk"}), vec![]).await;
    let records = poll_n(&mut source, 1, true).await;
    assert_eq!(records.len(), 1);
    let record = &records[0].record;
    assert_eq!(record.key, Some(json!({"id": 9007199254740993_i64})));
    assert_eq!(
        record.value,
        Some(json!({
            "id": 9007199254740993_i64, "small": -3, "medium": 70000, "price": "12.50",
            "big": "123456789012345678901234567890.5", "name": "a \"quoted\"\ttab", "flag": true,
            "at": "2024-05-01T10:00:00.123456Z", "local": "2024-05-01T12:00:00.5",
            "day": "2024-05-01", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "doc": "{\"k\": [1, 2]}", "raw": "AP9B", "nums": [1, null, 3],
            "words": ["a b", "c,d"], "ratio": 0.1, "nothing": null
        }))
    );
    let schema = record.value_schema.as_ref().unwrap().to_string();
    for expected in [
        "Int64",
        "Int16",
        "Int32",
        "Decimal128(10, 2)",
        "Utf8",
        "Boolean",
        "Timestamp(µs, \"UTC\")",
        "Date32",
        "Binary",
        "List(",
        "Float64",
    ] {
        assert!(
            schema.contains(expected),
            "{expected} missing from {schema}"
        );
    }
    for (partition_value, _) in offsets_after(&records) {
        assert_eq!(partition_value, json!({"table": "t"}));
    }
}

#[tokio::test]
async fn incrementing_mode_reads_in_batches_and_resumes_after_the_stored_id() {
    let db = TestDb::new("incr").await;
    db.exec(
        "CREATE TABLE public.orders (id serial PRIMARY KEY, item text); \
             INSERT INTO orders (item) SELECT 'item-' || g FROM generate_series(1, 25) g",
    )
    .await;
    let config = json!({
        "url": db.url, "table": "public.orders", "mode": "incrementing",
        "incrementing_column": "id", "batch_rows": 10, "poll_interval_ms": 50,
        "topic_prefix": "pg."
    });
    let mut source = open(config.clone(), vec![]).await;
    let first = source.poll().await.unwrap();
    assert_eq!(ids(&first, "id"), (1..=10).collect::<Vec<_>>());
    assert_eq!(first[0].record.topic, "pg.public.orders");
    assert_eq!(first[9].source_offset, json!({"incrementing": 10}));
    let second = poll_n(&mut source, 10, true).await;
    assert_eq!(ids(&second, "id"), (11..=20).collect::<Vec<_>>());
    // Stop after 15 reached the log; the restarted source goes on from 16.
    source.close().await.unwrap();
    let stored = offsets_after(&second[..5]);
    let mut source = open(config, stored).await;
    db.exec("INSERT INTO orders (item) VALUES ('late')").await;
    let rest = poll_n(&mut source, 11, true).await;
    assert_eq!(ids(&rest, "id"), (16..=26).collect::<Vec<_>>());
    assert!(poll_quiet(&mut source, 3).await.is_empty());
}

#[tokio::test]
async fn timestamp_mode_never_splits_rows_of_equal_timestamps() {
    let db = TestDb::new("ts").await;
    db.exec("CREATE TABLE ev (id int PRIMARY KEY, at timestamptz NOT NULL); \
             INSERT INTO ev SELECT g, '2024-01-01 00:00:00+00'::timestamptz + ((g / 4) * interval '1 second') \
             FROM generate_series(0, 10) g")
        .await;
    // Groups of four rows share a timestamp; batches of three rows cannot hold a group.
    let config = json!({
        "url": db.url, "table": "ev", "mode": "timestamp", "timestamp_column": "at",
        "batch_rows": 3, "poll_interval_ms": 50, "topic_prefix": ""
    });
    let mut source = open(config.clone(), vec![]).await;
    let mut got = poll_n(&mut source, 8, true).await;
    // Restart after the first group: the second group comes again whole, nothing is skipped.
    let stored = offsets_after(&got[..4]);
    assert_eq!(stored[0].1, json!({"timestamp": "2024-01-01 00:00:00+00"}));
    source.close().await.unwrap();
    let mut source = open(config, stored).await;
    let rest = poll_n(&mut source, 7, true).await;
    got.truncate(4);
    got.extend(rest);
    let mut seen = ids(&got, "id");
    seen.sort_unstable();
    assert_eq!(seen, (0..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn timestamp_incrementing_mode_sees_updates_and_resumes_exactly() {
    let db = TestDb::new("tsinc").await;
    db.exec("CREATE TABLE acct (id int PRIMARY KEY, balance int, changed timestamptz NOT NULL DEFAULT '2024-01-01'); \
             INSERT INTO acct (id, balance) SELECT g, 0 FROM generate_series(1, 6) g")
        .await;
    let config = json!({
        "url": db.url, "table": "acct", "mode": "timestamp_incrementing",
        "timestamp_column": "changed", "incrementing_column": "id",
        "batch_rows": 4, "poll_interval_ms": 50, "topic_prefix": "t-"
    });
    let mut source = open(config.clone(), vec![]).await;
    let first = poll_n(&mut source, 6, true).await;
    assert_eq!(ids(&first, "id"), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        first[3].source_offset,
        json!({"timestamp": "2024-01-01 00:00:00+00", "incrementing": 4})
    );
    db.exec("UPDATE acct SET balance = 50, changed = '2024-01-02' WHERE id IN (2, 5)")
        .await;
    let updates = poll_n(&mut source, 2, true).await;
    assert_eq!(ids(&updates, "id"), vec![2, 5]);
    assert_eq!(values(&updates)[0]["balance"], 50);
    source.close().await.unwrap();
    // Restarted after the update of 2 only: the update of 5 comes again, nothing else.
    let mut source = open(config, offsets_after(&updates[..1])).await;
    let again = poll_n(&mut source, 1, true).await;
    assert_eq!(ids(&again, "id"), vec![5]);
    assert!(poll_quiet(&mut source, 3).await.is_empty());
}

#[tokio::test]
async fn a_query_source_uses_its_key_columns_and_the_prefix_as_topic() {
    let db = TestDb::new("query").await;
    db.exec("CREATE TABLE a (id int PRIMARY KEY, n int); CREATE TABLE b (id int PRIMARY KEY, label text); \
             INSERT INTO a VALUES (1, 10), (2, 20); INSERT INTO b VALUES (1, 'one'), (2, 'two')")
        .await;
    let config = json!({
        "url": db.url, "query": "SELECT a.id, a.n, b.label FROM a JOIN b USING (id)",
        "mode": "incrementing", "incrementing_column": "id", "key_columns": ["id"],
        "topic_prefix": "joined", "poll_interval_ms": 50
    });
    let mut source = open(config, vec![]).await;
    let records = poll_n(&mut source, 2, true).await;
    assert_eq!(records[1].record.topic, "joined");
    assert_eq!(records[1].record.key, Some(json!({"id": 2})));
    assert_eq!(
        records[1].record.value,
        Some(json!({"id": 2, "n": 20, "label": "two"}))
    );
}

#[tokio::test]
async fn bulk_mode_copies_the_whole_table_again_every_interval() {
    let db = TestDb::new("bulk").await;
    db.exec("CREATE TABLE k (id int PRIMARY KEY); INSERT INTO k SELECT generate_series(1, 25)")
        .await;
    let config = json!({"url": db.url, "table": "k", "mode": "bulk", "batch_rows": 10, "poll_interval_ms": 200});
    let mut source = open(config, vec![]).await;
    let first = poll_n(&mut source, 25, true).await;
    assert_eq!(ids(&first, "id"), (1..=25).collect::<Vec<_>>());
    db.exec("DELETE FROM k WHERE id > 3").await;
    let second = poll_n(&mut source, 3, true).await;
    assert_eq!(ids(&second, "id"), vec![1, 2, 3]);
}

#[tokio::test]
async fn hostile_table_and_column_names_are_read_as_names() {
    let db = TestDb::new("hostile_src").await;
    db.exec(
        r#"CREATE TABLE "we""ird; DROP TABLE x; --" ("id col" int PRIMARY KEY, "va'l" text);
               INSERT INTO "we""ird; DROP TABLE x; --" VALUES (1, 'x'';--')"#,
    )
    .await;
    let config = json!({"url": db.url, "table": r#""we""ird; DROP TABLE x; --""#, "mode": "incrementing",
                        "incrementing_column": "id col", "topic_prefix": "p."});
    let mut source = open(config, vec![]).await;
    let records = poll_n(&mut source, 1, true).await;
    assert_eq!(
        records[0].record.value,
        Some(json!({"id col": 1, "va'l": "x';--"}))
    );
    assert_eq!(records[0].record.topic, r#"p.we"ird; DROP TABLE x; --"#);
}

#[tokio::test]
async fn a_missing_table_or_column_fails_with_its_name() {
    let db = TestDb::new("missing").await;
    db.exec("CREATE TABLE present (id int)").await;
    let config: PostgresSourceConfig =
        serde_json::from_value(json!({"url": db.url, "table": "absent", "mode": "bulk"})).unwrap();
    let error = config
        .open(SourceContext::new("x", 0, "t", vec![]))
        .await
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("table absent does not exist"),
        "{error}"
    );
    let config: PostgresSourceConfig = serde_json::from_value(json!({
        "url": db.url, "table": "present", "mode": "incrementing", "incrementing_column": "nope"
    }))
    .unwrap();
    let error = config
        .open(SourceContext::new("x", 0, "t", vec![]))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("no column \"nope\""), "{error}");
}

#[test]
fn configs_are_checked_key_by_key() {
    let check = |config: Value| {
        serde_json::from_value::<PostgresSourceConfig>(config)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map_err(|issue| issue.key))
    };
    let url = "postgres://u@127.0.0.1:5432/db";
    assert_eq!(
        check(json!({"url": url, "table": "t", "mode": "incrementing"})),
        Err("incrementing_column".into())
    );
    assert_eq!(
        check(json!({"url": url, "table": "t", "tables": ["u"], "mode": "bulk"})),
        Err("table".into())
    );
    assert_eq!(
        check(json!({"url": url, "query": "select 1", "mode": "cdc"})),
        Err("query".into())
    );
    assert_eq!(
        check(json!({"url": url, "table": "t", "mode": "bulk", "slot": "s"})),
        Err("slot".into())
    );
    assert_eq!(
        check(json!({"url": url, "table": "t", "mode": "cdc", "slot": "Bad-Name"})),
        Err("slot".into())
    );
    assert_eq!(
        check(json!({"url": url, "table": "a.b.c", "mode": "bulk"})),
        Err("table".into())
    );
    assert_eq!(
        check(json!({"url": "mysql://x", "table": "t", "mode": "bulk"})),
        Err("url".into())
    );
    assert!(check(json!({"url": url, "table": "t", "mode": "bulk", "batch_rows": 0})).is_err());
    assert!(check(json!({"url": url, "table": "t", "mode": "cdc", "envelope": "row"})).is_ok());
}
