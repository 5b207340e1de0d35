//! `filter`: keeps (or drops) the records that match a predicate. All conditions given must hold.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::fields::lookup;
use crate::api::Record;
use crate::error::{ConfigIssue, Result};

/// What `filter` does with matching records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterAction {
    /// Keep matching records, drop the rest (like a stream's `filter`).
    #[default]
    Keep,
    /// Drop matching records (Kafka Connect's `Filter` with a predicate).
    Drop,
}

/// `filter` config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Keep or drop the matching records.
    #[serde(default)]
    pub action: FilterAction,
    /// Value field the conditions below test (dotted for nested fields); without it they test
    /// the whole value (e.g. a line of text).
    pub field: Option<String>,
    /// The field equals this value.
    pub equals: Option<Value>,
    /// The field (as text) matches this regex.
    pub matches: Option<String>,
    /// The field exists and is not null (`true`) or is missing or null (`false`).
    pub exists: Option<bool>,
    /// The field is a number greater than this.
    pub greater_than: Option<f64>,
    /// The field is a number less than this.
    pub less_than: Option<f64>,
    /// The topic matches this regex (whole).
    pub topic_matches: Option<String>,
    /// The record has a header with this key.
    pub has_header: Option<String>,
    /// The record is (`true`) or is not (`false`) a tombstone.
    pub is_tombstone: Option<bool>,
    #[serde(skip)]
    matches_regex: Option<Regex>,
    #[serde(skip)]
    topic_regex: Option<Regex>,
}

impl FilterConfig {
    pub(super) fn prepare(&mut self) -> Result<(), ConfigIssue> {
        let field_conditions = self.equals.is_some()
            || self.matches.is_some()
            || self.exists.is_some()
            || self.greater_than.is_some()
            || self.less_than.is_some();
        if self.field.is_some() && !field_conditions {
            return Err(ConfigIssue::new(
                "field",
                "add a condition on it: equals, matches, exists, greater_than or less_than",
            ));
        }
        if !field_conditions
            && self.topic_matches.is_none()
            && self.has_header.is_none()
            && self.is_tombstone.is_none()
        {
            return Err(ConfigIssue::new(
                "field",
                "a filter needs a condition (field with equals/matches/exists/greater_than/less_than, topic_matches, has_header or is_tombstone)",
            ));
        }
        if let Some(pattern) = &self.matches {
            self.matches_regex =
                Some(Regex::new(pattern).map_err(|e| ConfigIssue::new("matches", e.to_string()))?);
        }
        if let Some(pattern) = &self.topic_matches {
            self.topic_regex = Some(
                Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| ConfigIssue::new("topic_matches", e.to_string()))?,
            );
        }
        Ok(())
    }

    fn matches(&self, record: &Record) -> bool {
        let field_conditions = self.equals.is_some()
            || self.matches_regex.is_some()
            || self.exists.is_some()
            || self.greater_than.is_some()
            || self.less_than.is_some();
        if field_conditions {
            let value = match &self.field {
                Some(field) => lookup(record.value.as_ref(), field),
                None => record.value.as_ref(),
            }
            .filter(|v| !v.is_null());
            if let Some(exists) = self.exists
                && value.is_some() != exists
            {
                return false;
            }
            if let Some(expected) = &self.equals
                && value != Some(expected)
            {
                return false;
            }
            if let Some(regex) = &self.matches_regex {
                let text = match value {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => return false,
                };
                if !regex.is_match(&text) {
                    return false;
                }
            }
            let number = value.and_then(Value::as_f64);
            if let Some(min) = self.greater_than
                && !number.is_some_and(|n| n > min)
            {
                return false;
            }
            if let Some(max) = self.less_than
                && !number.is_some_and(|n| n < max)
            {
                return false;
            }
        }
        if let Some(regex) = &self.topic_regex
            && !regex.is_match(&record.topic)
        {
            return false;
        }
        if let Some(key) = &self.has_header
            && !record.headers.iter().any(|h| &h.key == key)
        {
            return false;
        }
        if let Some(tombstone) = self.is_tombstone
            && record.value.is_none() != tombstone
        {
            return false;
        }
        true
    }

    pub(super) fn apply(&self, record: Record) -> Result<Option<Record>> {
        let keep = self.matches(&record) == (self.action == FilterAction::Keep);
        Ok(keep.then_some(record))
    }
}
