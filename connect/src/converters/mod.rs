//! Converters: the bytes of a key or value in the log, to and from Connect data.
//!
//! - `auto` (the default): reads JSON when the bytes are JSON, else UTF-8 text as a string, else
//!   raw bytes typed `Binary`, so whatever `logbrook produce` or another client wrote reaches
//!   every sink; writes JSON as `json` does. With schemas enabled it is `json`.
//! - `json`: schemaless JSON, or with `*_converter_schemas_enable = true` Kafka Connect's
//!   envelope `{"schema": {...}, "payload": ...}`, checked against the schema on read.
//! - `string`: UTF-8 text.
//! - `bytes`: raw bytes, carried as base64 text typed `Binary` (as Kafka Connect's JSON does).

use arrow_schema::DataType;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::schema;
use crate::error::{Error, Result};

/// A converter type, as named in `key_converter` / `value_converter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConverterKind {
    /// JSON when the bytes are JSON, else a string, else binary; writes JSON.
    #[default]
    Auto,
    /// JSON documents only.
    Json,
    /// UTF-8 strings.
    String,
    /// Raw bytes.
    Bytes,
}

/// Data: a value and, when known, its type.
pub type Data = (Option<Value>, Option<DataType>);

/// A configured converter.
#[derive(Debug, Clone, Copy)]
pub struct Converter {
    kind: ConverterKind,
    schemas_enable: bool,
}

impl Converter {
    /// A converter of `kind`; `schemas_enable` only matters for JSON.
    pub fn new(kind: ConverterKind, schemas_enable: bool) -> Self {
        Self {
            kind,
            schemas_enable,
        }
    }

    /// Bytes from the log to data. `None` (a null key, a tombstone) stays `None`.
    ///
    /// # Errors
    /// [`Error::Data`] naming what does not parse.
    pub fn to_data(&self, bytes: Option<&[u8]>) -> Result<Data> {
        let Some(bytes) = bytes else {
            return Ok((None, None));
        };
        match self.kind {
            ConverterKind::Auto if !self.schemas_enable => {
                if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
                    return Ok((Some(value), None));
                }
                Ok(match std::str::from_utf8(bytes) {
                    Ok(text) => (Some(Value::String(text.to_string())), Some(DataType::Utf8)),
                    Err(_) => (
                        Some(Value::String(BASE64.encode(bytes))),
                        Some(DataType::Binary),
                    ),
                })
            }
            ConverterKind::Json | ConverterKind::Auto => {
                let value: Value = serde_json::from_slice(bytes)
                    .map_err(|e| Error::data(format!("not JSON: {e}")))?;
                if !self.schemas_enable {
                    return Ok((Some(value), None));
                }
                let Value::Object(mut envelope) = value else {
                    return Err(Error::data(
                        "expected a {\"schema\", \"payload\"} envelope (schemas enabled)",
                    ));
                };
                let payload = envelope.remove("payload").ok_or_else(|| {
                    Error::data("expected a {\"schema\", \"payload\"} envelope (schemas enabled)")
                })?;
                match envelope.remove("schema") {
                    None | Some(Value::Null) => Ok((Some(payload), None)),
                    Some(schema_json) => {
                        let (data_type, _) = schema::from_connect_json(&schema_json)
                            .map_err(|e| Error::data(format!("bad schema: {e}")))?;
                        schema::check_value(&data_type, &payload).map_err(Error::data)?;
                        Ok((Some(payload), Some(data_type)))
                    }
                }
            }
            ConverterKind::String => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| Error::data(format!("not UTF-8: {e}")))?;
                Ok((Some(Value::String(text.to_string())), Some(DataType::Utf8)))
            }
            ConverterKind::Bytes => Ok((
                Some(Value::String(BASE64.encode(bytes))),
                Some(DataType::Binary),
            )),
        }
    }

    /// Data to bytes for the log.
    ///
    /// # Errors
    /// [`Error::Data`] when binary data is not valid base64.
    pub fn from_data(
        &self,
        value: Option<&Value>,
        data_type: Option<&DataType>,
    ) -> Result<Option<Bytes>> {
        let Some(value) = value else {
            return Ok(None);
        };
        let bytes = match self.kind {
            ConverterKind::Json | ConverterKind::Auto if self.schemas_enable => {
                let schema = data_type.map_or(Value::Null, |t| schema::to_connect_json(t, true));
                serde_json::to_vec(&json!({"schema": schema, "payload": value}))
            }
            ConverterKind::Json | ConverterKind::Auto => match (value, data_type) {
                // Binary data and text (a line, a key read by `auto`) go back as the bytes
                // they were, unless `auto` would read those bytes back as JSON (`42`, `null`):
                // what `auto` writes, it reads back the same.
                (Value::String(text), Some(DataType::Binary))
                    if self.kind == ConverterKind::Auto =>
                {
                    return BASE64
                        .decode(text)
                        .map(|b| Some(Bytes::from(b)))
                        .map_err(|e| Error::data(format!("binary value is not base64: {e}")));
                }
                (Value::String(text), Some(DataType::Utf8))
                    if self.kind == ConverterKind::Auto
                        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() =>
                {
                    return Ok(Some(Bytes::copy_from_slice(text.as_bytes())));
                }
                _ => serde_json::to_vec(value),
            },
            ConverterKind::String | ConverterKind::Bytes => match (value, data_type) {
                (Value::String(text), Some(DataType::Binary)) => {
                    return BASE64
                        .decode(text)
                        .map(|b| Some(Bytes::from(b)))
                        .map_err(|e| Error::data(format!("binary value is not base64: {e}")));
                }
                (Value::String(text), _) => {
                    return Ok(Some(Bytes::copy_from_slice(text.as_bytes())));
                }
                (other, _) => serde_json::to_vec(other),
            },
        };
        bytes
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| Error::data(format!("cannot encode as JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_with_schemas_reads_kafka_connect_envelopes_and_checks_them() {
        let converter = Converter::new(ConverterKind::Json, true);
        let bytes = br#"{"schema":{"type":"struct","fields":[{"field":"id","type":"int64","optional":false}]},"payload":{"id":7}}"#;
        let (value, data_type) = converter.to_data(Some(bytes)).unwrap();
        assert_eq!(value, Some(json!({"id": 7})));
        assert!(matches!(data_type, Some(DataType::Struct(_))));
        let written = converter
            .from_data(value.as_ref(), data_type.as_ref())
            .unwrap()
            .unwrap();
        let (again, again_type) = converter.to_data(Some(&written)).unwrap();
        assert_eq!((again, again_type), (value, data_type));

        let wrong = br#"{"schema":{"type":"struct","fields":[{"field":"id","type":"int64"}]},"payload":{"id":"x"}}"#;
        let error = converter.to_data(Some(wrong)).unwrap_err().to_string();
        assert!(error.contains("\"id\""), "{error}");
    }

    #[test]
    fn schemaless_json_rejects_what_does_not_parse() {
        let converter = Converter::new(ConverterKind::Json, false);
        assert_eq!(
            converter.to_data(Some(b"[1,2]")).unwrap().0,
            Some(json!([1, 2]))
        );
        assert!(matches!(
            converter.to_data(Some(b"{oops")),
            Err(Error::Data { .. })
        ));
        assert_eq!(converter.to_data(None).unwrap(), (None, None));
    }

    #[test]
    fn auto_reads_json_then_text_then_bytes_and_never_fails() {
        let auto = Converter::new(ConverterKind::default(), false);
        assert_eq!(
            auto.to_data(Some(br#"{"id":7}"#)).unwrap(),
            (Some(json!({"id": 7})), None)
        );
        assert_eq!(
            auto.to_data(Some(b"user-1")).unwrap(),
            (Some(json!("user-1")), Some(DataType::Utf8))
        );
        let raw = [0u8, 159, 146, 150];
        let (value, data_type) = auto.to_data(Some(&raw)).unwrap();
        assert_eq!(data_type, Some(DataType::Binary));
        let back = auto.from_data(value.as_ref(), data_type.as_ref()).unwrap();
        assert_eq!(back.as_deref(), Some(&raw[..]));
        // Untyped strings are written as JSON, as Kafka Connect's JsonConverter does; text
        // (typed `Utf8`: a line, a plain key) as its bytes.
        let out = auto.from_data(Some(&json!("a")), None).unwrap().unwrap();
        assert_eq!(&out[..], br#""a""#);
        let typed = Some(&DataType::Utf8);
        let out = auto.from_data(Some(&json!("a")), typed).unwrap().unwrap();
        assert_eq!(&out[..], b"a");
        // Whatever `auto` writes it reads back the same, text that looks like JSON included.
        for text in ["a", "42", "null", "\"x\"", "{\"a\": 1}", "true", " ", ""] {
            let data = json!(text);
            let bytes = auto.from_data(Some(&data), typed).unwrap().unwrap();
            let (back, _) = auto.to_data(Some(&bytes)).unwrap();
            assert_eq!(back, Some(data), "{text:?} became {bytes:?}");
        }
        // With schemas enabled it is as strict as `json`.
        let enveloped = Converter::new(ConverterKind::Auto, true);
        assert!(enveloped.to_data(Some(b"user-1")).is_err());
    }

    #[test]
    fn bytes_round_trip_exactly_and_strings_stay_text() {
        let bytes = Converter::new(ConverterKind::Bytes, false);
        let raw = [0u8, 159, 146, 150, 10];
        let (value, data_type) = bytes.to_data(Some(&raw)).unwrap();
        let back = bytes
            .from_data(value.as_ref(), data_type.as_ref())
            .unwrap()
            .unwrap();
        assert_eq!(&back[..], &raw);

        let string = Converter::new(ConverterKind::String, false);
        assert!(string.to_data(Some(&raw)).is_err());
        let (value, _) = string.to_data(Some("héllo".as_bytes())).unwrap();
        assert_eq!(value, Some(json!("héllo")));
        let out = string
            .from_data(Some(&json!({"a": 1})), None)
            .unwrap()
            .unwrap();
        assert_eq!(&out[..], br#"{"a":1}"#);
    }
}
