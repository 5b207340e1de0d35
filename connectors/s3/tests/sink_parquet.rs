//! `s3-sink` with the Parquet format, read back with the parquet crate.

mod common;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, Fields, TimeUnit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use common::{TestBucket, open_sink, record};
use logbrook_connect::Record;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use serde_json::{Value, json};

/// The batches of a Parquet object, its column compression and its key-value metadata.
async fn read(
    bucket: &TestBucket,
    key: &str,
) -> (Vec<RecordBatch>, Compression, Vec<(String, String)>) {
    let bytes = Bytes::from(bucket.get(key).await);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet file");
    let metadata = builder.metadata().clone();
    let compression = metadata.row_group(0).column(0).compression();
    let kv = metadata
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let batches = builder
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches");
    (batches, compression, kv)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a Arc<dyn Array> {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", batch.schema()))
}

#[tokio::test]
async fn schemaless_records_become_inferred_columns_next_to_their_metadata() {
    let bucket = TestBucket::new("pq-infer").await;
    let config = bucket.sink_config(json!({"format": "parquet", "compression": "zstd"}));
    let mut sink = open_sink(config, &["orders"]).await;
    let values = [
        json!({"id": 1, "price": 10, "tags": ["a"], "customer": {"name": "x"}}),
        json!({"id": 2, "price": 10.5, "note": "late field"}),
        json!({"id": 3, "price": null, "tags": [], "customer": {"name": "y", "vip": true}}),
    ];
    let mut batch: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            value: Some(v.clone()),
            ..record("orders", 2, 10 + i as u64)
        })
        .collect();
    batch.push(Record {
        value: None,
        ..record("orders", 2, 13)
    });
    sink.put(&batch).await.expect("put");
    sink.close().await.expect("close");

    let keys = bucket.keys().await;
    assert_eq!(
        keys,
        ["orders/partition=2/orders+2+00000000000000000010.parquet"]
    );
    let (batches, compression, kv) = read(&bucket, &keys[0]).await;
    assert!(
        matches!(compression, Compression::ZSTD(_)),
        "{compression:?}"
    );
    assert!(
        kv.contains(&("logbrook.layout".into(), "fields".into())),
        "{kv:?}"
    );
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 4);
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "customer",
            "id",
            "note",
            "price",
            "tags",
            "_topic",
            "_partition",
            "_offset",
            "_timestamp",
            "_key",
            "_headers",
            "_tombstone"
        ]
    );
    let price = column(batch, "price");
    assert_eq!(
        price.data_type(),
        &DataType::Float64,
        "integers and floats merge to floats"
    );
    let prices = price.as_primitive::<arrow_array::types::Float64Type>();
    assert_eq!(
        (prices.value(0), prices.value(1), prices.is_null(2)),
        (10.0, 10.5, true)
    );
    let customer = column(batch, "customer").as_struct();
    let vip = customer.column_by_name("vip").expect("vip").as_boolean();
    assert!(vip.is_null(0) && vip.value(2));
    assert_eq!(
        column(batch, "note").as_string::<i32>().value(1),
        "late field"
    );
    let offsets = column(batch, "_offset").as_primitive::<Int64Type>();
    assert_eq!(offsets.values().to_vec(), [10, 11, 12, 13]);
    let partitions = column(batch, "_partition").as_primitive::<Int32Type>();
    assert!(partitions.values().iter().all(|p| *p == 2));
    let timestamps = column(batch, "_timestamp").as_primitive::<TimestampMillisecondType>();
    assert_eq!(
        timestamps.value(0),
        record("orders", 2, 10).timestamp.expect("timestamp")
    );
    assert_eq!(
        column(batch, "_key").as_string::<i32>().value(1),
        "\"k-11\""
    );
    let tombstones = column(batch, "_tombstone").as_boolean();
    assert_eq!(
        (0..4).map(|i| tombstones.value(i)).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    let headers = column(batch, "_headers").as_list::<i32>();
    let first = headers.value(0);
    let entries = first.as_struct();
    assert_eq!(entries.column(0).as_string::<i32>().value(0), "trace");
    assert_eq!(entries.column(1).as_binary::<i32>().value(0), [0, 255, 10]);
    assert!(
        entries.column(1).is_null(1),
        "a header without a value stays null"
    );
}

#[tokio::test]
async fn typed_records_keep_their_arrow_types() {
    let bucket = TestBucket::new("pq-typed").await;
    let config = bucket.sink_config(json!({"format": "parquet"}));
    let mut sink = open_sink(config, &["t"]).await;
    let schema = DataType::Struct(Fields::from(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("amount", DataType::Decimal128(10, 2), true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("blob", DataType::Binary, true),
    ]));
    let typed = |offset: u64, value: Value| Record {
        value: Some(value),
        value_schema: Some(schema.clone()),
        ..record("t", 0, offset)
    };
    let batch = vec![
        typed(
            0,
            json!({"id": 1, "amount": "12.34", "at": "2024-05-01T12:00:00.123456Z",
                        "blob": BASE64.encode([1u8, 2, 3])}),
        ),
        typed(
            1,
            json!({"id": 2, "amount": null, "at": 1_714_564_800_000_000i64, "blob": null}),
        ),
    ];
    sink.put(&batch).await.expect("put");
    sink.close().await.expect("close");
    let keys = bucket.keys().await;
    let (batches, compression, kv) = read(&bucket, &keys[0]).await;
    assert_eq!(compression, Compression::SNAPPY, "snappy by default");
    assert!(
        kv.iter().any(|(k, _)| k == "logbrook.value_schema"),
        "{kv:?}"
    );
    let batch = &batches[0];
    assert_eq!(column(batch, "id").data_type(), &DataType::Int32);
    assert_eq!(
        column(batch, "amount").data_type(),
        &DataType::Decimal128(10, 2)
    );
    assert_eq!(
        column(batch, "amount")
            .as_primitive::<arrow_array::types::Decimal128Type>()
            .value_as_string(0),
        "12.34"
    );
    let at = column(batch, "at").as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    assert_eq!(at.value(0), 1_714_564_800_123_456);
    assert_eq!(at.value(1), 1_714_564_800_000_000);
    assert_eq!(column(batch, "blob").as_binary::<i32>().value(0), [1, 2, 3]);
}

#[tokio::test]
async fn a_value_of_another_type_starts_a_new_object() {
    let bucket = TestBucket::new("pq-schema").await;
    let config = bucket.sink_config(json!({"format": "parquet"}));
    let mut sink = open_sink(config, &["t"]).await;
    let with = |offset: u64, value: Value| Record {
        value: Some(value),
        ..record("t", 0, offset)
    };
    let batch = vec![
        with(0, json!({"a": 1})),
        with(1, json!({"a": 2})),
        with(2, json!({"a": "text"})),
        with(3, json!("a bare string")),
    ];
    let rejected = sink.put(&batch).await.expect("put");
    assert!(rejected.is_empty());
    // A field named like a metadata column cannot be written: rejected, not lost silently.
    let rejected = sink
        .put(&[with(4, json!({"_offset": 1}))])
        .await
        .expect("put");
    assert_eq!(rejected.len(), 1);
    sink.close().await.expect("close");
    let keys = bucket.keys().await;
    assert_eq!(
        keys,
        [
            "t/partition=0/t+0+00000000000000000000.parquet",
            "t/partition=0/t+0+00000000000000000002.parquet",
            "t/partition=0/t+0+00000000000000000003.parquet",
        ]
    );
    let (batches, _, kv) = read(&bucket, &keys[2]).await;
    assert!(
        kv.contains(&("logbrook.layout".into(), "value".into())),
        "{kv:?}"
    );
    assert_eq!(
        column(&batches[0], "value").as_string::<i32>().value(0),
        "a bare string"
    );
}
