//! Config errors of both connectors name the key that is wrong.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use logbrook_connect::{ConfigIssue, Plugin, SinkConnector, SourceConnector};
use logbrook_connector_file::{FileSinkConfig, FileSourceConfig, plugins};
use serde_json::{Value, json};

fn plugin(name: &str) -> Plugin {
    plugins().into_iter().find(|p| p.name() == name).unwrap()
}

fn issue(plugin_name: &str, config: Value) -> ConfigIssue {
    let Value::Object(own) = config else {
        panic!("not an object")
    };
    plugin(plugin_name).validate(&own).unwrap_err()
}

#[test]
fn the_plugins_are_file_source_and_file_sink() {
    let names: Vec<_> = plugins()
        .iter()
        .map(|p| (p.name(), p.kind().to_string()))
        .collect();
    assert_eq!(
        names,
        [
            ("file-source", "source".to_string()),
            ("file-sink", "sink".to_string())
        ]
    );
}

#[test]
fn an_unknown_key_is_a_parse_error_naming_it() {
    let error = serde_json::from_value::<FileSourceConfig>(json!({"path": "/a", "paht": "/b"}))
        .unwrap_err();
    assert!(error.to_string().contains("paht"), "{error}");
    assert_eq!(
        issue("file-source", json!({"path": "/a", "paht": "/b"})).key,
        "paht"
    );
    assert_eq!(
        issue("file-sink", json!({"path": "/a", "roll_size": 1})).key,
        "roll_size"
    );
}

#[test]
fn defaults_fill_the_optional_source_keys() {
    let config: FileSourceConfig = serde_json::from_value(json!({"path": "/a/*.log"})).unwrap();
    config.validate().unwrap();
    assert_eq!(
        serde_json::to_value(&config).unwrap(),
        json!({
            "path": "/a/*.log",
            "format": "lines",
            "start": "beginning",
            "follow": true,
            "poll_interval_ms": 200,
            "batch_max_records": 10000
        })
    );
}

#[test]
fn a_bad_choice_names_its_key() {
    let issue = issue("file-source", json!({"path": "/a", "format": "xml"}));
    assert_eq!(issue.key, "format");
    assert!(issue.reason.contains("xml"), "{}", issue.reason);
}

#[test]
fn an_empty_or_malformed_source_path_is_rejected() {
    assert_eq!(issue("file-source", json!({"path": " "})).key, "path");
    let issue = issue("file-source", json!({"path": "/logs/[a.log"}));
    assert_eq!(issue.key, "path");
    assert!(issue.reason.contains("glob"), "{}", issue.reason);
}

#[test]
fn zero_intervals_and_batch_sizes_are_rejected() {
    assert_eq!(
        issue("file-source", json!({"path": "/a", "poll_interval_ms": 0})).key,
        "poll_interval_ms"
    );
    assert_eq!(
        issue("file-source", json!({"path": "/a", "batch_max_records": 0})).key,
        "batch_max_records"
    );
    assert_eq!(
        issue("file-sink", json!({"path": "/a", "roll_bytes": 0})).key,
        "roll_bytes"
    );
}

#[test]
fn an_unknown_placeholder_in_the_sink_path_is_a_validate_error_naming_path() {
    let config: FileSinkConfig =
        serde_json::from_value(json!({"path": "/out/{topic}/{day}.jsonl"})).unwrap();
    let issue = config.validate().unwrap_err();
    assert_eq!(issue.key, "path");
    assert!(issue.reason.contains("{day}"), "{}", issue.reason);
}

#[test]
fn csv_columns_need_the_csv_format() {
    assert_eq!(
        issue("file-sink", json!({"path": "/a", "csv_columns": ["id"]})).key,
        "csv_columns"
    );
    assert_eq!(
        issue(
            "file-sink",
            json!({"path": "/a", "format": "csv", "csv_columns": ["id", "id"]})
        )
        .key,
        "csv_columns"
    );
    let ok: FileSinkConfig = serde_json::from_value(
        json!({"path": "/a", "format": "csv", "csv_columns": ["id", "name"]}),
    )
    .unwrap();
    assert!(ok.validate().is_ok());
}

#[test]
fn a_task_share_outside_its_count_is_rejected() {
    let issue = issue(
        "file-source",
        json!({"path": "/a", "task_share": {"index": 2, "count": 2}}),
    );
    assert_eq!(issue.key, "task_share");
}
