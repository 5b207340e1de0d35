//! Topic administration beyond creation and configs: DeleteTopics, CreatePartitions (a topic
//! grows) and DeleteRecords (a partition's log start moves forward).

use std::collections::HashSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};

use super::{NODE_ID, error_code, message};
use crate::Shared;

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

pub(super) fn create_partitions(
    request: &CreatePartitionsRequest,
    shared: &Shared,
) -> CreatePartitionsResponse {
    let mut seen = HashSet::new();
    let duplicated: HashSet<&str> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(&**t.name))
        .map(|t| &**t.name)
        .collect();
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            let outcome = if duplicated.contains(&**topic.name) {
                Err((
                    ResponseError::InvalidRequest.code(),
                    format!("topic {:?} is named twice", &*topic.name),
                ))
            } else {
                grow(topic, request.validate_only, shared)
            };
            match outcome {
                Ok(()) => result,
                Err((code, why)) => result
                    .with_error_code(code)
                    .with_error_message(message(why)),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

/// Grows one topic to the count asked for, or checks that it could.
fn grow(
    topic: &CreatePartitionsTopic,
    validate_only: bool,
    shared: &Shared,
) -> Result<(), (i16, String)> {
    let name = &*topic.name;
    let invalid_partitions = |why: String| (ResponseError::InvalidPartitions.code(), why);
    if super::is_internal(name) {
        return Err((
            ResponseError::InvalidTopicException.code(),
            format!("topic {name:?} is Logbrook's own; its partitions are fixed"),
        ));
    }
    // The one broker is the only replica a new partition can have.
    if let Some(assignments) = &topic.assignments
        && assignments
            .iter()
            .any(|a| a.broker_ids.iter().any(|&id| id != NODE_ID))
    {
        return Err((
            ResponseError::InvalidReplicaAssignment.code(),
            format!("topic {name:?}: every partition is on broker {NODE_ID}, the only one"),
        ));
    }
    let count = u32::try_from(topic.count)
        .map_err(|_| invalid_partitions(format!("topic {name:?}: {} partitions", topic.count)))?;
    let core_error = |e: logbrook_core::Error| match e {
        logbrook_core::Error::InvalidConfig {
            key: "partitions", ..
        } => invalid_partitions(format!("topic {name:?}: {e}")),
        e => (error_code(&e), e.to_string()),
    };
    if validate_only {
        let current = shared.broker.topic(name).map_err(core_error)?;
        shared
            .broker
            .grown_config(&current, count)
            .map_err(core_error)?;
        return Ok(());
    }
    shared
        .broker
        .create_partitions(name, count)
        .map(|_| ())
        .map_err(core_error)
}

/// Kafka's "up to the high watermark" in DeleteRecords.
const HIGH_WATERMARK: i64 = -1;

pub(super) async fn delete_records(
    request: &DeleteRecordsRequest,
    shared: &Shared,
) -> DeleteRecordsResponse {
    let mut topics = Vec::new();
    for topic in &request.topics {
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let code = if super::is_internal(&topic.name) {
                Err(ResponseError::InvalidTopicException.code())
            } else {
                let index = u32::try_from(p.partition_index).unwrap_or(u32::MAX);
                let before = match p.offset {
                    HIGH_WATERMARK => Ok(None),
                    offset => u64::try_from(offset)
                        .map(Some)
                        .map_err(|_| ResponseError::OffsetOutOfRange.code()),
                };
                match before {
                    Ok(before) => shared
                        .broker
                        .delete_records(&topic.name, index, before)
                        .await
                        .map_err(|e| error_code(&e)),
                    Err(code) => Err(code),
                }
            };
            partitions.push(match code {
                Ok(low_watermark) => result.with_low_watermark(low_watermark as i64),
                Err(code) => result.with_error_code(code),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
