//! CreateTopics, with Kafka's topic configs that map onto the log's.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use logbrook_core::{CleanupPolicy, TopicConfig, validate_topic_name};

use super::{error_code, message};
use crate::Shared;

pub(super) fn answer(request: &CreateTopicsRequest, shared: &Shared) -> CreateTopicsResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let result = CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            if super::is_internal(&topic.name) {
                return result
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(message("names starting with __ are Logbrook's own"));
            }
            let config = match config_of(topic) {
                Ok(config) => config,
                Err((code, why)) => {
                    return result
                        .with_error_code(code)
                        .with_error_message(message(why));
                }
            };
            let outcome = if request.validate_only {
                validate_topic_name(&topic.name).and_then(|()| {
                    if shared.broker.topic(&topic.name).is_ok() {
                        Err(logbrook_core::Error::TopicExists(topic.name.to_string()))
                    } else {
                        Ok(())
                    }
                })
            } else {
                shared
                    .broker
                    .create_topic(&topic.name, config.clone())
                    .map(|_| ())
            };
            match outcome {
                Ok(()) => result
                    .with_num_partitions(config.partitions as i32)
                    .with_replication_factor(1),
                Err(e) => result
                    .with_error_code(error_code(&e))
                    .with_error_message(message(&e)),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

/// The log's config for a requested topic, or a Kafka error code and why.
fn config_of(topic: &CreatableTopic) -> Result<TopicConfig, (i16, String)> {
    let invalid = |why: String| (ResponseError::InvalidConfig.code(), why);
    if !topic.assignments.is_empty() {
        return Err((
            ResponseError::InvalidRequest.code(),
            "replica assignments are not supported: there is one broker".into(),
        ));
    }
    if !matches!(topic.replication_factor, -1 | 1) {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "replication factor {} is more than the one broker",
                topic.replication_factor
            ),
        ));
    }
    let partitions = match topic.num_partitions {
        -1 => 1,
        n if n >= 1 => n as u32,
        n => {
            return Err((
                ResponseError::InvalidPartitions.code(),
                format!("{n} partitions: at least 1"),
            ));
        }
    };
    let mut config = TopicConfig {
        partitions,
        ..TopicConfig::default()
    };
    for entry in &topic.configs {
        let value = entry.value.as_deref().unwrap_or_default();
        let number = || {
            value
                .parse::<i64>()
                .map_err(|_| invalid(format!("{} = {value:?} is not a number", &*entry.name)))
        };
        // -1 means unlimited, as in Kafka.
        let limit = |n: i64| u64::try_from(n).ok();
        match &*entry.name {
            "cleanup.policy" => {
                config.cleanup_policy = match value {
                    "delete" => CleanupPolicy::Delete,
                    "compact" => CleanupPolicy::Compact,
                    other => {
                        return Err(invalid(format!(
                            "cleanup.policy {other:?}: delete or compact"
                        )));
                    }
                }
            }
            "retention.ms" => config.retention_ms = limit(number()?),
            "retention.bytes" => config.retention_bytes = limit(number()?),
            "segment.bytes" => {
                config.segment_bytes = limit(number()?)
                    .ok_or_else(|| invalid("segment.bytes must be positive".into()))?;
            }
            "segment.ms" => config.segment_ms = limit(number()?),
            other => return Err(invalid(format!("topic config {other:?} is not supported"))),
        }
    }
    config.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(config)
}
