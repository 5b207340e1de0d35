//! `postgres-sink` against a real server: insert and upsert modes, deletes by tombstone, table
//! creation and evolution, exact types, exactly-once redelivery, hostile names and values, bad
//! records, config errors, and a server restart mid-stream.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::{DataType, Field, Fields, TimeUnit};
use common::TestDb;
use logbrook_connect::{Error, Record, Sink, SinkConnector, SinkContext};
use logbrook_connector_postgres::sink::PostgresSinkConfig;
use serde_json::{Value, json};
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Opens a sink task of connector `name` on `url` with the other `keys`.
async fn open_sink(url: &str, name: &str, keys: Value) -> Box<dyn Sink> {
    let mut config = keys;
    config["url"] = json!(url);
    let config: PostgresSinkConfig = serde_json::from_value(config).unwrap();
    config.validate().unwrap();
    config
        .open(SinkContext {
            connector: name.to_string(),
            task: 0,
            topics: vec!["orders".to_string()],
        })
        .await
        .unwrap()
}

/// A record of `topic` partition 0 at `offset`.
fn record(topic: &str, offset: u64, key: Option<Value>, value: Option<Value>) -> Record {
    Record {
        topic: topic.to_string(),
        partition: Some(0),
        offset: Some(offset),
        key,
        value,
        ..Record::default()
    }
}

/// Records of topic `orders` from offset 0, without keys.
fn values(values: &[Value]) -> Vec<Record> {
    values
        .iter()
        .enumerate()
        .map(|(offset, value)| record("orders", offset as u64, None, Some(value.clone())))
        .collect()
}

/// The rows of `query` as JSON objects, in its order.
async fn rows(pool: &PgPool, query: &str) -> Vec<Value> {
    let text: String = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT coalesce(jsonb_agg(q), '[]')::text FROM ({query}) q"
    )))
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("{query}: {e}"));
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Column names and `format_type` of a table, in column order.
async fn column_types(pool: &PgPool, table: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The messages of rejected records, by index.
async fn put_ok(sink: &mut dyn Sink, records: &[Record]) -> Vec<(usize, String)> {
    let rejected = sink.put(records).await.unwrap();
    sink.flush().await.unwrap();
    rejected
        .into_iter()
        .map(|r| {
            assert!(matches!(r.error, Error::Data { .. }), "{:?}", r.error);
            (r.index, r.error.to_string())
        })
        .collect()
}

#[tokio::test]
async fn insert_mode_copies_every_record_into_an_existing_table() {
    let db = TestDb::new("sink_insert").await;
    db.exec("CREATE TABLE orders (id bigint, item text, qty integer DEFAULT 7, note text)")
        .await;
    let mut sink = open_sink(&db.url, "c", json!({})).await;

    let rejected = put_ok(
        &mut *sink,
        &values(&[
            json!({"id": 1, "item": "apple", "qty": 3, "note": null}),
            json!({"id": 2, "item": "pear"}),
            json!({"id": 1, "item": "apple", "qty": 3}),
        ]),
    )
    .await;
    assert!(rejected.is_empty(), "{rejected:?}");
    put_ok(
        &mut *sink,
        &values(&[json!({"id": 3, "item": "fig", "qty": -1})]),
    )
    .await;
    sink.close().await.unwrap();

    let pool = db.pool().await;
    assert_eq!(
        rows(&pool, "SELECT * FROM orders ORDER BY id, qty").await,
        vec![
            json!({"id": 1, "item": "apple", "qty": 3, "note": null}),
            json!({"id": 1, "item": "apple", "qty": 3, "note": null}),
            // A field left out takes the column default.
            json!({"id": 2, "item": "pear", "qty": 7, "note": null}),
            json!({"id": 3, "item": "fig", "qty": -1, "note": null}),
        ]
    );
}

#[tokio::test]
async fn records_of_several_topics_go_to_their_own_tables() {
    let db = TestDb::new("sink_topics").await;
    db.exec(r#"CREATE SCHEMA sink; CREATE TABLE sink."shop.orders" (id int); CREATE TABLE sink.users (id int)"#)
        .await;
    // A topic holding a dot stays one table name inside the template's schema.
    let mut sink = open_sink(&db.url, "c", json!({"table": "sink.${topic}"})).await;
    let rejected = put_ok(
        &mut *sink,
        &[
            record("shop.orders", 0, None, Some(json!({"id": 1}))),
            record("users", 0, None, Some(json!({"id": 10}))),
            record("shop.orders", 1, None, Some(json!({"id": 2}))),
        ],
    )
    .await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let pool = db.pool().await;
    assert_eq!(
        rows(&pool, r#"SELECT * FROM sink."shop.orders" ORDER BY id"#).await,
        vec![json!({"id": 1}), json!({"id": 2})]
    );
    assert_eq!(
        rows(&pool, "SELECT * FROM sink.users").await,
        vec![json!({"id": 10})]
    );
}

#[tokio::test]
async fn upsert_keeps_the_last_record_per_key_within_and_across_batches() {
    let db = TestDb::new("sink_upsert").await;
    db.exec("CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL, qty int)")
        .await;
    // No primary_key: the table's own is used; keys come from the record key.
    let mut sink = open_sink(&db.url, "c", json!({"mode": "upsert", "batch_rows": 3})).await;
    let keyed = |offset: u64, id: i64, value: Value| {
        record("orders", offset, Some(json!({"id": id})), Some(value))
    };

    let rejected = put_ok(
        &mut *sink,
        &[
            keyed(0, 1, json!({"status": "new", "qty": 1})),
            keyed(1, 2, json!({"status": "new", "qty": 2})),
            keyed(2, 1, json!({"status": "paid", "qty": 1})),
            keyed(3, 1, json!({"status": "shipped", "qty": 10})),
            // A record without qty leaves it as it is; the value's id is overruled by the key.
            keyed(4, 2, json!({"id": 99, "status": "paid"})),
            keyed(5, 3, json!({"status": "new", "qty": null})),
            keyed(6, 3, json!({"status": "gone", "qty": 5})),
        ],
    )
    .await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let pool = db.pool().await;
    assert_eq!(
        rows(&pool, "SELECT * FROM orders ORDER BY id").await,
        vec![
            json!({"id": 1, "status": "shipped", "qty": 10}),
            json!({"id": 2, "status": "paid", "qty": 2}),
            json!({"id": 3, "status": "gone", "qty": 5}),
        ]
    );

    // A later batch updates again, and a primitive key names the single key field.
    put_ok(
        &mut *sink,
        &[
            record(
                "orders",
                7,
                Some(json!(3)),
                Some(json!({"status": "back", "qty": null})),
            ),
            record(
                "orders",
                8,
                Some(json!(4)),
                Some(json!({"status": "new", "qty": 4})),
            ),
            record(
                "orders",
                9,
                Some(json!(3)),
                Some(json!({"status": "final"})),
            ),
        ],
    )
    .await;
    assert_eq!(
        rows(&pool, "SELECT * FROM orders ORDER BY id").await,
        vec![
            json!({"id": 1, "status": "shipped", "qty": 10}),
            json!({"id": 2, "status": "paid", "qty": 2}),
            json!({"id": 3, "status": "final", "qty": null}),
            json!({"id": 4, "status": "new", "qty": 4}),
        ]
    );
}

#[tokio::test]
async fn tombstones_delete_by_key_in_batch_order_in_both_modes() {
    for mode in ["insert", "upsert"] {
        let db = TestDb::new("sink_delete").await;
        db.exec("CREATE TABLE orders (id int PRIMARY KEY, v text)")
            .await;
        let mut sink = open_sink(
            &db.url,
            "c",
            json!({"mode": mode, "primary_key": ["id"], "delete_on_tombstone": true}),
        )
        .await;
        let put = |offset, id: i64, v: &str| {
            record(
                "orders",
                offset,
                Some(json!({"id": id})),
                Some(json!({"v": v})),
            )
        };
        let delete = |offset, id: i64| record("orders", offset, Some(json!({"id": id})), None);

        // One batch: insert, delete, insert again of key 1; insert then delete of key 2.
        let rejected = put_ok(
            &mut *sink,
            &[
                put(0, 1, "first"),
                put(1, 2, "two"),
                delete(2, 1),
                delete(3, 2),
                put(4, 1, "again"),
                put(5, 3, "three"),
            ],
        )
        .await;
        assert!(rejected.is_empty(), "{mode}: {rejected:?}");
        let pool = db.pool().await;
        assert_eq!(
            rows(&pool, "SELECT * FROM orders ORDER BY id").await,
            vec![
                json!({"id": 1, "v": "again"}),
                json!({"id": 3, "v": "three"})
            ],
            "{mode}"
        );

        // Across batches: delete, then re-insert; a delete of a missing key is a no-op.
        put_ok(&mut *sink, &[delete(6, 1), delete(7, 42)]).await;
        assert_eq!(
            rows(&pool, "SELECT * FROM orders ORDER BY id").await,
            vec![json!({"id": 3, "v": "three"})],
            "{mode}"
        );
        put_ok(&mut *sink, &[put(8, 1, "third time")]).await;
        assert_eq!(
            rows(&pool, "SELECT * FROM orders ORDER BY id").await,
            vec![
                json!({"id": 1, "v": "third time"}),
                json!({"id": 3, "v": "three"})
            ],
            "{mode}"
        );

        // A tombstone without a usable key is rejected, naming where it came from.
        let rejected = put_ok(&mut *sink, &[record("orders", 9, None, None)]).await;
        assert_eq!(rejected.len(), 1, "{mode}");
        assert!(
            rejected[0].1.contains("partition 0 offset 9") && rejected[0].1.contains("key"),
            "{mode}: {rejected:?}"
        );
    }
}

#[tokio::test]
async fn tombstones_are_skipped_without_delete_on_tombstone() {
    let db = TestDb::new("sink_skip").await;
    db.exec("CREATE TABLE orders (id int PRIMARY KEY)").await;
    let mut sink = open_sink(&db.url, "c", json!({})).await;
    let rejected = put_ok(
        &mut *sink,
        &[
            record("orders", 0, None, Some(json!({"id": 1}))),
            record("orders", 1, Some(json!({"id": 1})), None),
        ],
    )
    .await;
    assert!(rejected.is_empty());
    let pool = db.pool().await;
    assert_eq!(
        rows(&pool, "SELECT * FROM orders").await,
        vec![json!({"id": 1})]
    );
}

#[tokio::test]
async fn auto_create_infers_column_types_from_schemaless_json() {
    let db = TestDb::new("sink_create").await;
    let mut sink = open_sink(
        &db.url,
        "c",
        json!({"table": "public.t_{topic}", "auto_create": true, "primary_key": ["id"], "mode": "upsert"}),
    )
    .await;
    let rejected = put_ok(
        &mut *sink,
        &[
            record(
                "orders",
                0,
                Some(json!({"id": 1})),
                Some(json!({
                    "amount": 1, "paid": true, "name": "a", "tags": ["x"],
                    "meta": {"k": 1}, "nothing": null
                })),
            ),
            // An integer column seen with a float becomes double precision.
            record(
                "orders",
                1,
                Some(json!({"id": 2})),
                Some(json!({"amount": 2.5})),
            ),
        ],
    )
    .await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let pool = db.pool().await;
    let types = column_types(&pool, "public.t_orders").await;
    let expected = [
        ("id", "bigint"),
        ("amount", "double precision"),
        ("meta", "jsonb"),
        ("name", "text"),
        ("paid", "boolean"),
        ("tags", "jsonb"),
    ];
    assert_eq!(
        types,
        expected
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect::<Vec<_>>()
    );
    let key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a
         ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = 'public.t_orders'::regclass AND i.indisprimary",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(key, vec!["id".to_string()]);
    assert_eq!(
        rows(&pool, "SELECT * FROM public.t_orders ORDER BY id").await,
        vec![
            json!({"id": 1, "amount": 1, "paid": true, "name": "a", "tags": ["x"], "meta": {"k": 1}}),
            json!({"id": 2, "amount": 2.5, "paid": null, "name": null, "tags": null, "meta": null}),
        ]
    );
}

#[tokio::test]
async fn auto_evolve_adds_new_fields_as_nullable_columns() {
    let db = TestDb::new("sink_evolve").await;
    db.exec("CREATE TABLE orders (id bigint NOT NULL)").await;
    let mut sink = open_sink(&db.url, "c", json!({"auto_evolve": true})).await;
    put_ok(&mut *sink, &values(&[json!({"id": 1, "later": null})])).await;
    // `later` had only nulls: no column yet.
    let pool = db.pool().await;
    assert_eq!(column_types(&pool, "orders").await.len(), 1);
    put_ok(
        &mut *sink,
        &values(&[json!({"id": 2, "later": "now", "n": 5}), json!({"id": 3})]),
    )
    .await;
    assert_eq!(
        column_types(&pool, "orders").await,
        vec![
            ("id".to_string(), "bigint".to_string()),
            ("later".to_string(), "text".to_string()),
            ("n".to_string(), "bigint".to_string()),
        ]
    );
    let nullable: Vec<bool> = sqlx::query_scalar(
        "SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass
         AND attname IN ('later', 'n')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(nullable, vec![true, true]);
    assert_eq!(
        rows(&pool, "SELECT * FROM orders ORDER BY id").await,
        vec![
            json!({"id": 1, "later": null, "n": null}),
            json!({"id": 2, "later": "now", "n": 5}),
            json!({"id": 3, "later": null, "n": null}),
        ]
    );
}

#[tokio::test]
async fn without_auto_evolve_a_new_field_rejects_its_record_and_not_the_batch() {
    let db = TestDb::new("sink_no_evolve").await;
    db.exec("CREATE TABLE orders (id bigint)").await;
    let mut sink = open_sink(&db.url, "c", json!({})).await;
    let rejected = put_ok(
        &mut *sink,
        &values(&[
            json!({"id": 1}),
            json!({"id": 2, "extra": "x"}),
            json!("not an object"),
            json!({"id": 4, "extra": null}),
        ]),
    )
    .await;
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0].0, 1);
    assert!(
        rejected[0]
            .1
            .contains(r#"topic "orders" partition 0 offset 1"#)
            && rejected[0]
                .1
                .contains(r#"table "orders" has no column "extra""#),
        "{rejected:?}"
    );
    assert_eq!(rejected[1].0, 2);
    assert!(
        rejected[1].1.contains("offset 2") && rejected[1].1.contains("not a JSON object"),
        "{rejected:?}"
    );
    let pool = db.pool().await;
    assert_eq!(
        rows(&pool, "SELECT * FROM orders ORDER BY id").await,
        vec![json!({"id": 1}), json!({"id": 4})]
    );
}

#[tokio::test]
async fn columns_added_or_dropped_by_others_are_noticed() {
    let db = TestDb::new("sink_changed").await;
    db.exec("CREATE TABLE orders (id bigint, note text)").await;
    let pool = db.pool().await;

    // Added by someone else: seen before the record would be rejected.
    let mut fixed = open_sink(&db.url, "c", json!({})).await;
    put_ok(&mut *fixed, &values(&[json!({"id": 1})])).await;
    db.exec("ALTER TABLE orders ADD COLUMN qty int").await;
    let rejected = put_ok(&mut *fixed, &values(&[json!({"id": 2, "qty": 5})])).await;
    assert!(rejected.is_empty(), "{rejected:?}");

    // Dropped by someone else: the write fails retriably, and the retry adds it again.
    let mut evolving = open_sink(&db.url, "c", json!({"auto_evolve": true})).await;
    put_ok(&mut *evolving, &values(&[json!({"id": 3, "note": "a"})])).await;
    db.exec("ALTER TABLE orders DROP COLUMN note").await;
    let batch = [record(
        "orders",
        9,
        None,
        Some(json!({"id": 4, "note": "b"})),
    )];
    let error = evolving.put(&batch).await.unwrap_err();
    assert!(error.is_retriable(), "{error}");
    assert!(put_ok(&mut *evolving, &batch).await.is_empty());

    assert_eq!(
        rows(&pool, "SELECT * FROM orders ORDER BY id").await,
        vec![
            json!({"id": 1, "qty": null, "note": null}),
            json!({"id": 2, "qty": 5, "note": null}),
            json!({"id": 3, "qty": null, "note": null}),
            json!({"id": 4, "qty": null, "note": "b"}),
        ]
    );
}

fn typed_schema() -> DataType {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    DataType::Struct(Fields::from(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("small", DataType::Int16, true),
        Field::new("int", DataType::Int32, true),
        Field::new("real", DataType::Float32, true),
        Field::new("double", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("blob", DataType::Binary, true),
        Field::new("price", DataType::Decimal128(12, 3), true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new(
            "local",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("day", DataType::Date32, true),
        Field::new("clock", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("counts", list(DataType::Int32), true),
        Field::new("labels", list(DataType::Utf8), true),
        Field::new("doc", DataType::Struct(Fields::empty()), true),
    ]))
}

#[tokio::test]
async fn typed_records_create_exact_column_types_and_round_trip_values() {
    let db = TestDb::new("sink_typed").await;
    let mut sink = open_sink(
        &db.url,
        "c",
        json!({"auto_create": true, "primary_key": ["id"], "mode": "upsert"}),
    )
    .await;
    let typed = |offset: u64, value: Value| Record {
        value_schema: Some(typed_schema()),
        ..record("orders", offset, None, Some(value))
    };
    let rejected = put_ok(
        &mut *sink,
        &[
            // The Postgres source's forms.
            typed(
                0,
                json!({
                    "id": 1, "small": -32768, "int": 2147483647, "real": 1.5, "double": 0.1,
                    "flag": true, "name": "tab\there \"q\" \\ é", "blob": "AAH/",
                    "price": "123456789.125", "at": "2024-01-02T03:04:05.123456Z",
                    "local": "2024-01-02T03:04:05.123456", "day": "2024-01-02",
                    "clock": "03:04:05.123456", "counts": [1, null, 3],
                    "labels": ["a\"b", "c,d", "{}", "NULL", null],
                    "doc": "{\"nested\": [1, {\"x\": null}]}"
                }),
            ),
            // Connect's integer forms, and a JSON object for jsonb.
            typed(
                1,
                json!({
                    "id": 2, "price": "-0.001", "at": 1_704_164_645_123_456_i64,
                    "local": 1_704_164_645_000_001_i64, "day": 19_724,
                    "clock": 11_045_000_001_i64, "counts": [], "doc": {"k": "v"}
                }),
            ),
        ],
    )
    .await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let pool = db.pool().await;
    let expected = [
        ("id", "bigint"),
        ("small", "smallint"),
        ("int", "integer"),
        ("real", "real"),
        ("double", "double precision"),
        ("flag", "boolean"),
        ("name", "text"),
        ("blob", "bytea"),
        ("price", "numeric(12,3)"),
        ("at", "timestamp with time zone"),
        ("local", "timestamp without time zone"),
        ("day", "date"),
        ("clock", "time without time zone"),
        ("counts", "integer[]"),
        ("labels", "text[]"),
        ("doc", "jsonb"),
    ];
    let mut types = column_types(&pool, "orders").await;
    types.sort();
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    expected.sort();
    assert_eq!(types, expected);

    let text = rows(
        &pool,
        "SELECT id, small, int, real::text, double::text, flag, name, encode(blob, 'hex') AS blob,
                price::text, (at AT TIME ZONE 'UTC')::text AS at, local::text, day::text,
                clock::text, counts, labels, doc
         FROM orders ORDER BY id",
    )
    .await;
    assert_eq!(
        text,
        vec![
            json!({
                "id": 1, "small": -32768, "int": 2147483647, "real": "1.5", "double": "0.1",
                "flag": true, "name": "tab\there \"q\" \\ é", "blob": "0001ff",
                "price": "123456789.125", "at": "2024-01-02 03:04:05.123456",
                "local": "2024-01-02 03:04:05.123456", "day": "2024-01-02",
                "clock": "03:04:05.123456", "counts": [1, null, 3],
                "labels": ["a\"b", "c,d", "{}", "NULL", null],
                "doc": {"nested": [1, {"x": null}]}
            }),
            json!({
                "id": 2, "small": null, "int": null, "real": null, "double": null,
                "flag": null, "name": null, "blob": null, "price": "-0.001",
                "at": "2024-01-02 03:04:05.123456", "local": "2024-01-02 03:04:05.000001",
                "day": "2024-01-02", "clock": "03:04:05.000001", "counts": [], "labels": null,
                "doc": {"k": "v"}
            }),
        ]
    );
}

#[tokio::test]
async fn schemaless_values_are_encoded_for_the_existing_column_types() {
    let db = TestDb::new("sink_encode").await;
    db.exec(
        "CREATE TABLE orders (id int, at timestamptz, day date, ids int[], grid int[][],
         raw bytea, doc json, price numeric(6,2), uid uuid, ok boolean)",
    )
    .await;
    let mut sink = open_sink(&db.url, "c", json!({})).await;
    let rejected = put_ok(
        &mut *sink,
        &values(&[json!({
            "id": 1.0, "at": 1_704_164_645_123_i64, "day": 0, "ids": [1, 2, null],
            "grid": [[1, 2], [3, 4]], "raw": "aGk=", "doc": [1, "two"], "price": 12.5,
            "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "ok": "yes"
        })]),
    )
    .await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let pool = db.pool().await;
    assert_eq!(
        rows(
            &pool,
            "SELECT id, (at AT TIME ZONE 'UTC')::text AS at, day::text, ids, grid,
                    convert_from(raw, 'UTF8') AS raw, doc, price::text, uid::text, ok
             FROM orders"
        )
        .await,
        vec![json!({
            "id": 1, "at": "2024-01-02 03:04:05.123", "day": "1970-01-01", "ids": [1, 2, null],
            "grid": [[1, 2], [3, 4]], "raw": "hi", "doc": [1, "two"], "price": "12.50",
            "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "ok": true
        })]
    );
}

#[tokio::test]
async fn exactly_once_skips_records_delivered_again_to_a_new_task() {
    let db = TestDb::new("sink_exactly_once").await;
    let config = json!({"auto_create": true, "exactly_once": true, "batch_rows": 4});
    let batch: Vec<Record> = (0..10)
        .map(|i| {
            let mut r = record("orders", i, None, Some(json!({"id": i, "p": 0})));
            if i % 2 == 1 {
                r.partition = Some(1);
                r.value = Some(json!({"id": i, "p": 1}));
            }
            r
        })
        .collect();
    let mut sink = open_sink(&db.url, "orders-sink", config.clone()).await;
    assert!(put_ok(&mut *sink, &batch[..6]).await.is_empty());
    // A crash before the runtime committed its offsets: a new task gets everything again.
    drop(sink);
    let mut sink = open_sink(&db.url, "orders-sink", config.clone()).await;
    assert!(put_ok(&mut *sink, &batch).await.is_empty());
    assert!(put_ok(&mut *sink, &batch[8..]).await.is_empty());
    sink.close().await.unwrap();

    let pool = db.pool().await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM orders ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids, (0..10).collect::<Vec<i64>>());
    assert_eq!(
        rows(
            &pool,
            "SELECT * FROM logbrook_sink_offsets ORDER BY connector, topic, partition"
        )
        .await,
        vec![
            json!({"connector": "orders-sink", "topic": "orders", "partition": 0, "next_offset": 9}),
            json!({"connector": "orders-sink", "topic": "orders", "partition": 1, "next_offset": 10}),
        ]
    );

    // Another connector keeps offsets of its own in the same table.
    let mut other = open_sink(&db.url, "other", config).await;
    assert!(put_ok(&mut *other, &batch[..1]).await.is_empty());
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = 0")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn hostile_table_and_column_names_and_values_cannot_inject_sql() {
    let db = TestDb::new("sink_hostile").await;
    db.exec("CREATE TABLE victim (id int); INSERT INTO victim VALUES (1)")
        .await;
    let names = [
        r#"a"b"#,
        "semi;colon",
        "with space",
        r#""; DROP TABLE victim; --"#,
        "back\\slash",
        "Upper",
    ];
    let hostile = [
        "'); DROP TABLE victim; --",
        "tab\tnew\nline\rcr",
        "\\.",
        "\\N",
        "back\\slash\\",
        "\"quoted\"",
    ];
    for mode in ["insert", "upsert"] {
        let mut value = serde_json::Map::new();
        for (name, text) in names.iter().zip(hostile) {
            value.insert(name.to_string(), json!(text));
        }
        // The table as written in `table`: quoted, with a doubled quote inside.
        let table_name = format!(r#""x""; DROP TABLE victim; -- {mode}""#);
        let mut sink = open_sink(
            &db.url,
            "c",
            json!({
                "table": table_name, "auto_create": true, "auto_evolve": true,
                "mode": mode,
                "primary_key": if mode == "upsert" { vec![names[3]] } else { vec![] },
            }),
        )
        .await;
        let rejected = put_ok(&mut *sink, &values(&[Value::Object(value.clone())])).await;
        assert!(rejected.is_empty(), "{mode}: {rejected:?}");
        // Again, so upsert updates the row it wrote.
        put_ok(&mut *sink, &values(&[Value::Object(value.clone())])).await;

        let pool = db.pool().await;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_class WHERE relname = $1)")
                .bind(format!(r#"x"; DROP TABLE victim; -- {mode}"#))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(exists, "the table is named as written");
        let stored = rows(&pool, &format!("SELECT * FROM {table_name}")).await;
        let expected = Value::Object(value);
        let copies = if mode == "insert" { 2 } else { 1 };
        assert_eq!(stored, vec![expected; copies], "{mode}");
    }
    let pool = db.pool().await;
    let victim: i64 = sqlx::query_scalar("SELECT count(*) FROM victim")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(victim, 1, "the victim table is intact");
}

#[tokio::test]
async fn a_bad_value_is_rejected_naming_its_column_and_the_rest_is_written() {
    for mode in ["insert", "upsert"] {
        let db = TestDb::new("sink_bad").await;
        db.exec("CREATE TABLE orders (id int PRIMARY KEY, qty integer, note varchar(3))")
            .await;
        let mut sink = open_sink(&db.url, "c", json!({"mode": mode})).await;
        let mut batch: Vec<Value> = (0..20)
            .map(|i| json!({"id": i, "qty": i, "note": "ok"}))
            .collect();
        batch[3]["qty"] = json!("three");
        batch[11]["note"] = json!("too long");
        batch[17]["qty"] = json!({"an": "object"});
        let rejected = put_ok(&mut *sink, &values(&batch)).await;
        let indexes: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![3, 11, 17], "{mode}: {rejected:?}");
        let message = &rejected[0].1;
        assert!(
            message.contains(r#"topic "orders" partition 0 offset 3"#)
                && message.contains(r#"table "orders" column "qty""#)
                && message.contains("invalid input syntax for type integer"),
            "{mode}: {message}"
        );
        assert!(
            rejected[1].1.contains(r#"table "orders""#) && rejected[1].1.contains("too long"),
            "{mode}: {rejected:?}"
        );
        assert!(
            rejected[2].1.contains(r#"column "qty""#) && rejected[2].1.contains("an object"),
            "{mode}: {rejected:?}"
        );
        let pool = db.pool().await;
        let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM orders ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        let expected: Vec<i32> = (0..20).filter(|i| ![3, 11, 17].contains(i)).collect();
        assert_eq!(ids, expected, "{mode}");

        // A duplicate key in insert mode is the record's fault too.
        if mode == "insert" {
            let rejected = put_ok(
                &mut *sink,
                &[record("orders", 20, None, Some(json!({"id": 1, "qty": 0})))],
            )
            .await;
            assert_eq!(rejected.len(), 1);
            assert!(
                rejected[0].1.contains("Key (id)=(1) already exists"),
                "{rejected:?}"
            );
        }
    }
}

#[tokio::test]
async fn config_errors_name_their_key() {
    let plugin = logbrook_connector_postgres::plugins()
        .into_iter()
        .find(|p| p.name() == "postgres-sink")
        .unwrap();
    let url = "postgres://u:s3cret@localhost/db";
    let cases = [
        (json!({}), ".", "missing field `url`"),
        (
            json!({"url": url, "mode": "merge"}),
            "mode",
            "unknown variant",
        ),
        (
            json!({"url": url, "batch_rows": 0}),
            "batch_rows",
            "at least 1",
        ),
        (
            json!({"url": url, "table": "{partition}"}),
            "table",
            "placeholder",
        ),
        (
            json!({"url": url, "table": "a.b.c"}),
            "table",
            "more than two parts",
        ),
        (
            json!({"url": url, "primary_key": ["id", "id"]}),
            "primary_key",
            "twice",
        ),
        (json!({"url": url, "tabel": "x"}), "tabel", "unknown field"),
        (json!({"url": "mysql://u:s3cret@h/db"}), "url", "PostgreSQL"),
    ];
    for (config, key, why) in cases {
        let issue = plugin
            .validate(config.as_object().unwrap())
            .expect_err(&config.to_string());
        assert_eq!(issue.key, key, "{config}: {issue}");
        assert!(issue.reason.contains(why), "{config}: {issue}");
        assert!(!issue.reason.contains("s3cret"), "the url leaked: {issue}");
    }
    assert!(
        plugin
            .validate(json!({"url": url, "mode": "upsert"}).as_object().unwrap())
            .is_ok()
    );
}

#[tokio::test]
async fn a_missing_table_without_auto_create_fails_the_task_clearly() {
    let db = TestDb::new("sink_missing").await;
    let mut sink = open_sink(&db.url, "c", json!({})).await;
    let error = sink.put(&values(&[json!({"id": 1})])).await.unwrap_err();
    assert!(matches!(error, Error::Fatal { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(r#"table "orders" does not exist"#),
        "{error}"
    );
}

/// Runs `scripts/pg-server.sh COMMAND` for the server on `port` with data in `data`.
fn pg_server(port: u16, data: &str, command: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let status = std::process::Command::new(format!("{root}/scripts/pg-server.sh"))
        .arg(command)
        .env("LOGBROOK_PG_PORT", port.to_string())
        .env("LOGBROOK_PG_DATA", data)
        .status()
        .unwrap();
    assert!(status.success(), "pg-server.sh {command}: {status}");
}

/// A second server of this test's own, destroyed when dropped.
struct OwnServer {
    port: u16,
    data: &'static str,
}

impl OwnServer {
    fn start(port: u16, data: &'static str) -> Self {
        pg_server(port, data, "destroy");
        pg_server(port, data, "start");
        Self { port, data }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        pg_server(self.port, self.data, "destroy");
    }
}

#[tokio::test]
async fn a_server_restart_mid_stream_loses_and_repeats_nothing() {
    let server = OwnServer::start(55439, "/tmp/lb-pg-sink-restart");
    let url = server.url();
    let mut sink = open_sink(
        &url,
        "restart",
        json!({"auto_create": true, "exactly_once": true, "batch_rows": 100}),
    )
    .await;

    const PER_BATCH: u64 = 250;
    let put_with_retries = async |sink: &mut dyn Sink, records: &[Record]| -> usize {
        // As the runtime does: the same batch again after a retriable error, with a pause.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut retries = 0;
        loop {
            match sink.put(records).await {
                Ok(rejected) => {
                    assert!(rejected.is_empty(), "{rejected:?}");
                    sink.flush().await.unwrap();
                    return retries;
                }
                Err(error) => {
                    assert!(error.is_retriable(), "{error}");
                    assert!(Instant::now() < deadline, "still failing: {error}");
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let batch_of = |batch: u64| -> Vec<Record> {
        (batch * PER_BATCH..(batch + 1) * PER_BATCH)
            .map(|i| record("orders", i, None, Some(json!({"id": i}))))
            .collect()
    };

    let mut retries = 0;
    let mut batches = 0;
    let mut restart = None;
    // Writes go on before, during and after the restart.
    while batches < 10
        || restart
            .as_ref()
            .is_some_and(|r: &std::thread::JoinHandle<()>| !r.is_finished())
    {
        if batches == 5 {
            let (port, data) = (server.port, server.data);
            restart = Some(std::thread::spawn(move || pg_server(port, data, "restart")));
        }
        retries += put_with_retries(&mut *sink, &batch_of(batches)).await;
        batches += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    restart.unwrap().join().unwrap();
    for batch in batches..batches + 5 {
        retries += put_with_retries(&mut *sink, &batch_of(batch)).await;
    }
    batches += 5;
    sink.close().await.unwrap();
    eprintln!("{batches} batches, {retries} retried puts");
    assert!(retries > 0, "no put saw the restart");

    // Everything delivered again to a new task writes nothing.
    let mut again = open_sink(
        &url,
        "restart",
        json!({"auto_create": true, "exactly_once": true, "batch_rows": 100}),
    )
    .await;
    let everything: Vec<Record> = (0..batches).flat_map(batch_of).collect();
    put_with_retries(&mut *again, &everything).await;

    let mut conn = PgConnection::connect(&url).await.unwrap();
    let (count, distinct, min, max): (i64, i64, i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM orders")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let total = (batches * PER_BATCH) as i64;
    assert_eq!((count, distinct, min, max), (total, total, 0, total - 1));
    let next: i64 = sqlx::query_scalar("SELECT next_offset FROM logbrook_sink_offsets")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(next, total);
}
