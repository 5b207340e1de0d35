//! Lines to record values, by [`SourceFormat`].

use arrow_schema::DataType;
use serde_json::{Map, Value};

use super::SourceFormat;

/// What one line becomes.
#[derive(Debug, PartialEq)]
pub(super) enum Decoded {
    /// A record value and its type, when known.
    Value(Value, Option<DataType>),
    /// Nothing: a blank line in `json` or `csv`, or the `csv` header (now stored).
    Skip,
    /// Bad data: the raw line as a string, and why it is bad.
    Bad(String, String),
}

/// Decodes `line` (without its `\n`). For `csv`, `header` is the header once read; the first
/// line read while it is `None` becomes it.
pub(super) fn decode(
    format: SourceFormat,
    line: &[u8],
    header: &mut Option<Vec<String>>,
) -> Decoded {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match format {
        SourceFormat::Lines => Decoded::Value(
            Value::String(String::from_utf8_lossy(line).into_owned()),
            Some(DataType::Utf8),
        ),
        SourceFormat::Json => {
            if line.trim_ascii().is_empty() {
                return Decoded::Skip;
            }
            match serde_json::from_slice(line) {
                Ok(value) => Decoded::Value(value, None),
                Err(e) => Decoded::Bad(raw(line), format!("not JSON: {e}")),
            }
        }
        SourceFormat::Csv => {
            if line.trim_ascii().is_empty() {
                return Decoded::Skip;
            }
            let fields = match csv_fields(line) {
                Ok(fields) => fields,
                Err(why) => return Decoded::Bad(raw(line), why),
            };
            let Some(names) = header.as_ref() else {
                *header = Some(fields);
                return Decoded::Skip;
            };
            if fields.len() != names.len() {
                return Decoded::Bad(
                    raw(line),
                    format!(
                        "csv row has {} fields, the header has {}",
                        fields.len(),
                        names.len()
                    ),
                );
            }
            let object: Map<String, Value> = names
                .iter()
                .cloned()
                .zip(fields.into_iter().map(Value::String))
                .collect();
            Decoded::Value(Value::Object(object), None)
        }
    }
}

/// The fields of one CSV line.
pub(super) fn csv_fields(line: &[u8]) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(line.len().clamp(64, 64 * 1024))
        .from_reader(line);
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(record.iter().map(str::to_owned).collect()),
        Ok(false) => Ok(Vec::new()),
        Err(e) => Err(format!("bad csv row: {e}")),
    }
}

fn raw(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lines_lose_their_carriage_return_and_are_typed_utf8() {
        let decoded = decode(SourceFormat::Lines, b"hello\r", &mut None);
        assert_eq!(
            decoded,
            Decoded::Value(json!("hello"), Some(DataType::Utf8))
        );
    }

    #[test]
    fn csv_header_is_stored_then_rows_become_objects() {
        let mut header = None;
        assert_eq!(
            decode(SourceFormat::Csv, b"id,name", &mut header),
            Decoded::Skip
        );
        assert_eq!(
            decode(SourceFormat::Csv, b"1,\"a, b\"", &mut header),
            Decoded::Value(json!({"id": "1", "name": "a, b"}), None)
        );
        assert!(matches!(
            decode(SourceFormat::Csv, b"1,2,3", &mut header),
            Decoded::Bad(raw, why) if raw == "1,2,3" && why.contains("3 fields")
        ));
    }

    #[test]
    fn blank_json_lines_are_skipped_and_bad_ones_keep_their_text() {
        assert_eq!(decode(SourceFormat::Json, b"  ", &mut None), Decoded::Skip);
        assert!(matches!(
            decode(SourceFormat::Json, b"{oops", &mut None),
            Decoded::Bad(raw, _) if raw == "{oops"
        ));
    }
}
