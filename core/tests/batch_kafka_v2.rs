//! Batches are Kafka's RecordBatch v2 byte for byte: an independent codec (the `kafka-protocol`
//! crate) reads what Logbrook writes, and Logbrook validates and reads what it writes.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use logbrook_core::Header;
use logbrook_core::batch::{BatchBuilder, decode_records, validate};

/// (timestamp, key, value, headers) of the sample records.
type Sample = (
    i64,
    Option<&'static [u8]>,
    Option<&'static [u8]>,
    Vec<Header>,
);

fn samples() -> Vec<Sample> {
    vec![
        (1_700_000_000_000, Some(b"k1"), Some(b"v1"), vec![]),
        (
            1_699_999_999_000, // earlier than the first: a negative delta
            None,
            None,
            vec![Header {
                key: "trace".into(),
                value: Some(Bytes::from_static(b"\x00\xff")),
            }],
        ),
        (
            1_700_000_000_500,
            Some(b""),
            Some(b"value three"),
            vec![
                Header {
                    key: "a".into(),
                    value: None,
                },
                Header {
                    key: "b".into(),
                    value: Some(Bytes::from_static(b"")),
                },
            ],
        ),
    ]
}

#[test]
fn kafkas_codec_reads_what_logbrook_writes() {
    let mut builder = BatchBuilder::with_capacity(256);
    for (timestamp, key, value, headers) in samples() {
        builder.push(timestamp, key, value, &headers);
    }
    let mut batch = builder.finish();
    batch.set_base_offset(42);
    let mut bytes = Bytes::copy_from_slice(batch.as_bytes());
    let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
    assert!(bytes.is_empty(), "one whole batch");
    assert_eq!(set.version, 2);
    assert_eq!(set.records.len(), 3);
    for (i, (record, (timestamp, key, value, headers))) in
        set.records.iter().zip(samples()).enumerate()
    {
        assert_eq!(record.offset, 42 + i as i64);
        assert_eq!(record.timestamp, timestamp);
        assert_eq!(record.timestamp_type, TimestampType::Creation);
        assert_eq!(record.key.as_deref(), key);
        assert_eq!(record.value.as_deref(), value);
        assert_eq!(record.producer_id, -1);
        assert!(!record.transactional && !record.control);
        let theirs: Vec<(String, Option<Bytes>)> = record
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let ours: Vec<(String, Option<Bytes>)> =
            headers.into_iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(theirs, ours);
    }
}

#[test]
fn logbrook_validates_and_reads_what_kafkas_codec_writes() {
    let records: Vec<Record> = samples()
        .into_iter()
        .enumerate()
        .map(|(i, (timestamp, key, value, headers))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 7 + i as i64,
            // Their encoder keeps records in one batch while offset - sequence is constant.
            sequence: i as i32,
            timestamp,
            key: key.map(Bytes::from_static),
            value: value.map(Bytes::from_static),
            headers: headers
                .into_iter()
                .map(|h| (StrBytes::from_string(h.key), h.value))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    let bytes = buf.freeze();
    let header = validate(&bytes).unwrap();
    assert_eq!(header.base_offset, 7);
    assert_eq!(header.record_count, 3);
    assert_eq!(header.total_len(), bytes.len());
    let decoded = decode_records(&bytes, &header).unwrap();
    for (ours, theirs) in decoded.iter().zip(&records) {
        assert_eq!(ours.offset as i64, theirs.offset);
        assert_eq!(ours.timestamp, theirs.timestamp);
        assert_eq!(ours.key, theirs.key);
        assert_eq!(ours.value, theirs.value);
        let headers: Vec<(String, Option<Bytes>)> = ours
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        let expected: Vec<(String, Option<Bytes>)> = theirs
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(headers, expected);
    }
}
