//! `mode = "cdc"`: inserts, updates and deletes from a logical replication slot.
//!
//! The slot uses the built-in `pgoutput` plugin over plain SQL
//! (`pg_logical_slot_peek_binary_changes`), so no server extension and no replication connection
//! are needed. Changes are *peeked*, written to the log with their position as the source offset,
//! and only then (in [`Source::commit`]) is the slot advanced past them: a crash in between
//! re-reads them, and the stored offset skips what already reached the log.
//!
//! The first start copies the tables (`op = "r"`) in a `REPEATABLE READ` snapshot taken after
//! the slot exists. Every transaction the slot then streams that the snapshot already saw
//! (by `pg_current_snapshot()`'s xmin, xmax and in-progress list) is skipped, so each change
//! appears exactly once: in the copy or in the stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::{DataType, Field, Fields};
use async_trait::async_trait;
use logbrook_connect::{Error, Record, Result, Source, SourceContext, SourceRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Postgres, Row};

use super::pgoutput::{self, Datum, Message, Relation, Tuple};
use super::table::{Column, Shape, TableInfo, describe_table};
use super::{Envelope, PostgresSourceConfig};
use crate::sql::{classify, connect, quote_ident};
use crate::types::Kind;

/// How often the slot's retained WAL is checked against `max_slot_wal_mb`.
const WAL_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Which transactions the initial snapshot already contains (`pg_current_snapshot()`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SnapshotFilter {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl SnapshotFilter {
    /// Parses `xmin:xmax:xip,xip`.
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
        };
        Some(Self { xmin, xmax, xip })
    }

    /// Whether a transaction's effects are already in the snapshot. `xid` is the 32-bit id
    /// `pgoutput` sends; it is widened around `xmax`.
    fn saw(&self, xid: u32) -> bool {
        let offset = i64::from(xid.wrapping_sub(self.xmax as u32) as i32);
        let full = (self.xmax as i64 + offset) as u64;
        full < self.xmin || (full < self.xmax && !self.xip.contains(&full))
    }
}

/// The source offset: everything up to `lsn` (the end of a transaction) is in the log, plus the
/// first `events` changes of the transaction after it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    lsn: String,
    events: u64,
    snapshot_done: bool,
    snapshot: Option<SnapshotFilter>,
}

/// A table being captured.
struct Captured {
    info: TableInfo,
    topic: String,
}

/// A relation as the stream last described it.
struct StreamRelation {
    table: usize,
    shape: Arc<Shape>,
    change_schema: DataType,
}

/// The initial copy in progress.
struct SnapshotRun {
    conn: PoolConnection<Postgres>,
    table: usize,
    cursor_open: bool,
    /// A row fetched ahead, so the last row of the copy is known when it is read.
    ahead: Option<Vec<Option<String>>>,
    lsn: String,
}

/// A CDC source task.
pub struct CdcSource {
    pool: PgPool,
    connector: String,
    slot: String,
    publication: String,
    envelope: Envelope,
    batch_rows: usize,
    poll_interval: Duration,
    max_slot_wal_bytes: i64,
    tables: Vec<Captured>,
    by_oid: HashMap<u32, usize>,
    relations: HashMap<u32, StreamRelation>,
    partition: Value,
    position: Position,
    /// The slot's confirmed position as far as this task knows.
    confirmed: u64,
    /// Where to advance the slot once the last polled records are in the log.
    advance_to: Option<u64>,
    snapshot: Option<SnapshotRun>,
    last_wal_check: Option<Instant>,
}

impl CdcSource {
    /// Connects, makes sure the publication and the slot exist, and resumes (or starts the
    /// initial copy).
    ///
    /// # Errors
    /// Missing tables, a server without `wal_level = logical` (fatal); unreachable (retriable).
    pub async fn open(config: PostgresSourceConfig, context: SourceContext) -> Result<Self> {
        let slot = config.slot_name(&context.connector);
        let publication = config.publication.clone().unwrap_or_else(|| slot.clone());
        let pool = connect(
            &config.url,
            &format!("logbrook {} cdc", context.connector),
            2,
        )
        .await?;
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| classify(e, "connecting to PostgreSQL"))?;
        let mut tables = Vec::new();
        for table in config.table_names() {
            let info = describe_table(&mut conn, &table).await?;
            let topic = config
                .topic_prefix
                .as_ref()
                .map(|prefix| format!("{prefix}{}", table.display_name()))
                .unwrap_or_default();
            tables.push(Captured { info, topic });
        }
        let by_oid = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.info.oid, i))
            .collect();
        ensure_publication(&mut conn, &publication, &tables).await?;
        let (slot_lsn, created) = ensure_slot(&mut conn, &slot).await?;
        drop(conn);

        let partition = json!({"slot": slot});
        let stored: Option<Position> = context
            .offset(&partition)
            .and_then(|offset| serde_json::from_value(offset.clone()).ok());
        let mut source = Self {
            pool,
            connector: context.connector.clone(),
            slot,
            publication,
            envelope: config.envelope,
            batch_rows: config.batch_rows,
            poll_interval: Duration::from_millis(config.poll_interval_ms),
            max_slot_wal_bytes: i64::try_from(config.max_slot_wal_mb << 20).unwrap_or(i64::MAX),
            tables,
            by_oid,
            relations: HashMap::new(),
            partition,
            position: Position {
                lsn: pgoutput::format_lsn(slot_lsn),
                ..Position::default()
            },
            confirmed: slot_lsn,
            advance_to: None,
            snapshot: None,
            last_wal_check: None,
        };
        match stored {
            Some(stored) if stored.snapshot_done && !created => {
                let lsn = pgoutput::parse_lsn(&stored.lsn).unwrap_or(0);
                // The log holds changes the slot was not advanced past before a stop.
                if lsn > source.confirmed {
                    source.advance_slot(lsn).await?;
                }
                source.position = stored;
            }
            stored => {
                if created && stored.is_some() {
                    tracing::warn!(
                        connector = %source.connector,
                        slot = %source.slot,
                        "the replication slot was gone and is created again: changes made while it was missing are not captured"
                    );
                }
                if config.snapshot {
                    source.start_snapshot().await?;
                } else {
                    source.position.snapshot_done = true;
                }
            }
        }
        tracing::info!(
            connector = %source.connector,
            slot = %source.slot,
            publication = %source.publication,
            resume = %source.position.lsn,
            snapshot = source.snapshot.is_some(),
            "postgres cdc source started"
        );
        Ok(source)
    }

    async fn start_snapshot(&mut self) -> Result<()> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| classify(e, "starting the snapshot"))?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *conn)
            .await
            .map_err(|e| classify(e, "starting the snapshot"))?;
        let text: String = sqlx::query_scalar("SELECT pg_current_snapshot()::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify(e, "starting the snapshot"))?;
        let filter = SnapshotFilter::parse(&text)
            .ok_or_else(|| Error::fatal(format!("unexpected snapshot {text:?}")))?;
        self.position = Position {
            lsn: pgoutput::format_lsn(self.confirmed),
            events: 0,
            snapshot_done: false,
            snapshot: Some(filter),
        };
        tracing::info!(connector = %self.connector, tables = self.tables.len(), "copying the tables' current rows");
        self.snapshot = Some(SnapshotRun {
            conn,
            table: 0,
            cursor_open: false,
            ahead: None,
            lsn: pgoutput::format_lsn(self.confirmed),
        });
        Ok(())
    }

    /// One batch of the initial copy; the copy's last record says the copy is done.
    async fn poll_snapshot(&mut self) -> Result<Vec<SourceRecord>> {
        let mut rows: Vec<(usize, Vec<Option<String>>)> = Vec::new();
        let mut finished = false;
        {
            let run = self.snapshot.as_mut().expect("snapshot running");
            while rows.len() < self.batch_rows {
                if run.table == self.tables.len() {
                    finished = true;
                    break;
                }
                let table = &self.tables[run.table].info;
                if !run.cursor_open {
                    let sql = format!(
                        "DECLARE logbrook_snapshot NO SCROLL CURSOR FOR SELECT {} FROM {} AS q",
                        table.shape.text_select_list(),
                        table.quoted()
                    );
                    sqlx::raw_sql(AssertSqlSafe(sql))
                        .execute(&mut *run.conn)
                        .await
                        .map_err(|e| classify(e, &format!("copying {}", table.configured)))?;
                    run.cursor_open = true;
                }
                let want = self.batch_rows - rows.len() + 1;
                let fetched = sqlx::query(AssertSqlSafe(format!(
                    "FETCH {want} FROM logbrook_snapshot"
                )))
                .fetch_all(&mut *run.conn)
                .await
                .map_err(|e| classify(e, &format!("copying {}", table.configured)))?;
                let exhausted = fetched.len() < want;
                let width = table.shape.columns.len();
                let mut texts = fetched.iter().map(|row| {
                    (0..width)
                        .map(|i| row.get::<Option<String>, _>(i))
                        .collect::<Vec<_>>()
                });
                if let Some(ahead) = run.ahead.take() {
                    rows.push((run.table, ahead));
                }
                let mut batch: Vec<_> = texts.by_ref().collect();
                if !exhausted {
                    run.ahead = batch.pop();
                }
                rows.extend(batch.into_iter().map(|t| (run.table, t)));
                if exhausted {
                    sqlx::raw_sql("CLOSE logbrook_snapshot")
                        .execute(&mut *run.conn)
                        .await
                        .map_err(|e| classify(e, "copying"))?;
                    run.cursor_open = false;
                    run.table += 1;
                }
            }
        }
        let lsn = self
            .snapshot
            .as_ref()
            .map(|r| r.lsn.clone())
            .unwrap_or_default();
        let mut records = Vec::with_capacity(rows.len());
        let count = rows.len();
        for (i, (table, texts)) in rows.into_iter().enumerate() {
            let shape = Arc::clone(&self.tables[table].info.shape);
            let row = shape.row(texts.iter().map(Option::as_deref)).map_err(|e| {
                Error::fatal(format!("{}: {e}", self.tables[table].info.configured))
            })?;
            let mut position = self.position.clone();
            position.snapshot_done = finished && i + 1 == count;
            let source = self.source_info(table, &lsn, None, None, true);
            let schema = change_schema(&shape);
            records.push(self.change_record(
                table,
                &shape,
                &schema,
                "r",
                None,
                Some(row),
                source,
                None,
                &position,
            ));
        }
        if finished {
            let mut run = self.snapshot.take().expect("snapshot running");
            sqlx::raw_sql("COMMIT")
                .execute(&mut *run.conn)
                .await
                .map_err(|e| classify(e, "finishing the snapshot"))?;
            self.position.snapshot_done = true;
            tracing::info!(connector = %self.connector, "table copy done; streaming changes");
        }
        Ok(records)
    }

    /// The next changes from the slot, without consuming them.
    async fn poll_stream(&mut self) -> Result<Vec<SourceRecord>> {
        self.check_wal().await;
        let flushed: String = sqlx::query_scalar("SELECT pg_current_wal_flush_lsn()::text")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| classify(e, "reading the WAL position"))?;
        let rows = sqlx::query(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes(\
             $1, NULL, $2, 'proto_version', '1', 'publication_names', $3)",
        )
        .bind(&self.slot)
        .bind(i32::try_from(self.batch_rows).unwrap_or(i32::MAX))
        .bind(quote_ident(&self.publication))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e, &format!("reading slot {}", self.slot)))?;
        if rows.is_empty() {
            // Nothing for our tables up to `flushed`: let the slot release that WAL.
            if let Some(flushed) = pgoutput::parse_lsn(&flushed)
                && flushed > self.confirmed
            {
                self.advance_slot(flushed).await?;
            }
            tokio::time::sleep(self.poll_interval.min(Duration::from_secs(1))).await;
            return Ok(Vec::new());
        }
        let resume_lsn = pgoutput::parse_lsn(&self.position.lsn).unwrap_or(0);
        let mut resume_skip = self.position.events;
        let mut records: Vec<SourceRecord> = Vec::new();
        let mut last_end = None;
        // The open transaction: (skip it, xid, commit time, index of its first record, events).
        let mut txn: Option<(bool, u32, i64, usize, u64)> = None;
        let mut skip_events = 0;
        for row in &rows {
            let lsn: String = row.get(0);
            let data: Vec<u8> = row.get(1);
            let message = pgoutput::decode(&data)
                .map_err(|e| Error::fatal(format!("slot {} at {lsn}: {e}", self.slot)))?;
            match message {
                Message::Begin {
                    final_lsn,
                    xid,
                    commit_micros,
                } => {
                    let done = final_lsn < resume_lsn;
                    let seen = self.position.snapshot.as_ref().is_some_and(|f| f.saw(xid));
                    skip_events = if done {
                        0
                    } else {
                        std::mem::take(&mut resume_skip)
                    };
                    txn = Some((done || seen, xid, commit_micros, records.len(), 0));
                }
                Message::Commit { end_lsn } => {
                    if let Some((skipped, _, _, first, _)) = txn.take()
                        && !skipped
                        && records.len() > first
                    {
                        let position = Position {
                            lsn: pgoutput::format_lsn(end_lsn),
                            events: 0,
                            snapshot_done: true,
                            snapshot: self.position.snapshot.clone(),
                        };
                        if let Some(last) = records.last_mut() {
                            last.source_offset =
                                serde_json::to_value(&position).unwrap_or_default();
                        }
                        self.position = position;
                    } else if end_lsn >= resume_lsn {
                        self.position.lsn = pgoutput::format_lsn(end_lsn);
                        self.position.events = 0;
                    }
                    last_end = Some(end_lsn);
                }
                Message::Relation(relation) => self.learn(relation),
                Message::Insert { relation, new } => {
                    self.change(
                        &mut txn,
                        &mut skip_events,
                        &mut records,
                        &lsn,
                        relation,
                        None,
                        Some(new),
                    )?;
                }
                Message::Update { relation, old, new } => {
                    self.change(
                        &mut txn,
                        &mut skip_events,
                        &mut records,
                        &lsn,
                        relation,
                        Some(old),
                        Some(new),
                    )?;
                }
                Message::Delete { relation, old } => {
                    self.change(
                        &mut txn,
                        &mut skip_events,
                        &mut records,
                        &lsn,
                        relation,
                        Some(Some(old)),
                        None,
                    )?;
                }
                Message::Other(_) => {}
            }
        }
        if let Some(end) = last_end {
            if records.is_empty() {
                // Only transactions already in the log or the snapshot: nothing to write.
                if end > self.confirmed {
                    self.advance_slot(end).await?;
                }
            } else {
                self.advance_to = Some(end);
            }
        }
        Ok(records)
    }

    /// Records a relation the stream describes (sent before its first change).
    fn learn(&mut self, relation: Relation) {
        let Some(&table) = self.by_oid.get(&relation.id) else {
            return;
        };
        let known = &self.tables[table].info.shape;
        let columns = relation
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                kind: Kind::of(c.type_oid, c.typmod),
                nullable: known
                    .index_of(&c.name)
                    .is_none_or(|i| known.columns[i].nullable),
            })
            .collect();
        let key = relation
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.key)
            .map(|(i, _)| i)
            .collect();
        let shape = Arc::new(Shape::new(columns, key));
        let change_schema = change_schema(&shape);
        self.relations.insert(
            relation.id,
            StreamRelation {
                table,
                shape,
                change_schema,
            },
        );
    }

    /// Turns one row change into records (an update that changes the key is a delete of the
    /// old key and a create of the new one, as Debezium writes it).
    #[allow(clippy::too_many_arguments)]
    fn change(
        &self,
        txn: &mut Option<(bool, u32, i64, usize, u64)>,
        skip_events: &mut u64,
        records: &mut Vec<SourceRecord>,
        lsn: &str,
        relation_id: u32,
        old: Option<Option<Tuple>>,
        new: Option<Tuple>,
    ) -> Result<()> {
        let Some((skipped, xid, commit_micros, _, events)) = txn.as_mut() else {
            return Err(Error::fatal(format!(
                "slot {}: a change outside a transaction at {lsn}",
                self.slot
            )));
        };
        if *skipped {
            return Ok(());
        }
        let relation = self.relations.get(&relation_id).ok_or_else(|| {
            Error::fatal(format!(
                "slot {}: change for unknown relation {relation_id} at {lsn}",
                self.slot
            ))
        })?;
        let shape = &relation.shape;
        let decode = |tuple: &Tuple, fallback: Option<&Tuple>| -> Result<Map<String, Value>> {
            let mut row = Map::with_capacity(shape.columns.len());
            for (i, (column, datum)) in shape.columns.iter().zip(tuple).enumerate() {
                let datum = match (datum, fallback.and_then(|f| f.get(i))) {
                    (Datum::Unchanged, Some(Datum::Text(text))) => Datum::Text(text.clone()),
                    _ => datum.clone(),
                };
                let value = match datum {
                    Datum::Null => Value::Null,
                    // An unchanged TOASTed value without REPLICA IDENTITY FULL: left out.
                    Datum::Unchanged => continue,
                    Datum::Text(text) => column.kind.decode(&text).map_err(|e| {
                        Error::fatal(format!(
                            "{} column {:?} at {lsn}: {e}",
                            self.tables[relation.table].info.configured, column.name
                        ))
                    })?,
                };
                row.insert(column.name.clone(), value);
            }
            Ok(row)
        };
        let before = match &old {
            Some(Some(tuple)) => Some(decode(tuple, None)?),
            _ => None,
        };
        let after = match &new {
            Some(tuple) => Some(decode(tuple, old.as_ref().and_then(Option::as_ref))?),
            None => None,
        };
        let mut changes = Vec::new();
        match (&before, &after) {
            (None, Some(_)) if old.is_none() => changes.push(("c", None, after.clone())),
            (Some(b), Some(a)) if shape.key_of(b) != shape.key_of(a) && !shape.key.is_empty() => {
                changes.push(("d", before.clone(), None));
                changes.push(("c", None, after.clone()));
            }
            (_, Some(_)) => changes.push(("u", before.clone(), after.clone())),
            (Some(_), None) => changes.push(("d", before.clone(), None)),
            (None, None) => {}
        }
        for (op, before, after) in changes {
            *events += 1;
            if *skip_events > 0 {
                *skip_events -= 1;
                continue;
            }
            let position = Position {
                events: *events,
                ..self.position.clone()
            };
            let source =
                self.source_info(relation.table, lsn, Some(*xid), Some(*commit_micros), false);
            records.push(self.change_record(
                relation.table,
                shape,
                &relation.change_schema,
                op,
                before,
                after,
                source,
                Some(*commit_micros / 1000),
                &position,
            ));
        }
        Ok(())
    }

    fn source_info(
        &self,
        table: usize,
        lsn: &str,
        xid: Option<u32>,
        commit_micros: Option<i64>,
        snapshot: bool,
    ) -> Value {
        let info = &self.tables[table].info;
        let commit_time = commit_micros.and_then(|micros| {
            chrono::DateTime::from_timestamp_micros(micros)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        });
        json!({
            "connector": "postgresql",
            "name": self.connector,
            "schema": info.schema,
            "table": info.name,
            "lsn": lsn,
            "txid": xid,
            "commit_time": commit_time,
            "ts_ms": commit_micros.map(|m| m / 1000),
            "snapshot": snapshot,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn change_record(
        &self,
        table: usize,
        shape: &Shape,
        change_schema: &DataType,
        op: &str,
        before: Option<Map<String, Value>>,
        after: Option<Map<String, Value>>,
        source: Value,
        timestamp: Option<i64>,
        position: &Position,
    ) -> SourceRecord {
        let key = after
            .as_ref()
            .or(before.as_ref())
            .and_then(|row| shape.key_of(row));
        let (value, value_schema) = match self.envelope {
            Envelope::Change => (
                Some(json!({
                    "before": before.map(Value::Object),
                    "after": after.map(Value::Object),
                    "op": op,
                    "source": source,
                    "ts_ms": chrono::Utc::now().timestamp_millis(),
                })),
                change_schema.clone(),
            ),
            Envelope::Row => (after.map(Value::Object), shape.value_schema.clone()),
        };
        let record = Record {
            topic: self.tables[table].topic.clone(),
            timestamp,
            key,
            key_schema: shape.key_schema.clone(),
            value,
            value_schema: Some(value_schema),
            ..Record::default()
        };
        SourceRecord::new(
            record,
            self.partition.clone(),
            serde_json::to_value(position).unwrap_or_default(),
        )
    }

    async fn advance_slot(&mut self, lsn: u64) -> Result<()> {
        sqlx::query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)")
            .bind(&self.slot)
            .bind(pgoutput::format_lsn(lsn))
            .execute(&self.pool)
            .await
            .map_err(|e| classify(e, &format!("advancing slot {}", self.slot)))?;
        self.confirmed = lsn;
        Ok(())
    }

    /// Warns when the slot holds back more WAL than allowed (a stopped or slow connector).
    async fn check_wal(&mut self) {
        if self
            .last_wal_check
            .is_some_and(|t| t.elapsed() < WAL_CHECK_INTERVAL)
        {
            return;
        }
        self.last_wal_check = Some(Instant::now());
        let retained: Result<Option<i64>, _> = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 \
             FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(&self.slot)
        .fetch_one(&self.pool)
        .await;
        if let Ok(Some(bytes)) = retained
            && bytes > self.max_slot_wal_bytes
        {
            tracing::warn!(
                connector = %self.connector,
                slot = %self.slot,
                retained_mb = bytes >> 20,
                limit_mb = self.max_slot_wal_bytes >> 20,
                "the replication slot retains more WAL than max_slot_wal_mb"
            );
        }
    }
}

#[async_trait]
impl Source for CdcSource {
    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        if self.snapshot.is_some() {
            let outcome = self.poll_snapshot().await;
            if outcome.is_err() {
                // A failed copy restarts from the beginning in a new snapshot.
                if let Some(mut run) = self.snapshot.take() {
                    run.conn.close_on_drop();
                }
                if let Err(e) = self.start_snapshot().await {
                    tracing::warn!(connector = %self.connector, error = %e, "restarting the snapshot failed");
                }
            }
            return outcome;
        }
        self.poll_stream().await
    }

    async fn commit(&mut self) -> Result<()> {
        if let Some(lsn) = self.advance_to.take()
            && lsn > self.confirmed
        {
            self.advance_slot(lsn).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if let Some(mut run) = self.snapshot.take() {
            run.conn.close_on_drop();
        }
        self.pool.close().await;
        Ok(())
    }
}

/// `{before, after, op, source, ts_ms}` over a table's row type.
fn change_schema(shape: &Shape) -> DataType {
    let source = Fields::from(vec![
        Field::new("connector", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("schema", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("lsn", DataType::Utf8, false),
        Field::new("txid", DataType::Int64, true),
        Field::new("commit_time", DataType::Utf8, true),
        Field::new("ts_ms", DataType::Int64, true),
        Field::new("snapshot", DataType::Boolean, false),
    ]);
    DataType::Struct(Fields::from(vec![
        Field::new("before", shape.value_schema.clone(), true),
        Field::new("after", shape.value_schema.clone(), true),
        Field::new("op", DataType::Utf8, false),
        Field::new("source", DataType::Struct(source), false),
        Field::new("ts_ms", DataType::Int64, false),
    ]))
}

/// Creates the publication for the tables, or adds the tables it lacks.
async fn ensure_publication(
    conn: &mut sqlx::PgConnection,
    publication: &str,
    tables: &[Captured],
) -> Result<()> {
    let doing = format!("setting up publication {publication}");
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_publication WHERE pubname = $1")
        .bind(publication)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| classify(e, &doing))?;
    let missing: Vec<&Captured> = if exists.is_none() {
        tables.iter().collect()
    } else {
        let have: Vec<(String, String)> = sqlx::query_as(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
        )
        .bind(publication)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(e, &doing))?;
        tables
            .iter()
            .filter(|t| !have.contains(&(t.info.schema.clone(), t.info.name.clone())))
            .collect()
    };
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing
        .iter()
        .map(|t| t.info.quoted())
        .collect::<Vec<_>>()
        .join(", ");
    let sql = if exists.is_none() {
        format!(
            "CREATE PUBLICATION {} FOR TABLE {list}",
            quote_ident(publication)
        )
    } else {
        format!(
            "ALTER PUBLICATION {} ADD TABLE {list}",
            quote_ident(publication)
        )
    };
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(e, &doing))?;
    tracing::info!(publication, tables = %list, "publication set up");
    Ok(())
}

/// The slot's confirmed position, creating the slot if it is missing (`true` when created).
async fn ensure_slot(conn: &mut sqlx::PgConnection, slot: &str) -> Result<(u64, bool)> {
    let doing = format!("setting up replication slot {slot}");
    let found: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT confirmed_flush_lsn::text, plugin::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify(e, &doing))?;
    if let Some((lsn, plugin)) = found {
        if plugin.as_deref() != Some("pgoutput") {
            return Err(Error::fatal(format!(
                "replication slot {slot} exists with plugin {plugin:?}, not pgoutput"
            )));
        }
        let lsn = lsn.as_deref().and_then(pgoutput::parse_lsn).unwrap_or(0);
        return Ok((lsn, false));
    }
    let lsn: String = sqlx::query_scalar(
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
    )
    .bind(slot)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        let hint = if crate::sql::sqlstate(&e).as_deref() == Some("55000") {
            " (the server needs wal_level = logical)"
        } else {
            ""
        };
        Error::fatal(format!("{doing}: {e}{hint}"))
    })?;
    tracing::info!(slot, lsn, "replication slot created");
    Ok((pgoutput::parse_lsn(&lsn).unwrap_or(0), true))
}

/// Drops a connector's slot (when the connector is deleted with `drop_slot_on_delete`).
///
/// # Errors
/// The server unreachable, or the slot in use.
pub async fn drop_slot(url: &str, slot: &str) -> Result<()> {
    let pool = connect(url, "logbrook drop slot", 1).await?;
    sqlx::query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .execute(&pool)
    .await
    .map_err(|e| classify(e, &format!("dropping replication slot {slot}")))?;
    pool.close().await;
    tracing::info!(slot, "replication slot dropped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_filter_knows_which_transactions_it_saw() {
        let filter = SnapshotFilter::parse("100:105:101,103").unwrap();
        assert!(filter.saw(99));
        assert!(filter.saw(102));
        assert!(!filter.saw(101), "in progress when the snapshot was taken");
        assert!(!filter.saw(105), "started after");
        assert!(!filter.saw(200));
        assert_eq!(
            SnapshotFilter::parse("5:5:").unwrap().xip,
            Vec::<u64>::new()
        );
    }
}
