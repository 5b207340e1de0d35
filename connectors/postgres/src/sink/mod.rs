//! `postgres-sink`: writes records of topics into PostgreSQL tables with `COPY`.
//!
//! ```toml
//! connector = "postgres-sink"
//! topics = ["orders"]
//! url = "${env:LOGBROOK_PG_URL}"   # a secret: never logged or echoed
//! table = "public.{topic}"         # default "{topic}"; also "${topic}"
//! mode = "upsert"                  # insert (default) | upsert
//! primary_key = ["id"]             # default: the table's primary key
//! delete_on_tombstone = true       # default false: tombstones are skipped
//! auto_create = true               # CREATE TABLE from the records' fields
//! auto_evolve = true               # ADD COLUMN for new fields
//! batch_rows = 10000               # records per transaction
//! exactly_once = true              # offsets stored with the rows
//! offsets_table = "logbrook_sink_offsets"
//! ```
//!
//! Each top-level field of a record's value (a JSON object) is a column. Primary key fields are
//! taken from the record's key first (a key object holding the field, or a primitive key when
//! the key has one field), else from the value. Values are encoded for each column's actual
//! type (read from the catalog): typed records (`value_schema`) and the Postgres source's forms
//! (RFC 3339 timestamps, numeric digits as strings, base64 bytes, JSON text for json columns)
//! as well as plain JSON (epoch numbers, arrays into array columns, objects into jsonb).
//! `auto_create` and `auto_evolve` infer column types from schemas, or else from JSON values
//! (null-only fields wait for a value). A field missing from a record is left out of its row:
//! the column default on insert, the old value on update.
//!
//! **Modes.** `insert` COPYs rows straight into the table, applying inserts and deletes in
//! batch order. `upsert` COPYs into a temporary table, then `INSERT ... ON CONFLICT DO UPDATE`
//! keeps the last record per key; a batch's deletes of a key run before its later writes. Both
//! give the result of applying the records one by one.
//!
//! **Guarantees.** Each `put` commits transactions of at most `batch_rows` records, so a
//! returned `put` is durable and `flush` has nothing left to do. Without `exactly_once` the
//! sink is at least once: records after the runtime's last offset commit are written again
//! after a crash (harmless in upsert mode, which is idempotent). With `exactly_once` each
//! transaction also stores the next offset of each topic partition in `offsets_table`;
//! records below it are skipped, so insert mode writes each record exactly once. Rejected
//! records count as handled: their offsets are stored too. To reprocess a topic after resetting
//! the connector's consumer offsets, delete the connector's rows from `offsets_table` as well.
//!
//! **Bad records** (not an object, a field without a column, a value the column refuses) are
//! returned as rejected, naming the topic, partition, offset, table and column; the rest of
//! the batch is written. Lost connections are retriable: the transaction is rolled back by the
//! server and the runtime retries the batch.

mod columns;
mod copy;
mod offsets;
mod rows;
mod task;
mod write;

use async_trait::async_trait;
use logbrook_connect::{ConfigIssue, Error, Result, Sink, SinkConnector, SinkContext};
use serde::{Deserialize, Serialize};

use crate::sql::{self, TableName};

/// The config of `postgres-sink` (see the [module docs](self)).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// The connection URL (`postgres://user:password@host:5432/db`); a secret.
    pub url: String,
    /// The table each record goes to: `{topic}` and `${topic}` are replaced by the record's
    /// topic. May be schema-qualified (`public.{topic}`); a topic holding dots stays one name.
    #[serde(default = "default_table")]
    pub table: String,
    /// `insert` or `upsert`.
    #[serde(default)]
    pub mode: WriteMode,
    /// The fields identifying a row, for upserts and deletes. Empty: the table's primary key.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Whether a tombstone (a record without a value) deletes the row of its key; otherwise
    /// tombstones are skipped.
    #[serde(default)]
    pub delete_on_tombstone: bool,
    /// Whether a missing table is created from the records' fields (with `PRIMARY KEY
    /// (primary_key)`).
    #[serde(default)]
    pub auto_create: bool,
    /// Whether fields without a column add one (nullable); otherwise such records are rejected.
    #[serde(default)]
    pub auto_evolve: bool,
    /// The most records written in one transaction.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Whether each transaction stores the topic partitions' next offsets, so redelivered
    /// records are skipped.
    #[serde(default)]
    pub exactly_once: bool,
    /// The table holding those offsets (created when missing).
    #[serde(default = "default_offsets_table")]
    pub offsets_table: String,
}

/// How `postgres-sink` writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Insert every record.
    #[default]
    Insert,
    /// Insert, or update the row with the same primary key.
    Upsert,
}

fn default_table() -> String {
    "{topic}".to_string()
}

fn default_batch_rows() -> usize {
    10_000
}

fn default_offsets_table() -> String {
    "logbrook_sink_offsets".to_string()
}

impl std::fmt::Debug for PostgresSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSinkConfig")
            .field("url", &"<secret>")
            .field("table", &self.table)
            .field("mode", &self.mode)
            .field("primary_key", &self.primary_key)
            .field("delete_on_tombstone", &self.delete_on_tombstone)
            .field("auto_create", &self.auto_create)
            .field("auto_evolve", &self.auto_evolve)
            .field("batch_rows", &self.batch_rows)
            .field("exactly_once", &self.exactly_once)
            .field("offsets_table", &self.offsets_table)
            .finish()
    }
}

impl PostgresSinkConfig {
    /// Whether some operation looks rows up by primary key.
    fn needs_key(&self) -> bool {
        self.mode == WriteMode::Upsert || self.delete_on_tombstone
    }
}

/// The `table` template, split into schema and name before the topic is put in.
#[derive(Debug, Clone)]
struct TableTemplate(TableName);

impl TableTemplate {
    fn parse(text: &str) -> Result<Self, String> {
        let parsed = TableName::parse(text)?;
        for part in parsed.schema.iter().chain([&parsed.name]) {
            let rest = part.replace("${topic}", "").replace("{topic}", "");
            if rest.contains(['{', '}']) {
                return Err(format!(
                    "unknown placeholder in {text:?}: only {{topic}} and ${{topic}} are replaced"
                ));
            }
        }
        Ok(Self(parsed))
    }

    fn resolve(&self, topic: &str) -> TableName {
        // One pass, so a topic is never itself searched for placeholders.
        let fill = |part: &str| {
            let mut out = String::with_capacity(part.len() + topic.len());
            let mut rest = part;
            while let Some(at) = rest.find("{topic}") {
                let before = &rest[..at];
                out.push_str(before.strip_suffix('$').unwrap_or(before));
                out.push_str(topic);
                rest = &rest[at + "{topic}".len()..];
            }
            out.push_str(rest);
            out
        };
        TableName {
            schema: self.0.schema.as_deref().map(fill),
            name: fill(&self.0.name),
        }
    }
}

#[async_trait]
impl SinkConnector for PostgresSinkConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(ConfigIssue::new(
                "url",
                "a PostgreSQL connection URL starts with postgres:// or postgresql://",
            ));
        }
        sql::check_url(&self.url).map_err(|why| ConfigIssue::new("url", why))?;
        TableTemplate::parse(&self.table).map_err(|why| ConfigIssue::new("table", why))?;
        for (at, field) in self.primary_key.iter().enumerate() {
            rows::check_name(field).map_err(|why| ConfigIssue::new("primary_key", why))?;
            if self.primary_key[..at].contains(field) {
                return Err(ConfigIssue::new(
                    "primary_key",
                    format!("field {field:?} is listed twice"),
                ));
            }
        }
        if self.batch_rows == 0 {
            return Err(ConfigIssue::new("batch_rows", "must be at least 1"));
        }
        TableName::parse(&self.offsets_table)
            .map_err(|why| ConfigIssue::new("offsets_table", why))?;
        Ok(())
    }

    async fn open(self, context: SinkContext) -> Result<Box<dyn Sink>> {
        self.validate()
            .map_err(|issue| Error::fatal(issue.to_string()))?;
        let template = TableTemplate::parse(&self.table).map_err(Error::fatal)?;
        let offsets_table = TableName::parse(&self.offsets_table).map_err(Error::fatal)?;
        let sink = task::PostgresSink::open(self, template, offsets_table, context).await?;
        Ok(Box::new(sink))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_table_template_is_split_before_the_topic_goes_in() {
        let template = TableTemplate::parse("{topic}").unwrap();
        let name = template.resolve("a.b");
        assert_eq!(name.schema, None);
        assert_eq!(name.quoted(), r#""a.b""#);
        let template = TableTemplate::parse("sink.t_${topic}").unwrap();
        assert_eq!(template.resolve("x").quoted(), r#""sink"."t_x""#);
        let template = TableTemplate::parse("{topic}_${topic}").unwrap();
        assert_eq!(template.resolve("{topic}").name, "{topic}_{topic}");
        assert!(TableTemplate::parse("{partition}").is_err());
    }
}
