//! PostgreSQL connectors for Logbrook Connect, on sqlx.
//!
//! # `postgres-source`
//!
//! Reads tables into topics, by polling queries (`bulk`, `incrementing`, `timestamp`,
//! `timestamp_incrementing`) or by logical replication (`cdc`, with the built-in `pgoutput`
//! plugin: inserts, updates and deletes, after a snapshot consistent with the slot). Values keep
//! exact types (see [`types`]) with an Arrow schema; keys are primary keys. See
//! [`source::PostgresSourceConfig`] for the keys.
//!
//! ```toml
//! name = "shop-cdc"
//! connector = "postgres-source"
//! url = "${env:SHOP_PG_URL}"
//! tables = ["public.orders"]
//! mode = "cdc"
//! topic_prefix = "shop."
//! ```
//!
//! Guarantee: exactly once into the log. Each record carries its position (the last row's key or
//! timestamp; for CDC the replication position) as its source offset, stored in the same log
//! transaction; a CDC slot is advanced only after that transaction commits.
//!
//! # `postgres-sink`
//!
//! Writes topics into tables with `COPY`: insert or upsert, deletes on tombstones, tables
//! created and widened from the records, and exactly once with `exactly_once = true` (offsets
//! in a table, in the same transaction as the rows).

pub mod sink;
pub mod source;
pub mod sql;
pub mod types;

use logbrook_connect::Plugin;

/// The connector types of this crate, for the worker's registry.
pub fn plugins() -> Vec<Plugin> {
    vec![
        Plugin::source::<source::PostgresSourceConfig>("postgres-source"),
        Plugin::sink::<sink::PostgresSinkConfig>("postgres-sink"),
    ]
}
