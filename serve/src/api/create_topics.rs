//! CreateTopics, with Kafka's topic configs that map onto the log's (core's
//! [`logbrook_core::kafka_config`], shared with DescribeConfigs and IncrementalAlterConfigs).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use logbrook_core::{TopicConfig, kafka_config, validate_topic_name};

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
    // Explicit assignments are accepted when they put every partition on this broker, as
    // Kafka does with one broker; they give the partition count.
    if !topic.assignments.is_empty() {
        let mut indexes: Vec<i32> = topic
            .assignments
            .iter()
            .map(|a| a.partition_index)
            .collect();
        indexes.sort_unstable();
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest.code(),
                "with replica assignments, num_partitions and replication_factor must be -1".into(),
            ));
        }
        if let Some(a) = topic
            .assignments
            .iter()
            .find(|a| a.broker_ids.iter().any(|&b| b != super::NODE_ID) || a.broker_ids.is_empty())
        {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!(
                    "partition {} is assigned to brokers {:?}: there is one broker, {}",
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>(),
                    super::NODE_ID
                ),
            ));
        }
        if indexes.iter().enumerate().any(|(i, &p)| p != i as i32) {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!(
                    "assigned partitions {indexes:?} are not 0..{}",
                    indexes.len()
                ),
            ));
        }
    } else if !matches!(topic.replication_factor, -1 | 1) {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "replication factor {} is more than the one broker",
                topic.replication_factor
            ),
        ));
    }
    let partitions = match topic.num_partitions {
        _ if !topic.assignments.is_empty() => topic.assignments.len() as u32,
        -1 => 1,
        n if n >= 1 => n as u32,
        n => {
            return Err((
                ResponseError::InvalidPartitions.code(),
                format!("{n} partitions: at least 1"),
            ));
        }
    };
    let base = TopicConfig {
        partitions,
        ..TopicConfig::default()
    };
    let entries = topic
        .configs
        .iter()
        .map(|entry| (&*entry.name, entry.value.as_deref().unwrap_or_default()));
    kafka_config::apply(base, entries).map_err(|e| invalid(e.to_string()))
}
