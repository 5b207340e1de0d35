//! Metadata: this one broker leads every partition of every topic. No topic is created by
//! asking for it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

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
    let topics = names.into_iter().map(|name| topic(&name, shared)).collect();
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

fn topic(name: &str, shared: &Shared) -> MetadataResponseTopic {
    let response = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_is_internal(name.starts_with("__"));
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
