//! `exactly_once`: the next offset of each topic partition, stored in the same transaction as
//! the rows it covers, so records the runtime delivers again after a crash are recognised.

use std::collections::HashMap;

use logbrook_connect::Record;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row as _};

use crate::sql::TableName;

/// Next offsets by topic, then partition.
pub(super) type NextOffsets = HashMap<String, HashMap<u32, u64>>;

/// The offsets table's DDL.
pub(super) fn create_table(table: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\
         connector text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL, \
         next_offset bigint NOT NULL, PRIMARY KEY (connector, topic, \"partition\"))",
        table.quoted()
    )
}

/// Reads a connector's stored offsets.
///
/// # Errors
/// Database errors.
pub(super) async fn read(
    pool: &PgPool,
    table: &TableName,
    connector: &str,
) -> Result<NextOffsets, sqlx::Error> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT topic, \"partition\", next_offset FROM {} WHERE connector = $1",
        table.quoted()
    )))
    .bind(connector)
    .fetch_all(pool)
    .await?;
    let mut offsets = NextOffsets::with_capacity(rows.len());
    for row in rows {
        let topic: String = row.try_get(0)?;
        let partition: i32 = row.try_get(1)?;
        let next: i64 = row.try_get(2)?;
        offsets
            .entry(topic)
            .or_default()
            .insert(partition as u32, next.max(0) as u64);
    }
    Ok(offsets)
}

/// Whether a record was written before (its offset is below the stored next offset).
pub(super) fn already_written(offsets: &NextOffsets, record: &Record) -> bool {
    match (record.partition, record.offset) {
        (Some(partition), Some(offset)) => offsets
            .get(record.topic.as_str())
            .and_then(|partitions| partitions.get(&partition))
            .is_some_and(|next| offset < *next),
        _ => false,
    }
}

/// The next offset of each topic partition after these records.
pub(super) fn after<'r>(records: impl Iterator<Item = &'r Record>) -> NextOffsets {
    let mut next = NextOffsets::new();
    for record in records {
        if let (Some(partition), Some(offset)) = (record.partition, record.offset) {
            if let Some(partitions) = next.get_mut(record.topic.as_str()) {
                let entry = partitions.entry(partition).or_insert(0);
                *entry = (*entry).max(offset + 1);
            } else {
                next.insert(
                    record.topic.clone(),
                    HashMap::from([(partition, offset + 1)]),
                );
            }
        }
    }
    next
}

/// Stores next offsets (in the caller's transaction).
///
/// # Errors
/// Database errors.
pub(super) async fn store(
    conn: &mut PgConnection,
    table: &TableName,
    connector: &str,
    next: &NextOffsets,
) -> Result<(), sqlx::Error> {
    let mut topics = Vec::new();
    let mut partitions = Vec::new();
    let mut offsets = Vec::new();
    for (topic, by_partition) in next {
        for (partition, offset) in by_partition {
            topics.push(topic.as_str());
            partitions.push(*partition as i32);
            offsets.push(*offset as i64);
        }
    }
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {} (connector, topic, \"partition\", next_offset) \
         SELECT $1, t, p, o FROM unnest($2::text[], $3::int4[], $4::int8[]) AS u(t, p, o) \
         ON CONFLICT (connector, topic, \"partition\") DO UPDATE SET next_offset = EXCLUDED.next_offset",
        table.quoted()
    )))
    .bind(connector)
    .bind(topics)
    .bind(partitions)
    .bind(offsets)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
