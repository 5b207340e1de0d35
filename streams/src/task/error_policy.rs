//! What happens to a record that fails: to deserialize, or in user code.

use std::any::Any;

use logbrook_core::{ConsumerRecord, Header};

use super::context::{OutputRecord, TaskContext};
use crate::error::{Error, Result};

/// What happens to a record whose key or value does not deserialize.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop the task with the error (Kafka Streams' default).
    #[default]
    Fail,
    /// Log it and go on with the next record.
    LogAndSkip,
    /// Copy the raw record to this topic, with headers naming the source and the error, and go on.
    DeadLetter(String),
}

/// Handles a record that failed (to deserialize, or in user code) by `policy`.
pub(crate) fn apply_error_policy(
    ctx: &mut TaskContext,
    r: &ConsumerRecord,
    error: Error,
    policy: &OnError,
) -> Result<()> {
    match policy {
        OnError::Fail => Err(error),
        OnError::LogAndSkip => {
            tracing::warn!(error = %error, "skipping a record");
            ctx.skipped += 1;
            Ok(())
        }
        OnError::DeadLetter(topic) => {
            let mut headers = r.headers.clone();
            for (key, value) in [
                ("logbrook.error.topic", r.topic.to_string()),
                ("logbrook.error.partition", r.partition.to_string()),
                ("logbrook.error.offset", r.offset.to_string()),
                ("logbrook.error.message", error.to_string()),
            ] {
                headers.push(Header {
                    key: key.into(),
                    value: Some(value.into()),
                });
            }
            tracing::warn!(error = %error, dead_letter_topic = %topic, "sending a record to the dead-letter topic");
            ctx.outputs.push(OutputRecord {
                topic: topic.as_str().into(),
                partition: None,
                key: r.key.clone(),
                value: r.value.clone(),
                timestamp: r.timestamp,
                headers,
            });
            ctx.skipped += 1;
            Ok(())
        }
    }
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string())
}
