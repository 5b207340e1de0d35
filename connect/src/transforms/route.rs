//! `route`: sends records to another topic, by a regex on the topic name and/or a format with
//! the record's timestamp (Kafka Connect's `RegexRouter` and `TimestampRouter`).

use regex::Regex;
use serde::Deserialize;

use crate::api::Record;
use crate::error::{ConfigIssue, Result};

/// `route` config.
///
/// With `regex`, a topic that matches it whole becomes `replacement` (`$1` refers to groups);
/// with `topic_format`, the topic becomes the format with `${topic}` (the topic after the regex)
/// and `${timestamp}` (the record time in `timestamp_format`, strftime syntax) replaced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Regex the whole topic must match.
    pub regex: Option<String>,
    /// Replacement for a matching topic; `$1`, `${name}` refer to groups.
    pub replacement: Option<String>,
    /// New topic with `${topic}` and `${timestamp}`, e.g. `"${topic}-${timestamp}"`.
    pub topic_format: Option<String>,
    /// strftime format of `${timestamp}`.
    #[serde(default = "default_timestamp_format")]
    pub timestamp_format: String,
    #[serde(skip)]
    compiled: Option<Regex>,
}

fn default_timestamp_format() -> String {
    "%Y%m%d".to_string()
}

impl RouteConfig {
    pub(super) fn prepare(&mut self) -> Result<(), ConfigIssue> {
        match (&self.regex, &self.replacement) {
            (Some(regex), Some(_)) => {
                let anchored = format!("^(?:{regex})$");
                self.compiled = Some(
                    Regex::new(&anchored).map_err(|e| ConfigIssue::new("regex", e.to_string()))?,
                );
            }
            (Some(_), None) => {
                return Err(ConfigIssue::new(
                    "replacement",
                    "`regex` needs a `replacement`",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigIssue::new("regex", "`replacement` needs a `regex`"));
            }
            (None, None) if self.topic_format.is_none() => {
                return Err(ConfigIssue::new(
                    "topic_format",
                    "set `regex` and `replacement`, or `topic_format`",
                ));
            }
            (None, None) => {}
        }
        if let Some(format) = &self.topic_format {
            let probe = format.replace("${topic}", "").replace("${timestamp}", "");
            if probe.contains("${") {
                return Err(ConfigIssue::new(
                    "topic_format",
                    "only ${topic} and ${timestamp} can be used",
                ));
            }
            if chrono::format::StrftimeItems::new(&self.timestamp_format)
                .any(|item| matches!(item, chrono::format::Item::Error))
            {
                return Err(ConfigIssue::new(
                    "timestamp_format",
                    "not a valid strftime format",
                ));
            }
        }
        Ok(())
    }

    pub(super) fn apply(&self, mut record: Record) -> Result<Record> {
        if let (Some(regex), Some(replacement)) = (&self.compiled, &self.replacement)
            && regex.is_match(&record.topic)
        {
            record.topic = regex
                .replace(&record.topic, replacement.as_str())
                .into_owned();
        }
        if let Some(format) = &self.topic_format {
            let mut topic = format.replace("${topic}", &record.topic);
            if topic.contains("${timestamp}") {
                let ts = record.timestamp.unwrap_or_else(logbrook_core::now_ms);
                let time = chrono::DateTime::from_timestamp_millis(ts).unwrap_or_default();
                topic = topic.replace(
                    "${timestamp}",
                    &time.format(&self.timestamp_format).to_string(),
                );
            }
            record.topic = topic;
        }
        Ok(record)
    }
}
