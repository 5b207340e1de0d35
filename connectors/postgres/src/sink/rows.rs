//! From records to rows: which fields a record writes (its primary key looked up in the key
//! first), and each row encoded as a COPY line for its table's actual column types.

use std::sync::Arc;

use arrow_schema::DataType;
use logbrook_connect::Record;
use serde_json::Value;

use super::columns::{ColumnKind, TableInfo};
use super::copy::{NULL, encode, push_escaped};

/// Postgres truncates longer identifiers, which would silently write another column.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// What a row does to its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// Insert (insert mode) or insert-or-update (upsert mode).
    Write,
    /// Delete by primary key (a tombstone with `delete_on_tombstone`).
    Delete,
}

/// Where a field's value came from, for looking up its Arrow type.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    /// A field of the value.
    Value,
    /// A field of a key object.
    KeyField,
    /// The whole (primitive) key.
    Key,
}

/// A field a record writes.
#[derive(Debug)]
pub(super) struct Field<'r> {
    /// The field and column name.
    pub name: &'r str,
    /// Its value.
    pub value: &'r Value,
    /// Where it came from.
    pub source: Source,
}

/// A record's operation and fields.
#[derive(Debug)]
pub(super) struct Fields<'r> {
    /// Write or delete.
    pub op: Op,
    /// For writes, the primary key fields found in the key, then the value's other fields; for
    /// deletes, the primary key fields.
    pub fields: Vec<Field<'r>>,
}

/// The fields of a record; `None` for a tombstone that is skipped.
///
/// # Errors
/// A value that is not an object; a tombstone whose key lacks a primary key field.
pub(super) fn fields_of<'r>(
    record: &'r Record,
    primary_key: &'r [String],
    delete_on_tombstone: bool,
) -> Result<Option<Fields<'r>>, String> {
    match &record.value {
        None if !delete_on_tombstone => Ok(None),
        None => {
            let mut fields = Vec::with_capacity(primary_key.len());
            for name in primary_key {
                let (value, source) = key_field(record, name, primary_key.len() == 1).ok_or_else(
                    || match &record.key {
                        None => "a tombstone without a key cannot be deleted".to_string(),
                        Some(_) => format!(
                            "the tombstone's key has no primary key field {name:?} to delete by"
                        ),
                    },
                )?;
                fields.push(Field {
                    name,
                    value,
                    source,
                });
            }
            Ok(Some(Fields {
                op: Op::Delete,
                fields,
            }))
        }
        Some(Value::Object(map)) => {
            let mut fields = Vec::with_capacity(map.len() + primary_key.len());
            for name in primary_key {
                if let Some((value, source)) = key_field(record, name, primary_key.len() == 1) {
                    fields.push(Field {
                        name,
                        value,
                        source,
                    });
                }
            }
            let from_key = fields.len();
            // Schema order when there is a schema (auto-created columns follow it), else the
            // map's order.
            let ordered: Vec<(&'r String, &'r Value)> = match &record.value_schema {
                Some(DataType::Struct(schema)) => schema
                    .iter()
                    .filter_map(|f| map.get_key_value(f.name()))
                    .chain(
                        map.iter()
                            .filter(|(k, _)| !schema.iter().any(|f| f.name() == *k)),
                    )
                    .collect(),
                _ => map.iter().collect(),
            };
            for (name, value) in ordered {
                // The key's copy of a primary key field wins over the value's.
                if fields[..from_key].iter().any(|f| f.name == name) {
                    continue;
                }
                fields.push(Field {
                    name,
                    value,
                    source: Source::Value,
                });
            }
            Ok(Some(Fields {
                op: Op::Write,
                fields,
            }))
        }
        Some(other) => Err(format!(
            "the value is not a JSON object (got {})",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
    }
}

/// A primary key field from the record's key: a field of a key object, or a primitive key when
/// the primary key has a single field.
fn key_field<'r>(record: &'r Record, name: &str, single: bool) -> Option<(&'r Value, Source)> {
    match record.key.as_ref()? {
        Value::Object(map) => map
            .get(name)
            .filter(|v| !v.is_null())
            .map(|v| (v, Source::KeyField)),
        Value::Null | Value::Array(_) => None,
        primitive if single => Some((primitive, Source::Key)),
        _ => None,
    }
}

/// The Arrow field of a record field, when the record is typed (`None` for a primitive key).
pub(super) fn arrow_field<'r>(
    record: &'r Record,
    field: &Field<'_>,
) -> Option<&'r arrow_schema::Field> {
    let schema = match field.source {
        Source::Value => record.value_schema.as_ref(),
        Source::KeyField => record.key_schema.as_ref(),
        Source::Key => None,
    };
    match schema? {
        DataType::Struct(fields) => fields.iter().find(|f| f.name() == field.name).map(|f| &**f),
        _ => None,
    }
}

/// The Arrow type of a field, when the record is typed.
pub(super) fn field_type<'r>(record: &'r Record, field: &Field<'_>) -> Option<&'r DataType> {
    let struct_field = |schema: Option<&'r DataType>| match schema? {
        DataType::Struct(fields) => fields
            .iter()
            .find(|f| f.name() == field.name)
            .map(|f| f.data_type()),
        _ => None,
    };
    match field.source {
        Source::Value => struct_field(record.value_schema.as_ref()),
        Source::KeyField => struct_field(record.key_schema.as_ref()),
        Source::Key => record.key_schema.as_ref(),
    }
}

/// Whether a field name can be a column as it is.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a field with an empty name cannot be a column".to_string());
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "field {name:?} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte identifiers"
        ));
    }
    if name.contains('\0') {
        return Err(format!("field {name:?} contains a NUL character"));
    }
    Ok(())
}

/// A table this chunk writes, with its primary key as column indices.
#[derive(Debug)]
pub(super) struct Target {
    /// The table.
    pub info: Arc<TableInfo>,
    /// The primary key's columns (empty when no operation needs one).
    pub primary_key: Vec<usize>,
}

/// One record, ready to write.
#[derive(Debug)]
pub(super) struct Row {
    /// Its index in the batch given to `put`.
    pub index: usize,
    /// Its table, an index into the chunk's targets.
    pub target: usize,
    /// What it does.
    pub op: Op,
    /// The columns it writes (writes only), ascending.
    pub shape: Vec<usize>,
    /// Its COPY text line, without the newline (writes only).
    pub line: String,
    /// Its primary key values as text input, joined by NUL (which no Postgres text holds);
    /// empty when not needed.
    pub key: String,
}

/// Encodes a record's fields for its table.
///
/// # Errors
/// A field without a column, a value its column cannot hold, or a missing primary key value.
pub(super) fn build_row(
    record: &Record,
    fields: &Fields<'_>,
    target: &Target,
    slot: usize,
    index: usize,
    needs_key: bool,
) -> Result<Row, String> {
    let info = &target.info;
    let mut columns = Vec::with_capacity(fields.fields.len());
    for field in &fields.fields {
        match info.column(field.name) {
            Some(column) => columns.push((column, field)),
            // A null needs no column: nothing is lost by leaving it out.
            None if field.value.is_null() => {}
            None => {
                check_name(field.name)?;
                return Err(format!(
                    "table {:?} has no column {:?} (set auto_evolve = true to add columns)",
                    info.name.display_name(),
                    field.name
                ));
            }
        }
    }
    columns.sort_unstable_by_key(|(column, _)| *column);
    let needs_key = needs_key || fields.op == Op::Delete;
    let mut key_parts: Vec<Option<String>> = vec![None; target.primary_key.len()];
    let mut line = String::new();
    let mut text = String::new();
    for (at, (column, field)) in columns.iter().enumerate() {
        let column_info = &info.columns[*column];
        let typed = match column_info.kind {
            ColumnKind::Timestamptz
            | ColumnKind::Timestamp
            | ColumnKind::Date
            | ColumnKind::Time
            | ColumnKind::Numeric
            | ColumnKind::Array(_) => field_type(record, field),
            _ => None,
        };
        text.clear();
        let present = encode(&column_info.kind, field.value, typed, &mut text).map_err(|why| {
            format!(
                "table {:?} column {:?} ({}): {why}",
                info.name.display_name(),
                column_info.name,
                column_info.type_name
            )
        })?;
        if fields.op == Op::Write {
            if at > 0 {
                line.push('\t');
            }
            if present {
                push_escaped(&mut line, &text);
            } else {
                line.push_str(NULL);
            }
        }
        if needs_key
            && present
            && let Some(position) = target.primary_key.iter().position(|c| c == column)
        {
            key_parts[position] = Some(std::mem::take(&mut text));
        }
    }
    let mut key = String::new();
    if needs_key {
        for (position, part) in key_parts.iter().enumerate() {
            let Some(part) = part else {
                return Err(format!(
                    "primary key field {:?} is missing or null",
                    info.columns[target.primary_key[position]].name
                ));
            };
            if part.contains('\0') {
                return Err("a primary key value contains a NUL character".to_string());
            }
            if position > 0 {
                key.push('\0');
            }
            key.push_str(part);
        }
    }
    Ok(Row {
        index,
        target: slot,
        op: fields.op,
        shape: if fields.op == Op::Write {
            columns.iter().map(|(column, _)| *column).collect()
        } else {
            Vec::new()
        },
        line,
        key,
    })
}
