//! Idempotent and transactional producers: InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit and EndTxn, answered by the log's transaction coordinator
//! (`logbrook_core`'s `transactions` module; design in docs/transactions.md).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use logbrook_core::{CommitDetails, Error, TopicPartition};

use super::error_code;
use crate::Shared;

/// The Kafka error code for a transactional request's failure. Clients older than KIP-588
/// know a fenced producer only as INVALID_PRODUCER_EPOCH; `fenced_code_since` is the first
/// version of the request that may answer PRODUCER_FENCED.
fn txn_error_code(error: &Error, version: i16, fenced_code_since: i16) -> i16 {
    let code = error_code(error);
    if code == ResponseError::ProducerFenced.code() && version < fenced_code_since {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    }
}

pub(super) async fn init_producer_id(
    request: &InitProducerIdRequest,
    version: i16,
    shared: &Shared,
) -> InitProducerIdResponse {
    let id = request
        .transactional_id
        .as_deref()
        .map(|id| id.as_str())
        .filter(|id| !id.is_empty());
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match shared
        .broker
        .init_producer_id(id, request.transaction_timeout_ms)
        .await
    {
        Ok((producer_id, epoch)) => response
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        Err(e) => {
            tracing::debug!(transactional_id = ?id, error = %e, "InitProducerId refused");
            response.with_error_code(txn_error_code(&e, version, 4))
        }
    }
}

pub(super) async fn add_partitions(
    request: &AddPartitionsToTxnRequest,
    version: i16,
    shared: &Shared,
) -> AddPartitionsToTxnResponse {
    let mut partitions = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.v3_and_below_topics {
        for &index in &topic.partitions {
            match super::partition(shared, &topic.name, index) {
                Ok(_) => partitions.push(TopicPartition::new(topic.name.to_string(), index as u32)),
                Err(_) => unknown.push((topic.name.to_string(), index)),
            }
        }
    }
    // Kafka adds none of them when one is unknown: the others answer OPERATION_NOT_ATTEMPTED.
    let code_for_known = if !unknown.is_empty() {
        ResponseError::OperationNotAttempted.code()
    } else {
        match shared
            .broker
            .add_partitions_to_txn(
                &request.v3_and_below_transactional_id,
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                &partitions,
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => txn_error_code(&e, version, 2),
        }
    };
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|&index| {
                            let is_unknown = unknown
                                .iter()
                                .any(|(t, i)| t.as_str() == topic.name.as_str() && *i == index);
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(index)
                                .with_partition_error_code(if is_unknown {
                                    ResponseError::UnknownTopicOrPartition.code()
                                } else {
                                    code_for_known
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

pub(super) async fn add_offsets(
    request: &AddOffsetsToTxnRequest,
    version: i16,
    shared: &Shared,
) -> AddOffsetsToTxnResponse {
    let code = match shared
        .broker
        .add_offsets_to_txn(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            &request.group_id,
        )
        .await
    {
        Ok(()) => 0,
        Err(e) => txn_error_code(&e, version, 2),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub(super) async fn txn_offset_commit(
    request: &TxnOffsetCommitRequest,
    version: i16,
    shared: &Shared,
) -> TxnOffsetCommitResponse {
    // KIP-447: a commit from a member of an older generation is refused, so a zombie that
    // lost its partitions cannot commit offsets for them.
    let mut code = shared.coordinator.check_txn_commit(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    let mut offsets = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            match (
                super::partition(shared, &topic.name, p.partition_index),
                u64::try_from(p.committed_offset),
            ) {
                (Ok(_), Ok(offset)) => offsets.push((
                    TopicPartition::new(topic.name.to_string(), p.partition_index as u32),
                    offset,
                    CommitDetails {
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        leader_epoch: super::groups::known_epoch(p.committed_leader_epoch),
                    },
                )),
                (Err(e), _) if code == 0 => code = error_code(&e),
                (_, Err(_)) if code == 0 => code = ResponseError::InvalidCommitOffsetSize.code(),
                _ => {}
            }
        }
    }
    if code == 0 {
        code = match shared
            .broker
            .txn_offset_commit(
                &request.transactional_id,
                request.producer_id.0,
                request.producer_epoch,
                &request.group_id,
                &offsets,
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => txn_error_code(&e, version, 3),
        };
    }
    TxnOffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

pub(super) async fn end_txn(
    request: &EndTxnRequest,
    version: i16,
    shared: &Shared,
) -> EndTxnResponse {
    let code = match shared
        .broker
        .end_txn(
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await
    {
        Ok(()) => 0,
        Err(e) => {
            tracing::debug!(transactional_id = %request.transactional_id.as_str(), error = %e, "EndTxn refused");
            txn_error_code(&e, version, 2)
        }
    };
    EndTxnResponse::default().with_error_code(code)
}
