//! `COPY ... FROM STDIN` text format: each JSON value as the text input of its column's type,
//! and the escaping that keeps any content inside its field.
//!
//! [`encode`] writes the raw text a type's input function reads (what a bind parameter would
//! carry); [`push_escaped`] then escapes it for a COPY line. Values never reach SQL text.

use std::fmt::Write as _;

use arrow_schema::{DataType, TimeUnit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, NaiveTime};
use serde_json::Value;

use super::columns::ColumnKind;

/// A NULL field in COPY text.
pub(super) const NULL: &str = "\\N";

/// Appends `raw` to a COPY line, escaping backslash, tab, newline and carriage return (the
/// only bytes COPY's text format gives a meaning).
pub(super) fn push_escaped(out: &mut String, raw: &str) {
    let mut start = 0;
    for (at, byte) in raw.bytes().enumerate() {
        let escaped = match byte {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\r' => "\\r",
            _ => continue,
        };
        out.push_str(&raw[start..at]);
        out.push_str(escaped);
        start = at + 1;
    }
    out.push_str(&raw[start..]);
}

/// Writes `value` as text input for a column of `kind` into `out`; `typed` is the field's
/// Arrow type when the record has a schema (it gives the unit of epoch numbers and the scale of
/// base64 decimals). Returns `false` for NULL (nothing written).
///
/// # Errors
/// Values no column of this kind can hold (an object into an integer column, bad base64).
pub(super) fn encode(
    kind: &ColumnKind,
    value: &Value,
    typed: Option<&DataType>,
    out: &mut String,
) -> Result<bool, String> {
    match (kind, value) {
        (_, Value::Null) => return Ok(false),
        (ColumnKind::Array(element), Value::Array(items)) => {
            array_literal(element, items, item_type(typed), out)?;
        }
        // Debezium style: a string in a json column holds the JSON text; other strings become
        // JSON strings.
        (ColumnKind::Json, Value::String(text)) => {
            if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                out.push_str(text);
            } else {
                push_json(out, value);
            }
        }
        (ColumnKind::Text | ColumnKind::Other, Value::String(text)) => {
            out.push_str(text);
        }
        (ColumnKind::Json | ColumnKind::Text | ColumnKind::Other, other) => push_json(out, other),
        (_, Value::Object(_) | Value::Array(_)) => {
            return Err(format!("cannot hold {}", describe(value)));
        }
        (ColumnKind::Bool, Value::Bool(b)) => out.push(if *b { 't' } else { 'f' }),
        (ColumnKind::Int, Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => {
                let _ = write!(out, "{i}");
            }
            // 3.0 is an integer to JSON writers, not to int8in.
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                let _ = write!(out, "{}", f as i64);
            }
            _ => {
                let _ = write!(out, "{n}");
            }
        },
        (ColumnKind::Bytea, Value::String(text)) => {
            if text.starts_with("\\x") {
                out.push_str(text);
            } else {
                let bytes = BASE64
                    .decode(text)
                    .map_err(|e| format!("bytea needs base64 text: {e}"))?;
                push_hex(out, &bytes);
            }
        }
        (ColumnKind::Numeric, Value::String(text)) => match typed {
            Some(DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale))
                if !is_decimal_literal(text) =>
            {
                decimal_from_base64(text, *scale, out)?;
            }
            _ => out.push_str(text),
        },
        (ColumnKind::Timestamptz | ColumnKind::Timestamp, Value::Number(_)) => {
            let unit = match typed {
                Some(DataType::Timestamp(unit, _)) => *unit,
                // Connect's Timestamp: milliseconds.
                _ => TimeUnit::Millisecond,
            };
            let micros = to_micros(epoch_number(value)?, unit)?;
            let at = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| format!("timestamp {value} is out of range"))?;
            let _ = write!(out, "{}", at.format("%Y-%m-%d %H:%M:%S%.6f"));
            if *kind == ColumnKind::Timestamptz {
                out.push_str("+00");
            }
        }
        (ColumnKind::Date, Value::Number(_)) => {
            let days = match typed {
                Some(DataType::Date64) => epoch_number(value)?.div_euclid(86_400_000),
                // Connect's Date and Arrow's Date32: days since the epoch.
                _ => epoch_number(value)?,
            };
            let at = DateTime::from_timestamp(days.saturating_mul(86_400), 0)
                .ok_or_else(|| format!("date {value} is out of range"))?;
            let _ = write!(out, "{}", at.format("%Y-%m-%d"));
        }
        (ColumnKind::Time, Value::Number(_)) => {
            let unit = match typed {
                Some(DataType::Time32(unit) | DataType::Time64(unit)) => *unit,
                // Connect's Time: milliseconds since midnight.
                _ => TimeUnit::Millisecond,
            };
            let micros = to_micros(epoch_number(value)?, unit)?;
            let time = u32::try_from(micros.div_euclid(1_000_000))
                .ok()
                .and_then(|seconds| {
                    let nanos = (micros.rem_euclid(1_000_000) * 1000) as u32;
                    NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)
                })
                .ok_or_else(|| format!("time {value} is not within a day"))?;
            let _ = write!(out, "{}", time.format("%H:%M:%S%.6f"));
        }
        // Strings are the types' own text input; numbers and booleans their JSON text. The
        // server checks them.
        (_, Value::String(text)) => out.push_str(text),
        (_, Value::Number(n)) => {
            let _ = write!(out, "{n}");
        }
        (_, Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
    }
    Ok(true)
}

/// A Postgres array literal: `{1,2,"a\"b",NULL}`; nested JSON arrays become dimensions.
fn array_literal(
    element: &ColumnKind,
    items: &[Value],
    typed: Option<&DataType>,
    out: &mut String,
) -> Result<(), String> {
    out.push('{');
    let mut text = String::new();
    for (at, item) in items.iter().enumerate() {
        if at > 0 {
            out.push(',');
        }
        match item {
            Value::Array(inner) if *element != ColumnKind::Json => {
                array_literal(element, inner, item_type(typed), out)?;
            }
            _ => {
                text.clear();
                if encode(element, item, typed, &mut text)? {
                    out.push('"');
                    for c in text.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                } else {
                    out.push_str("NULL");
                }
            }
        }
    }
    out.push('}');
    Ok(())
}

fn item_type(typed: Option<&DataType>) -> Option<&DataType> {
    match typed {
        Some(
            DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _),
        ) => Some(item.data_type()),
        _ => None,
    }
}

fn push_json(out: &mut String, value: &Value) {
    // Writing a `Value` into a String cannot fail.
    let _ = write!(out, "{value}");
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 + bytes.len() * 2);
    out.push_str("\\x");
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    }
}

fn epoch_number(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("expected an integer, got {n}")),
        _ => Err(format!("expected an integer, got {}", describe(value))),
    }
}

fn to_micros(n: i64, unit: TimeUnit) -> Result<i64, String> {
    match unit {
        TimeUnit::Second => n.checked_mul(1_000_000),
        TimeUnit::Millisecond => n.checked_mul(1_000),
        TimeUnit::Microsecond => Some(n),
        TimeUnit::Nanosecond => Some(n.div_euclid(1_000)),
    }
    .ok_or_else(|| format!("{n} is out of range"))
}

/// `-12.50`, `1e5`, `NaN`: text numeric's input reads as it is.
fn is_decimal_literal(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(body, "NaN" | "Infinity" | "inf") {
        return true;
    }
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            (digits(whole) || whole.is_empty())
                && (digits(fraction) || fraction.is_empty())
                && !(whole.is_empty() && fraction.is_empty())
        }
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// Kafka Connect's Decimal: base64 of the unscaled value, big-endian two's complement.
fn decimal_from_base64(text: &str, scale: i8, out: &mut String) -> Result<(), String> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| format!("{text:?} is neither a decimal number nor base64"))?;
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(format!("decimal of {} bytes is out of range", bytes.len()));
    }
    let mut unscaled: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for byte in bytes {
        unscaled = (unscaled << 8) | i128::from(byte);
    }
    let digits = unscaled.unsigned_abs().to_string();
    if unscaled < 0 {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(&digits);
        for _ in 0..scale.unsigned_abs() {
            out.push('0');
        }
        return Ok(());
    }
    let scale = usize::from(scale.unsigned_abs());
    if digits.len() > scale {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        let _ = write!(out, "{whole}.{fraction}");
    } else {
        let _ = write!(out, "0.{digits:0>scale$}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use arrow_schema::Field;
    use serde_json::json;

    use super::*;

    fn text(kind: &ColumnKind, value: Value, typed: Option<&DataType>) -> String {
        let mut out = String::new();
        assert!(encode(kind, &value, typed, &mut out).unwrap());
        out
    }

    #[test]
    fn copy_escaping_keeps_every_byte_inside_its_field() {
        let mut out = String::new();
        push_escaped(&mut out, "a\tb\nc\rd\\e\\.");
        assert_eq!(out, "a\\tb\\nc\\rd\\\\e\\\\.");
    }

    #[test]
    fn arrays_become_quoted_postgres_literals() {
        let int_array = ColumnKind::Array(Box::new(ColumnKind::Int));
        assert_eq!(
            text(&int_array, json!([1, 2, null]), None),
            r#"{"1","2",NULL}"#
        );
        let text_array = ColumnKind::Array(Box::new(ColumnKind::Text));
        assert_eq!(
            text(&text_array, json!(["a\"b", "c\\d", "{x,}"]), None),
            r#"{"a\"b","c\\d","{x,}"}"#
        );
        assert_eq!(
            text(&int_array, json!([[1, 2], [3, 4]]), None),
            r#"{{"1","2"},{"3","4"}}"#
        );
        assert_eq!(text(&int_array, json!([]), None), "{}");
    }

    #[test]
    fn json_columns_take_json_text_strings_verbatim_and_serialize_the_rest() {
        assert_eq!(
            text(&ColumnKind::Json, json!("{\"a\":1}"), None),
            "{\"a\":1}"
        );
        assert_eq!(text(&ColumnKind::Json, json!("plain"), None), "\"plain\"");
        assert_eq!(
            text(&ColumnKind::Json, json!({"a": [1]}), None),
            "{\"a\":[1]}"
        );
    }

    #[test]
    fn epoch_numbers_follow_the_arrow_unit() {
        let micros_utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            text(
                &ColumnKind::Timestamptz,
                json!(1_704_164_645_123_456_i64),
                Some(&micros_utc)
            ),
            "2024-01-02 03:04:05.123456+00"
        );
        assert_eq!(
            text(&ColumnKind::Timestamp, json!(1_704_164_645_123_i64), None),
            "2024-01-02 03:04:05.123000"
        );
        assert_eq!(text(&ColumnKind::Date, json!(19_724), None), "2024-01-02");
        assert_eq!(text(&ColumnKind::Date, json!(-1), None), "1969-12-31");
        let micros = DataType::Time64(TimeUnit::Microsecond);
        assert_eq!(
            text(&ColumnKind::Time, json!(11_045_123_456_i64), Some(&micros)),
            "03:04:05.123456"
        );
        assert_eq!(
            text(
                &ColumnKind::Timestamptz,
                json!("2024-01-02T03:04:05.5Z"),
                None
            ),
            "2024-01-02T03:04:05.5Z"
        );
    }

    #[test]
    fn decimals_are_digits_or_connect_base64() {
        let typed = DataType::Decimal128(10, 2);
        assert_eq!(
            text(&ColumnKind::Numeric, json!("12.50"), Some(&typed)),
            "12.50"
        );
        assert_eq!(
            text(&ColumnKind::Numeric, json!("1234"), Some(&typed)),
            "1234"
        );
        // 0x04D2 = 1234 unscaled -> 12.34; 0xFB2E = -1234 -> -12.34.
        assert_eq!(
            text(&ColumnKind::Numeric, json!("BNI="), Some(&typed)),
            "12.34"
        );
        assert_eq!(
            text(&ColumnKind::Numeric, json!("+y4="), Some(&typed)),
            "-12.34"
        );
        assert_eq!(
            text(&ColumnKind::Numeric, json!("AQ=="), Some(&typed)),
            "0.01"
        );
        assert_eq!(text(&ColumnKind::Numeric, json!(2.5), None), "2.5");
    }

    #[test]
    fn bytes_are_base64_in_and_hex_out_and_misfits_are_named() {
        assert_eq!(text(&ColumnKind::Bytea, json!("AAH/"), None), "\\x0001ff");
        let mut out = String::new();
        assert!(encode(&ColumnKind::Bytea, &json!("not base64!"), None, &mut out).is_err());
        let error = encode(&ColumnKind::Int, &json!({"a": 1}), None, &mut out).unwrap_err();
        assert_eq!(error, "cannot hold an object");
        assert_eq!(text(&ColumnKind::Int, json!(3.0), None), "3");
        assert!(!encode(&ColumnKind::Int, &json!(null), None, &mut out).unwrap());
        let list = DataType::List(Arc::new(Field::new("item", DataType::Binary, true)));
        let bytea_array = ColumnKind::Array(Box::new(ColumnKind::Bytea));
        assert_eq!(
            text(&bytea_array, json!(["AQ=="]), Some(&list)),
            r#"{"\\x01"}"#
        );
    }
}
