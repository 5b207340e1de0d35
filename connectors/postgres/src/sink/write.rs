//! Writing rows inside a transaction: `COPY` for inserts, `COPY` into a temporary table and
//! `INSERT ... ON CONFLICT` for upserts, `DELETE ... IN (unnest(...))` for deletes; and, when
//! the server refuses a batch's data, finding the rows at fault in savepoints.

use std::collections::HashMap;
use std::fmt::Write as _;

use sqlx::postgres::PgDatabaseError;
use sqlx::{AssertSqlSafe, PgConnection};

use super::WriteMode;
use super::columns::TableInfo;
use super::rows::{Op, Row, Target};
use crate::sql::{quote_ident, sqlstate};

/// Whether the server refused the data itself (SQLSTATE classes 22 and 23: bad input,
/// constraint violations), so that some row is at fault rather than the connection or table.
pub(super) fn is_data_error(error: &sqlx::Error) -> bool {
    sqlstate(error).is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

/// Writes `rows` (in batch order) to their tables.
///
/// # Errors
/// Database errors; the transaction is then aborted.
pub(super) async fn apply(
    conn: &mut PgConnection,
    mode: WriteMode,
    targets: &[Target],
    rows: &[Row],
    temp_tables: &mut u64,
) -> Result<(), sqlx::Error> {
    let mut by_target: Vec<Vec<&Row>> = targets.iter().map(|_| Vec::new()).collect();
    for row in rows {
        by_target[row.target].push(row);
    }
    for (target, rows) in targets.iter().zip(&by_target) {
        if rows.is_empty() {
            continue;
        }
        match mode {
            WriteMode::Insert => in_order(conn, target, rows).await?,
            WriteMode::Upsert => last_wins(conn, target, rows, temp_tables).await?,
        }
    }
    Ok(())
}

/// Insert mode: runs of inserts and deletes, in batch order.
async fn in_order(
    conn: &mut PgConnection,
    target: &Target,
    rows: &[&Row],
) -> Result<(), sqlx::Error> {
    let mut start = 0;
    while start < rows.len() {
        let op = rows[start].op;
        let end = rows[start..]
            .iter()
            .position(|row| row.op != op)
            .map_or(rows.len(), |length| start + length);
        let run = &rows[start..end];
        match op {
            Op::Write => {
                for (shape, group) in by_shape(run.iter().copied().enumerate()) {
                    insert(conn, target, shape, &group).await?;
                }
            }
            Op::Delete => delete(conn, target, run.iter().map(|row| row.key.as_str())).await?,
        }
        start = end;
    }
    Ok(())
}

/// Upsert mode. Applying records one by one leaves, for each key, the effect of its last
/// delete followed by the writes after it; so the deletes go first, then those writes.
async fn last_wins(
    conn: &mut PgConnection,
    target: &Target,
    rows: &[&Row],
    temp_tables: &mut u64,
) -> Result<(), sqlx::Error> {
    let mut last_delete: HashMap<&str, usize> = HashMap::new();
    for (at, row) in rows.iter().enumerate() {
        if row.op == Op::Delete {
            last_delete.insert(&row.key, at);
        }
    }
    if !last_delete.is_empty() {
        let mut keys: Vec<(&str, usize)> = last_delete.iter().map(|(k, at)| (*k, *at)).collect();
        keys.sort_unstable_by_key(|(_, at)| *at);
        delete(conn, target, keys.into_iter().map(|(key, _)| key)).await?;
    }
    // Each statement keeps the last write per key (by sequence number). A key written with two
    // different sets of columns starts a new segment, so its writes still apply in order.
    let mut seen: HashMap<&str, &[usize]> = HashMap::new();
    let mut segment: Vec<(usize, &Row)> = Vec::new();
    for (at, row) in rows.iter().enumerate() {
        if row.op != Op::Write
            || last_delete
                .get(row.key.as_str())
                .is_some_and(|deleted| at < *deleted)
        {
            continue;
        }
        if seen
            .get(row.key.as_str())
            .is_some_and(|shape| *shape != row.shape.as_slice())
        {
            for (shape, group) in by_shape(segment.drain(..)) {
                upsert(conn, target, shape, &group, temp_tables).await?;
            }
            seen.clear();
        }
        seen.insert(&row.key, &row.shape);
        segment.push((at, row));
    }
    for (shape, group) in by_shape(segment.into_iter()) {
        upsert(conn, target, shape, &group, temp_tables).await?;
    }
    Ok(())
}

/// Rows writing the same columns: the columns, and the rows with their sequence numbers.
type ShapeGroup<'r> = (&'r [usize], Vec<(usize, &'r Row)>);

/// Groups rows by the columns they write, in order of first appearance.
fn by_shape<'r>(rows: impl Iterator<Item = (usize, &'r Row)>) -> Vec<ShapeGroup<'r>> {
    let mut groups: Vec<ShapeGroup<'r>> = Vec::new();
    let mut index: HashMap<&[usize], usize> = HashMap::new();
    for (seq, row) in rows {
        // Most batches have one shape: skip the hashing while it lasts.
        let at = match groups.last() {
            Some((shape, _)) if *shape == row.shape.as_slice() => groups.len() - 1,
            _ => *index.entry(&row.shape).or_insert_with(|| {
                groups.push((&row.shape, Vec::new()));
                groups.len() - 1
            }),
        };
        groups[at].1.push((seq, row));
    }
    groups
}

fn column_list(info: &TableInfo, columns: &[usize]) -> String {
    let mut out = String::new();
    for (at, column) in columns.iter().enumerate() {
        if at > 0 {
            out.push_str(", ");
        }
        out.push_str(&quote_ident(&info.columns[*column].name));
    }
    out
}

async fn insert(
    conn: &mut PgConnection,
    target: &Target,
    shape: &[usize],
    rows: &[(usize, &Row)],
) -> Result<(), sqlx::Error> {
    let table = target.info.name.quoted();
    if shape.is_empty() {
        // Records without fields: rows of column defaults.
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} SELECT FROM generate_series(1, $1)"
        )))
        .bind(rows.len() as i64)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    let mut data = String::with_capacity(rows.iter().map(|(_, row)| row.line.len() + 1).sum());
    for (_, row) in rows {
        data.push_str(&row.line);
        data.push('\n');
    }
    let statement = format!(
        "COPY {table} ({}) FROM STDIN",
        column_list(&target.info, shape)
    );
    copy(conn, &statement, &data).await
}

async fn upsert(
    conn: &mut PgConnection,
    target: &Target,
    shape: &[usize],
    rows: &[(usize, &Row)],
    temp_tables: &mut u64,
) -> Result<(), sqlx::Error> {
    let info = &target.info;
    let table = info.name.quoted();
    *temp_tables += 1;
    let temp_name = quote_ident(&format!("logbrook_upsert_{temp_tables}"));
    let temp = format!("pg_temp.{temp_name}");
    let mut seq = "logbrook_seq".to_string();
    while shape.iter().any(|c| info.columns[*c].name == seq) {
        seq.insert(0, '_');
    }
    let seq = quote_ident(&seq);
    let columns = column_list(info, shape);
    // No constraints are copied: a record may leave out NOT NULL columns that keep their
    // values on update.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TEMP TABLE {temp_name} ON COMMIT DROP AS \
         SELECT {columns}, NULL::int8 AS {seq} FROM {table} WITH NO DATA"
    )))
    .execute(&mut *conn)
    .await?;
    let mut data = String::with_capacity(rows.iter().map(|(_, row)| row.line.len() + 12).sum());
    for (at, row) in rows {
        data.push_str(&row.line);
        let _ = writeln!(data, "\t{at}");
    }
    copy(
        conn,
        &format!("COPY {temp} ({columns}, {seq}) FROM STDIN"),
        &data,
    )
    .await?;
    let key = column_list(info, &target.primary_key);
    let updates: Vec<String> = shape
        .iter()
        .filter(|c| !target.primary_key.contains(c))
        .map(|c| {
            let name = quote_ident(&info.columns[*c].name);
            format!("{name} = EXCLUDED.{name}")
        })
        .collect();
    let action = if updates.is_empty() {
        "NOTHING".to_string()
    } else {
        format!("UPDATE SET {}", updates.join(", "))
    };
    sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO {table} ({columns}) \
         SELECT DISTINCT ON ({key}) {columns} FROM {temp} ORDER BY {key}, {seq} DESC \
         ON CONFLICT ({key}) DO {action}; \
         DROP TABLE {temp}"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn delete<'k>(
    conn: &mut PgConnection,
    target: &Target,
    keys: impl Iterator<Item = &'k str>,
) -> Result<(), sqlx::Error> {
    let info = &target.info;
    let width = target.primary_key.len();
    let mut parts: Vec<Vec<&str>> = vec![Vec::new(); width];
    for key in keys {
        for (position, part) in key.splitn(width, '\0').enumerate() {
            parts[position].push(part);
        }
    }
    // Keys travel as text arrays and are cast to the columns' types by the server.
    let mut casts = Vec::with_capacity(width);
    let mut arrays = Vec::with_capacity(width);
    let mut names = Vec::with_capacity(width);
    for (position, column) in target.primary_key.iter().enumerate() {
        casts.push(format!(
            "d.k{position}::{}",
            info.columns[*column].type_name
        ));
        arrays.push(format!("${}::text[]", position + 1));
        names.push(format!("k{position}"));
    }
    let statement = format!(
        "DELETE FROM {} WHERE ({}) IN (SELECT {} FROM unnest({}) AS d({}))",
        info.name.quoted(),
        column_list(info, &target.primary_key),
        casts.join(", "),
        arrays.join(", "),
        names.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(statement));
    for column in parts {
        query = query.bind(column);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

async fn copy(conn: &mut PgConnection, statement: &str, data: &str) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    // On an error `copy` is dropped, which aborts the COPY.
    copy.send(data.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// After `rows` failed as a whole with `error` (a data error): writes them again in
/// savepoints, halving each failing range, so every row the server accepts is written and each
/// refused row is found alone. Returns the refused rows' positions in `rows`, with why.
///
/// # Errors
/// Errors that are not about the data.
pub(super) async fn find_bad_rows(
    conn: &mut PgConnection,
    mode: WriteMode,
    targets: &[Target],
    rows: &[Row],
    error: sqlx::Error,
    temp_tables: &mut u64,
) -> Result<Vec<(usize, String)>, sqlx::Error> {
    let mut bad = Vec::new();
    if rows.len() == 1 {
        bad.push((0, describe(&targets[rows[0].target].info, &error)));
        return Ok(bad);
    }
    // A stack of ranges still to write, the earliest on top so batch order is kept.
    let middle = rows.len() / 2;
    let mut pending = vec![(middle, rows.len()), (0, middle)];
    while let Some((start, end)) = pending.pop() {
        sqlx::raw_sql("SAVEPOINT logbrook_rows")
            .execute(&mut *conn)
            .await?;
        match apply(conn, mode, targets, &rows[start..end], temp_tables).await {
            Ok(()) => {
                sqlx::raw_sql("RELEASE SAVEPOINT logbrook_rows")
                    .execute(&mut *conn)
                    .await?;
            }
            Err(error) if is_data_error(&error) => {
                sqlx::raw_sql(
                    "ROLLBACK TO SAVEPOINT logbrook_rows; RELEASE SAVEPOINT logbrook_rows",
                )
                .execute(&mut *conn)
                .await?;
                if end - start == 1 {
                    bad.push((start, describe(&targets[rows[start].target].info, &error)));
                } else {
                    let middle = start + (end - start) / 2;
                    pending.push((middle, end));
                    pending.push((start, middle));
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(bad)
}

/// A refused row's error naming the table, the column when the server says which, the message
/// and its detail (`Key (id)=(7) already exists.`).
pub(super) fn describe(info: &TableInfo, error: &sqlx::Error) -> String {
    let table = info.name.display_name();
    let Some(pg) = error
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
    else {
        return format!("table {table:?}: {error}");
    };
    let mut out = format!("table {table:?}");
    let column = pg
        .column()
        .map(str::to_string)
        .or_else(|| copy_column(pg.r#where(), info));
    if let Some(column) = column {
        let _ = write!(out, " column {column:?}");
    }
    let _ = write!(out, ": {}", pg.message());
    if let Some(detail) = pg.detail() {
        let _ = write!(out, " ({detail})");
    }
    out
}

/// The column in a COPY error's context: `COPY t, line 1, column qty: "abc"`.
fn copy_column(context: Option<&str>, info: &TableInfo) -> Option<String> {
    let rest = context?.strip_prefix("COPY ")?.split_once(", column ")?.1;
    info.columns
        .iter()
        .filter(|c| {
            rest.strip_prefix(c.name.as_str())
                .is_some_and(|after| after.starts_with(':') || after.is_empty())
        })
        .max_by_key(|c| c.name.len())
        .map(|c| c.name.clone())
}
