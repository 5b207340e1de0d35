//! The APIs the server answers, one module each, and the versions it advertises.

mod admin;
mod configs;
mod create_topics;
mod fetch;
mod groups;
mod leader_epoch;
mod list_offsets;
mod metadata;
mod produce;
mod transactions;

use std::ops::RangeInclusive;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::Shared;

/// The node id of this server in Metadata.
pub(crate) const NODE_ID: i32 = 0;

/// The versions of each API the server answers (advertised by ApiVersions).
pub(crate) fn supported(api: ApiKey) -> Option<RangeInclusive<i16>> {
    Some(match api {
        ApiKey::ApiVersions => 0..=4,
        ApiKey::Metadata => 0..=12,
        // Produce 0-2 carry the old message formats, which the log does not store: they are
        // answered with UNSUPPORTED_VERSION per partition (see produce.rs).
        ApiKey::Produce => 0..=11,
        ApiKey::Fetch => 4..=12,
        ApiKey::ListOffsets => 1..=7,
        ApiKey::CreateTopics => 2..=7,
        ApiKey::FindCoordinator => 0..=4,
        ApiKey::JoinGroup => 0..=9,
        ApiKey::SyncGroup => 0..=5,
        ApiKey::Heartbeat => 0..=4,
        ApiKey::LeaveGroup => 0..=5,
        ApiKey::OffsetCommit => 2..=8,
        ApiKey::OffsetFetch => 1..=8,
        ApiKey::ListGroups => 0..=4,
        ApiKey::DescribeGroups => 0..=5,
        ApiKey::DeleteTopics => 1..=6,
        ApiKey::DescribeConfigs => 1..=4,
        ApiKey::DeleteGroups => 0..=2,
        // 0-1 are the old format, for replicas only.
        ApiKey::OffsetForLeaderEpoch => 2..=4,
        ApiKey::IncrementalAlterConfigs => 0..=1,
        ApiKey::CreatePartitions => 0..=3,
        ApiKey::DeleteRecords => 0..=2,
        ApiKey::InitProducerId => 0..=4,
        // 4-5 batch several transactions (KIP-890, for brokers verifying partitions).
        ApiKey::AddPartitionsToTxn => 0..=3,
        ApiKey::AddOffsetsToTxn => 0..=3,
        ApiKey::EndTxn => 0..=4,
        ApiKey::TxnOffsetCommit => 0..=4,
        _ => return None,
    })
}

const ADVERTISED: [ApiKey; 27] = [
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::SyncGroup,
    ApiKey::ListGroups,
    ApiKey::DescribeGroups,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DescribeConfigs,
    ApiKey::DeleteGroups,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::CreatePartitions,
    ApiKey::DeleteRecords,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
];

/// Answers a decoded request of version `version`; `None`: no response is sent (Produce with
/// `acks = 0`).
pub(crate) async fn answer(
    request: RequestKind,
    version: i16,
    client_id: &str,
    shared: &Shared,
) -> Option<ResponseKind> {
    let send = Some;
    match request {
        RequestKind::ApiVersions(_) => send(ResponseKind::ApiVersions(api_versions())),
        RequestKind::Metadata(request) => send(ResponseKind::Metadata(metadata::answer(
            &request, version, shared,
        ))),
        RequestKind::Produce(request) => produce::answer(request, shared)
            .await
            .map(ResponseKind::Produce),
        RequestKind::Fetch(request) => send(ResponseKind::Fetch(
            fetch::answer(request, version, shared).await,
        )),
        RequestKind::ListOffsets(request) => send(ResponseKind::ListOffsets(list_offsets::answer(
            &request, version, shared,
        ))),
        RequestKind::CreateTopics(request) => send(ResponseKind::CreateTopics(
            create_topics::answer(&request, shared),
        )),
        RequestKind::FindCoordinator(request) => send(ResponseKind::FindCoordinator(
            groups::find_coordinator(&request, version, shared),
        )),
        RequestKind::JoinGroup(request) => send(ResponseKind::JoinGroup(
            groups::join(request, version, client_id, shared).await,
        )),
        RequestKind::SyncGroup(request) => {
            send(ResponseKind::SyncGroup(groups::sync(request, shared).await))
        }
        RequestKind::Heartbeat(request) => {
            send(ResponseKind::Heartbeat(groups::heartbeat(&request, shared)))
        }
        RequestKind::LeaveGroup(request) => send(ResponseKind::LeaveGroup(groups::leave(
            &request, version, shared,
        ))),
        RequestKind::OffsetCommit(request) => send(ResponseKind::OffsetCommit(
            groups::commit(request, shared).await,
        )),
        RequestKind::OffsetFetch(request) => send(ResponseKind::OffsetFetch(
            groups::fetch_offsets(&request, version, shared),
        )),
        RequestKind::ListGroups(request) => {
            send(ResponseKind::ListGroups(groups::list(&request, shared)))
        }
        RequestKind::DescribeGroups(request) => send(ResponseKind::DescribeGroups(
            groups::describe(&request, shared),
        )),
        RequestKind::DeleteTopics(request) => send(ResponseKind::DeleteTopics(
            admin::delete_topics(&request, version, shared).await,
        )),
        RequestKind::DescribeConfigs(request) => send(ResponseKind::DescribeConfigs(
            configs::describe(&request, shared),
        )),
        RequestKind::IncrementalAlterConfigs(request) => send(
            ResponseKind::IncrementalAlterConfigs(configs::alter(&request, shared)),
        ),
        RequestKind::DeleteGroups(request) => send(ResponseKind::DeleteGroups(
            groups::delete(&request, shared).await,
        )),
        RequestKind::OffsetForLeaderEpoch(request) => send(ResponseKind::OffsetForLeaderEpoch(
            leader_epoch::answer(&request, shared),
        )),
        RequestKind::CreatePartitions(request) => send(ResponseKind::CreatePartitions(
            admin::create_partitions(&request, shared),
        )),
        RequestKind::DeleteRecords(request) => send(ResponseKind::DeleteRecords(
            admin::delete_records(&request, shared).await,
        )),
        RequestKind::InitProducerId(request) => send(ResponseKind::InitProducerId(
            transactions::init_producer_id(&request, version, shared).await,
        )),
        RequestKind::AddPartitionsToTxn(request) => send(ResponseKind::AddPartitionsToTxn(
            transactions::add_partitions(&request, version, shared).await,
        )),
        RequestKind::AddOffsetsToTxn(request) => send(ResponseKind::AddOffsetsToTxn(
            transactions::add_offsets(&request, version, shared).await,
        )),
        RequestKind::TxnOffsetCommit(request) => send(ResponseKind::TxnOffsetCommit(
            transactions::txn_offset_commit(&request, version, shared).await,
        )),
        RequestKind::EndTxn(request) => send(ResponseKind::EndTxn(
            transactions::end_txn(&request, version, shared).await,
        )),
        // `supported` lets nothing else through.
        other => unreachable!("unsupported request decoded: {other:?}"),
    }
}

pub(crate) use produce::refuse_old_produce;

fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ADVERTISED
            .iter()
            .filter_map(|&api| {
                let range = supported(api)?;
                Some(
                    ApiVersion::default()
                        .with_api_key(api as i16)
                        .with_min_version(*range.start())
                        .with_max_version(*range.end()),
                )
            })
            .collect(),
    )
}

/// The answer to an ApiVersions request of a version the server does not know.
pub(crate) fn unsupported_api_versions() -> ResponseKind {
    ResponseKind::ApiVersions(
        api_versions().with_error_code(ResponseError::UnsupportedVersion.code()),
    )
}

/// Whether clients may only read a topic: Logbrook's own (`__consumer_offsets`,
/// `__transaction_state`, connect's stores), whose records the log itself must be able to parse.
pub(crate) fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
}

/// The partition a request names by topic and (signed) index.
pub(crate) fn partition(
    shared: &Shared,
    topic: &str,
    index: i32,
) -> logbrook_core::Result<std::sync::Arc<logbrook_core::Partition>> {
    // A negative index is no partition, as one past the last is.
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    shared.broker.topic(topic)?.partition(index).cloned()
}

/// A Kafka error code for a core error.
pub(crate) fn error_code(error: &logbrook_core::Error) -> i16 {
    use logbrook_core::{Error, ProducerRefusal, TxnRefusal};
    match error {
        Error::Append { cause, .. }
            if matches!(
                **cause,
                Error::ProducerRefused { .. }
                    | Error::TransactionRefused { .. }
                    | Error::BatchTooLarge { .. }
                    | Error::InvalidRecord { .. }
            ) =>
        {
            error_code(cause)
        }
        Error::ProducerRefused { refusal, .. } => match refusal {
            ProducerRefusal::OutOfOrderSequence { .. } => {
                ResponseError::OutOfOrderSequenceNumber.code()
            }
            ProducerRefusal::FencedEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
            ProducerRefusal::TransactionState => ResponseError::InvalidTxnState.code(),
        },
        Error::TransactionRefused { refusal, .. } => match refusal {
            TxnRefusal::UnknownProducerId => ResponseError::InvalidProducerIdMapping.code(),
            TxnRefusal::Fenced => ResponseError::ProducerFenced.code(),
            TxnRefusal::InvalidState => ResponseError::InvalidTxnState.code(),
            TxnRefusal::Concurrent => ResponseError::ConcurrentTransactions.code(),
            TxnRefusal::InvalidTimeout => ResponseError::InvalidTransactionTimeout.code(),
        },
        Error::UnknownTopic(_) | Error::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        Error::InvalidTopicName { .. } => ResponseError::InvalidTopicException.code(),
        Error::TopicExists(_) => ResponseError::TopicAlreadyExists.code(),
        Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        Error::CorruptBatch { .. } => ResponseError::CorruptMessage.code(),
        Error::InvalidRecord { .. } => ResponseError::InvalidRecord.code(),
        Error::BatchTooLarge { .. } => ResponseError::MessageTooLarge.code(),
        Error::InvalidConfig { .. } => ResponseError::InvalidConfig.code(),
        Error::InvalidPartitionCount { .. } => ResponseError::InvalidPartitions.code(),
        Error::RecordsNotDeletable { .. } => ResponseError::PolicyViolation.code(),
        Error::UnknownGroup(_) => ResponseError::GroupIdNotFound.code(),
        Error::GroupNotEmpty { .. } => ResponseError::NonEmptyGroup.code(),
        Error::Io { .. } | Error::LogFailed { .. } | Error::Append { .. } => {
            ResponseError::KafkaStorageError.code()
        }
        _ => ResponseError::UnknownServerError.code(),
    }
}

/// A message for a response's error message field.
pub(crate) fn message(text: impl std::fmt::Display) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.to_string()))
}
