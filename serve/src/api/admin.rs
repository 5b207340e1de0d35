//! Topic administration beyond creation: DeleteTopics and DescribeConfigs (a topic's configs
//! under Kafka's names).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use logbrook_core::{CleanupPolicy, TimestampType, TopicConfig};

use super::{error_code, message};
use crate::Shared;

/// DescribeConfigs' resource type of a topic.
const TOPIC: i8 = 2;
/// Config source: set on the topic.
const TOPIC_CONFIG: i8 = 1;

pub(super) async fn delete_topics(
    request: &DeleteTopicsRequest,
    version: i16,
    shared: &Shared,
) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (which may also carry ids); earlier versions in `topic_names`.
    let names: Vec<Option<TopicName>> = if version >= 6 {
        request.topics.iter().map(|t| t.name.clone()).collect()
    } else {
        request.topic_names.iter().cloned().map(Some).collect()
    };
    let mut responses = Vec::new();
    for name in names {
        let result = DeletableTopicResult::default().with_name(name.clone());
        let Some(name) = name else {
            responses.push(
                result
                    .with_error_code(ResponseError::UnknownTopicId.code())
                    .with_error_message(message("topics are named, not identified by id")),
            );
            continue;
        };
        if super::is_internal(&name) {
            responses.push(
                result
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(message(format!("{} is internal", &*name))),
            );
            continue;
        }
        responses.push(match shared.broker.delete_topic(&name).await {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(error_code(&e))
                .with_error_message(message(&e)),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) fn describe_configs(
    request: &DescribeConfigsRequest,
    shared: &Shared,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            if resource.resource_type != TOPIC {
                // The broker's own configs are not Kafka's: none are listed.
                return result;
            }
            let topic = match shared.broker.topic(&resource.resource_name) {
                Ok(topic) => topic,
                Err(e) => {
                    return result
                        .with_error_code(error_code(&e))
                        .with_error_message(message(&e));
                }
            };
            let wanted = resource.configuration_keys.as_ref();
            result.with_configs(
                kafka_configs(topic.config())
                    .into_iter()
                    .filter(|(name, _)| {
                        wanted.is_none_or(|keys| keys.iter().any(|k| &**k == *name))
                    })
                    .map(|(name, value)| {
                        DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_static_str(name))
                            .with_value(Some(StrBytes::from_string(value)))
                            .with_config_source(TOPIC_CONFIG)
                    })
                    .collect(),
            )
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A topic's config under Kafka's names; -1 is "no limit", as in Kafka.
fn kafka_configs(config: &TopicConfig) -> Vec<(&'static str, String)> {
    let limit = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
    vec![
        (
            "cleanup.policy",
            match config.cleanup_policy {
                CleanupPolicy::Delete => "delete".into(),
                CleanupPolicy::Compact => "compact".into(),
            },
        ),
        ("retention.ms", limit(config.retention_ms)),
        ("retention.bytes", limit(config.retention_bytes)),
        ("segment.bytes", config.segment_bytes.to_string()),
        (
            "segment.ms",
            config
                .segment_ms
                .map_or(i64::MAX.to_string(), |v| v.to_string()),
        ),
        (
            "delete.retention.ms",
            config.delete_retention_ms.to_string(),
        ),
        (
            "message.timestamp.type",
            match config.timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
        ),
    ]
}
