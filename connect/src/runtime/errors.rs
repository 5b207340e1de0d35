//! Retries with exponential backoff, and what happens to bad records: fail the task, or skip them
//! into the dead-letter topic with headers naming where they came from.

use std::time::Duration;

use bytes::Bytes;
use logbrook_core::Header;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::TaskScope;
use crate::config::Tolerance;
use crate::error::{Error, Result};

/// Backoff for retriable errors: 100 ms doubling up to `retry_max_delay_ms`, for at most
/// `retry_timeout_ms` in all.
pub(crate) struct Backoff {
    started: Option<Instant>,
    delay: Duration,
    max_delay: Duration,
    timeout: Duration,
}

impl Backoff {
    pub(crate) fn new(scope: &TaskScope) -> Self {
        let errors = &scope.config.errors;
        Self {
            started: None,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(errors.retry_max_delay_ms.max(1)),
            timeout: Duration::from_millis(errors.retry_timeout_ms),
        }
    }

    /// After a failed attempt: waits and returns `Ok` to try again, or returns the error when it
    /// is not retriable, the time is up, or the task is stopping.
    pub(crate) async fn wait_or_fail(
        &mut self,
        error: Error,
        what: &str,
        scope: &TaskScope,
        token: &CancellationToken,
    ) -> Result<()> {
        let started = *self.started.get_or_insert_with(Instant::now);
        if !error.is_retriable() || started.elapsed() + self.delay > self.timeout {
            return Err(error);
        }
        tracing::warn!(
            connector = %scope.config.name,
            task = scope.task,
            delay_ms = self.delay.as_millis() as u64,
            error = %scope.config.secrets.redact(&error.to_string()),
            "{what} failed; retrying"
        );
        scope.metrics.add_retry();
        tokio::select! {
            () = tokio::time::sleep(self.delay) => {}
            () = token.cancelled() => return Err(error),
        }
        self.delay = (self.delay * 2).min(self.max_delay);
        Ok(())
    }

    /// Call after a success: the next failure starts a fresh budget.
    pub(crate) fn reset(&mut self) {
        self.started = None;
        self.delay = Duration::from_millis(100);
    }
}

/// Where a bad record was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Read by a source (e.g. a line that is not JSON).
    Source,
    /// The key converter.
    KeyConverter,
    /// The value converter.
    ValueConverter,
    /// A transform.
    Transform,
    /// Refused by a sink.
    Sink,
    /// Cannot be written to its topic (no such partition).
    Produce,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Self::Source => "SOURCE",
            Self::KeyConverter => "KEY_CONVERTER",
            Self::ValueConverter => "VALUE_CONVERTER",
            Self::Transform => "TRANSFORMATION",
            Self::Produce => "KAFKA_PRODUCE",
            Self::Sink => "TASK_PUT",
        }
    }
}

/// A bad record as it was in the log (sinks) or read from the source.
pub(crate) struct BadRecord<'a> {
    pub(crate) origin: Origin<'a>,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<Header>,
}

/// Where a bad record came from.
pub(crate) enum Origin<'a> {
    /// A topic partition and offset (sinks).
    Log {
        topic: &'a str,
        partition: u32,
        offset: u64,
    },
    /// A source partition and offset (sources).
    Source {
        partition: &'a serde_json::Value,
        offset: &'a serde_json::Value,
    },
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Log {
                topic,
                partition,
                offset,
            } => write!(f, "topic {topic:?} partition {partition} offset {offset}"),
            Self::Source { partition, offset } => {
                write!(f, "source partition {partition} offset {offset}")
            }
        }
    }
}

/// A dead letter to write, with its headers.
pub(crate) struct DeadLetter {
    pub(crate) topic: String,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<Header>,
}

/// Applies `errors.tolerance` to a bad record: `Err` fails the task; `Ok(Some)` is a dead letter
/// to write; `Ok(None)` skips the record.
pub(crate) fn handle_bad_record(
    scope: &TaskScope,
    stage: Stage,
    bad: BadRecord<'_>,
    error: &Error,
) -> Result<Option<DeadLetter>> {
    let errors = &scope.config.errors;
    let message = scope.config.secrets.redact(&error.to_string());
    scope.metrics.add_error();
    if errors.log_errors {
        tracing::warn!(
            connector = %scope.config.name,
            task = scope.task,
            stage = stage.name(),
            at = %bad.origin,
            error = %message,
            "bad record"
        );
    }
    if errors.tolerance == Tolerance::None {
        return Err(Error::fatal(format!(
            "{} at {}: {message} (set errors.tolerance = \"all\" to skip bad records)",
            stage.name().to_lowercase(),
            bad.origin
        )));
    }
    let Some(topic) = &errors.dead_letter_topic else {
        return Ok(None);
    };
    let mut headers = bad.headers;
    if errors.dead_letter_context_headers {
        let mut add = |key: &str, value: String| {
            headers.push(Header {
                key: format!("__connect.errors.{key}"),
                value: Some(Bytes::from(value)),
            });
        };
        match &bad.origin {
            Origin::Log {
                topic,
                partition,
                offset,
            } => {
                add("topic", (*topic).to_string());
                add("partition", partition.to_string());
                add("offset", offset.to_string());
            }
            Origin::Source { partition, offset } => {
                add("source.partition", partition.to_string());
                add("source.offset", offset.to_string());
            }
        }
        add("connector.name", scope.config.name.clone());
        add("task.id", scope.task.to_string());
        add("stage", stage.name().to_string());
        add("exception.message", message);
    }
    scope.metrics.add_dead_lettered();
    Ok(Some(DeadLetter {
        topic: topic.clone(),
        key: bad.key,
        value: bad.value,
        headers,
    }))
}
