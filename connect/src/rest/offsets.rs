//! Kafka Connect's offsets JSON, to and from the worker's types.
//!
//! `GET /connectors/{name}/offsets` answers `{"offsets": [{"partition": ..., "offset": ...}]}`:
//! a source's own maps, or for a sink `{"kafka_topic", "kafka_partition"}` and
//! `{"kafka_offset"}` (the next offset to read). `PATCH` takes the same body (a `null` offset
//! forgets a source partition's, or moves a sink partition to the log start), or for sinks
//! `{"to_timestamp_ms": N}` / `{"to_timestamp": "RFC 3339"}`.

use logbrook_core::TopicPartition;
use serde_json::{Value, json};

use crate::api::ConnectorKind;
use crate::runtime::{ConnectorOffsets, OffsetChange};

/// The offsets as Kafka Connect's JSON body.
pub(super) fn to_json(offsets: &ConnectorOffsets) -> Value {
    let entries: Vec<Value> = match offsets {
        ConnectorOffsets::Source(offsets) => offsets
            .iter()
            .map(|o| json!({"partition": o.partition, "offset": o.offset}))
            .collect(),
        ConnectorOffsets::Sink(offsets) => offsets
            .iter()
            .map(|o| {
                json!({
                    "partition": {"kafka_topic": o.partition.topic, "kafka_partition": o.partition.partition},
                    "offset": {"kafka_offset": o.next},
                })
            })
            .collect(),
    };
    json!({ "offsets": entries })
}

/// A `PATCH` body as a change of a `kind` connector's offsets; the error says what is wrong
/// with the body.
pub(super) fn parse_change(kind: ConnectorKind, body: &Value) -> Result<OffsetChange, String> {
    if kind == ConnectorKind::Sink {
        if let Some(ms) = body.get("to_timestamp_ms") {
            let ms = ms
                .as_i64()
                .ok_or_else(|| format!("to_timestamp_ms must be a number, got {ms}"))?;
            return Ok(OffsetChange::SinkToTimestamp(ms));
        }
        if let Some(text) = body.get("to_timestamp") {
            let text = text
                .as_str()
                .ok_or_else(|| format!("to_timestamp must be an RFC 3339 string, got {text}"))?;
            let time = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| format!("to_timestamp {text:?} is not RFC 3339: {e}"))?;
            return Ok(OffsetChange::SinkToTimestamp(time.timestamp_millis()));
        }
    }
    let entries = body
        .get("offsets")
        .and_then(Value::as_array)
        .ok_or("expected {\"offsets\": [{\"partition\": ..., \"offset\": ...}]}")?;
    let mut pairs: Vec<(Value, Option<Value>)> = Vec::with_capacity(entries.len());
    for entry in entries {
        let partition = entry
            .get("partition")
            .cloned()
            .ok_or_else(|| format!("an offsets entry needs `partition`: {entry}"))?;
        let offset = entry.get("offset").filter(|o| !o.is_null()).cloned();
        // The last entry for a partition wins.
        pairs.retain(|(p, _)| *p != partition);
        pairs.push((partition, offset));
    }
    match kind {
        ConnectorKind::Source => Ok(OffsetChange::Source(pairs)),
        ConnectorKind::Sink => pairs
            .into_iter()
            .map(|(partition, offset)| sink_entry(&partition, offset.as_ref()))
            .collect::<Result<_, _>>()
            .map(OffsetChange::Sink),
    }
}

fn sink_entry(
    partition: &Value,
    offset: Option<&Value>,
) -> Result<(TopicPartition, Option<u64>), String> {
    let topic = partition.get("kafka_topic").and_then(Value::as_str);
    let number = partition
        .get("kafka_partition")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok());
    let (Some(topic), Some(number)) = (topic, number) else {
        return Err(format!(
            "a sink partition is {{\"kafka_topic\": ..., \"kafka_partition\": ...}}, got {partition}"
        ));
    };
    let next = match offset.map(|o| o.get("kafka_offset")) {
        None => None,
        Some(Some(v)) => Some(
            v.as_u64()
                .ok_or_else(|| format!("kafka_offset must be a number, got {v}"))?,
        ),
        Some(None) => {
            return Err(format!(
                "a sink offset is {{\"kafka_offset\": N}}, got {}",
                offset.map_or(Value::Null, Value::clone)
            ));
        }
    };
    Ok((TopicPartition::new(topic, number), next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{SinkOffset, SourceOffset};

    #[test]
    fn offsets_become_kafka_connects_body() {
        let sink = ConnectorOffsets::Sink(vec![SinkOffset {
            partition: TopicPartition::new("clicks", 2),
            next: 17,
        }]);
        assert_eq!(
            to_json(&sink),
            json!({"offsets": [{"partition": {"kafka_topic": "clicks", "kafka_partition": 2}, "offset": {"kafka_offset": 17}}]})
        );
        let source = ConnectorOffsets::Source(vec![SourceOffset {
            partition: json!({"path": "/in.txt"}),
            offset: json!({"position": 40}),
        }]);
        assert_eq!(
            to_json(&source),
            json!({"offsets": [{"partition": {"path": "/in.txt"}, "offset": {"position": 40}}]})
        );
    }

    #[test]
    fn a_sink_body_becomes_partitions_and_next_offsets() {
        let body = json!({"offsets": [
            {"partition": {"kafka_topic": "clicks", "kafka_partition": 0}, "offset": {"kafka_offset": 5}},
            {"partition": {"kafka_topic": "clicks", "kafka_partition": 1}, "offset": null},
        ]});
        assert_eq!(
            parse_change(ConnectorKind::Sink, &body).unwrap(),
            OffsetChange::Sink(vec![
                (TopicPartition::new("clicks", 0), Some(5)),
                (TopicPartition::new("clicks", 1), None),
            ])
        );
        assert_eq!(
            parse_change(
                ConnectorKind::Sink,
                &json!({"to_timestamp": "1970-01-01T00:00:01Z"})
            )
            .unwrap(),
            OffsetChange::SinkToTimestamp(1000)
        );
    }

    #[test]
    fn a_source_body_keeps_the_sources_maps_and_the_last_entry_wins() {
        let body = json!({"offsets": [
            {"partition": {"path": "a"}, "offset": {"position": 1}},
            {"partition": {"path": "a"}, "offset": {"position": 2}},
            {"partition": {"path": "b"}, "offset": null},
        ]});
        assert_eq!(
            parse_change(ConnectorKind::Source, &body).unwrap(),
            OffsetChange::Source(vec![
                (json!({"path": "a"}), Some(json!({"position": 2}))),
                (json!({"path": "b"}), None),
            ])
        );
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let cases = [
            (
                ConnectorKind::Sink,
                json!({"offset": []}),
                "expected {\"offsets\"",
            ),
            (
                ConnectorKind::Sink,
                json!({"offsets": [{"partition": {"topic": "x"}, "offset": {"kafka_offset": 1}}]}),
                "a sink partition is",
            ),
            (
                ConnectorKind::Sink,
                json!({"offsets": [{"partition": {"kafka_topic": "x", "kafka_partition": 0}, "offset": {"kafka_offset": "one"}}]}),
                "kafka_offset must be a number",
            ),
            (
                ConnectorKind::Sink,
                json!({"offsets": [{"partition": {"kafka_topic": "x", "kafka_partition": 0}, "offset": {"position": 3}}]}),
                "a sink offset is",
            ),
            (
                ConnectorKind::Sink,
                json!({"to_timestamp": "yesterday"}),
                "not RFC 3339",
            ),
            (
                ConnectorKind::Source,
                json!({"offsets": [{"offset": 1}]}),
                "needs `partition`",
            ),
        ];
        for (kind, body, expected) in cases {
            let error = parse_change(kind, &body).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }
}
