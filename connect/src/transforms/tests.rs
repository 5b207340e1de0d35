#![allow(clippy::unwrap_used)]

use arrow_schema::DataType;
use serde_json::{Value, json};

use super::*;
use crate::api::Record;

fn chain(configs: Value) -> Vec<TransformConfig> {
    configs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| TransformConfig::parse(c).unwrap())
        .collect()
}

fn record(value: Value) -> Record {
    Record::new("orders", value).with_timestamp(1_700_000_000_000)
}

#[test]
fn field_transforms_chain_in_order() {
    let transforms = chain(json!([
        {"type": "rename_fields", "renames": {"uid": "user_id"}},
        {"type": "drop_fields", "fields": ["debug"]},
        {"type": "insert_field", "topic_field": "source_topic", "static_field": "dc", "static_value": "eu-1"},
        {"type": "mask_fields", "fields": ["card", "cvv"]},
        {"type": "cast", "fields": {"amount": "float64", "qty": "int32"}},
        {"type": "value_to_key", "fields": ["user_id"]},
    ]));
    let input = record(
        json!({"uid": 7, "debug": true, "card": "4111", "cvv": 123, "amount": "12.5", "qty": 3.9}),
    );
    let out = apply_chain(&transforms, input).unwrap().unwrap();
    assert_eq!(
        out.value,
        Some(
            json!({"user_id": 7, "card": "", "cvv": 0, "amount": 12.5, "qty": 3, "source_topic": "orders", "dc": "eu-1"})
        )
    );
    assert_eq!(out.key, Some(json!({"user_id": 7})));
}

#[test]
fn keep_and_extract_work_on_nested_values() {
    let transforms = chain(json!([
        {"type": "extract_field", "field": "payload.after"},
        {"type": "keep_fields", "fields": ["id", "name"]},
    ]));
    let input = record(json!({"payload": {"after": {"id": 1, "name": "a", "secret": "x"}}}));
    let out = apply_chain(&transforms, input).unwrap().unwrap();
    assert_eq!(out.value, Some(json!({"id": 1, "name": "a"})));
}

#[test]
fn casts_that_cannot_apply_are_data_errors_naming_the_field() {
    let transforms = chain(json!([{"type": "cast", "fields": {"qty": "int64"}}]));
    let error = apply_chain(&transforms, record(json!({"qty": "many"}))).unwrap_err();
    assert!(matches!(error, crate::Error::Data { .. }));
    let text = error.to_string();
    assert!(
        text.contains("transforms[0] (cast)") && text.contains("\"qty\""),
        "{text}"
    );
    let whole = chain(json!([{"type": "cast", "to": "string"}]));
    let out = apply_chain(&whole, record(json!(42))).unwrap().unwrap();
    assert_eq!(out.value, Some(json!("42")));
    assert_eq!(out.value_schema, Some(DataType::Utf8));
}

#[test]
fn schemas_follow_renames_drops_and_casts() {
    let transforms = chain(json!([
        {"type": "rename_fields", "renames": {"a": "b"}},
        {"type": "cast", "fields": {"b": "string"}},
        {"type": "drop_fields", "fields": ["c"]},
    ]));
    let (schema, _) = crate::api::schema::from_connect_json(&json!({"type": "struct", "fields": [
        {"field": "a", "type": "int64"}, {"field": "c", "type": "int64"}
    ]}))
    .unwrap();
    let mut input = record(json!({"a": 1, "c": 2}));
    input.value_schema = Some(schema);
    let out = apply_chain(&transforms, input).unwrap().unwrap();
    let Some(DataType::Struct(fields)) = out.value_schema else {
        panic!("schema lost")
    };
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].name(), "b");
    assert_eq!(fields[0].data_type(), &DataType::Utf8);
}

#[test]
fn route_by_regex_and_timestamp() {
    let transforms = chain(json!([
        {"type": "route", "regex": "db\\.(.*)", "replacement": "$1"},
        {"type": "route", "topic_format": "${topic}-${timestamp}", "timestamp_format": "%Y-%m"},
    ]));
    let mut input = record(json!({}));
    input.topic = "db.orders".into();
    let out = apply_chain(&transforms, input).unwrap().unwrap();
    assert_eq!(out.topic, "orders-2023-11");
    // A topic that does not match the regex keeps its name.
    let plain = apply_chain(&transforms[..1], record(json!({})))
        .unwrap()
        .unwrap();
    assert_eq!(plain.topic, "orders");
}

#[test]
fn filter_keeps_or_drops_matching_records() {
    let keep = chain(json!([{"type": "filter", "field": "level", "matches": "^(warn|error)$"}]));
    assert!(
        apply_chain(&keep, record(json!({"level": "error"})))
            .unwrap()
            .is_some()
    );
    assert!(
        apply_chain(&keep, record(json!({"level": "debug"})))
            .unwrap()
            .is_none()
    );
    let drop = chain(
        json!([{"type": "filter", "action": "drop", "field": "amount", "greater_than": 100}]),
    );
    assert!(
        apply_chain(&drop, record(json!({"amount": 500})))
            .unwrap()
            .is_none()
    );
    assert!(
        apply_chain(&drop, record(json!({"amount": 5})))
            .unwrap()
            .is_some()
    );
    let lines = chain(json!([{"type": "filter", "matches": "ERROR"}]));
    assert!(
        apply_chain(&lines, record(json!("12:00 ERROR disk full")))
            .unwrap()
            .is_some()
    );
    assert!(
        apply_chain(&lines, record(json!("12:00 INFO ok")))
            .unwrap()
            .is_none()
    );
    let tombstones = chain(json!([{"type": "filter", "action": "drop", "is_tombstone": true}]));
    let mut tombstone = record(json!(null));
    tombstone.value = None;
    assert!(apply_chain(&tombstones, tombstone).unwrap().is_none());
}

#[test]
fn bad_transform_configs_name_the_key() {
    let cases = [
        (
            json!({"type": "rename_fields", "renames": {}, "typo": 1}),
            "typo",
        ),
        (json!({"type": "route", "regex": "("}), "replacement"),
        (
            json!({"type": "route", "regex": "(", "replacement": "x"}),
            "regex",
        ),
        (json!({"type": "filter", "field": "a"}), "field"),
        (json!({"type": "filter"}), "field"),
        (json!({"type": "cast"}), "fields"),
        (json!({"fields": ["a"]}), "type"),
        (json!({"type": "explode"}), "type"),
    ];
    for (config, key) in cases {
        let issue = TransformConfig::parse(&config).unwrap_err();
        assert_eq!(issue.key, key, "{config}: {issue}");
    }
}
