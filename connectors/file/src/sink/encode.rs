//! Record values to the bytes of one line, by [`SinkFormat`].

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::SinkFormat;

/// Encodes values into a reused buffer.
pub(super) struct Encoder {
    format: SinkFormat,
    /// The encoded line(s) of the last value.
    line: Vec<u8>,
    /// Makes a csv writer into `line` for each row (`csv::Writer` cannot lend its buffer).
    csv: csv::WriterBuilder,
}

impl Encoder {
    pub(super) fn new(format: SinkFormat) -> Self {
        Self {
            format,
            line: Vec::with_capacity(4096),
            csv: {
                let mut builder = csv::WriterBuilder::new();
                builder
                    .flexible(true)
                    .terminator(csv::Terminator::Any(b'\n'))
                    .buffer_capacity(1024);
                builder
            },
        }
    }

    /// The columns a new csv file takes from its first value: the object's keys, in the order
    /// the object keeps them.
    ///
    /// # Errors
    /// Why the value cannot be a csv row.
    pub(super) fn columns_of(value: Option<&Value>) -> Result<Vec<String>, String> {
        Ok(csv_object(value)?.keys().cloned().collect())
    }

    /// Encodes `value` (`None` is a tombstone) as one line with its `\n`. For csv, `columns`
    /// are the file's columns and `header` asks for the header row first.
    ///
    /// # Errors
    /// Why the value cannot be written in this format.
    pub(super) fn encode(
        &mut self,
        value: Option<&Value>,
        columns: &[String],
        header: bool,
    ) -> Result<&[u8], String> {
        self.line.clear();
        match self.format {
            SinkFormat::Json => {
                serde_json::to_writer(&mut self.line, value.unwrap_or(&Value::Null))
                    .map_err(|e| format!("cannot write json: {e}"))?;
                self.line.push(b'\n');
            }
            SinkFormat::Lines => {
                match value {
                    None => {}
                    Some(Value::String(text)) => self.line.extend_from_slice(text.as_bytes()),
                    Some(other) => serde_json::to_writer(&mut self.line, other)
                        .map_err(|e| format!("cannot write json: {e}"))?,
                }
                self.line.push(b'\n');
            }
            SinkFormat::Csv => {
                let object = csv_object(value)?;
                let mut writer = self.csv.from_writer(&mut self.line);
                if header {
                    writer
                        .write_record(columns)
                        .map_err(|e| format!("cannot write csv header: {e}"))?;
                }
                writer
                    .write_record(columns.iter().map(|column| field(object.get(column))))
                    .map_err(|e| format!("cannot write csv: {e}"))?;
                writer
                    .flush()
                    .map_err(|e| format!("cannot write csv: {e}"))?;
            }
        }
        Ok(&self.line)
    }
}

/// The object a csv row is made of.
fn csv_object(value: Option<&Value>) -> Result<&Map<String, Value>, String> {
    match value {
        Some(Value::Object(object)) => Ok(object),
        None => Err("csv needs an object value, got a tombstone".to_string()),
        Some(other) => Err(format!("csv needs an object value, got {}", kind(other))),
    }
}

/// A csv field: strings as they are, nothing for a missing or null field, JSON text otherwise.
fn field(value: Option<&Value>) -> Cow<'_, [u8]> {
    match value {
        None | Some(Value::Null) => Cow::Borrowed(b""),
        Some(Value::String(text)) => Cow::Borrowed(text.as_bytes()),
        Some(other) => Cow::Owned(other.to_string().into_bytes()),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lines_write_strings_verbatim_and_other_values_as_json() {
        let mut encoder = Encoder::new(SinkFormat::Lines);
        assert_eq!(
            encoder.encode(Some(&json!("a \"b\"")), &[], false).unwrap(),
            b"a \"b\"\n"
        );
        assert_eq!(
            encoder.encode(Some(&json!({"x": 1})), &[], false).unwrap(),
            b"{\"x\":1}\n"
        );
        assert_eq!(encoder.encode(None, &[], false).unwrap(), b"\n");
    }

    #[test]
    fn csv_rows_quote_fields_and_leave_missing_ones_empty() {
        let mut encoder = Encoder::new(SinkFormat::Csv);
        let columns = ["id".to_string(), "name".to_string(), "extra".to_string()];
        let row = encoder
            .encode(Some(&json!({"id": 1, "name": "a, b"})), &columns, true)
            .unwrap();
        assert_eq!(row, b"id,name,extra\n1,\"a, b\",\n");
        let error = encoder
            .encode(Some(&json!([1])), &columns, false)
            .unwrap_err();
        assert!(error.contains("an array"), "{error}");
    }
}
