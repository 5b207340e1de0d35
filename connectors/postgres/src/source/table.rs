//! What the source knows about a table or query: its columns, their kinds, its key, and how a
//! row of text values becomes a record.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields};
use logbrook_connect::api::schema;
use logbrook_connect::{Error, Result};
use serde_json::{Map, Value};
use sqlx::{PgConnection, Row};

use crate::sql::{TableName, classify, quote_ident};
use crate::types::Kind;

/// A column of a table or query result.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// How its values are represented.
    pub kind: Kind,
    /// Whether it may be NULL.
    pub nullable: bool,
}

/// A table (or a query's result) as the source reads it.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// Indexes of the key columns (the primary key), in key order; empty for no key.
    pub key: Vec<usize>,
    /// The value schema: a struct of every column.
    pub value_schema: DataType,
    /// The key schema: a struct of the key columns.
    pub key_schema: Option<DataType>,
}

impl Shape {
    /// A shape from its columns and key.
    pub fn new(columns: Vec<Column>, key: Vec<usize>) -> Self {
        let field = |c: &Column| {
            let field = Field::new(&c.name, c.kind.arrow(), c.nullable);
            match c.kind.semantic_name() {
                Some(name) => field.with_metadata(std::collections::HashMap::from([(
                    schema::CONNECT_NAME.to_string(),
                    name.to_string(),
                )])),
                None => field,
            }
        };
        let value_schema = DataType::Struct(columns.iter().map(field).collect::<Fields>());
        let key_schema = (!key.is_empty())
            .then(|| DataType::Struct(key.iter().map(|&i| field(&columns[i])).collect::<Fields>()));
        Self {
            columns,
            key,
            value_schema,
            key_schema,
        }
    }

    /// The index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The select list that reads every column as text: `q."a"::text, q."b"::text`.
    pub fn text_select_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("q.{}::text", quote_ident(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A row object from its columns' text forms (`None` for NULL).
    ///
    /// # Errors
    /// A value the column's kind cannot read, naming the column.
    pub fn row<'a>(
        &self,
        texts: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Result<Map<String, Value>, String> {
        let mut row = Map::with_capacity(self.columns.len());
        for (column, text) in self.columns.iter().zip(texts) {
            let value = match text {
                None => Value::Null,
                Some(text) => column
                    .kind
                    .decode(text)
                    .map_err(|e| format!("column {:?}: {e}", column.name))?,
            };
            row.insert(column.name.clone(), value);
        }
        Ok(row)
    }

    /// The key object of a row, if the shape has a key.
    pub fn key_of(&self, row: &Map<String, Value>) -> Option<Value> {
        if self.key.is_empty() {
            return None;
        }
        let mut key = Map::with_capacity(self.key.len());
        for &i in &self.key {
            let name = &self.columns[i].name;
            key.insert(name.clone(), row.get(name).cloned().unwrap_or(Value::Null));
        }
        Some(Value::Object(key))
    }
}

/// A table's identity in the catalog.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// As configured (`orders`, `public.orders`): names the topic and the source partition.
    pub configured: TableName,
    /// The schema it is in.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// `pg_class.oid`.
    pub oid: u32,
    /// Columns and key.
    pub shape: Arc<Shape>,
}

impl TableInfo {
    /// The fully qualified, quoted name.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// Looks a table up in the catalog.
///
/// # Errors
/// A missing table (fatal, naming it); connection errors (retriable).
pub async fn describe_table(conn: &mut PgConnection, table: &TableName) -> Result<TableInfo> {
    let found = sqlx::query(
        "SELECT c.oid::int8, n.nspname::text, c.relname::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = to_regclass($1)",
    )
    .bind(table.quoted())
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify(e, &format!("looking up table {table}")))?
    .ok_or_else(|| Error::fatal(format!("table {table} does not exist")))?;
    let oid: i64 = found.get(0);
    let rows = sqlx::query(
        "SELECT a.attname::text, a.atttypid::int8, a.atttypmod, a.attnotnull, \
                coalesce(array_position(i.indkey::int2[], a.attnum) - array_lower(i.indkey::int2[], 1) + 1, 0)::int4 \
         FROM pg_attribute a \
         LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
         WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(e, &format!("reading the columns of {table}")))?;
    let mut columns = Vec::with_capacity(rows.len());
    let mut key = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let type_oid: i64 = row.get(1);
        columns.push(Column {
            name: row.get(0),
            kind: Kind::of(type_oid as u32, row.get(2)),
            nullable: !row.get::<bool, _>(3),
        });
        let position: i32 = row.get(4);
        if position > 0 {
            key.push((position, i));
        }
    }
    key.sort_unstable();
    Ok(TableInfo {
        configured: table.clone(),
        schema: found.get(1),
        name: found.get(2),
        oid: oid as u32,
        shape: Arc::new(Shape::new(
            columns,
            key.into_iter().map(|(_, i)| i).collect(),
        )),
    })
}
