//! Object keys: `{prefix}/{topic}/{directory}/{topic}+{partition}+{first_offset:020}.{ext}`,
//! where the partitioner chooses the directory from the record.

use chrono::format::{Item, StrftimeItems};
use logbrook_connect::{ConfigIssue, Record};
use serde_json::Value;

use super::{DEFAULT_PATH_FORMAT, PartitionerKind, S3SinkConfig};
use crate::client::join_key;
use crate::layout::object_name;

/// Chooses each record's directory and names objects.
#[derive(Debug, Clone)]
pub(crate) struct Partitioner {
    kind: PartitionerKind,
    /// `partition_fields`: each field's name and its path into the value.
    fields: Vec<(String, Vec<String>)>,
    path_format: String,
    prefix: String,
    extension: &'static str,
}

impl Partitioner {
    /// The partitioner of a config.
    ///
    /// # Errors
    /// The key that is wrong: fields without the field partitioner and the like.
    pub(crate) fn new(config: &S3SinkConfig) -> Result<Self, ConfigIssue> {
        let kind = config.partitioner;
        if kind != PartitionerKind::Field && !config.partition_fields.is_empty() {
            return Err(ConfigIssue::new(
                "partition_fields",
                "applies to partitioner = \"field\" only",
            ));
        }
        if kind != PartitionerKind::Time && config.path_format.is_some() {
            return Err(ConfigIssue::new(
                "path_format",
                "applies to partitioner = \"time\" only",
            ));
        }
        if kind == PartitionerKind::Field && config.partition_fields.is_empty() {
            return Err(ConfigIssue::new(
                "partition_fields",
                "partitioner = \"field\" needs at least one field",
            ));
        }
        let mut fields = Vec::new();
        for field in &config.partition_fields {
            let path: Vec<String> = field.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigIssue::new(
                    "partition_fields",
                    format!("{field:?} is not a field name or dotted path"),
                ));
            }
            fields.push((field.clone(), path));
        }
        let path_format = config
            .path_format
            .clone()
            .unwrap_or_else(|| DEFAULT_PATH_FORMAT.to_string());
        if kind == PartitionerKind::Time {
            check_path_format(&path_format).map_err(|why| ConfigIssue::new("path_format", why))?;
        }
        Ok(Self {
            kind,
            fields,
            path_format,
            prefix: config.prefix.trim_matches('/').to_string(),
            extension: config.format.extension(),
        })
    }

    /// The directory of a record (between the topic and the file name).
    ///
    /// # Errors
    /// Why the record has no directory: a missing partition field, a record without a
    /// timestamp.
    pub(crate) fn directory(&self, record: &Record, partition: u32) -> Result<String, String> {
        match self.kind {
            PartitionerKind::Default => Ok(format!("partition={partition}")),
            PartitionerKind::Field => {
                let mut parts = Vec::with_capacity(self.fields.len());
                for (name, path) in &self.fields {
                    let mut at = record.value.as_ref();
                    for step in path {
                        at = at.and_then(|v| v.get(step));
                    }
                    let text = match at {
                        Some(Value::String(text)) => text.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        Some(Value::Bool(b)) => b.to_string(),
                        None | Some(Value::Null) => {
                            return Err(format!("partition field {name:?} is missing"));
                        }
                        Some(_) => {
                            return Err(format!(
                                "partition field {name:?} is an object or array, not a scalar"
                            ));
                        }
                    };
                    parts.push(format!("{name}={}", escape(&text)));
                }
                Ok(parts.join("/"))
            }
            PartitionerKind::Time => {
                let timestamp = record
                    .timestamp
                    .ok_or("the time partitioner needs a record timestamp")?;
                let at = chrono::DateTime::from_timestamp_millis(timestamp)
                    .ok_or_else(|| format!("timestamp {timestamp} is out of range"))?;
                let path = at.format(&self.path_format).to_string();
                Ok(path.trim_matches('/').to_string())
            }
        }
    }

    /// The key of an object.
    pub(crate) fn key(
        &self,
        topic: &str,
        partition: u32,
        directory: &str,
        first_offset: u64,
    ) -> String {
        let name = object_name(topic, partition, first_offset, self.extension);
        join_key(&self.prefix, &format!("{topic}/{directory}/{name}"))
    }
}

/// Checks a strftime format: it must parse, and name directories, not escape the prefix.
fn check_path_format(format: &str) -> Result<(), String> {
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(format!("{format:?} is not a valid strftime format"));
    }
    if format.split('/').any(|part| part == "..") {
        return Err(format!("{format:?} must not hold \"..\""));
    }
    if format.trim_matches('/').is_empty() {
        return Err("must not be empty".into());
    }
    Ok(())
}

/// A field value as one path segment: `/`, `%`, `+`, control characters and spaces are
/// percent-encoded.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '/' || c == '%' || c == '+' || c == '\\' || c.is_control() || c == ' ' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::sink::Format;

    fn config(kind: PartitionerKind) -> S3SinkConfig {
        serde_json::from_value(json!({"bucket": "bkt", "prefix": "/arc/", "partitioner": kind}))
            .unwrap()
    }

    #[test]
    fn default_directories_are_partitions() {
        let partitioner = Partitioner::new(&config(PartitionerKind::Default)).unwrap();
        let record = Record::new("orders", json!({}));
        let directory = partitioner.directory(&record, 3).unwrap();
        assert_eq!(
            partitioner.key("orders", 3, &directory, 42),
            "arc/orders/partition=3/orders+3+00000000000000000042.json"
        );
    }

    #[test]
    fn field_directories_escape_their_values() {
        let mut config = config(PartitionerKind::Field);
        config.partition_fields = vec!["region".into(), "customer.tier".into()];
        config.format = Format::Parquet;
        let partitioner = Partitioner::new(&config).unwrap();
        let record = Record::new(
            "orders",
            json!({"region": "eu/west 1", "customer": {"tier": 2}}),
        );
        assert_eq!(
            partitioner.directory(&record, 0).unwrap(),
            "region=eu%2Fwest%201/customer.tier=2"
        );
        let missing = Record::new("orders", json!({"region": "eu"}));
        assert!(
            partitioner
                .directory(&missing, 0)
                .unwrap_err()
                .contains("customer.tier")
        );
    }

    #[test]
    fn time_directories_format_the_record_timestamp_in_utc() {
        let mut config = config(PartitionerKind::Time);
        config.path_format = Some("dt=%Y-%m-%d/hour=%H".into());
        let partitioner = Partitioner::new(&config).unwrap();
        let record = Record::new("t", json!(1)).with_timestamp(1_714_564_800_000 + 3_600_000);
        assert_eq!(
            partitioner.directory(&record, 0).unwrap(),
            "dt=2024-05-01/hour=13"
        );
        config.path_format = Some("%Q".into());
        assert_eq!(Partitioner::new(&config).unwrap_err().key, "path_format");
    }
}
