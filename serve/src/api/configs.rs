//! A topic's configs under Kafka's names: DescribeConfigs and IncrementalAlterConfigs. The
//! mapping between Kafka's keys and the log's [`TopicConfig`] is core's
//! [`logbrook_core::kafka_config`], shared with CreateTopics.

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use logbrook_core::{TopicConfig, kafka_config};

use super::{error_code, message};
use crate::Shared;

/// Config resource type: a topic.
const TOPIC: i8 = 2;
/// Config resource type: a broker.
const BROKER: i8 = 4;
/// Config source: set on the topic.
const TOPIC_CONFIG: i8 = 1;
/// Config source: the default.
const DEFAULT_CONFIG: i8 = 5;

/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub(super) fn describe(
    request: &DescribeConfigsRequest,
    shared: &Shared,
) -> DescribeConfigsResponse {
    let defaults = kafka_config::configs(&TopicConfig::default());
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
                kafka_config::configs(topic.config())
                    .into_iter()
                    .zip(&defaults)
                    .filter(|((name, _), _)| {
                        wanted.is_none_or(|keys| keys.iter().any(|k| &**k == *name))
                    })
                    .map(|((name, value), (_, default))| {
                        let source = if value == *default {
                            DEFAULT_CONFIG
                        } else {
                            TOPIC_CONFIG
                        };
                        DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_static_str(name))
                            .with_value(Some(StrBytes::from_string(value)))
                            .with_config_source(source)
                    })
                    .collect(),
            )
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Sets and deletes (back to the default) topic configs; validates only when asked to.
pub(super) fn alter(
    request: &IncrementalAlterConfigsRequest,
    shared: &Shared,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match alter_resource(resource, request.validate_only, shared) {
                Ok(()) => response,
                Err((code, why)) => response
                    .with_error_code(code)
                    .with_error_message(message(why)),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn alter_resource(
    resource: &AlterConfigsResource,
    validate_only: bool,
    shared: &Shared,
) -> Result<(), (i16, String)> {
    let name = &*resource.resource_name;
    let invalid_request = |why: String| (ResponseError::InvalidRequest.code(), why);
    match resource.resource_type {
        TOPIC => {}
        // Nothing of the broker's can change while it runs; an empty change is no change.
        BROKER if resource.configs.is_empty() => return Ok(()),
        BROKER => {
            return Err(invalid_request(format!(
                "broker {name:?} has no configs that can be altered"
            )));
        }
        other => {
            return Err(invalid_request(format!(
                "resource type {other} is not supported"
            )));
        }
    }
    if super::is_internal(name) {
        return Err((
            ResponseError::InvalidTopicException.code(),
            format!("topic {name:?} is Logbrook's own; its configs cannot be altered"),
        ));
    }
    let topic = shared
        .broker
        .topic(name)
        .map_err(|e| (error_code(&e), e.to_string()))?;
    let mut seen = HashSet::new();
    if let Some(twice) = resource.configs.iter().find(|c| !seen.insert(&*c.name)) {
        return Err(invalid_request(format!(
            "topic {name:?}: config {:?} is named twice",
            &*twice.name
        )));
    }
    let invalid_config = |why: String| (ResponseError::InvalidConfig.code(), why);
    let defaults = kafka_config::configs(&TopicConfig::default());
    let default_of = |key: &str| {
        defaults
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut config = topic.config().clone();
    for change in &resource.configs {
        let key = &*change.name;
        let entries: Vec<(&str, &str)> = match change.config_operation {
            SET => {
                let value = change.value.as_deref().ok_or_else(|| {
                    invalid_config(format!("topic {name:?}: {key} is set without a value"))
                })?;
                vec![(key, value)]
            }
            // Both flush keys stand for one setting: deleting either resets it.
            DELETE if matches!(key, "flush.messages" | "flush.ms") => {
                ["flush.messages", "flush.ms"]
                    .into_iter()
                    .filter_map(|k| Some((k, default_of(k)?)))
                    .collect()
            }
            // An unknown key is named by `apply` below.
            DELETE => vec![(key, default_of(key).unwrap_or_default())],
            APPEND | SUBTRACT => {
                return Err(invalid_config(format!(
                    "topic {name:?}: {key} is not a list; only set and delete apply to it"
                )));
            }
            other => {
                return Err(invalid_request(format!(
                    "topic {name:?}: config operation {other} is unknown"
                )));
            }
        };
        config = kafka_config::apply(config, entries)
            .map_err(|e| invalid_config(format!("topic {name:?}: {e}")))?;
    }
    if validate_only || config == *topic.config() {
        return Ok(());
    }
    shared
        .broker
        .alter_topic_config(name, config)
        .map(|_| ())
        .map_err(|e| (error_code(&e), e.to_string()))
}
