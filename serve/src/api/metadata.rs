//! Metadata: this one broker leads every partition of every topic. An unknown topic a client
//! asks for is created when the server auto-creates topics and the request allows it (Kafka's
//! `auto.create.topics.enable`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use logbrook_core::{TopicConfig, validate_topic_name};

use super::NODE_ID;
use crate::Shared;

pub(super) fn answer(request: &MetadataRequest, version: i16, shared: &Shared) -> MetadataResponse {
    let names: Vec<String> = match &request.topics {
        // v0 has no null: an empty list means every topic.
        Some(topics) if !(version == 0 && topics.is_empty()) => topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect(),
        _ => {
            let mut all = shared.broker.topic_names();
            all.sort();
            all
        }
    };
    // v0-3 have no flag: the broker decides alone.
    let allowed =
        shared.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = names
        .into_iter()
        .map(|name| {
            if allowed && shared.broker.topic(&name).is_err() {
                create(&name, shared)
            } else {
                topic(&name, shared)
            }
        })
        .collect();
    let advertised = shared.config.advertised;
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(NODE_ID))
                .with_host(StrBytes::from_string(advertised.ip().to_string()))
                .with_port(i32::from(advertised.port())),
        ])
        .with_cluster_id(Some(StrBytes::from_static_str("logbrook")))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics)
}

/// Creates an unknown topic a client asked for. As Kafka, the answer that creates it is
/// `LEADER_NOT_AVAILABLE` with no partitions, and clients ask again; an invalid name is
/// `INVALID_TOPIC_EXCEPTION`; Logbrook's own names (`__`) stay unknown.
fn create(name: &str, shared: &Shared) -> MetadataResponseTopic {
    let response = named(name);
    if super::is_internal(name) {
        return response.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    }
    if validate_topic_name(name).is_err() {
        return response.with_error_code(ResponseError::InvalidTopicException.code());
    }
    let config = TopicConfig {
        partitions: shared.config.num_partitions,
        ..TopicConfig::default()
    };
    match shared.broker.create_topic(name, config) {
        Ok(_) => {
            tracing::info!(
                topic = name,
                "created topic asked for in a metadata request"
            );
            response.with_error_code(ResponseError::LeaderNotAvailable.code())
        }
        // Created meanwhile by another request.
        Err(logbrook_core::Error::TopicExists(_)) => topic(name, shared),
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "automatic topic creation failed");
            response.with_error_code(super::error_code(&e))
        }
    }
}

fn named(name: &str) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_is_internal(super::is_internal(name))
}

fn topic(name: &str, shared: &Shared) -> MetadataResponseTopic {
    let response = named(name);
    let Ok(topic) = shared.broker.topic(name) else {
        return response.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    let node = vec![BrokerId(NODE_ID)];
    response.with_partitions(
        (0..topic.partition_count())
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p as i32)
                    .with_leader_id(BrokerId(NODE_ID))
                    .with_leader_epoch(0)
                    .with_replica_nodes(node.clone())
                    .with_isr_nodes(node.clone())
            })
            .collect(),
    )
}
