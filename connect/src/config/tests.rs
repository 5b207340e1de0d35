#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;
use crate::api::{Sink, SinkConnector, SinkContext};
use crate::error::Result;

/// A sink with one required key, to test the common keys around it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NullSink {
    path: String,
    #[serde(default)]
    batch: u32,
}

#[async_trait]
impl SinkConnector for NullSink {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.path.is_empty() {
            return Err(ConfigIssue::new("path", "must not be empty"));
        }
        Ok(())
    }

    async fn open(self, _context: SinkContext) -> Result<Box<dyn Sink>> {
        Err(crate::Error::fatal("not for running"))
    }
}

fn registry() -> Registry {
    Registry::new(vec![Plugin::sink::<NullSink>("null-sink")])
}

fn resolve(config: Value) -> Result<ConnectorConfig, ConfigError> {
    let origin = ConfigOrigin::File("c.toml".into());
    ConnectorConfig::resolve(config.as_object().unwrap(), &origin, &registry())
}

fn base() -> Value {
    json!({"name": "out", "connector": "null-sink", "topics": ["orders"], "path": "/tmp/x"})
}

#[test]
fn a_valid_config_splits_common_and_own_keys() {
    let mut config = base();
    config["tasks"] = json!(3);
    config["errors"] = json!({"tolerance": "all", "dead_letter_topic": "dlq"});
    let resolved = resolve(config).unwrap();
    assert_eq!(resolved.tasks, 3);
    assert_eq!(resolved.topics, vec!["orders"]);
    assert_eq!(resolved.errors.dead_letter_topic.as_deref(), Some("dlq"));
    assert_eq!(resolved.own.keys().collect::<Vec<_>>(), vec!["path"]);
}

#[test]
fn bad_configs_name_the_file_and_key() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"patth": "/x"}), "patth", "unknown field"),
        (json!({"tasks": "two"}), "tasks", "invalid type"),
        (json!({"tasks": 0}), "tasks", "at least 1"),
        (json!({"batch": -1}), "batch", "invalid value"),
        (json!({"path": ""}), "path", "must not be empty"),
        (
            json!({"connector": "nope"}),
            "connector",
            "unknown connector type",
        ),
        (json!({"topics": []}), "topics", "at least one topic"),
        (json!({"topic": "x"}), "topic", "for sources"),
        (
            json!({"errors": {"tolerance": "some"}}),
            "errors.tolerance",
            "unknown variant",
        ),
        (
            json!({"errors": {"dead_letter_topic": "dlq"}}),
            "errors.dead_letter_topic",
            "tolerance",
        ),
        (
            json!({"errors": {"retry_timout_ms": 1}}),
            "errors.retry_timout_ms",
            "unknown field",
        ),
        (
            json!({"transforms": [{"type": "cast"}]}),
            "transforms[0].fields",
            "set `fields`",
        ),
        (
            json!({"value_converter": "avro"}),
            "value_converter",
            "unknown variant",
        ),
    ];
    for (patch, key, reason) in cases {
        let mut config = base();
        for (k, v) in patch.as_object().unwrap() {
            config[k] = v.clone();
        }
        let error = resolve(config).unwrap_err();
        assert_eq!(error.key, key, "{patch}: {error}");
        assert!(error.reason.contains(reason), "{patch}: {error}");
        assert!(error.to_string().starts_with("c.toml: key `"), "{error}");
    }
    let mut missing = base();
    missing.as_object_mut().unwrap().remove("path");
    let error = resolve(missing).unwrap_err();
    assert!(error.reason.contains("missing field `path`"), "{error}");
}

#[test]
fn interpolated_secrets_never_reach_error_messages() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    let mut config = base();
    // A wrong type, built from a secret: serde quotes the value in its message.
    config["batch"] = json!(format!("${{file:{}}}", secret.display()));
    let error = resolve(config).unwrap_err().to_string();
    assert!(error.contains("batch"), "{error}");
    assert!(!error.contains("s3cr3t-value"), "{error}");
}

#[test]
fn toml_and_json_files_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("c.toml");
    std::fs::write(
        &toml_path,
        "name = \"out\"\nconnector = \"null-sink\"\ntopics = [\"orders\"]\npath = \"/tmp/x\"\n[[transforms]]\ntype = \"drop_fields\"\nfields = [\"a\"]\n",
    )
    .unwrap();
    let json_path = dir.path().join("c.json");
    std::fs::write(
        &json_path,
        r#"{"name":"out","connector":"null-sink","topics":["orders"],"path":"/tmp/x","transforms":[{"type":"drop_fields","fields":["a"]}]}"#,
    )
    .unwrap();
    assert_eq!(
        read_config_file(&toml_path).unwrap(),
        read_config_file(&json_path).unwrap()
    );
    std::fs::write(&toml_path, "name = \n").unwrap();
    let error = read_config_file(&toml_path).unwrap_err().to_string();
    assert!(
        error.contains("c.toml") && error.contains("invalid TOML"),
        "{error}"
    );
}
