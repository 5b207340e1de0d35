//! The record batch: the unit that is written, CRC-checked and read.
//!
//! The layout is Kafka's RecordBatch v2 (magic 2, big-endian, CRC32C), byte for byte, so a
//! batch a Kafka client produced can be stored as it came and fetched without re-encoding. It is
//! documented in `docs/log-format.md`; this module is its only implementation. A batch's CRC
//! covers everything after the CRC field, so the base offset and the partition leader epoch
//! (assigned at append) can be patched in without recomputing it.

mod compression;
mod varint;

use bytes::Bytes;

use crate::record::{ConsumerRecord, Header, TimestampType};
use varint::{get_varint, put_varint, varint_len};

/// Format version written in every batch (the `magic` byte): Kafka's RecordBatch v2.
pub const FORMAT_VERSION: u8 = 2;
/// Bytes before `batch_length` counts: base offset (8) + batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header, records start here.
pub const HEADER_LEN: usize = 61;
/// Largest batch accepted (sanity bound when reading lengths from disk).
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

/// Attribute bit: timestamps are log-append time.
const ATTR_LOG_APPEND_TIME: u16 = 1 << 3;
/// Attribute bit: the batch belongs to a transaction (Kafka's meaning).
pub const ATTR_TRANSACTIONAL: u16 = 1 << 4;
/// Attribute bit: the batch holds one control record, a transaction marker.
pub const ATTR_CONTROL: u16 = 1 << 5;

/// The fixed fields of a batch, parsed without touching the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Bytes after the length field; the whole batch is `LOG_OVERHEAD + batch_length`.
    pub batch_length: u32,
    /// Format version.
    pub magic: u8,
    /// Stored CRC32C.
    pub crc: u32,
    /// Attribute bits.
    pub attributes: u16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: u32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// The idempotent or transactional producer that wrote it, -1 for none.
    pub producer_id: i64,
    /// The producer's epoch, -1 for none.
    pub producer_epoch: i16,
    /// Sequence number of the first record within the producer's sequence for this partition,
    /// -1 when unused.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: u32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf`; `None` if `buf` is shorter than a header.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(Self {
            base_offset: u64_at(buf, BASE_OFFSET),
            batch_length: u32_at(buf, BATCH_LENGTH),
            magic: buf[MAGIC],
            crc: u32_at(buf, CRC),
            attributes: u16::from_be_bytes([buf[ATTRIBUTES], buf[ATTRIBUTES + 1]]),
            last_offset_delta: u32_at(buf, LAST_OFFSET_DELTA),
            base_timestamp: u64_at(buf, BASE_TIMESTAMP) as i64,
            max_timestamp: u64_at(buf, MAX_TIMESTAMP) as i64,
            producer_id: u64_at(buf, PRODUCER_ID) as i64,
            producer_epoch: i16::from_be_bytes([buf[PRODUCER_EPOCH], buf[PRODUCER_EPOCH + 1]]),
            base_sequence: u32_at(buf, BASE_SEQUENCE) as i32,
            record_count: u32_at(buf, RECORD_COUNT),
        })
    }

    /// Total bytes of the batch on disk.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether the batch is a transaction marker, never handed to applications.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// The sequence number of the last record.
    pub fn last_sequence(&self) -> i32 {
        // Sequences wrap at i32::MAX, as Kafka's.
        ((i64::from(self.base_sequence) + i64::from(self.last_offset_delta))
            % (i64::from(i32::MAX) + 1)) as i32
    }

    /// How the timestamps of this batch were assigned.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Checks what can be checked without the body: version, length bounds, record count.
    pub fn check_shape(&self) -> Result<(), String> {
        if self.magic != FORMAT_VERSION {
            return Err(format!(
                "unknown batch format (magic {}; Kafka's RecordBatch v2 is {FORMAT_VERSION})",
                self.magic
            ));
        }
        let len = self.batch_length as usize;
        if !(HEADER_LEN - LOG_OVERHEAD..=MAX_BATCH_BYTES).contains(&len) {
            return Err(format!("batch length {len} out of bounds"));
        }
        if self
            .base_offset
            .checked_add(u64::from(self.last_offset_delta) + 1)
            .is_none()
        {
            return Err(format!("base offset {} overflows", self.base_offset));
        }
        // Compaction leaves gaps, so a batch may hold fewer records than its offset span.
        if self.record_count == 0 || self.record_count - 1 > self.last_offset_delta {
            return Err(format!(
                "record count {} does not fit last offset delta {}",
                self.record_count, self.last_offset_delta
            ));
        }
        Ok(())
    }
}

/// Why a batch failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length: a torn write at the tail.
    Incomplete,
    /// A whole batch whose contents are wrong.
    Corrupt(String),
}

/// Validates the batch at the start of `buf` (shape and CRC) and returns its header.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = validate_framing(buf)?;
    let actual = crc32c::crc32c(&buf[ATTRIBUTES..header.total_len()]);
    if actual != header.crc {
        return Err(BatchError::Corrupt(format!(
            "crc mismatch: stored {:#010x}, computed {actual:#010x}",
            header.crc
        )));
    }
    Ok(header)
}

/// Checks what [`validate`] checks short of the CRC: the batch at the start of `buf` has a
/// sound header and `buf` holds all of it. Enough to walk batches by their headers.
pub fn validate_framing(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf).ok_or(BatchError::Incomplete)?;
    header.check_shape().map_err(BatchError::Corrupt)?;
    if buf.len() < header.total_len() {
        return Err(BatchError::Incomplete);
    }
    Ok(header)
}

/// Builds one batch from records, encoding them as they are pushed.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: u32,
    last_offset_delta: u32,
}

impl BatchBuilder {
    /// An empty batch with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(HEADER_LEN));
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            record_count: 0,
            last_offset_delta: 0,
        }
    }

    /// Bytes encoded so far, header included.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Encodes one record; returns its offset delta within the batch.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> u32 {
        let offset_delta = if self.record_count == 0 {
            0
        } else {
            self.last_offset_delta + 1
        };
        self.push_at(offset_delta, timestamp, key, value, headers);
        offset_delta
    }

    /// Encodes one record at an explicit offset delta, which must grow from record to record
    /// (the cleaner uses it to keep the offsets of the records it retains).
    pub(crate) fn push_at(
        &mut self,
        offset_delta: u32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        if self.record_count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let timestamp_delta = timestamp.wrapping_sub(self.base_timestamp);
        let opt_len = |b: Option<&[u8]>| b.map_or(-1, |b| b.len() as i64);

        let mut body = 1 + varint_len(timestamp_delta) + varint_len(i64::from(offset_delta));
        body += varint_len(opt_len(key)) + key.map_or(0, <[u8]>::len);
        body += varint_len(opt_len(value)) + value.map_or(0, <[u8]>::len);
        body += varint_len(headers.len() as i64);
        for h in headers {
            body += varint_len(h.key.len() as i64) + h.key.len();
            let v = h.value.as_deref();
            body += varint_len(opt_len(v)) + v.map_or(0, <[u8]>::len);
        }

        let buf = &mut self.buf;
        buf.reserve(body + varint_len(body as i64));
        put_varint(buf, body as i64);
        buf.push(0); // record attributes, unused
        put_varint(buf, timestamp_delta);
        put_varint(buf, i64::from(offset_delta));
        put_bytes(buf, key);
        put_bytes(buf, value);
        put_varint(buf, headers.len() as i64);
        for h in headers {
            put_bytes(buf, Some(h.key.as_bytes()));
            put_bytes(buf, h.value.as_deref());
        }
        self.record_count += 1;
        self.last_offset_delta = offset_delta;
    }

    /// Writes the header and CRC. The base offset is 0 until the log assigns one.
    ///
    /// # Panics
    /// If no record was pushed (an empty batch is a caller bug).
    pub fn finish(mut self) -> EncodedBatch {
        assert!(self.record_count > 0, "empty batch");
        let buf = &mut self.buf;
        let batch_length = (buf.len() - LOG_OVERHEAD) as u32;
        buf[BATCH_LENGTH..PARTITION_LEADER_EPOCH].copy_from_slice(&batch_length.to_be_bytes());
        // One node: the leader epoch never changes.
        buf[PARTITION_LEADER_EPOCH..MAGIC].copy_from_slice(&0i32.to_be_bytes());
        buf[MAGIC] = FORMAT_VERSION;
        buf[ATTRIBUTES..LAST_OFFSET_DELTA].copy_from_slice(&0u16.to_be_bytes());
        buf[LAST_OFFSET_DELTA..BASE_TIMESTAMP]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        buf[BASE_TIMESTAMP..MAX_TIMESTAMP].copy_from_slice(&self.base_timestamp.to_be_bytes());
        buf[MAX_TIMESTAMP..PRODUCER_ID].copy_from_slice(&self.max_timestamp.to_be_bytes());
        buf[PRODUCER_ID..PRODUCER_EPOCH].copy_from_slice(&(-1i64).to_be_bytes());
        buf[PRODUCER_EPOCH..BASE_SEQUENCE].copy_from_slice(&(-1i16).to_be_bytes());
        buf[BASE_SEQUENCE..RECORD_COUNT].copy_from_slice(&(-1i32).to_be_bytes());
        buf[RECORD_COUNT..HEADER_LEN].copy_from_slice(&self.record_count.to_be_bytes());
        let mut batch = EncodedBatch { buf: self.buf };
        batch.update_crc();
        batch
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
        None => put_varint(buf, -1),
    }
}

/// A finished batch, ready to append.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    buf: Vec<u8>,
}

impl EncodedBatch {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The parsed header.
    pub fn header(&self) -> BatchHeader {
        // A finished batch always holds a full header.
        BatchHeader::parse(&self.buf).unwrap_or_else(|| unreachable!("encoded batch has a header"))
    }

    /// Number of records.
    pub fn record_count(&self) -> u32 {
        u32_at(&self.buf, RECORD_COUNT)
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always false: a batch holds at least one record.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Assigns the base offset, and the partition leader epoch as Kafka's leader does at append
    /// (0: one node, the epoch never changes); both are outside the CRC, so no recomputation.
    pub fn set_base_offset(&mut self, base_offset: u64) {
        self.buf[BASE_OFFSET..BATCH_LENGTH].copy_from_slice(&base_offset.to_be_bytes());
        self.buf[PARTITION_LEADER_EPOCH..MAGIC].copy_from_slice(&0i32.to_be_bytes());
    }

    /// Rewrites timestamps to `now` for log-append-time topics, and the CRC with them.
    pub(crate) fn set_log_append_time(&mut self, now: i64) {
        let attributes = u16::from_be_bytes([self.buf[ATTRIBUTES], self.buf[ATTRIBUTES + 1]])
            | ATTR_LOG_APPEND_TIME;
        self.buf[ATTRIBUTES..LAST_OFFSET_DELTA].copy_from_slice(&attributes.to_be_bytes());
        self.buf[BASE_TIMESTAMP..MAX_TIMESTAMP].copy_from_slice(&now.to_be_bytes());
        self.buf[MAX_TIMESTAMP..PRODUCER_ID].copy_from_slice(&now.to_be_bytes());
        self.update_crc();
    }

    /// Stamps the producer id, epoch and base sequence, whether the batch is transactional,
    /// and the CRC with them.
    pub(crate) fn set_producer(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        transactional: bool,
    ) {
        self.buf[PRODUCER_ID..PRODUCER_EPOCH].copy_from_slice(&producer_id.to_be_bytes());
        self.buf[PRODUCER_EPOCH..BASE_SEQUENCE].copy_from_slice(&epoch.to_be_bytes());
        self.buf[BASE_SEQUENCE..RECORD_COUNT].copy_from_slice(&base_sequence.to_be_bytes());
        let mut attributes = u16::from_be_bytes([self.buf[ATTRIBUTES], self.buf[ATTRIBUTES + 1]]);
        if transactional {
            attributes |= ATTR_TRANSACTIONAL;
        } else {
            attributes &= !ATTR_TRANSACTIONAL;
        }
        self.buf[ATTRIBUTES..LAST_OFFSET_DELTA].copy_from_slice(&attributes.to_be_bytes());
        self.update_crc();
    }

    /// A transaction marker of `producer_id` at `epoch`: a control batch with one record
    /// whose key is (version 0, type: 0 abort, 1 commit) and whose value is (version 0,
    /// coordinator epoch), as Kafka writes them.
    pub fn marker(producer_id: i64, epoch: i16, commit: bool, timestamp: i64) -> Self {
        let key = [0, 0, 0, u8::from(commit)];
        let value = [0, 0, 0, 0, 0, 0];
        let mut builder = BatchBuilder::with_capacity(HEADER_LEN + 32);
        builder.push(timestamp, Some(&key), Some(&value), &[]);
        let mut batch = builder.finish();
        let attributes = ATTR_TRANSACTIONAL | ATTR_CONTROL;
        batch.buf[ATTRIBUTES..LAST_OFFSET_DELTA].copy_from_slice(&attributes.to_be_bytes());
        batch.set_producer(producer_id, epoch, -1, true);
        batch
    }

    fn update_crc(&mut self) {
        let crc = crc32c::crc32c(&self.buf[ATTRIBUTES..]);
        self.buf[CRC..ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
    }

    /// Wraps bytes already validated by [`validate`].
    pub(crate) fn from_validated(buf: Vec<u8>) -> Self {
        Self { buf }
    }

    /// Takes the batches a Kafka client produced (a record set: one or more whole batches),
    /// checked as stored batches are: shape, CRC, and records that decode. The log assigns
    /// their offsets at append.
    ///
    /// # Errors
    /// What is wrong, naming the batch's position in the set: a torn or corrupt batch, or one
    /// this log does not store yet (transactional, control, or from an idempotent producer: a
    /// retry could not be told from a new batch). Compressed batches are stored as they came.
    pub fn from_produced(set: &Bytes) -> Result<Vec<Self>, Refused> {
        let mut batches = Vec::new();
        let mut pos = 0;
        while pos < set.len() {
            let at = |why: String| Refused::Corrupt(format!("batch at byte {pos}: {why}"));
            let unsupported =
                |why: String| Refused::Unsupported(format!("batch at byte {pos}: {why}"));
            if let Some(header) = BatchHeader::parse(&set[pos..])
                && header.batch_length as usize > MAX_BATCH_BYTES
            {
                return Err(Refused::TooLarge(format!(
                    "batch at byte {pos}: {} bytes, more than the {} MiB a batch may hold",
                    header.batch_length,
                    MAX_BATCH_BYTES >> 20
                )));
            }
            let header = validate(&set[pos..]).map_err(|e| match e {
                BatchError::Incomplete => at("cut short".into()),
                BatchError::Corrupt(why) => at(why),
            })?;
            if header.is_control() {
                return Err(unsupported(format!(
                    "attributes {:#06x}: control batches are written by the broker, not produced",
                    header.attributes
                )));
            }
            if header.is_transactional() && header.producer_id < 0 {
                return Err(at("a transactional batch without a producer id".into()));
            }
            let end = pos + header.total_len();
            let batch = set.slice(pos..end);
            for_each_record(&batch, &header, |_| {}).map_err(at)?;
            batches.push(Self {
                buf: batch.to_vec(),
            });
            pos = end;
        }
        if batches.is_empty() {
            return Err(Refused::Corrupt("no batch in the record set".into()));
        }
        Ok(batches)
    }
}

/// Why a produced record set was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Torn, failing its CRC, or with records that do not decode.
    Corrupt(String),
    /// Valid, but of a kind the log does not store yet.
    Unsupported(String),
    /// Larger than a batch may be.
    TooLarge(String),
}

/// For a control batch (a transaction marker): whether it commits (`Some(true)`) or aborts
/// (`Some(false)`); `None` for any other batch or a marker of an unknown type.
pub fn marker_commits(header: &BatchHeader, batch: &[u8]) -> Option<bool> {
    if !header.is_control() {
        return None;
    }
    let bytes = Bytes::copy_from_slice(batch.get(..header.total_len())?);
    let records = decode_records(&bytes, header).ok()?;
    match records.first()?.key.as_deref()? {
        [_, _, 0, 0] => Some(false),
        [_, _, 0, 1] => Some(true),
        _ => None,
    }
}

/// A record decoded from a batch, borrowing nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Absolute offset.
    pub offset: u64,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
}

/// Decodes every record of a validated batch held in `batch` (which starts at the batch).
/// Keys and values are zero-copy slices of `batch`.
pub fn decode_records(batch: &Bytes, header: &BatchHeader) -> Result<Vec<DecodedRecord>, String> {
    // A record takes at least 7 bytes, which bounds what a lying count can make us allocate.
    let mut out = Vec::with_capacity((header.record_count as usize).min(batch.len() / 7));
    for_each_record(batch, header, |r| out.push(r))?;
    Ok(out)
}

/// Calls `f` for each record of a validated batch, in offset order.
pub fn for_each_record(
    batch: &Bytes,
    header: &BatchHeader,
    mut f: impl FnMut(DecodedRecord),
) -> Result<(), String> {
    // A compressed batch's records are one block: read them from its decompressed bytes.
    let codec = compression::Codec::of(header.attributes)?;
    let (owner, mut pos, end) = match codec {
        compression::Codec::None => (batch.clone(), HEADER_LEN, header.total_len()),
        codec => {
            let records = codec.decompress(&batch[HEADER_LEN..header.total_len()])?;
            let len = records.len();
            (Bytes::from(records), 0, len)
        }
    };
    let batch = &owner;
    let buf = &batch[..end];
    let log_append = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut previous_delta: i64 = -1;
    for i in 0..header.record_count {
        let bad = |what: &str| format!("record {i}: {what}");
        let len = get_varint(buf, &mut pos).ok_or_else(|| bad("length"))?;
        let record_end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&e| e <= end)
            .ok_or_else(|| bad("length past batch end"))?;
        pos += 1; // attributes
        let timestamp_delta = get_varint(buf, &mut pos).ok_or_else(|| bad("timestamp"))?;
        let offset_delta = get_varint(buf, &mut pos).ok_or_else(|| bad("offset delta"))?;
        let key = get_bytes(batch, buf, &mut pos, record_end).ok_or_else(|| bad("key"))?;
        let value = get_bytes(batch, buf, &mut pos, record_end).ok_or_else(|| bad("value"))?;
        let header_count = get_varint(buf, &mut pos).ok_or_else(|| bad("header count"))?;
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let key = get_bytes(batch, buf, &mut pos, record_end)
                .flatten()
                .ok_or_else(|| bad("header key"))?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| bad("header key utf-8"))?;
            let value =
                get_bytes(batch, buf, &mut pos, record_end).ok_or_else(|| bad("header value"))?;
            headers.push(Header { key, value });
        }
        if pos != record_end {
            return Err(bad("length disagrees with contents"));
        }
        if offset_delta <= previous_delta || offset_delta > i64::from(header.last_offset_delta) {
            return Err(bad("offset delta out of order or past the batch"));
        }
        previous_delta = offset_delta;
        let timestamp = if log_append {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        f(DecodedRecord {
            offset: header.base_offset + offset_delta as u64,
            timestamp,
            key,
            value,
            headers,
        });
    }
    if pos != end {
        return Err(format!(
            "{} trailing bytes after the last record",
            end - pos
        ));
    }
    Ok(())
}

fn get_bytes(owner: &Bytes, buf: &[u8], pos: &mut usize, limit: usize) -> Option<Option<Bytes>> {
    let len = get_varint(buf, pos)?;
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let end = pos.checked_add(len).filter(|&e| e <= limit)?;
    let bytes = owner.slice(*pos..end);
    *pos = end;
    Some(Some(bytes))
}

impl DecodedRecord {
    /// Attaches topic and partition for a consumer.
    pub fn into_consumer_record(
        self,
        topic: &std::sync::Arc<str>,
        partition: u32,
        timestamp_type: TimestampType,
    ) -> ConsumerRecord {
        ConsumerRecord {
            topic: topic.clone(),
            partition,
            offset: self.offset,
            timestamp: self.timestamp,
            timestamp_type,
            key: self.key,
            value: self.value,
            headers: self.headers,
        }
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EncodedBatch {
        let mut b = BatchBuilder::with_capacity(256);
        b.push(1_000, Some(b"k1"), Some(b"v1"), &[]);
        b.push(
            999,
            None,
            None,
            &[Header {
                key: "h".into(),
                value: Some(Bytes::from_static(b"x")),
            }],
        );
        b.push(
            1_005,
            Some(b""),
            Some(b"value three"),
            &[Header {
                key: "n".into(),
                value: None,
            }],
        );
        b.finish()
    }

    #[test]
    fn batch_round_trips_records_and_header() {
        let mut batch = sample();
        batch.set_base_offset(42);
        let header = validate(batch.as_bytes()).expect("valid");
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset(), 44);
        assert_eq!(header.max_timestamp, 1_005);
        let bytes = Bytes::from(batch.as_bytes().to_vec());
        let records = decode_records(&bytes, &header).expect("decodes");
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[1].offset, 43);
        assert_eq!(records[1].timestamp, 999);
        assert_eq!(records[1].value, None);
        assert_eq!(records[1].headers[0].value.as_deref(), Some(&b"x"[..]));
        assert_eq!(records[2].key.as_deref(), Some(&b""[..]));
        assert_eq!(records[2].headers[0].value, None);
    }

    #[test]
    fn every_flipped_byte_after_the_length_is_detected() {
        let batch = sample();
        for i in MAGIC..batch.len() {
            let mut bytes = batch.as_bytes().to_vec();
            bytes[i] ^= 0x40;
            assert!(validate(&bytes).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn truncated_batch_is_incomplete() {
        let batch = sample();
        for cut in [0, 10, HEADER_LEN, batch.len() - 1] {
            assert_eq!(
                validate(&batch.as_bytes()[..cut]),
                Err(BatchError::Incomplete),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn produced_record_sets_are_split_checked_and_refused_with_the_reason() {
        let one = sample();
        let mut two = one.as_bytes().to_vec();
        two.extend_from_slice(one.as_bytes());
        let batches = EncodedBatch::from_produced(&Bytes::from(two.clone())).unwrap();
        assert_eq!(batches.len(), 2);

        let mut too_large = two.clone();
        too_large[BATCH_LENGTH..PARTITION_LEADER_EPOCH]
            .copy_from_slice(&(MAX_BATCH_BYTES as u32 + 1).to_be_bytes());
        let refused = EncodedBatch::from_produced(&Bytes::from(too_large));
        assert!(matches!(refused, Err(Refused::TooLarge(_))), "{refused:?}");

        let mut torn = two.clone();
        torn.truncate(two.len() - 3);
        let refused = EncodedBatch::from_produced(&Bytes::from(torn));
        assert!(
            matches!(&refused, Err(Refused::Corrupt(why)) if why.contains(&format!("byte {}", one.len()))),
            "{refused:?}"
        );

        let mut idempotent = sample();
        idempotent.set_producer(7, 3, 0, true);
        let taken = EncodedBatch::from_produced(&Bytes::copy_from_slice(idempotent.as_bytes()))
            .expect("a transactional batch is stored");
        let header = taken[0].header();
        assert_eq!((header.producer_id, header.producer_epoch), (7, 3));
        assert!(header.is_transactional() && !header.is_control());
        let marker = EncodedBatch::marker(7, 3, true, 1);
        assert_eq!(
            marker_commits(&marker.header(), marker.as_bytes()),
            Some(true)
        );
        let refused = EncodedBatch::from_produced(&Bytes::copy_from_slice(marker.as_bytes()));
        assert!(
            matches!(refused, Err(Refused::Unsupported(_))),
            "{refused:?}"
        );
        assert!(matches!(
            EncodedBatch::from_produced(&Bytes::new()),
            Err(Refused::Corrupt(_))
        ));
    }

    #[test]
    fn log_append_time_overrides_record_timestamps() {
        let mut batch = sample();
        batch.set_log_append_time(7_777);
        let header = validate(batch.as_bytes()).expect("valid");
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        let bytes = Bytes::from(batch.as_bytes().to_vec());
        let records = decode_records(&bytes, &header).expect("decodes");
        assert!(records.iter().all(|r| r.timestamp == 7_777));
    }
}
