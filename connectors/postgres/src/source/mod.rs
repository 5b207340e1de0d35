//! `postgres-source`: tables into topics, by polling queries or by logical replication (CDC).

mod cdc;
mod pgoutput;
mod query;
mod table;

use async_trait::async_trait;
use logbrook_connect::{ConfigIssue, Result, Source, SourceConnector, SourceContext};
use serde::{Deserialize, Serialize};

use crate::sql::{TableName, check_url};

/// How the source finds rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The whole table (in one consistent snapshot) every `poll_interval_ms`.
    Bulk,
    /// Rows whose `incrementing_column` is above the last one seen (inserts only).
    Incrementing,
    /// Rows whose `timestamp_column` is after the last one seen (inserts and updates that set it).
    Timestamp,
    /// Ordered by (`timestamp_column`, `incrementing_column`): exact even with equal timestamps.
    TimestampIncrementing,
    /// Every insert, update and delete, from a logical replication slot (`pgoutput`).
    Cdc,
}

/// What a CDC record's value holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    /// `{op, before, after, source, ts_ms}`, as Debezium writes.
    #[default]
    Change,
    /// The row after the change; a delete is a tombstone keyed by the primary key.
    Row,
}

/// The `postgres-source` config.
///
/// ```toml
/// name = "orders-cdc"
/// connector = "postgres-source"
/// url = "${env:PG_URL}"
/// tables = ["public.orders", "public.customers"]
/// mode = "cdc"
/// topic_prefix = "pg."
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `postgres://user:password@host:port/db` (a secret: put it in `${env:...}` or `${file:...}`).
    pub url: String,
    /// One table, optionally schema-qualified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Several tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// A query instead of tables (not for `cdc`): rows of `SELECT * FROM (query)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// How rows are found.
    pub mode: Mode,
    /// A strictly increasing integer column (`incrementing`, `timestamp_incrementing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incrementing_column: Option<String>,
    /// A timestamp column set on insert and update (`timestamp`, `timestamp_incrementing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_column: Option<String>,
    /// Rows are read only once their timestamp is this much in the past, so transactions that
    /// commit late with earlier timestamps are not skipped.
    #[serde(default)]
    pub timestamp_delay_ms: u64,
    /// The wait between polls of a table that had nothing new (and between `bulk` copies).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Rows (or changes) read per batch.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Topics are this prefix plus the table as configured (`pg.` + `public.orders`); without
    /// it every record goes to the connector's `topic`. For a `query`, the prefix is the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_prefix: Option<String>,
    /// The record key's columns for a `query` (tables use their primary key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_columns: Vec<String>,
    /// `cdc`: the value format.
    #[serde(default)]
    pub envelope: Envelope,
    /// `cdc`: the replication slot (default `logbrook_<connector name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// `cdc`: the publication (default the slot's name); created for the tables if missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<String>,
    /// `cdc`: copy the tables' current rows first (`op = "r"`), consistent with the slot.
    #[serde(default = "yes")]
    pub snapshot: bool,
    /// `cdc`: drop the slot when the connector is deleted.
    #[serde(default)]
    pub drop_slot_on_delete: bool,
    /// `cdc`: warn when the slot holds back more WAL than this.
    #[serde(default = "default_max_slot_wal_mb")]
    pub max_slot_wal_mb: u64,
}

fn default_poll_interval_ms() -> u64 {
    1000
}

fn default_batch_rows() -> usize {
    10_000
}

fn default_max_slot_wal_mb() -> u64 {
    1024
}

fn yes() -> bool {
    true
}

impl PostgresSourceConfig {
    /// The tables as configured.
    fn table_names(&self) -> Vec<TableName> {
        self.table
            .iter()
            .chain(&self.tables)
            .filter_map(|t| TableName::parse(t).ok())
            .collect()
    }

    /// The slot name for a connector: `slot`, or `logbrook_` + the name in the characters a
    /// slot name allows.
    fn slot_name(&self, connector: &str) -> String {
        self.slot.clone().unwrap_or_else(|| {
            let mut name: String = format!("logbrook_{connector}")
                .chars()
                .map(|c| match c.to_ascii_lowercase() {
                    c @ ('a'..='z' | '0'..='9' | '_') => c,
                    _ => '_',
                })
                .collect();
            name.truncate(63);
            name
        })
    }
}

#[async_trait]
impl SourceConnector for PostgresSourceConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        check_url(&self.url).map_err(|reason| ConfigIssue::new("url", reason))?;
        let sources = usize::from(self.table.is_some())
            + usize::from(!self.tables.is_empty())
            + usize::from(self.query.is_some());
        if sources != 1 {
            return Err(ConfigIssue::new(
                "table",
                "set exactly one of `table`, `tables` or `query`",
            ));
        }
        for (i, name) in self.table.iter().chain(&self.tables).enumerate() {
            let key = if self.table.is_some() {
                "table".to_string()
            } else {
                format!("tables[{i}]")
            };
            TableName::parse(name).map_err(|reason| ConfigIssue::new(key, reason))?;
        }
        if let Some(query) = &self.query
            && query.trim().is_empty()
        {
            return Err(ConfigIssue::new("query", "must not be empty"));
        }
        let needs_incrementing =
            matches!(self.mode, Mode::Incrementing | Mode::TimestampIncrementing);
        let needs_timestamp = matches!(self.mode, Mode::Timestamp | Mode::TimestampIncrementing);
        if needs_incrementing && self.incrementing_column.is_none() {
            return Err(ConfigIssue::new(
                "incrementing_column",
                "this mode needs `incrementing_column`",
            ));
        }
        if needs_timestamp && self.timestamp_column.is_none() {
            return Err(ConfigIssue::new(
                "timestamp_column",
                "this mode needs `timestamp_column`",
            ));
        }
        if self.batch_rows == 0 {
            return Err(ConfigIssue::new("batch_rows", "must be at least 1"));
        }
        if self.poll_interval_ms == 0 {
            return Err(ConfigIssue::new("poll_interval_ms", "must be at least 1"));
        }
        if self.mode == Mode::Cdc {
            if self.query.is_some() {
                return Err(ConfigIssue::new(
                    "query",
                    "`cdc` captures tables: use `table` or `tables`",
                ));
            }
            if let Some(slot) = &self.slot
                && (slot.is_empty()
                    || slot.len() > 63
                    || !slot
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            {
                return Err(ConfigIssue::new(
                    "slot",
                    "a slot name is 1 to 63 lower-case letters, digits and underscores",
                ));
            }
        } else {
            for (key, set) in [
                ("slot", self.slot.is_some()),
                ("publication", self.publication.is_some()),
                ("envelope", self.envelope != Envelope::Change),
                ("drop_slot_on_delete", self.drop_slot_on_delete),
            ] {
                if set {
                    return Err(ConfigIssue::new(key, "only used with mode = \"cdc\""));
                }
            }
        }
        Ok(())
    }

    fn names_own_topics(&self) -> bool {
        self.topic_prefix.is_some()
    }

    /// Query modes deal the tables out to tasks; `cdc` reads one slot, in one task.
    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Self>> {
        let tables = self.table_names();
        if self.mode == Mode::Cdc || self.query.is_some() || tables.len() < 2 {
            return Ok(vec![self.clone()]);
        }
        let tasks = max_tasks.min(tables.len());
        Ok((0..tasks)
            .map(|task| {
                let mut config = self.clone();
                config.table = None;
                config.tables = self
                    .table
                    .iter()
                    .chain(&self.tables)
                    .skip(task)
                    .step_by(tasks)
                    .cloned()
                    .collect();
                config
            })
            .collect())
    }

    async fn open(self, context: SourceContext) -> Result<Box<dyn Source>> {
        if self.mode == Mode::Cdc {
            Ok(Box::new(cdc::CdcSource::open(self, context).await?))
        } else {
            Ok(Box::new(query::QuerySource::open(self, context).await?))
        }
    }

    async fn deleted(self, connector: String) -> Result<()> {
        if self.mode == Mode::Cdc && self.drop_slot_on_delete {
            cdc::drop_slot(&self.url, &self.slot_name(&connector)).await?;
        }
        Ok(())
    }
}
