//! PostgreSQL connectors for Logbrook Connect: `postgres-source` reads tables (by query or by
//! logical replication) into topics, `postgres-sink` writes topics into tables.

pub mod sink;
pub mod sql;

use logbrook_connect::Plugin;

/// The connector types of this crate, for the worker's registry.
pub fn plugins() -> Vec<Plugin> {
    vec![Plugin::sink::<sink::PostgresSinkConfig>("postgres-sink")]
}
