//! `${env:NAME}` and `${file:PATH}` in config strings, so secrets stay out of connector files.
//!
//! Resolved values are remembered as secrets: [`Secrets::redact`] removes them from any text
//! (error messages, logs) that might quote them.

use serde_json::Value;

use crate::error::ConfigIssue;

/// Values that came from interpolation, kept out of messages.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    /// `text` with every secret replaced by `****`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.values {
            // Very short values would blank out ordinary words.
            if secret.len() >= 3 {
                out = out.replace(secret.as_str(), "****");
            }
        }
        out
    }
}

/// Replaces every `${env:NAME}` and `${file:PATH}` in the strings of `value`, in place.
///
/// # Errors
/// The key holding a reference to a missing variable or unreadable file (never the value).
pub fn interpolate(value: &mut Value, secrets: &mut Secrets) -> Result<(), ConfigIssue> {
    interpolate_at(value, &mut String::new(), secrets)
}

fn interpolate_at(
    value: &mut Value,
    path: &mut String,
    secrets: &mut Secrets,
) -> Result<(), ConfigIssue> {
    match value {
        Value::String(text) if text.contains("${") => {
            *text = resolve(text, path, secrets)?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate_at(item, path, secrets)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                interpolate_at(item, path, secrets)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn resolve(text: &str, key: &str, secrets: &mut Secrets) -> Result<String, ConfigIssue> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| ConfigIssue::new(key, "`${` without a closing `}`"))?;
        let reference = &after[..end];
        let resolved = match reference.split_once(':') {
            Some(("env", name)) => std::env::var(name).map_err(|_| {
                ConfigIssue::new(key, format!("environment variable {name:?} is not set"))
            })?,
            Some(("file", path)) => std::fs::read_to_string(path)
                .map_err(|e| ConfigIssue::new(key, format!("cannot read secret file {path}: {e}")))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            // Other `${...}` (a route's `${topic}`) belong to the connector: keep them.
            _ => {
                out.push_str(&rest[start..start + 2 + end + 1]);
                rest = &after[end + 1..];
                continue;
            }
        };
        secrets.values.push(resolved.clone());
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn env_and_file_references_are_replaced_and_remembered_as_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "hunter22\n").unwrap();
        // PATH is always set; setting a variable is `unsafe` in edition 2024.
        let path_var = std::env::var("PATH").unwrap();
        let mut value = json!({
            "url": format!("pg://${{env:PATH}}:${{file:{}}}@db/x", file.display()),
            "nested": [{"plain": "no refs"}]
        });
        let mut secrets = Secrets::default();
        interpolate(&mut value, &mut secrets).unwrap();
        assert_eq!(value["url"], format!("pg://{path_var}:hunter22@db/x"));
        assert_eq!(value["nested"][0]["plain"], "no refs");
        assert_eq!(
            secrets.redact("connect to pg://user:hunter22@db failed"),
            "connect to pg://user:****@db failed"
        );
    }

    #[test]
    fn other_placeholders_are_left_for_the_connector() {
        let mut value = json!({"topic_format": "${topic}-${timestamp}"});
        interpolate(&mut value, &mut Secrets::default()).unwrap();
        assert_eq!(value["topic_format"], "${topic}-${timestamp}");
    }

    #[test]
    fn a_missing_variable_names_the_key_not_a_value() {
        let mut value = json!({"errors": {"token": "${env:LOGBROOK_TEST_SURELY_UNSET}"}});
        let issue = interpolate(&mut value, &mut Secrets::default()).unwrap_err();
        assert_eq!(issue.key, "errors.token");
        assert!(issue.reason.contains("LOGBROOK_TEST_SURELY_UNSET"));
    }
}
