//! Config errors of `s3-sink` and `s3-source` name the key, without any I/O.

use logbrook_connect::Plugin;
use serde_json::{Map, Value, json};

fn plugin(name: &str) -> Plugin {
    logbrook_connector_s3::plugins()
        .into_iter()
        .find(|p| p.name() == name)
        .expect("plugin")
}

fn issue(name: &str, config: Value) -> (String, String) {
    let Value::Object(map) = config else {
        panic!("not an object")
    };
    let issue = plugin(name).validate(&map).expect_err("must be rejected");
    (issue.key, issue.reason)
}

#[test]
fn sink_errors_name_the_key() {
    let base = json!({"bucket": "archive"});
    let with = |extra: Value| {
        let mut config = base.clone();
        config
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().cloned().unwrap_or_default());
        config
    };
    let cases = [
        (json!({"bucket": "Bad_Bucket"}), "bucket"),
        (with(json!({"endpoint": "localhost:9000"})), "endpoint"),
        (with(json!({"access_key_id": "id"})), "secret_access_key"),
        (with(json!({"format": "avro"})), "format"),
        (with(json!({"compression": "zstd"})), "compression"),
        (with(json!({"partitioner": "field"})), "partition_fields"),
        (with(json!({"partition_fields": ["a"]})), "partition_fields"),
        (
            with(json!({"partitioner": "time", "path_format": "%Q"})),
            "path_format",
        ),
        (with(json!({"path_format": "%Y"})), "path_format"),
        (with(json!({"flush_records": 0})), "flush_records"),
        (with(json!({"flush_idle_ms": 0})), "flush_idle_ms"),
        (with(json!({"part_bytes": 1024})), "part_bytes"),
        (with(json!({"flush_size": 10})), "flush_size"),
    ];
    for (config, key) in cases {
        assert_eq!(issue("s3-sink", config.clone()).0, key, "{config}");
    }
    assert!(
        plugin("s3-sink")
            .validate(&Map::from_iter([("bucket".to_string(), json!("archive"))]))
            .is_ok()
    );
}

#[test]
fn source_errors_name_the_key() {
    let cases = [
        (
            json!({"bucket": "archive", "format": "csv", "envelope": "record"}),
            "envelope",
        ),
        (
            json!({"bucket": "archive", "poll_interval_ms": 0}),
            "poll_interval_ms",
        ),
        (json!({"bucket": "archive", "format": "xml"}), "format"),
        (json!({"prefix": "x"}), "bucket"),
    ];
    for (config, key) in cases {
        let (at, reason) = issue("s3-source", config.clone());
        // A missing key is reported on the document, naming the key in the reason.
        assert!(
            at == key || reason.contains(key),
            "{config}: {at}: {reason}"
        );
    }
}

#[test]
fn restore_sources_name_their_own_topics() {
    let source = plugin("s3-source");
    let restore = json!({"bucket": "archive", "envelope": "record"});
    let values = json!({"bucket": "archive"});
    assert!(
        source
            .names_own_topics(restore.as_object().expect("object"))
            .expect("valid")
    );
    assert!(
        !source
            .names_own_topics(values.as_object().expect("object"))
            .expect("valid")
    );
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let config: logbrook_connector_s3::sink::S3SinkConfig = serde_json::from_value(
        json!({"bucket": "archive", "access_key_id": "AKID", "secret_access_key": "s3cr3t"}),
    )
    .expect("config");
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    let config: logbrook_connector_s3::source::S3SourceConfig = serde_json::from_value(
        json!({"bucket": "archive", "access_key_id": "AKID", "secret_access_key": "s3cr3t"}),
    )
    .expect("config");
    assert!(!format!("{config:?}").contains("s3cr3t"));
}
