//! Connector and worker configs: files (TOML, or JSON), interpolation, and validation that names
//! the file and key of every problem before anything runs.
//!
//! A connector file holds the keys every connector has (`name`, `connector`, `tasks`, `topic` or
//! `topics`, `transforms`, converters, `[errors]`) and then the connector's own keys, which its
//! plugin parses with `deny_unknown_fields`.

mod interpolate;
mod worker;

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use interpolate::{Secrets, interpolate};
pub use worker::WorkerConfig;

use crate::api::parse_typed;
use crate::api::{ConnectorKind, Plugin, Registry};
use crate::converters::ConverterKind;
use crate::error::{ConfigError, ConfigIssue, ConfigOrigin};
use crate::transforms::TransformConfig;

/// Keys every connector has; the rest belong to the connector's plugin.
const COMMON_KEYS: &[&str] = &[
    "name",
    "connector",
    "tasks",
    "topic",
    "topics",
    "transforms",
    "key_converter",
    "value_converter",
    "key_converter_schemas_enable",
    "value_converter_schemas_enable",
    "errors",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonKeys {
    name: String,
    connector: String,
    #[serde(default = "default_tasks")]
    tasks: usize,
    topic: Option<String>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    transforms: Vec<Value>,
    #[serde(default)]
    key_converter: ConverterKind,
    #[serde(default)]
    value_converter: ConverterKind,
    #[serde(default)]
    key_converter_schemas_enable: bool,
    #[serde(default)]
    value_converter_schemas_enable: bool,
    #[serde(default)]
    errors: ErrorsConfig,
}

fn default_tasks() -> usize {
    1
}

/// What to do with a record that fails conversion, a transform or the sink (`errors.tolerance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tolerance {
    /// Fail the task.
    #[default]
    None,
    /// Skip the record, sending it to the dead-letter topic if one is set.
    All,
}

/// The `[errors]` table.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsConfig {
    /// `none` fails the task on a bad record; `all` skips it (to the dead-letter topic, if set).
    #[serde(default)]
    pub tolerance: Tolerance,
    /// How long retriable errors are retried, with exponential backoff, before the task fails.
    #[serde(default = "default_retry_timeout_ms")]
    pub retry_timeout_ms: u64,
    /// Longest wait between two retries.
    #[serde(default = "default_retry_max_delay_ms")]
    pub retry_max_delay_ms: u64,
    /// Topic that receives bad records (with `tolerance = "all"`).
    pub dead_letter_topic: Option<String>,
    /// Add `__connect.errors.*` headers naming the connector, origin and error to dead letters.
    #[serde(default = "default_true")]
    pub dead_letter_context_headers: bool,
    /// Log each bad record at warn level.
    #[serde(default = "default_true")]
    pub log_errors: bool,
}

fn default_retry_timeout_ms() -> u64 {
    60_000
}

fn default_retry_max_delay_ms() -> u64 {
    10_000
}

fn default_true() -> bool {
    true
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        Self {
            tolerance: Tolerance::None,
            retry_timeout_ms: default_retry_timeout_ms(),
            retry_max_delay_ms: default_retry_max_delay_ms(),
            dead_letter_topic: None,
            dead_letter_context_headers: true,
            log_errors: true,
        }
    }
}

/// A validated connector config.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Unique name; also names its offsets and consumer group (`connect-NAME`).
    pub name: String,
    /// The plugin.
    pub plugin: Plugin,
    /// Most tasks to run.
    pub tasks: usize,
    /// The topic a source writes to.
    pub topic: Option<String>,
    /// The topics a sink reads.
    pub topics: Vec<String>,
    /// Transforms, applied in order.
    pub transforms: Vec<TransformConfig>,
    /// Key converter and whether it embeds schemas.
    pub key_converter: (ConverterKind, bool),
    /// Value converter and whether it embeds schemas.
    pub value_converter: (ConverterKind, bool),
    /// Error handling.
    pub errors: ErrorsConfig,
    /// The plugin's own keys, interpolated.
    pub own: Map<String, Value>,
    /// Interpolated values, to keep out of messages.
    pub secrets: Secrets,
}

impl ConnectorConfig {
    /// Interpolates and validates a raw config (as written in the file or sent over REST).
    ///
    /// # Errors
    /// The first bad key, naming `origin`. Secret values never appear in the message.
    pub fn resolve(
        raw: &Map<String, Value>,
        origin: &ConfigOrigin,
        registry: &Registry,
    ) -> Result<Self, ConfigError> {
        let mut resolved = Value::Object(raw.clone());
        let mut secrets = Secrets::default();
        interpolate(&mut resolved, &mut secrets).map_err(|issue| issue.at(origin))?;
        let Value::Object(mut own) = resolved else {
            unreachable!("interpolation keeps an object an object")
        };
        let redact = |issue: ConfigIssue| {
            let reason = secrets.redact(&issue.reason);
            ConfigIssue::new(issue.key, reason).at(origin)
        };
        let mut common = Map::new();
        for key in COMMON_KEYS {
            if let Some(value) = own.remove(*key) {
                common.insert((*key).to_string(), value);
            }
        }
        let keys: CommonKeys = parse_typed(&Value::Object(common)).map_err(&redact)?;
        if keys.name.trim().is_empty() {
            return Err(redact(ConfigIssue::new("name", "must not be empty")));
        }
        if keys.tasks == 0 {
            return Err(redact(ConfigIssue::new("tasks", "must be at least 1")));
        }
        let plugin = registry
            .get(&keys.connector)
            .map_err(|e| redact(ConfigIssue::new("connector", e.to_string())))?
            .clone();
        match plugin.kind() {
            ConnectorKind::Source => {
                if !keys.topics.is_empty() {
                    return Err(redact(ConfigIssue::new(
                        "topics",
                        "a source writes to one `topic`; `topics` is for sinks",
                    )));
                }
                match keys.topic.as_deref() {
                    Some(topic) => check_topic("topic", topic).map_err(&redact)?,
                    None if plugin.names_own_topics(&own).map_err(&redact)? => {}
                    None => {
                        return Err(redact(ConfigIssue::new(
                            "topic",
                            "a source connector needs `topic`",
                        )));
                    }
                }
            }
            ConnectorKind::Sink => {
                if keys.topic.is_some() {
                    return Err(redact(ConfigIssue::new(
                        "topic",
                        "a sink reads `topics` (a list); `topic` is for sources",
                    )));
                }
                if keys.topics.is_empty() {
                    return Err(redact(ConfigIssue::new(
                        "topics",
                        "a sink connector needs at least one topic in `topics`",
                    )));
                }
                for (i, topic) in keys.topics.iter().enumerate() {
                    check_topic(&format!("topics[{i}]"), topic).map_err(&redact)?;
                }
            }
        }
        if let Some(topic) = &keys.errors.dead_letter_topic {
            check_topic("errors.dead_letter_topic", topic).map_err(&redact)?;
            if keys.errors.tolerance != Tolerance::All {
                return Err(redact(ConfigIssue::new(
                    "errors.dead_letter_topic",
                    "needs errors.tolerance = \"all\" (with \"none\" a bad record fails the task)",
                )));
            }
        }
        let mut transforms = Vec::with_capacity(keys.transforms.len());
        for (i, value) in keys.transforms.iter().enumerate() {
            let transform = TransformConfig::parse(value).map_err(|issue| {
                let key = if issue.key == "." {
                    format!("transforms[{i}]")
                } else {
                    format!("transforms[{i}].{}", issue.key)
                };
                redact(ConfigIssue::new(key, issue.reason))
            })?;
            transforms.push(transform);
        }
        plugin.validate(&own).map_err(&redact)?;
        Ok(Self {
            name: keys.name,
            plugin,
            tasks: keys.tasks,
            topic: keys.topic,
            topics: keys.topics,
            transforms,
            key_converter: (keys.key_converter, keys.key_converter_schemas_enable),
            value_converter: (keys.value_converter, keys.value_converter_schemas_enable),
            errors: keys.errors,
            own,
            secrets,
        })
    }
}

fn check_topic(key: &str, topic: &str) -> Result<(), ConfigIssue> {
    logbrook_core::validate_topic_name(topic).map_err(|e| ConfigIssue::new(key, e.to_string()))
}

/// Reads a config file into a JSON object: TOML, or JSON when the file ends in `.json`.
///
/// # Errors
/// The file, and the line and column of a syntax error.
pub fn read_config_file(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let origin = ConfigOrigin::File(path.to_path_buf());
    let issue = |key: &str, reason: String| ConfigIssue::new(key, reason).at(&origin);
    let text =
        std::fs::read_to_string(path).map_err(|e| issue(".", format!("cannot read: {e}")))?;
    let value: Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| issue(".", format!("invalid JSON: {e}")))?
    } else {
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| issue(".", format!("invalid TOML: {}", e.to_string().trim())))?;
        serde_json::to_value(table).map_err(|e| issue(".", e.to_string()))?
    };
    match value {
        Value::Object(map) => Ok(map),
        other => Err(issue(".", format!("expected a table of keys, got {other}"))),
    }
}

#[cfg(test)]
mod tests;
