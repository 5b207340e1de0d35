//! Postgres types as Connect data: each column's text form (what `::text`, `COPY` and `pgoutput`
//! print) becomes a JSON value of an exact representation, and the column's Arrow type says
//! which.
//!
//! | Postgres | JSON value | Arrow |
//! |---|---|---|
//! | smallint, integer, bigint | integer | Int16, Int32, Int64 |
//! | real, double precision | number (`"NaN"`, `"Infinity"` as strings) | Float32, Float64 |
//! | numeric(p,s) | string with every digit (`"12.50"`) | Decimal128(p,s); Utf8 unconstrained |
//! | boolean | bool | Boolean |
//! | timestamptz | `"2024-05-01T12:00:00.123456Z"` | Timestamp(µs, UTC) |
//! | timestamp | `"2024-05-01T12:00:00.123456"` | Timestamp(µs) |
//! | date, time | `"2024-05-01"`, `"12:00:00.5"` | Date32, Time64(µs) |
//! | bytea | base64 string | Binary |
//! | json, jsonb | the JSON text, as a string (as Debezium does) | Utf8 |
//! | arrays | JSON arrays of the element form | List |
//! | uuid, text and everything else | string | Utf8 |

use std::sync::Arc;

use arrow_schema::{DataType, Field, TimeUnit};
use base64::Engine as _;
use serde_json::{Number, Value};

/// The schema name of JSON text.
pub const JSON_NAME: &str = "io.debezium.data.Json";
/// The schema name of a UUID's text.
pub const UUID_NAME: &str = "io.debezium.data.Uuid";

/// How a column's values are represented.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `boolean`
    Bool,
    /// `smallint`
    Int2,
    /// `integer`
    Int4,
    /// `bigint`
    Int8,
    /// `real`
    Float4,
    /// `double precision`
    Float8,
    /// `numeric(precision, scale)`; `None` when unconstrained.
    Numeric(Option<(u8, i8)>),
    /// `bytea`
    Bytea,
    /// `timestamp with time zone`
    TimestampTz,
    /// `timestamp without time zone`
    Timestamp,
    /// `date`
    Date,
    /// `time`
    Time,
    /// `json`, `jsonb`
    Json,
    /// `uuid`
    Uuid,
    /// An array of the element kind.
    Array(Box<Kind>),
    /// Text and every other type, as its text form.
    Text,
}

impl Kind {
    /// The kind of a type by OID and type modifier (`atttypmod`).
    pub fn of(oid: u32, typmod: i32) -> Self {
        match oid {
            16 => Self::Bool,
            21 => Self::Int2,
            23 => Self::Int4,
            20 => Self::Int8,
            700 => Self::Float4,
            701 => Self::Float8,
            1700 => Self::Numeric(numeric_typmod(typmod)),
            17 => Self::Bytea,
            1184 => Self::TimestampTz,
            1114 => Self::Timestamp,
            1082 => Self::Date,
            1083 => Self::Time,
            114 | 3802 => Self::Json,
            2950 => Self::Uuid,
            1000 => Self::array(Self::Bool),
            1005 => Self::array(Self::Int2),
            1007 => Self::array(Self::Int4),
            1016 => Self::array(Self::Int8),
            1021 => Self::array(Self::Float4),
            1022 => Self::array(Self::Float8),
            1231 => Self::array(Self::Numeric(numeric_typmod(typmod))),
            1001 => Self::array(Self::Bytea),
            1185 => Self::array(Self::TimestampTz),
            1115 => Self::array(Self::Timestamp),
            1182 => Self::array(Self::Date),
            1183 => Self::array(Self::Time),
            199 | 3807 => Self::array(Self::Json),
            2951 => Self::array(Self::Uuid),
            // text[], varchar[], bpchar[], name[]
            1009 | 1015 | 1014 | 1003 => Self::array(Self::Text),
            _ => Self::Text,
        }
    }

    fn array(item: Self) -> Self {
        Self::Array(Box::new(item))
    }

    /// The Arrow type of the values.
    pub fn arrow(&self) -> DataType {
        match self {
            Self::Bool => DataType::Boolean,
            Self::Int2 => DataType::Int16,
            Self::Int4 => DataType::Int32,
            Self::Int8 => DataType::Int64,
            Self::Float4 => DataType::Float32,
            Self::Float8 => DataType::Float64,
            Self::Numeric(Some((precision, scale))) => DataType::Decimal128(*precision, *scale),
            Self::Numeric(None) | Self::Json | Self::Uuid | Self::Text => DataType::Utf8,
            Self::Bytea => DataType::Binary,
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::Date => DataType::Date32,
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::Array(item) => DataType::List(Arc::new(Field::new("item", item.arrow(), true))),
        }
    }

    /// The Connect schema name (Debezium's) of text that holds more than text: the sink turns
    /// it back into a `jsonb` or `uuid` column.
    pub fn semantic_name(&self) -> Option<&'static str> {
        match self {
            Self::Json => Some(JSON_NAME),
            Self::Uuid => Some(UUID_NAME),
            _ => None,
        }
    }

    /// Converts a value's text form. The session must use `DateStyle = ISO` and
    /// `TimeZone = UTC` (the connector sets both), and `bytea_output = hex` (the default).
    ///
    /// # Errors
    /// Text the type cannot have printed (a bug, or an unexpected server setting).
    pub fn decode(&self, text: &str) -> Result<Value, String> {
        let bad = || format!("{text:?} is not a valid {self:?} value");
        Ok(match self {
            Self::Bool => match text {
                "t" | "true" => Value::Bool(true),
                "f" | "false" => Value::Bool(false),
                _ => return Err(bad()),
            },
            Self::Int2 | Self::Int4 | Self::Int8 => {
                Value::Number(text.parse::<i64>().map_err(|_| bad())?.into())
            }
            Self::Float4 | Self::Float8 => {
                let float = text.parse::<f64>().map_err(|_| bad())?;
                Number::from_f64(float).map_or_else(|| Value::String(text.into()), Value::Number)
            }
            Self::Bytea => {
                let hex = text.strip_prefix("\\x").ok_or_else(bad)?;
                let bytes = decode_hex(hex).ok_or_else(bad)?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Self::TimestampTz => Value::String(timestamptz_to_rfc3339(text)),
            Self::Timestamp => Value::String(text.replacen(' ', "T", 1)),
            Self::Array(item) => {
                let parsed = parse_array(text).ok_or_else(bad)?;
                decode_array(item, parsed)?
            }
            Self::Numeric(_) | Self::Date | Self::Time | Self::Json | Self::Uuid | Self::Text => {
                Value::String(text.into())
            }
        })
    }
}

/// `numeric(p,s)` from its type modifier; `None` when unconstrained or wider than Decimal128.
fn numeric_typmod(typmod: i32) -> Option<(u8, i8)> {
    if typmod < 4 {
        return None;
    }
    let packed = typmod - 4;
    let precision = (packed >> 16) & 0xffff;
    let scale = packed & 0xffff;
    (1..=38)
        .contains(&precision)
        .then_some((precision as u8, scale as i8))
        .filter(|(_, scale)| *scale >= 0)
}

/// `2024-05-01 12:00:00.5+00` (ISO DateStyle, UTC session) as `2024-05-01T12:00:00.5Z`;
/// `infinity` and BC dates pass through.
fn timestamptz_to_rfc3339(text: &str) -> String {
    match text.strip_suffix("+00") {
        Some(local) if !local.ends_with(" BC") => {
            let mut out = local.replacen(' ', "T", 1);
            out.push('Z');
            out
        }
        _ => text.replacen(' ', "T", 1),
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// An array literal's elements: `None` for `NULL`, nested arrays for multi-dimensional ones.
#[derive(Debug, PartialEq)]
enum Element {
    Null,
    Text(String),
    Nested(Vec<Element>),
}

fn decode_array(item: &Kind, elements: Vec<Element>) -> Result<Value, String> {
    elements
        .into_iter()
        .map(|element| match element {
            Element::Null => Ok(Value::Null),
            Element::Text(text) => item.decode(&text),
            Element::Nested(inner) => decode_array(item, inner),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Parses `{1,2,NULL}`, `{"a b","c\"d"}`, `{{1,2},{3,4}}` and `[0:1]={1,2}` (bounds ignored).
fn parse_array(text: &str) -> Option<Vec<Element>> {
    let text = match text.strip_prefix('[') {
        Some(_) => text.split_once('=')?.1,
        None => text,
    };
    let mut chars = text.chars().peekable();
    let elements = parse_level(&mut chars)?;
    chars.next().is_none().then_some(elements)
}

fn parse_level(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Vec<Element>> {
    if chars.next()? != '{' {
        return None;
    }
    let mut elements = Vec::new();
    if chars.peek() == Some(&'}') {
        chars.next();
        return Some(elements);
    }
    loop {
        let element = match chars.peek()? {
            '{' => Element::Nested(parse_level(chars)?),
            '"' => {
                chars.next();
                let mut out = String::new();
                loop {
                    match chars.next()? {
                        '\\' => out.push(chars.next()?),
                        '"' => break,
                        c => out.push(c),
                    }
                }
                Element::Text(out)
            }
            _ => {
                let mut out = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '}' {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        out.push(chars.next()?);
                    } else {
                        out.push(c);
                    }
                }
                let out = out.trim().to_string();
                if out.eq_ignore_ascii_case("NULL") {
                    Element::Null
                } else {
                    Element::Text(out)
                }
            }
        };
        elements.push(element);
        match chars.next()? {
            ',' => {}
            '}' => return Some(elements),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_forms_become_exact_values() {
        assert_eq!(
            Kind::Int8.decode("-9007199254740993").unwrap(),
            json!(-9007199254740993_i64)
        );
        assert_eq!(Kind::Bool.decode("t").unwrap(), json!(true));
        assert_eq!(
            Kind::Numeric(None)
                .decode("12345678901234567890.123")
                .unwrap(),
            json!("12345678901234567890.123")
        );
        assert_eq!(
            Kind::TimestampTz
                .decode("2024-05-01 12:00:00.123456+00")
                .unwrap(),
            json!("2024-05-01T12:00:00.123456Z")
        );
        assert_eq!(
            Kind::Timestamp.decode("2024-05-01 12:00:00").unwrap(),
            json!("2024-05-01T12:00:00")
        );
        assert_eq!(Kind::Bytea.decode("\\x00ff41").unwrap(), json!("AP9B"));
        assert_eq!(Kind::Float8.decode("NaN").unwrap(), json!("NaN"));
        assert!(Kind::Int4.decode("x").is_err());
    }

    #[test]
    fn arrays_parse_with_quotes_nulls_and_nesting() {
        assert_eq!(
            Kind::of(1007, -1).decode("{1,NULL,3}").unwrap(),
            json!([1, null, 3])
        );
        assert_eq!(
            Kind::of(1009, -1)
                .decode(r#"{"a b","c\"d",NULL,"NULL",plain}"#)
                .unwrap(),
            json!(["a b", "c\"d", null, "NULL", "plain"])
        );
        assert_eq!(
            Kind::of(1007, -1).decode("{{1,2},{3,4}}").unwrap(),
            json!([[1, 2], [3, 4]])
        );
        assert_eq!(
            Kind::of(1007, -1).decode("[0:1]={5,6}").unwrap(),
            json!([5, 6])
        );
        assert_eq!(Kind::of(1007, -1).decode("{}").unwrap(), json!([]));
        assert!(Kind::of(1007, -1).decode("{1,2").is_err());
    }

    #[test]
    fn numeric_typmods_give_decimal_types() {
        // numeric(10,2) is stored as ((10 << 16) | 2) + 4.
        assert_eq!(
            Kind::of(1700, (10 << 16 | 2) + 4).arrow(),
            DataType::Decimal128(10, 2)
        );
        assert_eq!(Kind::of(1700, -1).arrow(), DataType::Utf8);
    }
}
