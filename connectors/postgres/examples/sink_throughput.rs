//! Prints `postgres-sink` throughput: schemaless JSON records of five fields, put in batches of
//! 10,000 (the consumer's `max_poll_records`), in insert, insert + exactly_once and upsert mode.
//!
//! ```sh
//! cargo run --release -p logbrook-connector-postgres --example sink_throughput -- \
//!     postgres://postgres@127.0.0.1:55432/postgres 500000
//! ```
//!
//! Each mode writes into a fresh table in the given database (dropped first).

use std::time::Instant;

use logbrook_connect::{Record, SinkConnector, SinkContext};
use logbrook_connector_postgres::sink::PostgresSinkConfig;
use serde_json::json;
use sqlx::{Connection, PgConnection};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:55432/postgres".to_string());
    let total: u64 = args.next().map_or(Ok(500_000), |n| n.parse())?;
    let records: Vec<Record> = (0..total)
        .map(|i| Record {
            topic: "bench".to_string(),
            partition: Some(0),
            offset: Some(i),
            value: Some(json!({
                "id": i,
                "customer": format!("customer-{}", i % 1000),
                "amount": (i % 10_000) as f64 / 100.0,
                "paid": i % 2 == 0,
                "at": "2024-01-02T03:04:05.123456Z",
            })),
            ..Record::default()
        })
        .collect();
    let mut admin = PgConnection::connect(&url).await?;
    for (label, keys) in [
        ("insert", json!({})),
        ("insert, exactly_once", json!({"exactly_once": true})),
        ("upsert", json!({"mode": "upsert", "primary_key": ["id"]})),
    ] {
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS bench; DROP TABLE IF EXISTS logbrook_sink_offsets;
             CREATE TABLE bench (id bigint PRIMARY KEY, customer text, amount float8,
                                 paid boolean, at timestamptz)",
        )
        .execute(&mut admin)
        .await?;
        let mut config = keys;
        config["url"] = json!(url);
        let config: PostgresSinkConfig = serde_json::from_value(config)?;
        let mut sink = config
            .open(SinkContext {
                connector: "bench".to_string(),
                task: 0,
                topics: vec!["bench".to_string()],
            })
            .await?;
        let started = Instant::now();
        for batch in records.chunks(10_000) {
            let rejected = sink.put(batch).await?;
            anyhow::ensure!(rejected.is_empty(), "rejected: {:?}", rejected[0].error);
        }
        sink.flush().await?;
        let seconds = started.elapsed().as_secs_f64();
        sink.close().await?;
        println!(
            "{label:<22} {total} records in {seconds:.2} s: {:.0} records/s",
            total as f64 / seconds
        );
    }
    sqlx::raw_sql("DROP TABLE IF EXISTS bench; DROP TABLE IF EXISTS logbrook_sink_offsets")
        .execute(&mut admin)
        .await?;
    Ok(())
}
