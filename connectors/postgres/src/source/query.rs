//! The polling modes: `bulk`, `incrementing`, `timestamp` and `timestamp_incrementing`.
//!
//! Each poll reads one due table (tables take turns) with a keyset query:
//! `WHERE (ts, id) > (last) AND ts < now() - delay ORDER BY ts, id LIMIT batch_rows`. Every
//! record carries the position after it as its source offset, stored with it in the log, so a
//! restart resumes at exactly the next row. `bulk` copies the whole table in one
//! `REPEATABLE READ` transaction through a cursor, so a copy is one consistent snapshot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use logbrook_connect::{Error, Record, Result, Source, SourceContext, SourceRecord};
use serde_json::{Value, json};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{
    AssertSqlSafe, Column as _, Executor as _, Postgres, Row, SqlSafeStr as _, Statement as _,
};
use tokio::task::JoinHandle;

use super::table::{Column, Shape, describe_table};
use super::{Mode, PostgresSourceConfig};
use crate::sql::{classify, connect, quote_ident, quote_literal};
use crate::types::Kind;

/// A polling source over one or more tables, or one query.
pub struct QuerySource {
    pool: PgPool,
    mode: Mode,
    batch_rows: usize,
    interval: Duration,
    delay_ms: u64,
    streams: Vec<Stream>,
    /// The stream to look at first next time, so tables take turns.
    next: usize,
}

/// One table or query being read.
struct Stream {
    label: String,
    /// `"s"."t" AS q` or `(query) AS q`.
    from: String,
    shape: Arc<Shape>,
    topic: String,
    partition: Value,
    position: Position,
    incrementing: Option<usize>,
    timestamp: Option<usize>,
    due: Instant,
    bulk: Option<PoolConnection<Postgres>>,
    /// The next batch's query, already running, and the position it reads after.
    prefetch: Option<(Position, Prefetch)>,
}

/// A batch's query running ahead.
type Prefetch = JoinHandle<Result<Vec<PgRow>, sqlx::Error>>;

/// Where a stream resumes: after this row.
#[derive(Debug, Clone, PartialEq)]
enum Position {
    Start,
    Incrementing(i64),
    Timestamp(String),
    TimestampIncrementing(String, i64),
}

impl Position {
    fn from_offset(mode: Mode, offset: Option<&Value>) -> Self {
        let Some(offset) = offset else {
            return Self::Start;
        };
        let id = offset.get("incrementing").and_then(Value::as_i64);
        let ts = offset
            .get("timestamp")
            .and_then(Value::as_str)
            .map(str::to_string);
        match (mode, ts, id) {
            (Mode::Incrementing, _, Some(id)) => Self::Incrementing(id),
            (Mode::Timestamp, Some(ts), _) => Self::Timestamp(ts),
            (Mode::TimestampIncrementing, Some(ts), Some(id)) => {
                Self::TimestampIncrementing(ts, id)
            }
            _ => Self::Start,
        }
    }

    fn to_offset(&self) -> Value {
        match self {
            Self::Start => json!({}),
            Self::Incrementing(id) => json!({"incrementing": id}),
            Self::Timestamp(ts) => json!({"timestamp": ts}),
            Self::TimestampIncrementing(ts, id) => json!({"timestamp": ts, "incrementing": id}),
        }
    }
}

impl QuerySource {
    /// Connects, looks up the tables (or describes the query) and resumes from `context`.
    ///
    /// # Errors
    /// A missing table or column (fatal); the server unreachable (retriable).
    pub async fn open(config: PostgresSourceConfig, context: SourceContext) -> Result<Self> {
        let application = format!("logbrook {} task {}", context.connector, context.task);
        let pool = connect(&config.url, &application, 2).await?;
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| classify(e, "connecting to PostgreSQL"))?;
        let mut streams = Vec::new();
        let now = Instant::now();
        if let Some(query) = &config.query {
            let from = format!("({query}) AS q");
            let shape = describe_query(&mut conn, &from, &config.key_columns).await?;
            let partition = json!({"query": context.connector});
            streams.push(Stream::new(
                &config,
                "query".into(),
                from,
                shape,
                config.topic_prefix.clone().unwrap_or_default(),
                partition,
                &context,
                now,
            )?);
        } else {
            for table in config.table_names() {
                let info = describe_table(&mut conn, &table).await?;
                let mut shape = (*info.shape).clone();
                if !config.key_columns.is_empty() {
                    shape = with_key(shape, &config.key_columns, &table.display_name())?;
                }
                let label = table.display_name();
                let topic = config
                    .topic_prefix
                    .as_ref()
                    .map(|prefix| format!("{prefix}{label}"))
                    .unwrap_or_default();
                let partition = json!({"table": label});
                let from = format!("{} AS q", info.quoted());
                streams.push(Stream::new(
                    &config, label, from, shape, topic, partition, &context, now,
                )?);
            }
        }
        drop(conn);
        for stream in &streams {
            tracing::info!(
                connector = %context.connector,
                table = %stream.label,
                mode = ?config.mode,
                resume = %stream.position.to_offset(),
                "postgres source reading"
            );
        }
        Ok(Self {
            pool,
            mode: config.mode,
            batch_rows: config.batch_rows,
            interval: Duration::from_millis(config.poll_interval_ms),
            delay_ms: config.timestamp_delay_ms,
            streams,
            next: 0,
        })
    }

    async fn read(&mut self, index: usize) -> Result<Vec<SourceRecord>> {
        let batch_rows = self.batch_rows;
        let interval = self.interval;
        let mode = self.mode;
        let delay_ms = self.delay_ms;
        let pool = self.pool.clone();
        let stream = &mut self.streams[index];
        let outcome = if mode == Mode::Bulk {
            stream.read_bulk(&pool, batch_rows).await
        } else {
            stream.read_after(&pool, mode, batch_rows, delay_ms).await
        };
        match outcome {
            Ok((records, more)) => {
                stream.due = if more {
                    Instant::now()
                } else {
                    Instant::now() + interval
                };
                Ok(records)
            }
            Err(e) => {
                if let Some(mut conn) = stream.bulk.take() {
                    conn.close_on_drop();
                }
                Err(e)
            }
        }
    }
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &PostgresSourceConfig,
        label: String,
        from: String,
        shape: Shape,
        topic: String,
        partition: Value,
        context: &SourceContext,
        now: Instant,
    ) -> Result<Self> {
        let column = |name: &Option<String>| -> Result<Option<usize>> {
            name.as_ref()
                .map(|name| {
                    shape
                        .index_of(name)
                        .ok_or_else(|| Error::fatal(format!("{label} has no column {name:?}")))
                })
                .transpose()
        };
        let incrementing = column(&config.incrementing_column)?;
        let timestamp = column(&config.timestamp_column)?;
        if let Some(i) = incrementing
            && !matches!(shape.columns[i].kind, Kind::Int2 | Kind::Int4 | Kind::Int8)
        {
            return Err(Error::fatal(format!(
                "incrementing_column {:?} of {label} is not an integer column",
                shape.columns[i].name
            )));
        }
        let position = Position::from_offset(config.mode, context.offset(&partition));
        Ok(Self {
            label,
            from,
            shape: Arc::new(shape),
            topic,
            partition,
            position,
            incrementing,
            timestamp,
            due: now,
            bulk: None,
            prefetch: None,
        })
    }

    /// The next rows after the position. Returns whether more are probably waiting.
    async fn read_after(
        &mut self,
        pool: &PgPool,
        mode: Mode,
        batch_rows: usize,
        delay_ms: u64,
    ) -> Result<(Vec<SourceRecord>, bool)> {
        let ts = self.column_ref(self.timestamp);
        let doing = format!("reading {}", self.label);
        let mut rows = match self.prefetch.take() {
            Some((from, prefetched)) if from == self.position => prefetched
                .await
                .map_err(|e| Error::retriable(format!("{doing}: {e}")))?
                .map_err(|e| classify(e, &doing))?,
            stale => {
                if let Some((_, prefetched)) = stale {
                    prefetched.abort();
                }
                let sql = self.next_rows_sql(&self.position, mode, batch_rows, delay_ms);
                sqlx::query(AssertSqlSafe(sql))
                    .fetch_all(pool)
                    .await
                    .map_err(|e| classify(e, &doing))?
            }
        };
        let full = rows.len() == batch_rows;
        if mode == Mode::Timestamp && full {
            // Only whole groups of equal timestamps: the position `ts > last` would skip the
            // rest of a group cut by the LIMIT.
            let ts_index = self.timestamp.unwrap_or_default();
            let last: Option<String> = rows.last().and_then(|r| r.get(ts_index));
            let keep = rows
                .iter()
                .rposition(|r| r.get::<Option<String>, _>(ts_index) != last)
                .map_or(0, |i| i + 1);
            if keep == 0 {
                let ts = ts.clone().unwrap_or_default();
                let last = quote_literal(last.as_deref().unwrap_or_default());
                let sql = format!(
                    "SELECT {} FROM {} WHERE {ts} = {last}",
                    self.shape.text_select_list(),
                    self.from
                );
                rows = sqlx::query(AssertSqlSafe(sql))
                    .fetch_all(pool)
                    .await
                    .map_err(|e| classify(e, &doing))?;
            } else {
                rows.truncate(keep);
            }
        }
        let mut records = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let next_differs = match (self.timestamp, rows.get(i + 1)) {
                (Some(ts), Some(next)) if mode == Mode::Timestamp => {
                    next.get::<Option<&str>, _>(ts) != row.get::<Option<&str>, _>(ts)
                }
                _ => true,
            };
            if next_differs {
                self.position = self.position_of(row, mode)?;
            }
            records.push(self.record(row, self.position.to_offset()));
        }
        if full && mode != Mode::Timestamp {
            // The next rows' query is known now: run it while the runtime writes this batch.
            let sql = self.next_rows_sql(&self.position, mode, batch_rows, delay_ms);
            let pool = pool.clone();
            let query =
                tokio::spawn(async move { sqlx::query(AssertSqlSafe(sql)).fetch_all(&pool).await });
            self.prefetch = Some((self.position.clone(), query));
        }
        Ok((records, full))
    }

    /// `q."column"` for a column index.
    fn column_ref(&self, index: Option<usize>) -> Option<String> {
        index.map(|i| format!("q.{}", quote_ident(&self.shape.columns[i].name)))
    }

    /// The keyset query for the rows after `position`.
    fn next_rows_sql(
        &self,
        position: &Position,
        mode: Mode,
        batch_rows: usize,
        delay_ms: u64,
    ) -> String {
        let inc = self.column_ref(self.incrementing);
        let ts = self.column_ref(self.timestamp);
        let mut conditions = Vec::new();
        if let Some(ts) = &ts {
            conditions.push(format!("{ts} < now() - interval '{delay_ms} milliseconds'"));
        }
        match (position, &inc, &ts) {
            (Position::Incrementing(id), Some(inc), _) => conditions.push(format!("{inc} > {id}")),
            (Position::Timestamp(last), _, Some(ts)) => {
                conditions.push(format!("{ts} > {}", quote_literal(last)));
            }
            (Position::TimestampIncrementing(last, id), Some(inc), Some(ts)) => {
                let last = quote_literal(last);
                conditions.push(format!(
                    "({ts} > {last} OR ({ts} = {last} AND {inc} > {id}))"
                ));
            }
            _ => {}
        }
        let order = match mode {
            Mode::Incrementing => inc.unwrap_or_default(),
            Mode::Timestamp => ts.unwrap_or_default(),
            _ => format!("{}, {}", ts.unwrap_or_default(), inc.unwrap_or_default()),
        };
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        format!(
            "SELECT {} FROM {}{filter} ORDER BY {order} LIMIT {batch_rows}",
            self.shape.text_select_list(),
            self.from
        )
    }

    fn position_of(&self, row: &PgRow, mode: Mode) -> Result<Position> {
        let id = || -> Result<i64> {
            let text: Option<&str> = row.get(self.incrementing.unwrap_or_default());
            text.and_then(|t| t.parse().ok())
                .ok_or_else(|| Error::data(format!("{}: incrementing column is NULL", self.label)))
        };
        let ts = || -> Result<String> {
            let text: Option<String> = row.get(self.timestamp.unwrap_or_default());
            text.ok_or_else(|| Error::data(format!("{}: timestamp column is NULL", self.label)))
        };
        Ok(match mode {
            Mode::Incrementing => Position::Incrementing(id()?),
            Mode::Timestamp => Position::Timestamp(ts()?),
            _ => Position::TimestampIncrementing(ts()?, id()?),
        })
    }

    /// One batch of the current bulk copy, starting a copy if none runs.
    async fn read_bulk(
        &mut self,
        pool: &PgPool,
        batch_rows: usize,
    ) -> Result<(Vec<SourceRecord>, bool)> {
        let doing = format!("copying {}", self.label);
        let conn = match &mut self.bulk {
            Some(conn) => conn,
            None => {
                let mut conn = pool.acquire().await.map_err(|e| classify(e, &doing))?;
                let sql = format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                     DECLARE logbrook_bulk NO SCROLL CURSOR FOR SELECT {} FROM {}",
                    self.shape.text_select_list(),
                    self.from
                );
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| classify(e, &doing))?;
                self.bulk.insert(conn)
            }
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "FETCH {batch_rows} FROM logbrook_bulk"
        )))
        .fetch_all(&mut **conn)
        .await
        .map_err(|e| classify(e, &doing))?;
        let more = rows.len() == batch_rows;
        if !more {
            sqlx::raw_sql("COMMIT")
                .execute(&mut **conn)
                .await
                .map_err(|e| classify(e, &doing))?;
            self.bulk = None;
        }
        let offset = json!({"bulk": true});
        Ok((
            rows.iter()
                .map(|row| self.record(row, offset.clone()))
                .collect(),
            more,
        ))
    }

    fn record(&self, row: &PgRow, offset: Value) -> SourceRecord {
        let texts = (0..self.shape.columns.len()).map(|i| row.get::<Option<&str>, _>(i));
        match self.shape.row(texts) {
            Ok(values) => {
                let key = self.shape.key_of(&values);
                let record = Record {
                    topic: self.topic.clone(),
                    key,
                    key_schema: self.shape.key_schema.clone(),
                    value: Some(Value::Object(values)),
                    value_schema: Some(self.shape.value_schema.clone()),
                    ..Record::default()
                };
                SourceRecord::new(record, self.partition.clone(), offset)
            }
            Err(e) => {
                let raw: Vec<Option<&str>> =
                    (0..self.shape.columns.len()).map(|i| row.get(i)).collect();
                let mut record = SourceRecord::new(
                    Record::new(self.topic.clone(), json!(raw)),
                    self.partition.clone(),
                    offset,
                );
                record.error = Some(format!("{}: {e}", self.label));
                record
            }
        }
    }
}

#[async_trait]
impl Source for QuerySource {
    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let now = Instant::now();
        let count = self.streams.len();
        for step in 0..count {
            let index = (self.next + step) % count;
            if self.streams[index].due <= now {
                self.next = (index + 1) % count;
                return self.read(index).await;
            }
        }
        let soonest = self.streams.iter().map(|s| s.due).min().unwrap_or(now);
        let wait = soonest
            .saturating_duration_since(now)
            .min(Duration::from_secs(1));
        tokio::time::sleep(wait).await;
        Ok(Vec::new())
    }

    async fn close(&mut self) -> Result<()> {
        for stream in &mut self.streams {
            if let Some(mut conn) = stream.bulk.take() {
                conn.close_on_drop();
            }
            if let Some((_, prefetched)) = stream.prefetch.take() {
                prefetched.abort();
            }
        }
        self.pool.close().await;
        Ok(())
    }
}

/// The columns of a query's result (from the server's description of it; no rows are read).
async fn describe_query(
    conn: &mut PoolConnection<Postgres>,
    from: &str,
    key_columns: &[String],
) -> Result<Shape> {
    let statement = (&mut **conn)
        .prepare(AssertSqlSafe(format!("SELECT * FROM {from}")).into_sql_str())
        .await
        .map_err(|e| classify(e, "describing the query"))?;
    let columns = statement
        .columns()
        .iter()
        .map(|c| {
            let oid = c.type_info().oid().map_or(25, |oid| oid.0);
            Column {
                name: c.name().to_string(),
                kind: Kind::of(oid, -1),
                nullable: true,
            }
        })
        .collect();
    with_key(Shape::new(columns, Vec::new()), key_columns, "the query")
}

fn with_key(shape: Shape, key_columns: &[String], table: &str) -> Result<Shape> {
    let key = key_columns
        .iter()
        .map(|name| {
            shape
                .index_of(name)
                .ok_or_else(|| Error::fatal(format!("key_columns: {table} has no column {name:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Shape::new(shape.columns, key))
}
