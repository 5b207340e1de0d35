//! One `postgres-sink` task: each `put` is cut into chunks of `batch_rows` records, and each
//! chunk goes through three phases: find its tables and the fields they lack (creating or
//! evolving them), encode its rows, then write them and the offsets in one transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use logbrook_connect::api::schema;
use logbrook_connect::{Error, Record, Rejected, Result, Sink, SinkContext};
use sqlx::PgPool;

use super::columns::{self, TableInfo};
use super::offsets::{self, NextOffsets};
use super::rows::{self, Row, Target};
use super::write;
use super::{PostgresSinkConfig, TableTemplate, WriteMode};
use crate::sql::{self, TableName, classify};

/// One `postgres-sink` task.
pub(super) struct PostgresSink {
    config: PostgresSinkConfig,
    connector: String,
    template: TableTemplate,
    offsets_table: TableName,
    pool: PgPool,
    /// The table of each topic seen.
    topic_tables: HashMap<String, TableName>,
    /// Table metadata, read once and again after DDL or an error.
    tables: HashMap<TableName, Arc<TableInfo>>,
    /// `exactly_once`: the stored next offsets.
    next_offsets: NextOffsets,
    /// Whether `next_offsets` may be behind the database: a write failed or was cancelled
    /// after its COMMIT may have been sent.
    offsets_stale: bool,
    /// Numbers the temporary tables of upserts.
    temp_tables: u64,
}

/// A table written by a chunk, while its records are read.
struct Slot {
    name: TableName,
    info: Option<Arc<TableInfo>>,
    primary_key: Vec<String>,
    missing: Missing,
}

/// Fields without a column, in order of appearance, with the type inferred from the first
/// value that has one.
#[derive(Default)]
struct Missing {
    fields: Vec<(String, Option<String>)>,
    index: HashMap<String, usize>,
}

impl Missing {
    /// Notes a field without a column, widening its inferred type.
    fn note(&mut self, field: &str, seen: Option<String>) {
        let Some(at) = self.index.get(field) else {
            self.index.insert(field.to_string(), self.fields.len());
            self.fields.push((field.to_string(), seen));
            return;
        };
        let current = &mut self.fields[*at].1;
        match (current.as_deref(), seen) {
            (None, seen) => *current = seen,
            (Some(old), Some(seen)) => {
                if let Some(wider) = columns::widen(old, &seen) {
                    *current = Some(wider.to_string());
                }
            }
            (Some(_), None) => {}
        }
    }

    /// The type inferred for a field, if it lacks a column and some value gave one.
    fn sql_type(&self, field: &str) -> Option<&String> {
        self.fields[*self.index.get(field)?].1.as_ref()
    }
}

/// A chunk's tables: one slot per table, and the slot of each record.
struct Tables {
    slots: Vec<Slot>,
    of_record: Vec<usize>,
}

impl PostgresSink {
    /// Connects, and with `exactly_once` reads the stored offsets.
    ///
    /// # Errors
    /// Retriable when the server cannot be reached.
    pub(super) async fn open(
        config: PostgresSinkConfig,
        template: TableTemplate,
        offsets_table: TableName,
        context: SinkContext,
    ) -> Result<Self> {
        let pool = sql::connect(&config.url, "logbrook-postgres-sink", 2).await?;
        let mut sink = Self {
            config,
            connector: context.connector,
            template,
            offsets_table,
            pool,
            topic_tables: HashMap::new(),
            tables: HashMap::new(),
            next_offsets: NextOffsets::new(),
            offsets_stale: false,
            temp_tables: 0,
        };
        if sink.config.exactly_once {
            sink.create_offsets_table().await?;
            sink.read_offsets().await?;
        }
        tracing::info!(
            connector = %sink.connector,
            task = context.task,
            table = %sink.config.table,
            mode = ?sink.config.mode,
            exactly_once = sink.config.exactly_once,
            "postgres sink task opened"
        );
        Ok(sink)
    }

    async fn create_offsets_table(&self) -> Result<()> {
        // Checked first so a user without CREATE on the schema can use an existing table.
        if self.load_table(&self.offsets_table).await?.is_none() {
            columns::run_ddl(
                &self.pool,
                &self.offsets_table,
                &offsets::create_table(&self.offsets_table),
            )
            .await
            .map_err(|e| {
                classify(
                    e,
                    &format!(
                        "creating offsets table {:?}",
                        self.offsets_table.display_name()
                    ),
                )
            })?;
        }
        Ok(())
    }

    async fn read_offsets(&mut self) -> Result<()> {
        self.next_offsets = offsets::read(&self.pool, &self.offsets_table, &self.connector)
            .await
            .map_err(|e| {
                classify(
                    e,
                    &format!(
                        "reading offsets table {:?}",
                        self.offsets_table.display_name()
                    ),
                )
            })?;
        self.offsets_stale = false;
        Ok(())
    }

    async fn load_table(&self, name: &TableName) -> Result<Option<TableInfo>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| classify(e, "connecting to PostgreSQL"))?;
        columns::load(&mut conn, name)
            .await
            .map_err(|e| classify(e, &format!("reading table {:?}", name.display_name())))
    }

    /// A table's metadata, from the cache or the catalog; `None` when it does not exist.
    async fn table_info(&mut self, name: &TableName) -> Result<Option<Arc<TableInfo>>> {
        if let Some(info) = self.tables.get(name) {
            return Ok(Some(info.clone()));
        }
        let info = self.load_table(name).await?.map(Arc::new);
        if let Some(info) = &info {
            self.tables.insert(name.clone(), info.clone());
        }
        Ok(info)
    }

    /// A table's metadata read again from the catalog.
    async fn reload(&mut self, name: &TableName) -> Result<Option<Arc<TableInfo>>> {
        self.tables.remove(name);
        self.table_info(name).await
    }

    fn table_of(&mut self, topic: &str) -> TableName {
        if let Some(name) = self.topic_tables.get(topic) {
            return name.clone();
        }
        let name = self.template.resolve(topic);
        self.topic_tables.insert(topic.to_string(), name.clone());
        name
    }

    /// The primary key fields of a table: configured, or the table's own when an operation
    /// needs one.
    fn primary_key_of(&self, name: &TableName, info: Option<&TableInfo>) -> Result<Vec<String>> {
        if !self.config.primary_key.is_empty() || !self.config.needs_key() {
            return Ok(self.config.primary_key.clone());
        }
        match info {
            Some(info) if !info.primary_key.is_empty() => Ok(info.primary_key.clone()),
            Some(_) => Err(Error::fatal(format!(
                "table {:?} has no primary key: set primary_key for upserts and deletes",
                name.display_name()
            ))),
            None => Err(Error::fatal(format!(
                "table {:?} does not exist and primary_key is not set: upserts and deletes \
                 need it to create the table",
                name.display_name()
            ))),
        }
    }

    /// Phase 1: each record's table, and the fields each table lacks with their inferred
    /// types. Records that cannot be read are left for phase 2 to reject.
    async fn find_tables(&mut self, records: &[Record], chunk: &[usize]) -> Result<Tables> {
        let mut slots: Vec<Slot> = Vec::new();
        let mut slot_of: HashMap<TableName, usize> = HashMap::new();
        let mut of_record = Vec::with_capacity(chunk.len());
        for &index in chunk {
            let record = &records[index];
            let name = self.table_of(&record.topic);
            let at = match slot_of.get(&name) {
                Some(at) => *at,
                None => {
                    let info = self.table_info(&name).await?;
                    let primary_key = self.primary_key_of(&name, info.as_deref())?;
                    slots.push(Slot {
                        name: name.clone(),
                        info,
                        primary_key,
                        missing: Missing::default(),
                    });
                    slot_of.insert(name, slots.len() - 1);
                    slots.len() - 1
                }
            };
            of_record.push(at);
            let slot = &mut slots[at];
            let Ok(Some(fields)) =
                rows::fields_of(record, &slot.primary_key, self.config.delete_on_tombstone)
            else {
                continue;
            };
            for field in &fields.fields {
                let has_column = slot
                    .info
                    .as_ref()
                    .is_some_and(|info| info.column(field.name).is_some());
                if has_column || rows::check_name(field.name).is_err() {
                    continue;
                }
                let semantic = rows::arrow_field(record, field)
                    .and_then(|f| f.metadata().get(schema::CONNECT_NAME))
                    .and_then(|name| match name.as_str() {
                        crate::types::JSON_NAME => Some("jsonb".to_string()),
                        crate::types::UUID_NAME => Some("uuid".to_string()),
                        _ => None,
                    });
                let seen = semantic
                    .or_else(|| {
                        rows::field_type(record, field).and_then(columns::sql_type_of_arrow)
                    })
                    .or_else(|| columns::sql_type_of_json(field.value).map(str::to_string));
                slot.missing.note(field.name, seen);
            }
        }
        Ok(Tables { slots, of_record })
    }

    /// Phase 1, continued: creates missing tables and adds missing columns, as configured.
    async fn prepare_targets(&mut self, slots: &[Slot]) -> Result<Vec<Target>> {
        let mut targets = Vec::with_capacity(slots.len());
        for slot in slots {
            let lacks_columns = slot.missing.fields.iter().any(|(_, t)| t.is_some());
            let info = match &slot.info {
                Some(info) if !lacks_columns => info.clone(),
                // Before rejecting records for missing columns: someone may have added them
                // since the table was read.
                Some(_) if !self.config.auto_evolve => {
                    self.reload(&slot.name).await?.ok_or_else(|| {
                        Error::retriable(format!(
                            "table {:?} was dropped while writing",
                            slot.name.display_name()
                        ))
                    })?
                }
                _ => self.prepare_table(slot).await?,
            };
            let mut primary_key = Vec::with_capacity(slot.primary_key.len());
            for field in &slot.primary_key {
                match info.column(field) {
                    Some(column) => primary_key.push(column),
                    None if self.config.needs_key() => {
                        return Err(Error::fatal(format!(
                            "table {:?} has no column for primary key field {field:?}",
                            slot.name.display_name()
                        )));
                    }
                    None => {}
                }
            }
            targets.push(Target { info, primary_key });
        }
        Ok(targets)
    }

    /// Creates a missing table and adds missing columns; returns the table as it then is.
    async fn prepare_table(&mut self, slot: &Slot) -> Result<Arc<TableInfo>> {
        let name = &slot.name;
        let ddl_error = |e| classify(e, &format!("changing table {:?}", name.display_name()));
        let mut info = slot.info.clone();
        if info.is_none() {
            if !self.config.auto_create {
                return Err(Error::fatal(format!(
                    "table {:?} does not exist (set auto_create = true to create it)",
                    name.display_name()
                )));
            }
            // Primary key columns first; their type defaults to text when no record of this
            // chunk gives one (those records are rejected anyway).
            let mut columns: Vec<(String, String)> = slot
                .primary_key
                .iter()
                .map(|field| {
                    let sql_type = slot
                        .missing
                        .sql_type(field)
                        .map_or_else(|| "text".to_string(), Clone::clone);
                    (field.clone(), sql_type)
                })
                .collect();
            for (field, sql_type) in &slot.missing.fields {
                if let Some(sql_type) = sql_type
                    && !slot.primary_key.contains(field)
                {
                    columns.push((field.clone(), sql_type.clone()));
                }
            }
            let ddl = columns::create_table(name, &columns, &slot.primary_key);
            columns::run_ddl(&self.pool, name, &ddl)
                .await
                .map_err(ddl_error)?;
            tracing::info!(table = %name, columns = columns.len(), "created table");
            info = self.reload(name).await?;
        }
        let Some(mut info) = info else {
            return Err(Error::fatal(format!(
                "table {:?} does not exist after creating it",
                name.display_name()
            )));
        };
        if self.config.auto_evolve {
            let added: Vec<(String, String)> = slot
                .missing
                .fields
                .iter()
                .filter(|(field, _)| info.column(field).is_none())
                .filter_map(|(field, sql_type)| Some((field.clone(), sql_type.clone()?)))
                .collect();
            if !added.is_empty() {
                let ddl = columns::add_columns(name, &added);
                columns::run_ddl(&self.pool, name, &ddl)
                    .await
                    .map_err(ddl_error)?;
                tracing::info!(
                    table = %name,
                    columns = ?added.iter().map(|(field, _)| field).collect::<Vec<_>>(),
                    "added columns"
                );
                info = self.reload(name).await?.ok_or_else(|| {
                    Error::retriable(format!(
                        "table {:?} was dropped while writing",
                        name.display_name()
                    ))
                })?;
            }
        }
        Ok(info)
    }

    /// Phase 2: the rows of a chunk, and the records rejected before reaching the server.
    fn encode_rows(
        &self,
        records: &[Record],
        chunk: &[usize],
        tables: &Tables,
        targets: &[Target],
    ) -> (Vec<Row>, Vec<(usize, String)>) {
        let mut prepared = Vec::with_capacity(chunk.len());
        let mut rejected = Vec::new();
        for (&index, &at) in chunk.iter().zip(&tables.of_record) {
            let record = &records[index];
            let fields = rows::fields_of(
                record,
                &tables.slots[at].primary_key,
                self.config.delete_on_tombstone,
            );
            let built = fields.and_then(|fields| {
                fields
                    .map(|fields| {
                        rows::build_row(
                            record,
                            &fields,
                            &targets[at],
                            at,
                            index,
                            self.config.mode == WriteMode::Upsert,
                        )
                    })
                    .transpose()
            });
            match built {
                Ok(Some(row)) => prepared.push(row),
                // A tombstone without delete_on_tombstone.
                Ok(None) => {}
                Err(why) => rejected.push((index, why)),
            }
        }
        (prepared, rejected)
    }

    /// Phase 3: writes the rows and the chunk's next offsets in one transaction. Returns the
    /// rows the server refused, by record index.
    async fn commit(
        &mut self,
        targets: &[Target],
        prepared: &[Row],
        next: &NextOffsets,
        doing: &str,
    ) -> Result<Vec<(usize, String)>> {
        let mut refused = Vec::new();
        self.offsets_stale = self.config.exactly_once;
        let begin_error = |e| classify(e, "starting a transaction");
        let mut tx = self.pool.begin().await.map_err(begin_error)?;
        let mode = self.config.mode;
        if let Err(error) =
            write::apply(&mut tx, mode, targets, prepared, &mut self.temp_tables).await
        {
            if !write::is_data_error(&error) {
                // Undefined table or column: the table changed under us; the retry reads it
                // again (`put` clears the cache on errors).
                if matches!(sql::sqlstate(&error).as_deref(), Some("42P01" | "42703")) {
                    return Err(Error::retriable(format!(
                        "{doing}: {error} (the table changed; reading it again)"
                    )));
                }
                return Err(classify(error, doing));
            }
            // Some row is bad: start again, finding it in savepoints.
            tx.rollback().await.map_err(|e| classify(e, doing))?;
            tx = self.pool.begin().await.map_err(begin_error)?;
            let bad = write::find_bad_rows(
                &mut tx,
                mode,
                targets,
                prepared,
                error,
                &mut self.temp_tables,
            )
            .await
            .map_err(|e| classify(e, doing))?;
            refused.extend(bad.into_iter().map(|(at, why)| (prepared[at].index, why)));
        }
        if self.config.exactly_once {
            offsets::store(&mut tx, &self.offsets_table, &self.connector, next)
                .await
                .map_err(|e| classify(e, "storing offsets"))?;
        }
        tx.commit().await.map_err(|e| classify(e, doing))?;
        for (topic, partitions) in next {
            self.next_offsets
                .entry(topic.clone())
                .or_default()
                .extend(partitions);
        }
        self.offsets_stale = false;
        Ok(refused)
    }

    /// Writes one chunk of records (`chunk` indexes `records`) in one transaction.
    async fn write_chunk(&mut self, records: &[Record], chunk: &[usize]) -> Result<Vec<Rejected>> {
        let started = Instant::now();
        let tables = self.find_tables(records, chunk).await?;
        let targets = self.prepare_targets(&tables.slots).await?;
        let (prepared, mut rejected) = self.encode_rows(records, chunk, &tables, &targets);
        let next = if self.config.exactly_once {
            offsets::after(chunk.iter().map(|&index| &records[index]))
        } else {
            NextOffsets::new()
        };
        if !prepared.is_empty() || !next.is_empty() {
            let names: Vec<String> = tables
                .slots
                .iter()
                .map(|slot| format!("{:?}", slot.name.display_name()))
                .collect();
            let doing = format!("writing to table {}", names.join(", "));
            rejected.extend(self.commit(&targets, &prepared, &next, &doing).await?);
        }
        tracing::debug!(
            rows = prepared.len(),
            rejected = rejected.len(),
            tables = tables.slots.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "wrote a chunk"
        );
        Ok(to_rejected(records, rejected))
    }
}

fn to_rejected(records: &[Record], mut rejected: Vec<(usize, String)>) -> Vec<Rejected> {
    rejected.sort_unstable_by_key(|(index, _)| *index);
    rejected
        .into_iter()
        .map(|(index, why)| Rejected {
            index,
            error: Error::data(format!("{}: {why}", describe(&records[index]))),
        })
        .collect()
}

/// Names a record in errors: topic, partition and offset.
fn describe(record: &Record) -> String {
    let known = |n: Option<u64>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
    format!(
        "topic {:?} partition {} offset {}",
        record.topic,
        known(record.partition.map(u64::from)),
        known(record.offset)
    )
}

#[async_trait]
impl Sink for PostgresSink {
    /// # Cancel safety
    /// A cancelled transaction is rolled back (or committed, if its COMMIT was already sent);
    /// either way the next `put` re-reads the stored offsets, so `exactly_once` holds.
    async fn put(&mut self, records: &[Record]) -> Result<Vec<Rejected>> {
        if self.config.exactly_once && self.offsets_stale {
            self.read_offsets().await?;
        }
        let live: Vec<usize> = (0..records.len())
            .filter(|&index| {
                !(self.config.exactly_once
                    && offsets::already_written(&self.next_offsets, &records[index]))
            })
            .collect();
        if live.len() < records.len() {
            tracing::debug!(
                skipped = records.len() - live.len(),
                "skipped records already written"
            );
        }
        let mut rejected = Vec::new();
        for chunk in live.chunks(self.config.batch_rows) {
            match self.write_chunk(records, chunk).await {
                Ok(more) => rejected.extend(more),
                Err(error) => {
                    // The tables may have changed under us; read them again.
                    self.tables.clear();
                    return Err(error);
                }
            }
        }
        Ok(rejected)
    }

    /// Every `put` has committed its transactions.
    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        self.pool.close().await;
        tracing::debug!(connector = %self.connector, "postgres sink task closed");
        Ok(())
    }
}
