//! Transforms that change the fields of a value (or key).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::api::{Record, schema};
use crate::error::{ConfigIssue, Error, Result};

/// Which part of the record a field transform changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The value.
    #[default]
    Value,
    /// The key.
    Key,
}

fn parts(record: &mut Record, target: Target) -> (&mut Option<Value>, &mut Option<DataType>) {
    match target {
        Target::Value => (&mut record.value, &mut record.value_schema),
        Target::Key => (&mut record.key, &mut record.key_schema),
    }
}

/// The object to change, or a data error naming what it is instead. Null passes through.
fn object_of(value: &mut Option<Value>, target: Target) -> Result<Option<&mut Map<String, Value>>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(Error::data(format!(
            "the {} is not an object but {}",
            match target {
                Target::Value => "value",
                Target::Key => "key",
            },
            short(other)
        ))),
    }
}

/// A value shortened for error messages.
pub(crate) fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        let cut = (0..=57)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

/// Rewrites the fields of a struct schema; other schemas are left alone.
fn map_struct_fields(schema: &mut Option<DataType>, f: impl FnOnce(Vec<Field>) -> Vec<Field>) {
    if let Some(DataType::Struct(fields)) = schema {
        let owned: Vec<Field> = fields.iter().map(|f| f.as_ref().clone()).collect();
        *fields = Fields::from(f(owned));
    }
}

/// `insert_field`: adds fields from a static value or the record's metadata.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsertFieldConfig {
    /// Value or key.
    #[serde(default)]
    pub apply_to: Target,
    /// Field that receives `static_value`.
    pub static_field: Option<String>,
    /// The static value.
    pub static_value: Option<Value>,
    /// Field that receives the topic name.
    pub topic_field: Option<String>,
    /// Field that receives the partition (sinks).
    pub partition_field: Option<String>,
    /// Field that receives the offset (sinks).
    pub offset_field: Option<String>,
    /// Field that receives the timestamp (ms since the epoch).
    pub timestamp_field: Option<String>,
}

impl InsertFieldConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigIssue> {
        if self.static_field.is_some() != self.static_value.is_some() {
            return Err(ConfigIssue::new(
                "static_field",
                "static_field and static_value go together",
            ));
        }
        if self.static_field.is_none()
            && self.topic_field.is_none()
            && self.partition_field.is_none()
            && self.offset_field.is_none()
            && self.timestamp_field.is_none()
        {
            return Err(ConfigIssue::new(
                "static_field",
                "set at least one of static_field, topic_field, partition_field, offset_field, timestamp_field",
            ));
        }
        Ok(())
    }

    pub(super) fn apply(&self, mut record: Record) -> Result<Record> {
        let mut inserts: Vec<(String, Value, DataType)> = Vec::new();
        if let (Some(field), Some(value)) = (&self.static_field, &self.static_value) {
            inserts.push((field.clone(), value.clone(), schema::infer(value)));
        }
        if let Some(field) = &self.topic_field {
            inserts.push((
                field.clone(),
                Value::String(record.topic.clone()),
                DataType::Utf8,
            ));
        }
        if let Some(field) = &self.partition_field {
            inserts.push((
                field.clone(),
                record.partition.map_or(Value::Null, Value::from),
                DataType::Int32,
            ));
        }
        if let Some(field) = &self.offset_field {
            inserts.push((
                field.clone(),
                record.offset.map_or(Value::Null, Value::from),
                DataType::Int64,
            ));
        }
        if let Some(field) = &self.timestamp_field {
            let ts = record.timestamp.unwrap_or_else(logbrook_core::now_ms);
            inserts.push((
                field.clone(),
                Value::from(ts),
                DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None),
            ));
        }
        let (value, data_type) = parts(&mut record, self.apply_to);
        if let Some(map) = object_of(value, self.apply_to)? {
            for (field, v, _) in &inserts {
                map.insert(field.clone(), v.clone());
            }
            map_struct_fields(data_type, |mut fields| {
                for (name, _, t) in inserts {
                    fields.retain(|f| f.name() != &name);
                    fields.push(Field::new(name, t, true));
                }
                fields
            });
        }
        Ok(record)
    }
}

/// `rename_fields`: `renames = { old = "new" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameFieldsConfig {
    /// Value or key.
    #[serde(default)]
    pub apply_to: Target,
    /// Old name to new name.
    pub renames: BTreeMap<String, String>,
}

impl RenameFieldsConfig {
    pub(super) fn apply(&self, mut record: Record) -> Result<Record> {
        let (value, data_type) = parts(&mut record, self.apply_to);
        if let Some(map) = object_of(value, self.apply_to)? {
            // Rebuild to keep field order, with renamed fields where the old ones were.
            let old = std::mem::take(map);
            for (k, v) in old {
                let k = self.renames.get(&k).cloned().unwrap_or(k);
                map.insert(k, v);
            }
            map_struct_fields(data_type, |fields| {
                fields
                    .into_iter()
                    .map(|f| match self.renames.get(f.name()) {
                        Some(new) => f.with_name(new.clone()),
                        None => f,
                    })
                    .collect()
            });
        }
        Ok(record)
    }
}

/// `drop_fields`: removes `fields`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropFieldsConfig {
    /// Value or key.
    #[serde(default)]
    pub apply_to: Target,
    /// Fields to remove.
    pub fields: Vec<String>,
}

impl DropFieldsConfig {
    pub(super) fn apply(&self, mut record: Record) -> Result<Record> {
        let (value, data_type) = parts(&mut record, self.apply_to);
        if let Some(map) = object_of(value, self.apply_to)? {
            map.retain(|k, _| !self.fields.contains(k));
            map_struct_fields(data_type, |mut fields| {
                fields.retain(|f| !self.fields.contains(f.name()));
                fields
            });
        }
        Ok(record)
    }
}

/// `keep_fields`: removes every field but `fields`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepFieldsConfig {
    /// Value or key.
    #[serde(default)]
    pub apply_to: Target,
    /// Fields to keep.
    pub fields: Vec<String>,
}

impl KeepFieldsConfig {
    pub(super) fn apply(&self, mut record: Record) -> Result<Record> {
        let (value, data_type) = parts(&mut record, self.apply_to);
        if let Some(map) = object_of(value, self.apply_to)? {
            map.retain(|k, _| self.fields.contains(k));
            map_struct_fields(data_type, |mut fields| {
                fields.retain(|f| self.fields.contains(f.name()));
                fields
            });
        }
        Ok(record)
    }
}

/// `mask_fields`: replaces `fields` by `replacement`, or by an empty value of their type
/// (`""`, `0`, `false`, `[]`, `{}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskFieldsConfig {
    /// Value or key.
    #[serde(default)]
    pub apply_to: Target,
    /// Fields to mask.
    pub fields: Vec<String>,
    /// The replacement; by default an empty value of the field's type.
    pub replacement: Option<Value>,
}

impl MaskFieldsConfig {
    pub(super) fn apply(&self, mut record: Record) -> Result<Record> {
        let (value, _) = parts(&mut record, self.apply_to);
        if let Some(map) = object_of(value, self.apply_to)? {
            for field in &self.fields {
                if let Some(v) = map.get_mut(field) {
                    *v = match (&self.replacement, &*v) {
                        (Some(r), _) => r.clone(),
                        (None, Value::String(_)) => Value::String(String::new()),
                        (None, Value::Number(_)) => Value::from(0),
                        (None, Value::Bool(_)) => Value::Bool(false),
                        (None, Value::Array(_)) => Value::Array(Vec::new()),
                        (None, Value::Object(_)) => Value::Object(Map::new()),
                        (None, Value::Null) => Value::Null,
                    };
                }
            }
        }
        Ok(record)
    }
}

/// A type `cast` can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CastType {
    /// 8-bit integer.
    Int8,
    /// 16-bit integer.
    Int16,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// true/false.
    Boolean,
    /// Text.
    String,
}

impl CastType {
    fn data_type(self) -> DataType {
        match self {
            Self::Int8 => DataType::Int8,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::String => DataType::Utf8,
        }
    }

    fn cast(self, value: &Value) -> Result<Value, String> {
        let fail = || format!("cannot cast {} to {:?}", short(value), self);
        if value.is_null() {
            return Ok(Value::Null);
        }
        let as_f64 = || -> Result<f64, String> {
            match value {
                Value::Number(n) => n.as_f64().ok_or_else(fail),
                Value::String(s) => s.trim().parse::<f64>().map_err(|_| fail()),
                Value::Bool(b) => Ok(f64::from(u8::from(*b))),
                _ => Err(fail()),
            }
        };
        Ok(match self {
            Self::Int8 | Self::Int16 | Self::Int32 | Self::Int64 => {
                let n = match value {
                    Value::Number(n) if n.is_i64() => n.as_i64().ok_or_else(fail)?,
                    Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                        s.trim().parse::<i64>().map_err(|_| fail())?
                    }
                    // Kafka Connect's Cast truncates floats.
                    _ => as_f64()?.trunc() as i64,
                };
                let (min, max) = match self {
                    Self::Int8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
                    Self::Int16 => (i64::from(i16::MIN), i64::from(i16::MAX)),
                    Self::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
                    _ => (i64::MIN, i64::MAX),
                };
                if n < min || n > max {
                    return Err(format!("{n} does not fit in {self:?}"));
                }
                Value::from(n)
            }
            Self::Float32 | Self::Float64 => {
                Value::Number(Number::from_f64(as_f64()?).ok_or_else(fail)?)
            }
            Self::Boolean => match value {
                Value::Bool(b) => Value::Bool(*b),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
                Value::Number(_) => Value::Bool(as_f64()? != 0.0),
                _ => return Err(fail()),
            },
            Self::String => match value {
                Value::String(s) => Value::String(s.clone()),
                other => Value::String(other.to_string()),
            },
        })
    }
}

/// `cast`: `fields = { age = "int64" }`, or `to = "string"` for the whole value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CastConfig {
    /// Value or key.
    #[serde(default)]
    pub apply_to: Target,
    /// Field name to type.
    #[serde(default)]
    pub fields: BTreeMap<String, CastType>,
    /// Type of the whole value (instead of `fields`).
    pub to: Option<CastType>,
}

impl CastConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigIssue> {
        match (self.fields.is_empty(), self.to.is_some()) {
            (true, false) => Err(ConfigIssue::new("fields", "set `fields` or `to`")),
            (false, true) => Err(ConfigIssue::new("to", "set `fields` or `to`, not both")),
            _ => Ok(()),
        }
    }

    pub(super) fn apply(&self, mut record: Record) -> Result<Record> {
        let target = self.apply_to;
        let (value, data_type) = parts(&mut record, target);
        if let Some(to) = self.to {
            if let Some(v) = value.as_mut() {
                *v = to.cast(v).map_err(Error::data)?;
                *data_type = Some(to.data_type());
            }
            return Ok(record);
        }
        if let Some(map) = object_of(value, target)? {
            for (field, to) in &self.fields {
                if let Some(v) = map.get_mut(field) {
                    *v = to
                        .cast(v)
                        .map_err(|e| Error::data(format!("field {field:?}: {e}")))?;
                }
            }
            map_struct_fields(data_type, |fields| {
                fields
                    .into_iter()
                    .map(|f| match self.fields.get(f.name()) {
                        Some(to) => f.with_data_type(to.data_type()),
                        None => f,
                    })
                    .collect()
            });
        }
        Ok(record)
    }
}

/// `extract_field`: replaces the value (or key) by one of its fields; `field` may be a dotted path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractFieldConfig {
    /// Value or key.
    #[serde(default)]
    pub apply_to: Target,
    /// The field (`payload.after` for nested fields).
    pub field: String,
}

impl ExtractFieldConfig {
    pub(super) fn apply(&self, mut record: Record) -> Result<Record> {
        let target = self.apply_to;
        let (value, data_type) = parts(&mut record, target);
        if object_of(value, target)?.is_none() {
            return Ok(record);
        }
        let extracted = lookup(value.as_ref(), &self.field).cloned();
        let extracted_type = data_type.as_ref().and_then(|t| lookup_type(t, &self.field));
        *value = extracted;
        *data_type = extracted_type;
        Ok(record)
    }
}

/// A field by dotted path.
pub(crate) fn lookup<'a>(value: Option<&'a Value>, path: &str) -> Option<&'a Value> {
    let mut current = value?;
    for part in path.split('.') {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn lookup_type(data_type: &DataType, path: &str) -> Option<DataType> {
    let mut current = data_type.clone();
    for part in path.split('.') {
        let DataType::Struct(fields) = &current else {
            return None;
        };
        current = fields
            .iter()
            .find(|f| f.name() == part)?
            .data_type()
            .clone();
    }
    Some(current)
}

/// `value_to_key`: the key becomes an object of these value fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueToKeyConfig {
    /// Value fields that make up the key.
    pub fields: Vec<String>,
}

impl ValueToKeyConfig {
    pub(super) fn apply(&self, mut record: Record) -> Result<Record> {
        let Some(map) = object_of(&mut record.value, Target::Value)? else {
            return Ok(record);
        };
        let mut key = Map::new();
        for field in &self.fields {
            let v = map
                .get(field)
                .ok_or_else(|| Error::data(format!("value has no field {field:?} for the key")))?;
            key.insert(field.clone(), v.clone());
        }
        record.key_schema = match &record.value_schema {
            Some(DataType::Struct(fields)) => Some(DataType::Struct(
                fields
                    .iter()
                    .filter(|f| self.fields.contains(f.name()))
                    .map(Arc::clone)
                    .collect(),
            )),
            _ => None,
        };
        record.key = Some(Value::Object(key));
        Ok(record)
    }
}
