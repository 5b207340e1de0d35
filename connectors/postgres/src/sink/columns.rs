//! Table metadata read from the catalog, the column types records map to, and the DDL that
//! creates tables and adds columns.

use std::collections::HashMap;

use arrow_schema::DataType;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row as _};

use crate::sql::{TableName, quote_ident};

/// How a column's values are written: the family of its (base) type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ColumnKind {
    /// `boolean`.
    Bool,
    /// `smallint`, `integer`, `bigint`, `oid`.
    Int,
    /// `real`, `double precision`.
    Float,
    /// `numeric`.
    Numeric,
    /// `text`, `varchar`, `char` and other string types.
    Text,
    /// `bytea`.
    Bytea,
    /// `json`, `jsonb`.
    Json,
    /// `timestamp with time zone`.
    Timestamptz,
    /// `timestamp without time zone`.
    Timestamp,
    /// `date`.
    Date,
    /// `time`, `timetz`.
    Time,
    /// An array of the element kind.
    Array(Box<ColumnKind>),
    /// Anything else (`uuid`, `inet`, enums...): strings are passed as the type's text input.
    Other,
}

impl ColumnKind {
    /// Classifies a base type by its `pg_type.typname` and `typcategory`.
    fn of(type_name: &str, category: &str) -> Self {
        match type_name {
            "bool" => Self::Bool,
            "int2" | "int4" | "int8" | "oid" => Self::Int,
            "float4" | "float8" => Self::Float,
            "numeric" => Self::Numeric,
            "bytea" => Self::Bytea,
            "json" | "jsonb" => Self::Json,
            "timestamptz" => Self::Timestamptz,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            "time" | "timetz" => Self::Time,
            _ if category == "S" => Self::Text,
            _ => Self::Other,
        }
    }
}

/// A writable column of a table.
#[derive(Debug, Clone)]
pub(super) struct Column {
    /// Its name.
    pub name: String,
    /// Its type as `format_type` spells it (`numeric(12,2)`), valid in a cast.
    pub type_name: String,
    /// How values are encoded for it.
    pub kind: ColumnKind,
}

/// A table's writable columns (generated columns are left out) and primary key.
#[derive(Debug, Clone)]
pub(super) struct TableInfo {
    /// The table.
    pub name: TableName,
    /// Columns in table order.
    pub columns: Vec<Column>,
    by_name: HashMap<String, usize>,
    /// The primary key's columns, in key order; empty when it has none.
    pub primary_key: Vec<String>,
}

impl TableInfo {
    /// The index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}

/// Reads a table's columns and primary key; `None` when the table does not exist.
///
/// # Errors
/// Database errors.
pub(super) async fn load(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Option<TableInfo>, sqlx::Error> {
    // `to_regclass` parses the quoted name as SQL would, so schema and case rules match the
    // statements that use it.
    let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::int8")
        .bind(table.quoted())
        .fetch_one(&mut *conn)
        .await?;
    let Some(oid) = oid else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT a.attname::text AS name,
                format_type(a.atttypid, a.atttypmod) AS type_name,
                bt.typname::text AS base, bt.typcategory::text AS category,
                et.typname::text AS element, et.typcategory::text AS element_category
         FROM pg_attribute a
         JOIN pg_type t ON t.oid = a.atttypid
         JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
         LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
         WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attgenerated = ''
         ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let base: String = row.try_get("base")?;
        let category: String = row.try_get("category")?;
        let kind = if category == "A" {
            let element: Option<String> = row.try_get("element")?;
            let element_category: Option<String> = row.try_get("element_category")?;
            ColumnKind::Array(Box::new(ColumnKind::of(
                element.as_deref().unwrap_or_default(),
                element_category.as_deref().unwrap_or_default(),
            )))
        } else {
            ColumnKind::of(&base, &category)
        };
        columns.push(Column {
            name: row.try_get("name")?,
            type_name: row.try_get("type_name")?,
            kind,
        });
    }
    let primary_key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text
         FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = $1::int8::oid AND i.indisprimary
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    let by_name = columns
        .iter()
        .enumerate()
        .map(|(index, column)| (column.name.clone(), index))
        .collect();
    Ok(Some(TableInfo {
        name: table.clone(),
        columns,
        by_name,
        primary_key,
    }))
}

/// Runs DDL under a transaction-scoped advisory lock on the table's name, so tasks creating or
/// evolving the same table one after the other see each other's work (`IF NOT EXISTS`).
///
/// # Errors
/// Database errors.
pub(super) async fn run_ddl(
    pool: &PgPool,
    table: &TableName,
    ddl: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(table.quoted())
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(ddl.to_string()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// `CREATE TABLE IF NOT EXISTS` with these columns and primary key.
pub(super) fn create_table(
    table: &TableName,
    columns: &[(String, String)],
    primary_key: &[String],
) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|(name, sql_type)| format!("{} {sql_type}", quote_ident(name)))
        .collect();
    if !primary_key.is_empty() {
        let key: Vec<String> = primary_key.iter().map(|c| quote_ident(c)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        table.quoted(),
        parts.join(", ")
    )
}

/// `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` for each column (all nullable).
pub(super) fn add_columns(table: &TableName, columns: &[(String, String)]) -> String {
    let adds: Vec<String> = columns
        .iter()
        .map(|(name, sql_type)| {
            format!("ADD COLUMN IF NOT EXISTS {} {sql_type}", quote_ident(name))
        })
        .collect();
    format!("ALTER TABLE {} {}", table.quoted(), adds.join(", "))
}

/// The column type for a field typed by an Arrow schema; `None` for `Null`.
pub(super) fn sql_type_of_arrow(data_type: &DataType) -> Option<String> {
    Some(
        match data_type {
            DataType::Null => return None,
            DataType::Boolean => "boolean",
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
            DataType::Int32 | DataType::UInt16 => "integer",
            DataType::Int64 | DataType::UInt32 => "bigint",
            DataType::UInt64 => "numeric(20,0)",
            DataType::Float16 | DataType::Float32 => "real",
            DataType::Float64 => "double precision",
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => "bytea",
            DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
                return Some(
                    if *scale >= 0 && i16::from(*scale) <= i16::from(*precision) {
                        format!("numeric({precision},{scale})")
                    } else {
                        "numeric".to_string()
                    },
                );
            }
            DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
            DataType::Timestamp(_, None) => "timestamp without time zone",
            DataType::Date32 | DataType::Date64 => "date",
            DataType::Time32(_) | DataType::Time64(_) => "time without time zone",
            // Postgres arrays are typed by their innermost element, whatever the nesting.
            DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
                let mut item = item.data_type();
                while let DataType::List(inner)
                | DataType::LargeList(inner)
                | DataType::FixedSizeList(inner, _) = item
                {
                    item = inner.data_type();
                }
                let element = sql_type_of_arrow(item).unwrap_or_else(|| "text".to_string());
                return Some(format!("{element}[]"));
            }
            DataType::Struct(_) | DataType::Map(_, _) => "jsonb",
            _ => "text",
        }
        .to_string(),
    )
}

/// The column type inferred from a schemaless JSON value; `None` for `null`.
pub(super) fn sql_type_of_json(value: &Value) -> Option<&'static str> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "bigint",
        Value::Number(n) if n.is_u64() => "numeric",
        Value::Number(_) => "double precision",
        Value::String(_) => "text",
        Value::Array(_) | Value::Object(_) => "jsonb",
    })
}

/// The wider of two inferred types: integers seen next to floats become floats.
pub(super) fn widen(current: &str, seen: &str) -> Option<&'static str> {
    match (current, seen) {
        ("bigint", "double precision") => Some("double precision"),
        ("bigint", "numeric") => Some("numeric"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use arrow_schema::{Field, TimeUnit};
    use serde_json::json;

    use super::*;

    #[test]
    fn arrow_types_map_to_exact_column_types() {
        let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
        let cases = [
            (DataType::Int16, "smallint"),
            (DataType::Int32, "integer"),
            (DataType::Int64, "bigint"),
            (DataType::Float32, "real"),
            (DataType::Decimal128(12, 3), "numeric(12,3)"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "timestamp with time zone",
            ),
            (
                DataType::Timestamp(TimeUnit::Millisecond, None),
                "timestamp without time zone",
            ),
            (DataType::Date32, "date"),
            (DataType::Binary, "bytea"),
            (list(DataType::Int32), "integer[]"),
            (list(list(DataType::Utf8)), "text[]"),
            (DataType::Struct(Default::default()), "jsonb"),
        ];
        for (data_type, expected) in cases {
            assert_eq!(
                sql_type_of_arrow(&data_type).as_deref(),
                Some(expected),
                "{data_type}"
            );
        }
        assert_eq!(sql_type_of_arrow(&DataType::Null), None);
    }

    #[test]
    fn json_values_infer_their_column_types() {
        assert_eq!(sql_type_of_json(&json!(1)), Some("bigint"));
        assert_eq!(sql_type_of_json(&json!(1.5)), Some("double precision"));
        assert_eq!(sql_type_of_json(&json!("x")), Some("text"));
        assert_eq!(sql_type_of_json(&json!({"a": 1})), Some("jsonb"));
        assert_eq!(sql_type_of_json(&json!(null)), None);
        assert_eq!(
            widen("bigint", "double precision"),
            Some("double precision")
        );
        assert_eq!(widen("text", "bigint"), None);
    }

    #[test]
    fn ddl_quotes_every_identifier() {
        let table = TableName::parse(r#"s."we""ird""#).unwrap();
        let sql = create_table(
            &table,
            &[
                ("id".into(), "bigint".into()),
                ("a\"; DROP".into(), "text".into()),
            ],
            &["id".into()],
        );
        assert_eq!(
            sql,
            r#"CREATE TABLE IF NOT EXISTS "s"."we""ird" ("id" bigint, "a""; DROP" text, PRIMARY KEY ("id"))"#
        );
        assert_eq!(
            add_columns(&table, &[("n".into(), "bigint".into())]),
            r#"ALTER TABLE "s"."we""ird" ADD COLUMN IF NOT EXISTS "n" bigint"#
        );
    }
}
