//! The sink's path template (`/data/{topic}/{date}/{hour}/{partition}.jsonl`) and the cache
//! that resolves it per record.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use logbrook_connect::Record;

/// The placeholders a template may use.
const PLACEHOLDERS: &str = "{topic}, {partition}, {date}, {hour}";

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PathTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    Partition,
    /// `YYYY-MM-DD`, UTC.
    Date,
    /// `HH`, UTC.
    Hour,
}

impl PathTemplate {
    /// Parses a template. There is no escape: `{` always opens a placeholder.
    ///
    /// # Errors
    /// Why the template is bad: empty, an unknown placeholder (named), or an unclosed `{`.
    pub(super) fn parse(template: &str) -> Result<Self, String> {
        if template.trim().is_empty() {
            return Err("must be a path template".to_string());
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                format!(
                    "`{{` at byte {} is never closed",
                    template.len() - rest.len() + open
                )
            })?;
            parts.push(match &after[..close] {
                "topic" => Part::Topic,
                "partition" => Part::Partition,
                "date" => Part::Date,
                "hour" => Part::Hour,
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{other}}}` (known: {PLACEHOLDERS})"
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// Whether the path depends on the record's time.
    pub(super) fn uses_time(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Date | Part::Hour))
    }

    /// The path for a record of `topic` and `partition` at `time`.
    pub(super) fn render(&self, topic: &str, partition: u32, time: DateTime<Utc>) -> String {
        let mut path = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => path.push_str(text),
                Part::Topic => path.push_str(topic),
                Part::Partition => path.push_str(&partition.to_string()),
                Part::Date => path.push_str(&format!(
                    "{:04}-{:02}-{:02}",
                    time.year(),
                    time.month(),
                    time.day()
                )),
                Part::Hour => path.push_str(&format!("{:02}", time.hour())),
            }
        }
        path
    }
}

const MS_PER_HOUR: i64 = 3_600_000;
/// Past this many cached resolutions the cache starts over, so that it stays small when the
/// path changes every hour.
const MAX_RESOLVED: usize = 10_000;

/// Resolves records to paths, caching the result by topic, partition and hour.
pub(super) struct PathResolver {
    template: PathTemplate,
    /// Paths by topic, then by partition and hour (0 when the template has no time).
    resolved: HashMap<String, HashMap<(u32, i64), Arc<Path>>>,
    count: usize,
}

impl PathResolver {
    pub(super) fn new(template: PathTemplate) -> Self {
        Self {
            template,
            resolved: HashMap::new(),
            count: 0,
        }
    }

    /// The path `record` goes to: its timestamp (or now) picks `{date}` and `{hour}`, and a
    /// record without a partition counts as partition 0.
    pub(super) fn resolve(&mut self, record: &Record) -> Arc<Path> {
        let partition = record.partition.unwrap_or(0);
        let hour = if self.template.uses_time() {
            record
                .timestamp
                .unwrap_or_else(|| Utc::now().timestamp_millis())
                .div_euclid(MS_PER_HOUR)
        } else {
            0
        };
        if let Some(path) = self
            .resolved
            .get(&record.topic)
            .and_then(|paths| paths.get(&(partition, hour)))
        {
            return Arc::clone(path);
        }
        if self.count >= MAX_RESOLVED {
            self.resolved.clear();
            self.count = 0;
        }
        let time = DateTime::from_timestamp_millis(hour * MS_PER_HOUR).unwrap_or_else(Utc::now);
        let path: Arc<Path> =
            Path::new(&self.template.render(&record.topic, partition, time)).into();
        self.resolved
            .entry(record.topic.clone())
            .or_default()
            .insert((partition, hour), Arc::clone(&path));
        self.count += 1;
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_by_topic_partition_date_and_hour() {
        let template = PathTemplate::parse("/d/{topic}/{date}/{hour}/{partition}.jsonl").unwrap();
        let time = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        assert!(template.uses_time());
        assert_eq!(
            template.render("orders", 3, time),
            "/d/orders/2023-11-14/22/3.jsonl"
        );
    }

    #[test]
    fn records_without_a_timestamp_resolve_to_the_current_hour() {
        let mut resolver = PathResolver::new(PathTemplate::parse("/d/{date}-{hour}").unwrap());
        let before = Utc::now();
        let path = resolver.resolve(&Record::new("t", serde_json::json!(1)));
        let after = Utc::now();
        let expected = [before, after].map(|time| format!("/d/{}", time.format("%Y-%m-%d-%H")));
        assert!(expected.iter().any(|e| Path::new(e) == &*path), "{path:?}");
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_rejected() {
        let error = PathTemplate::parse("/d/{topik}.log").unwrap_err();
        assert!(error.contains("{topik}"), "{error}");
        assert!(PathTemplate::parse("/d/{topic.log").is_err());
        assert!(PathTemplate::parse(" ").is_err());
    }
}
