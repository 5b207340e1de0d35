//! What `s3-sink` writes and `s3-source` reads back: object names and the JSON line of a
//! record.
//!
//! An object is named `{topic}+{partition}+{first_offset:020}.{extension}` (the offset padded
//! so names sort in offset order), under a directory the partitioner chooses. Each JSON line
//! holds a whole record:
//!
//! ```json
//! {"topic":"orders","partition":0,"offset":17,"timestamp":1714564800000,
//!  "key":"o-17","value":{"id":17},"headers":[{"key":"trace","value":"dGlk"}]}
//! ```
//!
//! Header values are base64 (`null` for a header without a value); `key_schema` and
//! `value_schema` (Kafka Connect JSON schemas) are added for typed records.
//!
//! When the record's bytes in the log are known (always, unless a transform changed them), the
//! line holds those bytes exactly, and `key_format` / `value_format` say how: `json` (the bytes
//! are the JSON text of `key`, verbatim), `string` (the UTF-8 of the string) or `base64`. A
//! restore gives back the same bytes whatever the converters on either side.

use arrow_schema::DataType;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use logbrook_connect::api::schema;
use logbrook_connect::{OriginalBytes, Record};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Object user metadata (`x-amz-meta-*`): the first offset of the upload the object belongs
/// to.
pub(crate) const META_CUT_FIRST: &str = "logbrook-cut-first-offset";
/// Object user metadata: the last offset of the upload the object belongs to (see
/// `sink::task` on exactly-once).
pub(crate) const META_CUT_LAST: &str = "logbrook-cut-last-offset";
/// Object user metadata: how many records the object holds.
pub(crate) const META_RECORDS: &str = "logbrook-records";

/// Parquet columns beside the value's: where each record came from.
pub(crate) const COLUMN_TOPIC: &str = "_topic";
/// Parquet column: the record's partition.
pub(crate) const COLUMN_PARTITION: &str = "_partition";
/// Parquet column: the record's offset.
pub(crate) const COLUMN_OFFSET: &str = "_offset";
/// Parquet column: the record's timestamp (milliseconds, UTC).
pub(crate) const COLUMN_TIMESTAMP: &str = "_timestamp";
/// Parquet column: the record's key as JSON text.
pub(crate) const COLUMN_KEY: &str = "_key";
/// Parquet column: the record's headers (a list of key and binary value).
pub(crate) const COLUMN_HEADERS: &str = "_headers";
/// Parquet column: whether the record is a tombstone (has no value).
pub(crate) const COLUMN_TOMBSTONE: &str = "_tombstone";
/// The metadata columns, in the order they follow the value's columns.
pub(crate) const METADATA_COLUMNS: [&str; 7] = [
    COLUMN_TOPIC,
    COLUMN_PARTITION,
    COLUMN_OFFSET,
    COLUMN_TIMESTAMP,
    COLUMN_KEY,
    COLUMN_HEADERS,
    COLUMN_TOMBSTONE,
];
/// Parquet key-value metadata: `fields` when the value's fields are the columns, `value` when
/// one `value` column holds it.
pub(crate) const PARQUET_LAYOUT: &str = "logbrook.layout";
/// Parquet key-value metadata: the records' key schema (Kafka Connect JSON), when typed.
pub(crate) const PARQUET_KEY_SCHEMA: &str = "logbrook.key_schema";
/// Parquet key-value metadata: the records' value schema (Kafka Connect JSON), when typed.
pub(crate) const PARQUET_VALUE_SCHEMA: &str = "logbrook.value_schema";

/// The file name of an object: `{topic}+{partition}+{first_offset:020}.{extension}`.
pub(crate) fn object_name(
    topic: &str,
    partition: u32,
    first_offset: u64,
    extension: &str,
) -> String {
    format!("{topic}+{partition}+{first_offset:020}.{extension}")
}

/// The topic, partition and first offset in an object's file name, if it is one of ours.
pub fn parse_object_name(key: &str) -> Option<(String, u32, u64)> {
    let name = key.rsplit('/').next()?;
    let mut parts = name.rsplitn(3, '+');
    let last = parts.next()?;
    let offset = last
        .split_once('.')
        .map_or(last, |(digits, _)| digits)
        .parse()
        .ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    (!topic.is_empty()).then(|| (topic.to_string(), partition, offset))
}

#[derive(Serialize)]
struct LineOut<'a> {
    topic: &'a str,
    partition: Option<u32>,
    offset: Option<u64>,
    timestamp: Option<i64>,
    key: Payload<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_format: Option<BytesFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_schema: Option<&'a Value>,
    value: Payload<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_format: Option<BytesFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_schema: Option<&'a Value>,
    headers: Vec<HeaderLine>,
}

/// A key or value in a JSON line: Connect data, or the log's bytes in a [`BytesFormat`].
#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Data(&'a Option<Value>),
    Json(&'a RawValue),
    Text(&'a str),
    Base64(String),
    Null,
}

/// How a JSON line holds the log's bytes of a key or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BytesFormat {
    /// The bytes are JSON text, written verbatim.
    Json,
    /// The bytes are the UTF-8 of a string.
    String,
    /// The bytes, base64.
    Base64,
}

impl<'a> Payload<'a> {
    /// The log's bytes as a payload, verbatim when they are one line of JSON.
    fn of_bytes(bytes: Option<&'a [u8]>) -> (Self, Option<BytesFormat>) {
        let Some(bytes) = bytes else {
            return (Self::Null, None);
        };
        let one_line = !bytes.iter().any(|b| matches!(b, b'\n' | b'\r'));
        let trimmed = bytes.first().is_some_and(|b| !b.is_ascii_whitespace())
            && bytes.last().is_some_and(|b| !b.is_ascii_whitespace());
        // `null` as JSON would read back as a missing key or a tombstone: it goes as text.
        if one_line
            && trimmed
            && bytes != b"null"
            && let Ok(raw) = serde_json::from_slice::<&RawValue>(bytes)
        {
            return (Self::Json(raw), Some(BytesFormat::Json));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => (Self::Text(text), Some(BytesFormat::String)),
            Err(_) => (
                Self::Base64(BASE64.encode(bytes)),
                Some(BytesFormat::Base64),
            ),
        }
    }
}

/// A header in a JSON line.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HeaderLine {
    key: String,
    /// Base64, or `None` for a header without a value.
    value: Option<String>,
}

/// A record as read back from a JSON line.
#[derive(Debug, Deserialize)]
pub(crate) struct LineIn {
    pub topic: String,
    #[serde(default)]
    pub partition: Option<u32>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub key: Option<Box<RawValue>>,
    #[serde(default)]
    pub key_format: Option<BytesFormat>,
    #[serde(default)]
    pub key_schema: Option<Value>,
    #[serde(default)]
    pub value: Option<Box<RawValue>>,
    #[serde(default)]
    pub value_format: Option<BytesFormat>,
    #[serde(default)]
    pub value_schema: Option<Value>,
    #[serde(default)]
    pub headers: Vec<HeaderLine>,
}

/// Encodes records as JSON lines, remembering the last schemas' JSON so typed records of one
/// schema convert it once.
#[derive(Default)]
pub(crate) struct LineEncoder {
    key_schema: Option<(DataType, Value)>,
    value_schema: Option<(DataType, Value)>,
}

impl LineEncoder {
    /// Appends `record` and a newline to `out`.
    ///
    /// # Errors
    /// A value serde cannot write (a non-finite float cannot come from JSON, so practically
    /// none).
    pub(crate) fn encode(&mut self, record: &Record, out: &mut Vec<u8>) -> Result<(), String> {
        let key_schema = cached(&mut self.key_schema, record.key_schema.as_ref());
        let value_schema = cached(&mut self.value_schema, record.value_schema.as_ref());
        let ((key, key_format), (value, value_format)) = match &record.original {
            Some(original) => (
                Payload::of_bytes(original.key.as_deref()),
                Payload::of_bytes(original.value.as_deref()),
            ),
            None => (
                (Payload::Data(&record.key), None),
                (Payload::Data(&record.value), None),
            ),
        };
        let line = LineOut {
            topic: &record.topic,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key,
            key_format,
            key_schema: key_schema
                .then(|| self.key_schema.as_ref().map(|(_, j)| j))
                .flatten(),
            value,
            value_format,
            value_schema: value_schema
                .then(|| self.value_schema.as_ref().map(|(_, j)| j))
                .flatten(),
            headers: record
                .headers
                .iter()
                .map(|h| HeaderLine {
                    key: h.key.clone(),
                    value: h.value.as_ref().map(|v| BASE64.encode(v)),
                })
                .collect(),
        };
        serde_json::to_writer(&mut *out, &line).map_err(|e| format!("cannot write json: {e}"))?;
        out.push(b'\n');
        Ok(())
    }
}

/// Makes `cache` hold the JSON schema of `data_type`; returns whether there is one.
fn cached(cache: &mut Option<(DataType, Value)>, data_type: Option<&DataType>) -> bool {
    let Some(data_type) = data_type else {
        return false;
    };
    if cache.as_ref().is_none_or(|(cached, _)| cached != data_type) {
        *cache = Some((data_type.clone(), schema::to_connect_json(data_type, true)));
    }
    true
}

impl LineIn {
    /// The record this line holds (its topic and partition as written).
    ///
    /// # Errors
    /// A bad schema or a header value that is not base64.
    pub(crate) fn into_record(self) -> Result<Record, String> {
        let schema_of = |schema: Option<Value>| -> Result<Option<DataType>, String> {
            schema
                .filter(|s| !s.is_null())
                .map(|s| schema::from_connect_json(&s).map(|(t, _)| t))
                .transpose()
        };
        let headers = self
            .headers
            .into_iter()
            .map(|h| {
                let value = h
                    .value
                    .map(|v| BASE64.decode(v).map(Bytes::from))
                    .transpose()
                    .map_err(|e| format!("header {:?} is not base64: {e}", h.key))?;
                Ok(logbrook_connect::api::Header { key: h.key, value })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let exact = self.key_format.is_some() || self.value_format.is_some();
        let key = restore(self.key.as_deref(), self.key_format, "key")?;
        let value = restore(self.value.as_deref(), self.value_format, "value")?;
        // Lines with original bytes type their data as the `auto` converter reads those bytes;
        // the schemas the sink's converters gave describe other data.
        let (key_schema, value_schema) = if exact {
            (key.data_type, value.data_type)
        } else {
            (schema_of(self.key_schema)?, schema_of(self.value_schema)?)
        };
        Ok(Record {
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: key.data,
            key_schema,
            value: value.data,
            value_schema,
            headers,
            original: exact.then_some(OriginalBytes {
                key: key.bytes,
                value: value.bytes,
            }),
        })
    }
}

/// A key or value of a line: Connect data, its type, and the log's bytes.
#[derive(Default)]
struct Restored {
    data: Option<Value>,
    data_type: Option<DataType>,
    bytes: Option<Bytes>,
}

/// Reads a key or value of a line. With a `format` the bytes are the original ones and the
/// data is what the `auto` converter reads from them.
fn restore(
    payload: Option<&RawValue>,
    format: Option<BytesFormat>,
    what: &str,
) -> Result<Restored, String> {
    let Some(raw) = payload else {
        return Ok(Restored::default());
    };
    let text = |value: &str| -> Result<String, String> {
        serde_json::from_str(raw.get())
            .map_err(|e| format!("the {what} is not a JSON string, as {value} needs: {e}"))
    };
    let (data, data_type, bytes) = match format {
        None => {
            let data = serde_json::from_str(raw.get())
                .map_err(|e| format!("the {what} is not JSON: {e}"))?;
            (data, None, Bytes::copy_from_slice(raw.get().as_bytes()))
        }
        // RawValue accepts some JSON that a `Value` refuses (a lone surrogate, `1e400`, deep
        // nesting): the bytes still go back exactly, the data is their text.
        Some(BytesFormat::Json) => {
            let bytes = Bytes::copy_from_slice(raw.get().as_bytes());
            match serde_json::from_str(raw.get()) {
                Ok(data) => (data, None, bytes),
                Err(_) => (
                    Value::String(raw.get().to_string()),
                    Some(DataType::Utf8),
                    bytes,
                ),
            }
        }
        Some(BytesFormat::String) => {
            let text = text("\"string\"")?;
            let bytes = Bytes::copy_from_slice(text.as_bytes());
            (Value::String(text), Some(DataType::Utf8), bytes)
        }
        Some(BytesFormat::Base64) => {
            let text = text("\"base64\"")?;
            let bytes = BASE64
                .decode(&text)
                .map(Bytes::from)
                .map_err(|e| format!("the {what} is not base64: {e}"))?;
            (Value::String(text), Some(DataType::Binary), bytes)
        }
    };
    Ok(Restored {
        data: Some(data),
        data_type,
        bytes: Some(bytes),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn object_names_sort_by_offset_and_parse_back() {
        let a = object_name("orders", 3, 9, "json");
        let b = object_name("orders", 3, 10, "json");
        assert_eq!(a, "orders+3+00000000000000000009.json");
        assert!(a < b);
        assert_eq!(
            parse_object_name(&format!("archive/orders/partition=3/{b}")),
            Some(("orders".to_string(), 3, 10))
        );
        assert_eq!(
            parse_object_name("x/a.b+0+00000000000000000001.parquet"),
            Some(("a.b".to_string(), 0, 1))
        );
        assert_eq!(parse_object_name("x/notes.txt"), None);
    }

    #[test]
    fn a_record_survives_its_json_line() {
        let record = Record {
            topic: "orders".into(),
            partition: Some(2),
            offset: Some(41),
            timestamp: Some(1_714_564_800_000),
            key: Some(json!("o-41")),
            key_schema: Some(DataType::Utf8),
            value: Some(json!({"id": 41, "items": [1, 2]})),
            value_schema: None,
            headers: vec![
                logbrook_connect::api::Header {
                    key: "trace".into(),
                    value: Some(Bytes::from_static(b"\x00\xffid")),
                },
                logbrook_connect::api::Header {
                    key: "empty".into(),
                    value: None,
                },
            ],
            original: None,
        };
        let mut out = Vec::new();
        let mut encoder = LineEncoder::default();
        encoder.encode(&record, &mut out).unwrap();
        encoder
            .encode(
                &Record {
                    value: None,
                    ..record.clone()
                },
                &mut out,
            )
            .unwrap();
        let lines: Vec<&[u8]> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let back: LineIn = serde_json::from_slice(lines[0]).unwrap();
        assert_eq!(back.into_record().unwrap(), record);
        let tombstone: LineIn = serde_json::from_slice(lines[1]).unwrap();
        assert_eq!(tombstone.into_record().unwrap().value, None);
    }

    #[test]
    fn the_logs_bytes_come_back_exactly_whatever_they_are() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        type KeyAndValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
        let cases: [KeyAndValue<'_>; 10] = [
            (Some(b"o-1"), Some(br#"{"id": 0, "amount": 0.0}"#)),
            (Some(b"42"), Some(b"plain text, not JSON")),
            (Some(br#""quoted""#), Some(b"{\n  \"pretty\": true\n}")),
            (Some(b"\x00\xff"), Some(b" 7 ")),
            (None, Some(b"")),
            (Some(b"k"), None),
            // JSON `null` is neither a missing key nor a tombstone.
            (Some(b"null"), Some(b"null")),
            // JSON that RawValue takes and a Value refuses.
            (Some(br#""\ud800""#), Some(b"1e400")),
            (None, Some(deep.as_bytes())),
            (Some(b""), Some(b"[1,2]")),
        ];
        let mut encoder = LineEncoder::default();
        for (key, value) in cases {
            let original = OriginalBytes {
                key: key.map(Bytes::copy_from_slice),
                value: value.map(Bytes::copy_from_slice),
            };
            let record = Record {
                topic: "t".into(),
                // Data the converters made, which must not be what is restored.
                key: Some(json!("converted")),
                value: Some(json!({"converted": true})),
                original: Some(original.clone()),
                ..Record::default()
            };
            let mut out = Vec::new();
            encoder.encode(&record, &mut out).unwrap();
            assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
            let line: LineIn = serde_json::from_slice(&out).unwrap();
            let back = line.into_record().unwrap();
            assert_eq!(
                back.original,
                Some(original),
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}
