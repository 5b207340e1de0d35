//! Schemas: Arrow types, read from and written as Kafka Connect's JSON schema format
//! (`{"type": "struct", "fields": [{"field": "id", "type": "int64", "optional": false}]}`), so
//! records from Kafka Connect's `JsonConverter` with `schemas.enable=true` read unchanged.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};
use serde_json::{Map, Value, json};

const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
const DATE: &str = "org.apache.kafka.connect.data.Date";
const TIME: &str = "org.apache.kafka.connect.data.Time";
const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";

/// Field metadata holding a Connect schema name that no Arrow type expresses, such as
/// `io.debezium.data.Json` on a `Utf8` field of JSON text.
pub const CONNECT_NAME: &str = "connect.name";

/// Reads a Kafka Connect JSON schema. Returns the type and whether it is optional.
///
/// # Errors
/// A message naming the unsupported or malformed part.
pub fn from_connect_json(schema: &Value) -> Result<(DataType, bool), String> {
    let object = schema
        .as_object()
        .ok_or_else(|| format!("a schema must be an object, got {schema}"))?;
    let optional = object
        .get("optional")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a schema needs a string `type`")?;
    let name = object.get("name").and_then(Value::as_str);
    let data_type = match (kind, name) {
        ("int64", Some(TIMESTAMP)) => {
            let unit = match parameter(object, "logbrook.unit") {
                Some("us") => TimeUnit::Microsecond,
                Some("ns") => TimeUnit::Nanosecond,
                Some("s") => TimeUnit::Second,
                _ => TimeUnit::Millisecond,
            };
            DataType::Timestamp(unit, parameter(object, "logbrook.timezone").map(Into::into))
        }
        ("int32", Some(DATE)) => DataType::Date32,
        ("int32", Some(TIME)) => match parameter(object, "logbrook.unit") {
            Some("us") => DataType::Time64(TimeUnit::Microsecond),
            _ => DataType::Time32(TimeUnit::Millisecond),
        },
        ("bytes", Some(DECIMAL)) => {
            let scale = object
                .get("parameters")
                .and_then(|p| p.get("scale"))
                .and_then(|s| {
                    s.as_str()
                        .map(str::parse::<i8>)
                        .or(s.as_i64().map(|v| Ok(v as i8)))
                })
                .transpose()
                .map_err(|e| format!("decimal scale: {e}"))?
                .unwrap_or(0);
            let precision = parameter(object, "connect.decimal.precision")
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| (1..=38).contains(p))
                .unwrap_or(38);
            DataType::Decimal128(precision, scale)
        }
        ("int8", _) => DataType::Int8,
        ("int16", _) => DataType::Int16,
        ("int32", _) => DataType::Int32,
        ("int64", _) => DataType::Int64,
        ("float", _) => DataType::Float32,
        ("double", _) => DataType::Float64,
        ("boolean", _) => DataType::Boolean,
        ("string", _) => DataType::Utf8,
        ("bytes", _) => DataType::Binary,
        ("array", _) => {
            let items = object.get("items").ok_or("an array schema needs `items`")?;
            let (item, nullable) = from_connect_json(items)?;
            DataType::List(Arc::new(Field::new("item", item, nullable)))
        }
        ("map", _) => {
            let (key, _) =
                from_connect_json(object.get("keys").ok_or("a map schema needs `keys`")?)?;
            let (value, nullable) =
                from_connect_json(object.get("values").ok_or("a map schema needs `values`")?)?;
            let entries = Fields::from(vec![
                Field::new("key", key, false),
                Field::new("value", value, nullable),
            ]);
            DataType::Map(
                Arc::new(Field::new("entries", DataType::Struct(entries), false)),
                false,
            )
        }
        ("struct", _) => {
            let fields = object
                .get("fields")
                .and_then(Value::as_array)
                .ok_or("a struct schema needs a `fields` array")?;
            let mut out = Vec::with_capacity(fields.len());
            for field in fields {
                let name = field
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or("each struct field needs a string `field` name")?;
                let (data_type, nullable) =
                    from_connect_json(field).map_err(|e| format!("field {name:?}: {e}"))?;
                let mut arrow_field = Field::new(name, data_type, nullable);
                // A semantic name Arrow has no type for (`io.debezium.data.Json`) stays on the
                // field, so sinks can pick the exact column type.
                if let Some(semantic) = field.get("name").and_then(Value::as_str)
                    && ![TIMESTAMP, DATE, TIME, DECIMAL].contains(&semantic)
                {
                    arrow_field = arrow_field.with_metadata(std::collections::HashMap::from([(
                        CONNECT_NAME.to_string(),
                        semantic.to_string(),
                    )]));
                }
                out.push(arrow_field);
            }
            DataType::Struct(Fields::from(out))
        }
        (other, _) => return Err(format!("unknown schema type {other:?}")),
    };
    Ok((data_type, optional))
}

fn parameter<'a>(schema: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    schema.get("parameters")?.get(name)?.as_str()
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    }
}

/// Writes a type as a Kafka Connect JSON schema.
pub fn to_connect_json(data_type: &DataType, optional: bool) -> Value {
    let mut schema = match data_type {
        DataType::Int8 | DataType::UInt8 => json!({"type": "int8"}),
        DataType::Int16 | DataType::UInt16 => json!({"type": "int16"}),
        DataType::Int32 | DataType::UInt32 => json!({"type": "int32"}),
        DataType::Int64 | DataType::UInt64 => json!({"type": "int64"}),
        DataType::Float16 | DataType::Float32 => json!({"type": "float"}),
        DataType::Float64 => json!({"type": "double"}),
        DataType::Boolean => json!({"type": "boolean"}),
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            json!({"type": "bytes"})
        }
        // Connect's logical types are milliseconds without a zone; parameters keep the Arrow
        // unit and zone so a round trip is exact.
        DataType::Timestamp(unit, timezone) => {
            let mut schema = json!({"type": "int64", "name": TIMESTAMP, "version": 1});
            let mut parameters = Map::new();
            if *unit != TimeUnit::Millisecond {
                parameters.insert("logbrook.unit".into(), unit_name(*unit).into());
            }
            if let Some(timezone) = timezone {
                parameters.insert("logbrook.timezone".into(), timezone.to_string().into());
            }
            if !parameters.is_empty() {
                schema["parameters"] = Value::Object(parameters);
            }
            schema
        }
        DataType::Date32 | DataType::Date64 => json!({"type": "int32", "name": DATE, "version": 1}),
        DataType::Time64(TimeUnit::Microsecond) => json!({
            "type": "int32", "name": TIME, "version": 1, "parameters": {"logbrook.unit": "us"}
        }),
        DataType::Time32(_) | DataType::Time64(_) => {
            json!({"type": "int32", "name": TIME, "version": 1})
        }
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => json!({
            "type": "bytes", "name": DECIMAL, "version": 1,
            "parameters": {"scale": scale.to_string(), "connect.decimal.precision": precision.to_string()}
        }),
        DataType::List(item) | DataType::LargeList(item) => json!({
            "type": "array",
            "items": to_connect_json(item.data_type(), item.is_nullable()),
        }),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => json!({
                "type": "map",
                "keys": to_connect_json(kv[0].data_type(), false),
                "values": to_connect_json(kv[1].data_type(), kv[1].is_nullable()),
            }),
            _ => json!({"type": "string"}),
        },
        DataType::Struct(fields) => {
            let fields: Vec<Value> = fields
                .iter()
                .map(|f| {
                    let mut field = to_connect_json(f.data_type(), f.is_nullable());
                    if let Some(object) = field.as_object_mut() {
                        object.insert("field".into(), Value::String(f.name().clone()));
                        if let Some(semantic) = f.metadata().get(CONNECT_NAME)
                            && !object.contains_key("name")
                        {
                            object.insert("name".into(), Value::String(semantic.clone()));
                        }
                    }
                    field
                })
                .collect();
            json!({"type": "struct", "fields": fields})
        }
        _ => json!({"type": "string"}),
    };
    if let Some(object) = schema.as_object_mut() {
        object.insert("optional".into(), Value::Bool(optional));
    }
    schema
}

/// Checks that a value fits a type. The error names the path of the first mismatch.
///
/// # Errors
/// `"field \"a.b\": expected int64, got \"x\""`-style messages.
pub fn check_value(data_type: &DataType, value: &Value) -> Result<(), String> {
    check_at(data_type, value, &mut String::new())
}

fn check_at(data_type: &DataType, value: &Value, path: &mut String) -> Result<(), String> {
    let fits = match (data_type, value) {
        (_, Value::Null) => true,
        (DataType::Boolean, Value::Bool(_)) => true,
        (
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Date32
            | DataType::Time32(_)
            | DataType::Timestamp(_, _),
            Value::Number(n),
        ) => n.is_i64() || n.is_u64(),
        // Temporal values may also be ISO-8601 text (`2024-05-01T12:00:00.123456Z`), which keeps
        // microseconds and zones exact (the Postgres source writes them so).
        (
            DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(_, _),
            Value::String(_),
        ) => true,
        (DataType::Float32 | DataType::Float64, Value::Number(_)) => true,
        (DataType::Utf8 | DataType::LargeUtf8, Value::String(_)) => true,
        (DataType::Binary | DataType::Decimal128(_, _), Value::String(_)) => true,
        (DataType::Decimal128(_, _), Value::Number(_)) => true,
        (DataType::List(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_at(item.data_type(), v, path)?;
                path.truncate(len);
            }
            true
        }
        (DataType::Map(_, _), Value::Object(_)) => true,
        (DataType::Struct(fields), Value::Object(map)) => {
            for field in fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(field.name());
                match map.get(field.name()) {
                    None | Some(Value::Null) if !field.is_nullable() => {
                        return Err(format!("field {path:?} is required but missing"));
                    }
                    Some(v) => check_at(field.data_type(), v, path)?,
                    None => {}
                }
                path.truncate(len);
            }
            true
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        let at = if path.is_empty() {
            "value".to_string()
        } else {
            format!("field {path:?}")
        };
        Err(format!("{at}: expected {data_type}, got {value}"))
    }
}

/// The type of a schemaless JSON value, for sinks that need one (Parquet, databases): numbers
/// are int64 or float64, objects are structs, arrays take their first element's type.
pub fn infer(value: &Value) -> DataType {
    match value {
        Value::Null => DataType::Null,
        Value::Bool(_) => DataType::Boolean,
        Value::Number(n) if n.is_f64() => DataType::Float64,
        Value::Number(_) => DataType::Int64,
        Value::String(_) => DataType::Utf8,
        Value::Array(items) => {
            let item = items.first().map_or(DataType::Utf8, infer);
            DataType::List(Arc::new(Field::new("item", item, true)))
        }
        Value::Object(map) => DataType::Struct(struct_fields(map)),
    }
}

fn struct_fields(map: &Map<String, Value>) -> Fields {
    map.iter()
        .map(|(name, v)| Field::new(name, infer(v), true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_schemas_round_trip_through_arrow() {
        let schema = json!({"type": "struct", "optional": false, "fields": [
            {"field": "id", "type": "int64", "optional": false},
            {"field": "name", "type": "string", "optional": true},
            {"field": "at", "type": "int64", "name": TIMESTAMP, "optional": true},
            {"field": "tags", "type": "array", "items": {"type": "string", "optional": false}, "optional": true},
        ]});
        let (data_type, optional) = from_connect_json(&schema).unwrap();
        assert!(!optional);
        let DataType::Struct(fields) = &data_type else {
            panic!("not a struct: {data_type}")
        };
        assert_eq!(fields[0].data_type(), &DataType::Int64);
        assert!(!fields[0].is_nullable());
        assert_eq!(
            fields[2].data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        let back = to_connect_json(&data_type, false);
        assert_eq!(from_connect_json(&back).unwrap().0, data_type);
    }

    #[test]
    fn exact_temporal_and_decimal_types_survive_connect_schemas() {
        for data_type in [
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Time64(TimeUnit::Microsecond),
            DataType::Decimal128(12, 3),
        ] {
            let schema = to_connect_json(&data_type, true);
            assert_eq!(from_connect_json(&schema).unwrap().0, data_type, "{schema}");
        }
        let metadata = std::collections::HashMap::from([(
            CONNECT_NAME.to_string(),
            "io.debezium.data.Json".to_string(),
        )]);
        let json_text = Field::new("doc", DataType::Utf8, true).with_metadata(metadata);
        let row = DataType::Struct(Fields::from(vec![json_text]));
        assert_eq!(
            from_connect_json(&to_connect_json(&row, false)).unwrap().0,
            row
        );
        let at = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert!(check_value(&at, &json!("2024-05-01T12:00:00.123456Z")).is_ok());
        assert!(check_value(&at, &json!(true)).is_err());
    }

    #[test]
    fn check_value_names_the_mismatched_field() {
        let (data_type, _) = from_connect_json(&json!({"type": "struct", "fields": [
            {"field": "user", "type": "struct", "fields": [{"field": "id", "type": "int64"}]}
        ]}))
        .unwrap();
        assert!(check_value(&data_type, &json!({"user": {"id": 7}})).is_ok());
        let error = check_value(&data_type, &json!({"user": {"id": "seven"}})).unwrap_err();
        assert!(error.contains("\"user.id\""), "{error}");
        let error = check_value(&data_type, &json!({"user": {}})).unwrap_err();
        assert!(error.contains("required"), "{error}");
    }

    #[test]
    fn unknown_schema_types_are_rejected() {
        assert!(from_connect_json(&json!({"type": "uuid"})).is_err());
    }
}
