//! JSON values and Arrow types: inferring a column type from schemaless values, checking that
//! a value fits a type, and reading a value back out of an Arrow array.
//!
//! Values are written into arrays by `arrow-json`'s decoder; this module supplies what it
//! lacks: merged inference over many values, an exact fit check (unknown fields do not fit,
//! where the decoder would drop them), base64 binaries (Connect's convention; the decoder
//! reads hex) and the way back, array to JSON.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType};
use arrow_cast::parse::{Parser, parse_decimal, string_to_datetime};
use arrow_schema::{DataType, Field, Fields, TimeUnit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use logbrook_connect::api::schema;
use serde_json::{Map, Number, Value};

/// The type of a schemaless value, as [`schema::infer`] gives it.
pub(crate) fn infer(value: &Value) -> DataType {
    schema::infer(value)
}

/// The type both `a` and `b` fit, if any: nulls take the other type, integers widen to
/// floats, structs take the union of their fields, lists merge their items.
pub(crate) fn merge(a: &DataType, b: &DataType) -> Option<DataType> {
    match (a, b) {
        (a, b) if a == b => Some(a.clone()),
        (DataType::Null, other) | (other, DataType::Null) => Some(other.clone()),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            Some(DataType::Float64)
        }
        (DataType::List(a), DataType::List(b)) => {
            let item = merge(a.data_type(), b.data_type())?;
            Some(DataType::List(Arc::new(Field::new("item", item, true))))
        }
        (DataType::Struct(a), DataType::Struct(b)) => {
            let mut fields: Vec<Field> = a.iter().map(|f| f.as_ref().clone()).collect();
            for field in b {
                match fields.iter_mut().find(|f| f.name() == field.name()) {
                    Some(existing) => {
                        let merged = merge(existing.data_type(), field.data_type())?;
                        *existing = Field::new(field.name(), merged, true);
                    }
                    None => fields.push(Field::new(field.name(), field.data_type().clone(), true)),
                }
            }
            fields.sort_by(|x, y| x.name().cmp(y.name()));
            Some(DataType::Struct(Fields::from(fields)))
        }
        _ => None,
    }
}

/// The type written for an inferred one: every field nullable, and types only nulls were seen
/// for become strings (a JSON null reads back as null whatever the column type).
pub(crate) fn settle(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Null => DataType::Utf8,
        DataType::List(item) => {
            DataType::List(Arc::new(Field::new("item", settle(item.data_type()), true)))
        }
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    Field::new(f.name(), settle(f.data_type()), true)
                        .with_metadata(f.metadata().clone())
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Relaxes a declared type so every field is nullable (a tombstone row has nulls everywhere).
pub(crate) fn nullable(data_type: &DataType) -> DataType {
    match data_type {
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref()
                .clone()
                .with_nullable(true)
                .with_data_type(nullable(item.data_type())),
        )),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    f.as_ref()
                        .clone()
                        .with_nullable(true)
                        .with_data_type(nullable(f.data_type()))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The type with every time zone written as `+00:00`: timestamps are instants, and
/// `arrow-json` only parses into offset zones (named zones need the chrono-tz database).
pub(crate) fn offset_zones(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, Some("+00:00".into())),
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref()
                .clone()
                .with_data_type(offset_zones(item.data_type())),
        )),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    f.as_ref()
                        .clone()
                        .with_data_type(offset_zones(f.data_type()))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether `value` can be written as `data_type` without losing anything: the right kinds,
/// numbers within range, text that parses as the temporal or decimal type (with the parsers
/// `arrow-json` uses), base64 binaries, and no fields the struct lacks.
pub(crate) fn fits(data_type: &DataType, value: &Value) -> bool {
    fn int_in(n: &Number, min: i64, max: i64) -> bool {
        n.as_i64().is_some_and(|v| (min..=max).contains(&v))
    }
    fn uint_in(n: &Number, max: u64) -> bool {
        n.as_u64().is_some_and(|v| v <= max)
    }
    match (data_type, value) {
        (_, Value::Null) => true,
        (DataType::Boolean, Value::Bool(_)) => true,
        (DataType::Int8, Value::Number(n)) => int_in(n, i8::MIN.into(), i8::MAX.into()),
        (DataType::Int16, Value::Number(n)) => int_in(n, i16::MIN.into(), i16::MAX.into()),
        (DataType::Int32 | DataType::Date32 | DataType::Time32(_), Value::Number(n)) => {
            int_in(n, i32::MIN.into(), i32::MAX.into())
        }
        (
            DataType::Int64 | DataType::Date64 | DataType::Time64(_) | DataType::Timestamp(_, _),
            Value::Number(n),
        ) => n.is_i64(),
        (DataType::UInt8, Value::Number(n)) => uint_in(n, u8::MAX.into()),
        (DataType::UInt16, Value::Number(n)) => uint_in(n, u16::MAX.into()),
        (DataType::UInt32, Value::Number(n)) => uint_in(n, u32::MAX.into()),
        (DataType::UInt64, Value::Number(n)) => n.is_u64(),
        (DataType::Float32 | DataType::Float64, Value::Number(_)) => true,
        (DataType::Timestamp(_, _), Value::String(text)) => {
            string_to_datetime(&chrono::Utc, text).is_ok()
        }
        (DataType::Date32, Value::String(text)) => Date32Type::parse(text).is_some(),
        (DataType::Date64, Value::String(text)) => Date64Type::parse(text).is_some(),
        (DataType::Time32(TimeUnit::Second), Value::String(text)) => {
            Time32SecondType::parse(text).is_some()
        }
        (DataType::Time32(_), Value::String(text)) => Time32MillisecondType::parse(text).is_some(),
        (DataType::Time64(TimeUnit::Nanosecond), Value::String(text)) => {
            Time64NanosecondType::parse(text).is_some()
        }
        (DataType::Time64(_), Value::String(text)) => Time64MicrosecondType::parse(text).is_some(),
        (DataType::Decimal128(precision, scale), Value::String(text)) => {
            parse_decimal::<Decimal128Type>(text, *precision, *scale).is_ok()
        }
        (DataType::Decimal128(precision, scale), Value::Number(n)) => {
            parse_decimal::<Decimal128Type>(&n.to_string(), *precision, *scale).is_ok()
        }
        (DataType::Utf8 | DataType::LargeUtf8, Value::String(_)) => true,
        (DataType::Binary | DataType::LargeBinary, Value::String(text)) => {
            BASE64.decode(text).is_ok()
        }
        (DataType::List(item) | DataType::LargeList(item), Value::Array(items)) => {
            items.iter().all(|v| fits(item.data_type(), v))
        }
        (DataType::Map(entries, _), Value::Object(map)) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                matches!(kv[0].data_type(), DataType::Utf8 | DataType::LargeUtf8)
                    && map.values().all(|v| fits(kv[1].data_type(), v))
            }
            _ => false,
        },
        (DataType::Struct(fields), Value::Object(map)) => {
            map.keys().all(|k| fields.iter().any(|f| f.name() == k))
                && fields
                    .iter()
                    .all(|f| fits(f.data_type(), map.get(f.name()).unwrap_or(&Value::Null)))
        }
        _ => false,
    }
}

/// Whether a type holds binaries anywhere (their values need [`hex_binaries`]).
pub(crate) fn has_binary(data_type: &DataType) -> bool {
    match data_type {
        DataType::Binary | DataType::LargeBinary => true,
        DataType::List(item) | DataType::LargeList(item) => has_binary(item.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| has_binary(f.data_type())),
        _ => false,
    }
}

/// The value with its base64 binaries rewritten as hex, which `arrow-json` reads.
pub(crate) fn hex_binaries<'a>(data_type: &DataType, value: &'a Value) -> Cow<'a, Value> {
    match (data_type, value) {
        (DataType::Binary | DataType::LargeBinary, Value::String(text)) => {
            let bytes = BASE64.decode(text).unwrap_or_default();
            let mut hex = String::with_capacity(bytes.len() * 2);
            for b in bytes {
                hex.push_str(&format!("{b:02x}"));
            }
            Cow::Owned(Value::String(hex))
        }
        (DataType::List(item) | DataType::LargeList(item), Value::Array(items)) => {
            Cow::Owned(Value::Array(
                items
                    .iter()
                    .map(|v| hex_binaries(item.data_type(), v).into_owned())
                    .collect(),
            ))
        }
        (DataType::Struct(fields), Value::Object(map)) => {
            let mut out = map.clone();
            for field in fields {
                if let Some(v) = map.get(field.name()) {
                    out.insert(
                        field.name().clone(),
                        hex_binaries(field.data_type(), v).into_owned(),
                    );
                }
            }
            Cow::Owned(Value::Object(out))
        }
        _ => Cow::Borrowed(value),
    }
}

/// The JSON value at `row` of an array: numbers for integers, floats, dates, times and
/// timestamps (in the type's unit), strings for text and decimals (every digit), base64 for
/// binaries, arrays for lists, objects for structs and maps.
pub(crate) fn value_at(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    fn int<T: ArrowPrimitiveType>(array: &dyn Array, row: usize) -> Value
    where
        T::Native: Into<i64>,
    {
        Value::from(array.as_primitive::<T>().value(row).into())
    }
    fn float(x: f64) -> Value {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
    match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => int::<Int8Type>(array, row),
        DataType::Int16 => int::<Int16Type>(array, row),
        DataType::Int32 => int::<Int32Type>(array, row),
        DataType::Int64 => int::<Int64Type>(array, row),
        DataType::UInt8 => int::<UInt8Type>(array, row),
        DataType::UInt16 => int::<UInt16Type>(array, row),
        DataType::UInt32 => int::<UInt32Type>(array, row),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Date32 => int::<Date32Type>(array, row),
        DataType::Date64 => int::<Date64Type>(array, row),
        DataType::Time32(TimeUnit::Second) => int::<Time32SecondType>(array, row),
        DataType::Time32(_) => int::<Time32MillisecondType>(array, row),
        DataType::Time64(TimeUnit::Nanosecond) => int::<Time64NanosecondType>(array, row),
        DataType::Time64(_) => int::<Time64MicrosecondType>(array, row),
        DataType::Timestamp(TimeUnit::Second, _) => int::<TimestampSecondType>(array, row),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            int::<TimestampMillisecondType>(array, row)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            int::<TimestampMicrosecondType>(array, row)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => int::<TimestampNanosecondType>(array, row),
        DataType::Decimal128(_, _) => {
            let decimals = array.as_primitive::<Decimal128Type>();
            Value::String(decimals.value_as_string(row))
        }
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        DataType::Binary => Value::String(BASE64.encode(array.as_binary::<i32>().value(row))),
        DataType::LargeBinary => Value::String(BASE64.encode(array.as_binary::<i64>().value(row))),
        DataType::BinaryView => Value::String(BASE64.encode(array.as_binary_view().value(row))),
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            Value::Array((0..items.len()).map(|i| value_at(&items, i)).collect())
        }
        DataType::LargeList(_) => {
            let items = array.as_list::<i64>().value(row);
            Value::Array((0..items.len()).map(|i| value_at(&items, i)).collect())
        }
        DataType::Struct(fields) => {
            let structs = array.as_struct();
            let mut object = Map::new();
            for (field, column) in fields.iter().zip(structs.columns()) {
                object.insert(field.name().clone(), value_at(column.as_ref(), row));
            }
            Value::Object(object)
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut object = Map::new();
            for i in 0..entries.len() {
                let key = match value_at(keys.as_ref(), i) {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                object.insert(key, value_at(values.as_ref(), i));
            }
            Value::Object(object)
        }
        DataType::Dictionary(_, _) => {
            let dictionary = array.as_any_dictionary();
            let key = dictionary.normalized_keys()[row];
            value_at(dictionary.values().as_ref(), key)
        }
        other => Value::String(format!("<{other} not readable>")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn inferred_types_merge_across_values() {
        let a = infer(&json!({"id": 1, "name": null, "tags": []}));
        let b = infer(&json!({"id": 2.5, "name": "x", "extra": true}));
        let merged = settle(&merge(&a, &b).unwrap());
        let DataType::Struct(fields) = &merged else {
            panic!("{merged}")
        };
        let names: Vec<_> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["extra", "id", "name", "tags"]);
        assert_eq!(fields[1].data_type(), &DataType::Float64);
        assert_eq!(fields[2].data_type(), &DataType::Utf8);
        assert!(merge(&infer(&json!("x")), &infer(&json!(1))).is_none());
    }

    #[test]
    fn unknown_fields_and_wrong_kinds_do_not_fit() {
        let data_type = settle(&infer(&json!({"id": 1, "name": "a"})));
        assert!(fits(&data_type, &json!({"id": 2})));
        assert!(fits(&data_type, &json!({"id": null, "name": "b"})));
        assert!(!fits(&data_type, &json!({"id": 1, "other": 1})));
        assert!(!fits(&data_type, &json!({"id": "1"})));
        assert!(!fits(&data_type, &json!({"id": 1.5})));
    }

    #[test]
    fn binaries_go_to_hex_for_the_decoder() {
        let data_type =
            DataType::Struct(Fields::from(vec![Field::new("b", DataType::Binary, true)]));
        let value = json!({"b": BASE64.encode([0u8, 255, 16])});
        assert!(has_binary(&data_type));
        assert_eq!(
            hex_binaries(&data_type, &value).into_owned(),
            json!({"b": "00ff10"})
        );
    }
}
