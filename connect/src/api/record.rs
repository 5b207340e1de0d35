//! The records that flow through connectors, transforms and converters.

use arrow_schema::DataType;
use logbrook_core::Header;
use serde_json::Value;

/// A record in Connect's data model: key and value as data (schemaless JSON values, optionally
/// typed by an Arrow schema), headers and a timestamp.
///
/// Sources fill `topic` (the runtime defaults it to the connector's `topic`); the runtime fills
/// `partition` and `offset` for records read by sinks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// The topic it goes to (sources) or came from (sinks).
    pub topic: String,
    /// The partition; `None` for source records lets the key choose.
    pub partition: Option<u32>,
    /// The offset it was read at (sink records only).
    pub offset: Option<u64>,
    /// Milliseconds since the epoch; `None` means now.
    pub timestamp: Option<i64>,
    /// The key.
    pub key: Option<Value>,
    /// The key's type, when known.
    pub key_schema: Option<DataType>,
    /// The value; `None` is a tombstone.
    pub value: Option<Value>,
    /// The value's type, when known.
    pub value_schema: Option<DataType>,
    /// Headers, passed through unchanged.
    pub headers: Vec<Header>,
    /// The key and value exactly as they are in the log, when known. The runtime fills it for
    /// sink records (the bytes the converters read), and a source that restores records
    /// (`s3-source` with `envelope = "record"`) sets it so its bytes are written as they are,
    /// whatever the converters. A transform that changes the key or value clears it.
    pub original: Option<OriginalBytes>,
}

/// A record's key and value bytes as they are in the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginalBytes {
    /// The key; `None` for a null key.
    pub key: Option<bytes::Bytes>,
    /// The value; `None` for a tombstone.
    pub value: Option<bytes::Bytes>,
}

impl Record {
    /// A schemaless record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: Value) -> Self {
        Self {
            topic: topic.into(),
            value: Some(value),
            ..Self::default()
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: Value) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the timestamp.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<bytes::Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }
}

/// A record from a source, with the position in the source it was read at.
///
/// `source_partition` names a stream within the source (a file, a table); `source_offset` is the
/// position after this record in that stream. The runtime stores the last offset of each source
/// partition in the same transaction as the records, so a restarted source resumes exactly there.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// The record.
    pub record: Record,
    /// Which stream of the source it came from (a JSON object, e.g. `{"path": "/var/log/a"}`).
    pub source_partition: Value,
    /// The position to resume from after this record (e.g. `{"position": 1234}`).
    pub source_offset: Value,
    /// A problem found while reading this record (a line that is not JSON): the runtime applies
    /// `errors.tolerance` to it (fail, or dead-letter the raw `record.value` and go on).
    pub error: Option<String>,
}

impl SourceRecord {
    /// A record read at `source_offset` of `source_partition`.
    pub fn new(record: Record, source_partition: Value, source_offset: Value) -> Self {
        Self {
            record,
            source_partition,
            source_offset,
            error: None,
        }
    }
}
