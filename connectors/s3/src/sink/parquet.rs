//! The Parquet encoding of one object.
//!
//! Columns follow the records' Arrow schema: a struct value's fields are the columns (every
//! one nullable, so a tombstone is a row of nulls), any other value is one `value` column.
//! Schemaless values get a type inferred over the object's first rows (merged: optional fields,
//! integers next to floats). The metadata columns follow: `_topic`, `_partition`, `_offset`,
//! `_timestamp` (ms, UTC), `_key` (JSON text), `_headers` (list of key and binary value) and
//! `_tombstone`. Key and value schemas of typed records are kept in the file's key-value
//! metadata (`logbrook.key_schema`, `logbrook.value_schema`, as Kafka Connect JSON).
//!
//! An object holds records of one schema: a record whose key or value schema differs, or a
//! schemaless value that does not fit the inferred type, ends the object ([`Push::Incompatible`]).

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_json::reader::Decoder;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use logbrook_connect::Record;
use logbrook_connect::api::schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::Value;

use super::Compression;
use crate::columnar;
use crate::layout::{
    COLUMN_HEADERS, COLUMN_KEY, COLUMN_OFFSET, COLUMN_PARTITION, COLUMN_TIMESTAMP,
    COLUMN_TOMBSTONE, COLUMN_TOPIC, PARQUET_KEY_SCHEMA, PARQUET_LAYOUT, PARQUET_VALUE_SCHEMA,
};

/// Rows decoded into one Arrow batch before it goes to the writer.
const BATCH_ROWS: usize = 8192;
/// Bytes (estimated from the JSON values) after which a batch is written anyway.
const BATCH_BYTES: usize = 8 << 20;
/// Bytes of encoded data after which the writer closes a row group.
const ROW_GROUP_BYTES: usize = 32 << 20;

/// Why a record was not added.
#[derive(Debug)]
pub(crate) enum Push {
    /// The record cannot be written in this format at all (a bad record).
    Reject(String),
    /// The record belongs in a new object (its schema differs from this object's).
    Incompatible,
    /// The encoder failed and the object is lost: the task must fail, so its records are
    /// delivered again.
    Failed(String),
}

/// A row waiting for the object's type to be settled.
struct PendingRow {
    topic: String,
    partition: Option<u32>,
    offset: Option<u64>,
    timestamp: Option<i64>,
    key: Option<Value>,
    value: Option<Value>,
    headers: Vec<logbrook_connect::Header>,
}

/// One Parquet object being written.
pub(crate) struct ParquetEncoder {
    compression: Compression,
    /// The key and value schemas of the object's first record; every record must have these.
    schemas: Option<(Option<DataType>, Option<DataType>)>,
    /// Schemaless: the merged type of the values seen so far.
    inferred: DataType,
    pending: Vec<PendingRow>,
    pending_bytes: usize,
    writer: Option<Writer>,
}

/// The writer, once the object's type is settled.
struct Writer {
    /// The value's type as written (nullable everywhere).
    value_type: DataType,
    /// Whether the value's fields are the columns (else one `value` column).
    fields_layout: bool,
    binary: bool,
    schema: SchemaRef,
    decoder: Decoder,
    meta: MetaColumns,
    rows: usize,
    batch_bytes: usize,
    arrow: ArrowWriter<Vec<u8>>,
}

impl ParquetEncoder {
    pub(crate) fn new(compression: Compression) -> Self {
        Self {
            compression,
            schemas: None,
            inferred: DataType::Null,
            pending: Vec::new(),
            pending_bytes: 0,
            writer: None,
        }
    }

    /// Adds a record.
    ///
    /// # Errors
    /// [`Push`]: a bad record, or one for the next object.
    pub(crate) fn push(&mut self, record: &Record) -> Result<(), Push> {
        let schemas = (record.key_schema.clone(), record.value_schema.clone());
        match &self.schemas {
            None => self.schemas = Some(schemas),
            Some(first) if *first != schemas => return Err(Push::Incompatible),
            Some(_) => {}
        }
        let value = record.value.as_ref();
        if let Some(declared) = &record.value_schema {
            let value_type = columnar::nullable(declared);
            if let Some(value) = value
                && !columnar::fits(&value_type, value)
            {
                return Err(Push::Reject(format!(
                    "the value does not fit its schema {declared}"
                )));
            }
            if self.writer.is_none() {
                self.start(value_type).map_err(Push::Failed)?;
            }
        } else if let Some(writer) = &self.writer {
            if let Some(value) = value
                && !columnar::fits(&writer.value_type, value)
            {
                return Err(Push::Incompatible);
            }
        } else {
            if let Some(value) = value {
                let merged = columnar::merge(&self.inferred, &columnar::infer(value))
                    .ok_or(Push::Incompatible)?;
                self.inferred = merged;
                self.pending_bytes += approximate_size(value);
            }
            self.pending.push(PendingRow {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.clone(),
                value: record.value.clone(),
                headers: record.headers.clone(),
            });
            if self.pending.len() >= BATCH_ROWS || self.pending_bytes >= BATCH_BYTES {
                self.settle().map_err(Push::Failed)?;
            }
            return Ok(());
        }
        let Some(writer) = self.writer.as_mut() else {
            return Err(Push::Failed("parquet writer missing".into()));
        };
        writer
            .append(
                &record.topic,
                record.partition,
                record.offset,
                record.timestamp,
                record.key.as_ref(),
                value,
                &record.headers,
            )
            .map_err(Push::Failed)
    }

    /// Settles the inferred type and writes the rows that waited for it.
    fn settle(&mut self) -> Result<(), String> {
        let value_type = columnar::settle(&self.inferred);
        self.start(value_type)?;
        let rows = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let Some(writer) = self.writer.as_mut() else {
            return Err("parquet writer missing".into());
        };
        for row in rows {
            writer.append(
                &row.topic,
                row.partition,
                row.offset,
                row.timestamp,
                row.key.as_ref(),
                row.value.as_ref(),
                &row.headers,
            )?;
        }
        Ok(())
    }

    fn start(&mut self, value_type: DataType) -> Result<(), String> {
        let (key_schema, value_schema) = self.schemas.clone().unwrap_or_default();
        self.writer = Some(Writer::new(
            value_type,
            key_schema.as_ref(),
            value_schema.as_ref(),
            self.compression,
        )?);
        Ok(())
    }

    /// Bytes written so far, plus an estimate of what is buffered.
    pub(crate) fn size(&self) -> u64 {
        let buffered = match &self.writer {
            Some(w) => w.arrow.bytes_written() + w.arrow.in_progress_size() + w.batch_bytes,
            None => self.pending_bytes,
        };
        buffered as u64
    }

    /// Finishes the file: its bytes.
    ///
    /// # Errors
    /// Encoding errors.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>, String> {
        if self.writer.is_none() {
            self.settle()?;
        }
        let Some(mut writer) = self.writer else {
            return Err("parquet writer missing".into());
        };
        writer.write_batch()?;
        writer
            .arrow
            .finish()
            .map_err(|e| format!("cannot finish parquet: {e}"))?;
        Ok(std::mem::take(writer.arrow.inner_mut()))
    }
}

impl Writer {
    fn new(
        value_type: DataType,
        key_schema: Option<&DataType>,
        value_schema: Option<&DataType>,
        compression: Compression,
    ) -> Result<Self, String> {
        let value_type = columnar::offset_zones(&value_type);
        let (value_fields, fields_layout) = match &value_type {
            DataType::Struct(fields) => (fields.clone(), true),
            other => (
                Fields::from(vec![Field::new("value", other.clone(), true)]),
                false,
            ),
        };
        let mut metadata = vec![KeyValue::new(
            PARQUET_LAYOUT.to_string(),
            if fields_layout { "fields" } else { "value" }.to_string(),
        )];
        if let Some(key_schema) = key_schema {
            metadata.push(KeyValue::new(
                PARQUET_KEY_SCHEMA.to_string(),
                schema::to_connect_json(key_schema, true).to_string(),
            ));
        }
        if let Some(value_schema) = value_schema {
            metadata.push(KeyValue::new(
                PARQUET_VALUE_SCHEMA.to_string(),
                schema::to_connect_json(value_schema, true).to_string(),
            ));
        }
        let mut all: Vec<Field> = value_fields.iter().map(|f| f.as_ref().clone()).collect();
        all.extend(MetaColumns::fields());
        let schema = Arc::new(Schema::new(all));
        let decoder = arrow_json::ReaderBuilder::new(Arc::new(Schema::new(value_fields)))
            .with_strict_mode(true)
            .with_batch_size(BATCH_ROWS)
            .build_decoder()
            .map_err(|e| format!("cannot build the parquet encoder: {e}"))?;
        let properties = WriterProperties::builder()
            .set_compression(match compression {
                Compression::None => ParquetCompression::UNCOMPRESSED,
                Compression::Snappy => ParquetCompression::SNAPPY,
                Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
            })
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_key_value_metadata(Some(metadata))
            .build();
        let arrow = ArrowWriter::try_new(
            Vec::with_capacity(1 << 20),
            schema.clone(),
            Some(properties),
        )
        .map_err(|e| format!("cannot start parquet: {e}"))?;
        Ok(Self {
            binary: columnar::has_binary(&value_type),
            value_type,
            fields_layout,
            schema,
            decoder,
            meta: MetaColumns::default(),
            rows: 0,
            batch_bytes: 0,
            arrow,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        topic: &str,
        partition: Option<u32>,
        offset: Option<u64>,
        timestamp: Option<i64>,
        key: Option<&Value>,
        value: Option<&Value>,
        headers: &[logbrook_connect::Header],
    ) -> Result<(), String> {
        let empty = Value::Object(serde_json::Map::new());
        let value_for_arrow = match value {
            Some(v) if self.binary => columnar::hex_binaries(&self.value_type, v),
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => std::borrow::Cow::Borrowed(&Value::Null),
        };
        let outcome = if self.fields_layout {
            let row = if value.is_none() {
                &empty
            } else {
                value_for_arrow.as_ref()
            };
            self.decoder.serialize(std::slice::from_ref(row))
        } else {
            self.decoder.serialize(&[Wrapped {
                value: value_for_arrow.as_ref(),
            }])
        };
        outcome.map_err(|e| format!("cannot encode the value for parquet: {e}"))?;
        self.meta.append(
            topic,
            partition,
            offset,
            timestamp,
            key,
            value.is_none(),
            headers,
        );
        self.rows += 1;
        self.batch_bytes += value.map_or(0, approximate_size);
        if self.rows >= BATCH_ROWS || self.batch_bytes >= BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), String> {
        if self.rows == 0 {
            return Ok(());
        }
        let values = self
            .decoder
            .flush()
            .map_err(|e| format!("cannot encode values for parquet: {e}"))?
            .ok_or("the parquet encoder lost its rows")?;
        let mut columns: Vec<ArrayRef> = values.columns().to_vec();
        columns.extend(self.meta.finish());
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| format!("cannot build a parquet batch: {e}"))?;
        self.arrow
            .write(&batch)
            .map_err(|e| format!("cannot write parquet: {e}"))?;
        self.rows = 0;
        self.batch_bytes = 0;
        Ok(())
    }
}

/// `{"value": v}` without cloning `v`.
#[derive(Serialize)]
struct Wrapped<'a> {
    value: &'a Value,
}

/// Builders of the metadata columns.
struct MetaColumns {
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    key: StringBuilder,
    header_lengths: Vec<usize>,
    header_keys: StringBuilder,
    header_values: BinaryBuilder,
    tombstone: BooleanBuilder,
}

impl Default for MetaColumns {
    fn default() -> Self {
        Self {
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            key: StringBuilder::new(),
            header_lengths: Vec::new(),
            header_keys: StringBuilder::new(),
            header_values: BinaryBuilder::new(),
            tombstone: BooleanBuilder::new(),
        }
    }
}

impl MetaColumns {
    fn header_fields() -> Fields {
        Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Binary, true),
        ])
    }

    fn header_item() -> Arc<Field> {
        Arc::new(Field::new(
            "item",
            DataType::Struct(Self::header_fields()),
            false,
        ))
    }

    fn fields() -> Vec<Field> {
        vec![
            Field::new(COLUMN_TOPIC, DataType::Utf8, false),
            Field::new(COLUMN_PARTITION, DataType::Int32, true),
            Field::new(COLUMN_OFFSET, DataType::Int64, true),
            Field::new(
                COLUMN_TIMESTAMP,
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new(COLUMN_KEY, DataType::Utf8, true),
            Field::new(COLUMN_HEADERS, DataType::List(Self::header_item()), false),
            Field::new(COLUMN_TOMBSTONE, DataType::Boolean, false),
        ]
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        topic: &str,
        partition: Option<u32>,
        offset: Option<u64>,
        timestamp: Option<i64>,
        key: Option<&Value>,
        tombstone: bool,
        headers: &[logbrook_connect::Header],
    ) {
        self.topic.append_value(topic);
        self.partition
            .append_option(partition.and_then(|p| i32::try_from(p).ok()));
        self.offset
            .append_option(offset.and_then(|o| i64::try_from(o).ok()));
        self.timestamp.append_option(timestamp);
        self.key.append_option(key.map(Value::to_string));
        self.header_lengths.push(headers.len());
        for header in headers {
            self.header_keys.append_value(&header.key);
            self.header_values.append_option(header.value.as_deref());
        }
        self.tombstone.append_value(tombstone);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        let header_entries = StructArray::new(
            Self::header_fields(),
            vec![
                Arc::new(self.header_keys.finish()) as ArrayRef,
                Arc::new(self.header_values.finish()),
            ],
            None,
        );
        let headers = ListArray::new(
            Self::header_item(),
            OffsetBuffer::from_lengths(std::mem::take(&mut self.header_lengths)),
            Arc::new(header_entries),
            None,
        );
        vec![
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.key.finish()),
            Arc::new(headers),
            Arc::new(self.tombstone.finish()),
        ]
    }
}

/// A cheap estimate of a value's encoded size, for batching.
fn approximate_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(_) => 8,
        Value::String(text) => text.len() + 4,
        Value::Array(items) => 4 + items.iter().map(approximate_size).sum::<usize>(),
        Value::Object(map) => {
            4 + map
                .iter()
                .map(|(k, v)| k.len() + approximate_size(v))
                .sum::<usize>()
        }
    }
}
