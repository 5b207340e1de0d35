//! An object's bytes to records: JSON lines, CSV rows or Parquet rows, as values or as the
//! records `s3-sink` wrote, each with the position after it.

use std::io::Cursor;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use logbrook_connect::api::schema;
use logbrook_connect::{Header, Record};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::{Map, Value};

use super::{Envelope, SourceFormat};
use crate::columnar::value_at;
use crate::layout::{
    COLUMN_HEADERS, COLUMN_KEY, COLUMN_PARTITION, COLUMN_TIMESTAMP, COLUMN_TOMBSTONE, COLUMN_TOPIC,
    LineIn, METADATA_COLUMNS, PARQUET_KEY_SCHEMA, PARQUET_LAYOUT, PARQUET_VALUE_SCHEMA,
};

/// One line or row read.
pub(crate) struct Decoded {
    /// The record, or the raw text and why it could not be read.
    pub record: Result<Record, (String, String)>,
    /// The position after it (a byte for lines, a row for Parquet).
    pub position: u64,
    /// Whether it is the object's last.
    pub done: bool,
}

/// Reads one object.
pub(crate) enum ObjectReader {
    /// JSON lines.
    Json {
        bytes: Bytes,
        position: usize,
        envelope: Envelope,
    },
    /// CSV rows after the header.
    Csv {
        reader: csv::Reader<Cursor<Bytes>>,
        /// Where `reader` started in the object.
        base: u64,
        size: u64,
        header: Vec<String>,
    },
    /// Parquet rows.
    Parquet {
        reader: ParquetRecordBatchReader,
        row: u64,
        rows: u64,
        envelope: Envelope,
        file: FileLayout,
    },
}

/// What a Parquet file says about its columns.
pub(crate) struct FileLayout {
    /// `Some(true)`: written by s3-sink with the value's fields as columns; `Some(false)`: with
    /// one `value` column; `None`: some other writer's file.
    fields: Option<bool>,
    key_schema: Option<DataType>,
    value_schema: Option<DataType>,
}

impl ObjectReader {
    /// Starts reading `bytes` (the whole object) at `start`.
    ///
    /// # Errors
    /// A file that cannot be read at all (a bad Parquet footer, a CSV without a header).
    pub(crate) fn open(
        format: SourceFormat,
        envelope: Envelope,
        bytes: Bytes,
        start: u64,
        batch: usize,
    ) -> Result<Self, String> {
        match format {
            SourceFormat::Json => Ok(Self::Json {
                position: usize::try_from(start)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len()),
                bytes,
                envelope,
            }),
            SourceFormat::Csv => {
                let size = bytes.len() as u64;
                let mut head = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(Cursor::new(bytes.clone()));
                let header: Vec<String> = head
                    .headers()
                    .map_err(|e| format!("cannot read the csv header: {e}"))?
                    .iter()
                    .map(str::to_string)
                    .collect();
                let header_end = head.position().byte();
                let base = start.max(header_end).min(size);
                let rest = bytes.slice(usize::try_from(base).unwrap_or(bytes.len())..);
                let reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(Cursor::new(rest));
                Ok(Self::Csv {
                    reader,
                    base,
                    size,
                    header,
                })
            }
            SourceFormat::Parquet => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .map_err(|e| format!("not a parquet file: {e}"))?;
                let metadata = builder.metadata().file_metadata();
                let rows = u64::try_from(metadata.num_rows()).unwrap_or(0);
                let kv = |name: &str| {
                    metadata.key_value_metadata().and_then(|kv| {
                        kv.iter()
                            .find(|e| e.key == name)
                            .and_then(|e| e.value.clone())
                    })
                };
                let schema_of = |name: &str| -> Result<Option<DataType>, String> {
                    kv(name)
                        .map(|text| {
                            serde_json::from_str::<Value>(&text)
                                .map_err(|e| e.to_string())
                                .and_then(|json| schema::from_connect_json(&json))
                                .map(|(t, _)| t)
                                .map_err(|e| format!("bad {name} metadata: {e}"))
                        })
                        .transpose()
                };
                let file = FileLayout {
                    fields: kv(PARQUET_LAYOUT).map(|l| l == "fields"),
                    key_schema: schema_of(PARQUET_KEY_SCHEMA)?,
                    value_schema: schema_of(PARQUET_VALUE_SCHEMA)?,
                };
                if envelope == Envelope::Record && file.fields.is_none() {
                    return Err(
                        "envelope = \"record\" reads parquet files s3-sink wrote; this one has no \
                         logbrook.layout metadata"
                            .into(),
                    );
                }
                let reader = builder
                    .with_batch_size(batch)
                    .with_offset(usize::try_from(start).unwrap_or(usize::MAX))
                    .build()
                    .map_err(|e| format!("cannot read parquet: {e}"))?;
                Ok(Self::Parquet {
                    reader,
                    row: start.min(rows),
                    rows,
                    envelope,
                    file,
                })
            }
        }
    }

    /// The next records, at most `max`; empty at the end of the object.
    ///
    /// # Errors
    /// A Parquet file that cannot be decoded.
    pub(crate) fn next_batch(&mut self, max: usize) -> Result<Vec<Decoded>, String> {
        let mut out = Vec::new();
        match self {
            Self::Json {
                bytes,
                position,
                envelope,
            } => {
                while out.len() < max && *position < bytes.len() {
                    let rest = &bytes[*position..];
                    let end = rest
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(rest.len(), |i| i + 1);
                    let line = trim_line(&rest[..end]);
                    *position += end;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    out.push(Decoded {
                        record: json_record(line, *envelope),
                        position: *position as u64,
                        done: *position == bytes.len(),
                    });
                }
                // Blank lines at the end: the last record read ends the object.
                if let Some(last) = out.last_mut()
                    && bytes[*position..].iter().all(u8::is_ascii_whitespace)
                {
                    last.done = true;
                }
            }
            Self::Csv {
                reader,
                base,
                size,
                header,
            } => {
                let mut row = csv::StringRecord::new();
                while out.len() < max {
                    let more = match reader.read_record(&mut row) {
                        Ok(more) => more,
                        Err(e) => {
                            let position = *base + reader.position().byte();
                            out.push(Decoded {
                                record: Err((String::new(), format!("bad csv row: {e}"))),
                                position,
                                done: position >= *size,
                            });
                            continue;
                        }
                    };
                    if !more {
                        break;
                    }
                    let position = *base + reader.position().byte();
                    let record = if row.len() == header.len() {
                        let object: Map<String, Value> = header
                            .iter()
                            .zip(row.iter())
                            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
                            .collect();
                        Ok(Record::new("", Value::Object(object)))
                    } else {
                        let text = row.iter().collect::<Vec<_>>().join(",");
                        Err((
                            text,
                            format!(
                                "the row has {} fields, the header {}",
                                row.len(),
                                header.len()
                            ),
                        ))
                    };
                    out.push(Decoded {
                        record,
                        position,
                        done: position >= *size,
                    });
                }
            }
            Self::Parquet {
                reader,
                row,
                rows,
                envelope,
                file,
            } => {
                if let Some(batch) = reader.next() {
                    let batch = batch.map_err(|e| format!("cannot decode parquet: {e}"))?;
                    for i in 0..batch.num_rows() {
                        *row += 1;
                        out.push(Decoded {
                            record: parquet_record(&batch, i, *envelope, file),
                            position: *row,
                            done: *row >= *rows,
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn json_record(line: &[u8], envelope: Envelope) -> Result<Record, (String, String)> {
    let raw = || String::from_utf8_lossy(line).into_owned();
    match envelope {
        Envelope::Value => serde_json::from_slice::<Value>(line)
            .map(|value| Record::new("", value))
            .map_err(|e| (raw(), format!("not JSON: {e}"))),
        Envelope::Record => serde_json::from_slice::<LineIn>(line)
            .map_err(|e| format!("not a record s3-sink wrote: {e}"))
            .and_then(LineIn::into_record)
            .map(|record| Record {
                offset: None,
                ..record
            })
            .map_err(|why| (raw(), why)),
    }
}

fn parquet_record(
    batch: &RecordBatch,
    row: usize,
    envelope: Envelope,
    file: &FileLayout,
) -> Result<Record, (String, String)> {
    let schema = batch.schema();
    let column = |name: &str| batch.column_by_name(name);
    let tombstone = column(COLUMN_TOMBSTONE)
        .filter(|c| c.data_type() == &DataType::Boolean)
        .is_some_and(|c| c.as_boolean().value(row));
    let value = match file.fields {
        _ if tombstone => None,
        Some(false) => column("value").map(|c| value_at(c.as_ref(), row)),
        fields => {
            let mut object = Map::new();
            for (field, array) in schema.fields().iter().zip(batch.columns()) {
                if fields.is_some() && METADATA_COLUMNS.contains(&field.name().as_str()) {
                    continue;
                }
                let value = value_at(array.as_ref(), row);
                // Schemaless objects are written with every field of the inferred type; a null
                // there is a field the record did not have.
                if value.is_null() && fields.is_some() && file.value_schema.is_none() {
                    continue;
                }
                object.insert(field.name().clone(), value);
            }
            Some(Value::Object(object))
        }
    };
    if envelope == Envelope::Value {
        return Ok(Record {
            value,
            ..Record::default()
        });
    }
    let missing = |name: &str| {
        (
            String::new(),
            format!("the parquet file has no {name} column"),
        )
    };
    let topic = column(COLUMN_TOPIC).ok_or_else(|| missing(COLUMN_TOPIC))?;
    let topic = topic
        .as_string_opt::<i32>()
        .map(|t| t.value(row).to_string())
        .ok_or_else(|| missing(COLUMN_TOPIC))?;
    let partition = column(COLUMN_PARTITION)
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .filter(|c| !c.is_null(row))
        .and_then(|c| u32::try_from(c.value(row)).ok());
    let timestamp = column(COLUMN_TIMESTAMP)
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .filter(|c| !c.is_null(row))
        .map(|c| c.value(row));
    let key = match column(COLUMN_KEY).and_then(|c| c.as_string_opt::<i32>()) {
        Some(keys) if !keys.is_null(row) => Some(
            serde_json::from_str(keys.value(row))
                .map_err(|e| (keys.value(row).to_string(), format!("bad _key: {e}")))?,
        ),
        _ => None,
    };
    let mut headers = Vec::new();
    if let Some(lists) = column(COLUMN_HEADERS).and_then(|c| c.as_list_opt::<i32>())
        && !lists.is_null(row)
    {
        let entries = lists.value(row);
        let entries = entries.as_struct();
        if let (Some(keys), Some(values)) = (
            entries.column(0).as_string_opt::<i32>(),
            entries.column(1).as_binary_opt::<i32>(),
        ) {
            for i in 0..entries.len() {
                headers.push(Header {
                    key: keys.value(i).to_string(),
                    value: (!values.is_null(i)).then(|| Bytes::copy_from_slice(values.value(i))),
                });
            }
        }
    }
    Ok(Record {
        topic,
        partition,
        offset: None,
        timestamp,
        key,
        key_schema: file.key_schema.clone(),
        value,
        value_schema: file.value_schema.clone(),
        headers,
        // Parquet holds values as columns, not bytes: the converters make new bytes.
        original: None,
    })
}
