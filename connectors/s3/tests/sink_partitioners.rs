//! `s3-sink` partitioners on the real server: where each record's object goes.

mod common;

use common::{TestBucket, offsets_of, open_sink, record};
use logbrook_connect::Record;
use serde_json::json;

#[tokio::test]
async fn the_default_partitioner_writes_a_directory_per_topic_partition() {
    let bucket = TestBucket::new("part-default").await;
    let mut sink = open_sink(bucket.sink_config(json!({"prefix": "a/b/"})), &["x", "y"]).await;
    let batch = vec![record("x", 0, 5), record("x", 1, 7), record("y", 0, 9)];
    sink.put(&batch).await.expect("put");
    sink.close().await.expect("close");
    assert_eq!(
        bucket.keys().await,
        [
            "a/b/x/partition=0/x+0+00000000000000000005.json",
            "a/b/x/partition=1/x+1+00000000000000000007.json",
            "a/b/y/partition=0/y+0+00000000000000000009.json",
        ]
    );
}

#[tokio::test]
async fn the_field_partitioner_writes_a_directory_per_field_value() {
    let bucket = TestBucket::new("part-field").await;
    let config = bucket.sink_config(json!({
        "partitioner": "field", "partition_fields": ["country", "shop.id"],
    }));
    let mut sink = open_sink(config, &["orders"]).await;
    let with = |offset: u64, country: &str, shop: u64| Record {
        value: Some(json!({"country": country, "shop": {"id": shop}})),
        ..record("orders", 0, offset)
    };
    let batch = vec![
        with(0, "fr", 1),
        with(1, "de", 1),
        with(2, "fr", 1),
        with(3, "fr", 2),
        Record {
            value: Some(json!({"country": "fr"})),
            ..record("orders", 0, 4)
        },
    ];
    let rejected = sink.put(&batch).await.expect("put");
    assert_eq!(rejected.len(), 1, "a record without the field is rejected");
    assert!(
        rejected[0].error.to_string().contains("shop.id"),
        "{}",
        rejected[0].error
    );
    sink.close().await.expect("close");
    let objects = bucket.json_objects().await;
    let layout: Vec<(String, Vec<u64>)> = objects
        .iter()
        .map(|(k, lines)| {
            (
                k.clone(),
                lines
                    .iter()
                    .map(|l| l["offset"].as_u64().expect("offset"))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        layout,
        [
            (
                "orders/country=de/shop.id=1/orders+0+00000000000000000001.json".to_string(),
                vec![1]
            ),
            (
                "orders/country=fr/shop.id=1/orders+0+00000000000000000000.json".to_string(),
                vec![0, 2]
            ),
            (
                "orders/country=fr/shop.id=2/orders+0+00000000000000000003.json".to_string(),
                vec![3]
            ),
        ]
    );
}

#[tokio::test]
async fn the_time_partitioner_formats_each_record_timestamp() {
    let bucket = TestBucket::new("part-time").await;
    let config = bucket.sink_config(json!({
        "partitioner": "time", "path_format": "dt=%Y-%m-%d/hour=%H", "format": "parquet",
    }));
    let mut sink = open_sink(config, &["clicks"]).await;
    let at = |offset: u64, timestamp: i64| Record {
        timestamp: Some(timestamp),
        ..record("clicks", 0, offset)
    };
    let noon = 1_714_564_800_000; // 2024-05-01T12:00:00Z
    let batch = vec![
        at(0, noon),
        at(1, noon + 3_599_999),
        at(2, noon + 3_600_000),
        at(3, noon - 1), // late: an earlier hour's directory
    ];
    sink.put(&batch).await.expect("put");
    sink.close().await.expect("close");
    assert_eq!(
        bucket.keys().await,
        [
            "clicks/dt=2024-05-01/hour=11/clicks+0+00000000000000000003.parquet",
            "clicks/dt=2024-05-01/hour=12/clicks+0+00000000000000000000.parquet",
            "clicks/dt=2024-05-01/hour=13/clicks+0+00000000000000000002.parquet",
        ]
    );
    // Every record once, whatever directory.
    let default = TestBucket::new("part-time-json").await;
    let config = default.sink_config(json!({"partitioner": "time"}));
    let mut sink = open_sink(config, &["clicks"]).await;
    sink.put(&batch).await.expect("put");
    sink.close().await.expect("close");
    let objects = default.json_objects().await;
    assert!(
        objects
            .keys()
            .all(|k| k.starts_with("clicks/year=2024/month=05/day=01/hour=1"))
    );
    let mut offsets = offsets_of(&objects);
    offsets.sort_unstable();
    assert_eq!(offsets, [0, 1, 2, 3]);
}
