//! Consumer groups: finding the coordinator (this server), the classic rebalance protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, through [`crate::groups::Coordinator`]),
//! committed offsets (OffsetCommit, OffsetFetch), stored in the log's `__consumer_offsets`, and
//! deleting a group (DeleteGroups).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use logbrook_core::{CommitDetails, TopicPartition};

use super::{NODE_ID, error_code};
use crate::Shared;
use crate::groups::Join;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(super) fn find_coordinator(
    request: &FindCoordinatorRequest,
    version: i16,
    shared: &Shared,
) -> FindCoordinatorResponse {
    let host = text(&shared.config.advertised.ip().to_string());
    let port = i32::from(shared.config.advertised.port());
    let response = FindCoordinatorResponse::default();
    if version >= 4 {
        // v4 asks for several keys at once.
        return response.with_coordinators(
            request
                .coordinator_keys
                .iter()
                .map(|key| {
                    Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id(BrokerId(NODE_ID))
                        .with_host(host.clone())
                        .with_port(port)
                })
                .collect(),
        );
    }
    response
        .with_node_id(BrokerId(NODE_ID))
        .with_host(host)
        .with_port(port)
}

pub(super) async fn join(
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    shared: &Shared,
) -> JoinGroupResponse {
    let response = JoinGroupResponse::default().with_generation_id(-1);
    if request.group_id.is_empty() {
        return response.with_error_code(ResponseError::InvalidGroupId.code());
    }
    if request.protocol_type.is_empty() || request.protocols.is_empty() {
        return response.with_error_code(ResponseError::InconsistentGroupProtocol.code());
    }
    let session = request.session_timeout_ms.max(1) as u64;
    // v0 has no rebalance timeout: it is the session timeout.
    let rebalance = if version == 0 {
        session
    } else {
        request.rebalance_timeout_ms.max(1) as u64
    };
    let joined = shared
        .coordinator
        .join(Join {
            group: request.group_id.to_string(),
            member_id: request.member_id.to_string(),
            client_id: client_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            session_timeout: Duration::from_millis(session),
            rebalance_timeout: Duration::from_millis(rebalance),
            require_known_member_id: version >= 4,
        })
        .await;
    response
        .with_error_code(joined.error)
        .with_generation_id(if joined.error == 0 {
            joined.generation
        } else {
            -1
        })
        .with_protocol_type(Some(text(&joined.protocol_type)))
        .with_protocol_name(Some(text(&joined.protocol)))
        .with_leader(text(&joined.leader))
        .with_member_id(text(&joined.member_id))
        .with_members(
            joined
                .members
                .into_iter()
                .map(|(id, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(&id))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

pub(super) async fn sync(request: SyncGroupRequest, shared: &Shared) -> SyncGroupResponse {
    let (error, assignment) = shared
        .coordinator
        .sync(
            &request.group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
            request
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        )
        .await;
    SyncGroupResponse::default()
        .with_error_code(error)
        .with_protocol_type(request.protocol_type.clone())
        .with_protocol_name(request.protocol_name.clone())
        .with_assignment(assignment)
}

pub(super) fn heartbeat(request: &HeartbeatRequest, shared: &Shared) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(shared.coordinator.heartbeat(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    ))
}

pub(super) fn leave(
    request: &LeaveGroupRequest,
    version: i16,
    shared: &Shared,
) -> LeaveGroupResponse {
    if version < 3 {
        let codes = shared
            .coordinator
            .leave(&request.group_id, &[(request.member_id.to_string(), None)]);
        return LeaveGroupResponse::default().with_error_code(codes[0]);
    }
    let leaving: Vec<(String, Option<String>)> = request
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|i| i.to_string()),
            )
        })
        .collect();
    let codes = shared.coordinator.leave(&request.group_id, &leaving);
    LeaveGroupResponse::default().with_members(
        request
            .members
            .iter()
            .zip(codes)
            .map(|(m, code)| {
                MemberResponse::default()
                    .with_member_id(m.member_id.clone())
                    .with_group_instance_id(m.group_instance_id.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

/// The longest commit metadata kept (Kafka's `offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;

pub(super) async fn commit(request: OffsetCommitRequest, shared: &Shared) -> OffsetCommitResponse {
    let verdict = shared.coordinator.check_commit(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id_or_member_epoch,
    );
    let mut offsets = Vec::new();
    let mut codes = Vec::new();
    for topic in &request.topics {
        let exists = shared.broker.topic(&topic.name);
        let mut topic_codes = Vec::new();
        for p in &topic.partitions {
            let code = match (
                &exists,
                u32::try_from(p.partition_index),
                u64::try_from(p.committed_offset),
            ) {
                _ if verdict != 0 => verdict,
                (Err(e), _, _) => error_code(e),
                _ if p
                    .committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > MAX_METADATA_BYTES) =>
                {
                    ResponseError::OffsetMetadataTooLarge.code()
                }
                (Ok(t), Ok(index), Ok(offset)) if index < t.partition_count() => {
                    offsets.push((
                        TopicPartition::new(topic.name.to_string(), index),
                        offset,
                        CommitDetails {
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                            leader_epoch: known_epoch(p.committed_leader_epoch),
                        },
                    ));
                    0
                }
                (Ok(_), Ok(_), Err(_)) => ResponseError::InvalidCommitOffsetSize.code(),
                _ => ResponseError::UnknownTopicOrPartition.code(),
            };
            topic_codes.push((p.partition_index, code));
        }
        codes.push((topic.name.clone(), topic_codes));
    }
    // Offsets move only once they are stored: the answer waits for the write.
    let stored = if offsets.is_empty() {
        0
    } else {
        match shared
            .broker
            .commit_offsets_with_metadata(&request.group_id, &offsets)
            .await
        {
            Ok(()) => 0,
            Err(e) => error_code(&e),
        }
    };
    OffsetCommitResponse::default().with_topics(
        codes
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(index, code)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(if code == 0 { stored } else { code })
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// A partition's index, committed offset (-1: none), commit metadata and committed leader
/// epoch (-1: none).
type CommittedPartition = (i32, i64, StrBytes, i32);

/// A client's leader epoch; -1 (and any negative) is "unknown".
pub(super) fn known_epoch(epoch: i32) -> Option<i32> {
    (epoch >= 0).then_some(epoch)
}

/// The committed offsets of `group` for `topics` (`None`: every partition it committed).
fn committed(
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
    shared: &Shared,
) -> Vec<(TopicName, Vec<CommittedPartition>)> {
    let topics = topics.unwrap_or_else(|| {
        let mut by_topic: Vec<(TopicName, Vec<i32>)> = Vec::new();
        if let Ok(description) = shared.broker.describe_group(group) {
            for p in description
                .partitions
                .iter()
                .filter(|p| p.committed.is_some())
            {
                let name = TopicName(text(&p.topic_partition.topic));
                let index = p.topic_partition.partition as i32;
                match by_topic.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, indexes)) => indexes.push(index),
                    None => by_topic.push((name, vec![index])),
                }
            }
        }
        by_topic
    });
    topics
        .into_iter()
        .map(|(name, indexes)| {
            let offsets = indexes
                .into_iter()
                .map(|index| {
                    let tp = TopicPartition::new(
                        name.to_string(),
                        u32::try_from(index).unwrap_or(u32::MAX),
                    );
                    match shared.broker.committed(group, &tp) {
                        Some(c) => (
                            index,
                            c.offset as i64,
                            StrBytes::from_string(c.metadata.unwrap_or_default()),
                            c.leader_epoch.unwrap_or(-1),
                        ),
                        None => (index, -1, StrBytes::default(), -1),
                    }
                })
                .collect();
            (name, offsets)
        })
        .collect()
}

pub(super) fn fetch_offsets(
    request: &OffsetFetchRequest,
    version: i16,
    shared: &Shared,
) -> OffsetFetchResponse {
    if version >= 8 {
        return OffsetFetchResponse::default().with_groups(
            request
                .groups
                .iter()
                .map(|group| {
                    let topics = group.topics.as_ref().map(|topics| {
                        topics
                            .iter()
                            .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                            .collect()
                    });
                    OffsetFetchResponseGroup::default()
                        .with_group_id(group.group_id.clone())
                        .with_topics(
                            committed(&group.group_id, topics, shared)
                                .into_iter()
                                .map(|(name, offsets)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(name)
                                        .with_partitions(
                                            offsets
                                                .into_iter()
                                                .map(|(index, offset, metadata, epoch)| {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(index)
                                                        .with_committed_offset(offset)
                                                        .with_committed_leader_epoch(epoch)
                                                        .with_metadata(Some(metadata))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    }
    let topics = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.clone(), t.partition_indexes.clone()))
            .collect()
    });
    OffsetFetchResponse::default().with_topics(
        committed(&request.group_id, topics, shared)
            .into_iter()
            .map(|(name, offsets)| {
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        offsets
                            .into_iter()
                            .map(|(index, offset, metadata, epoch)| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(metadata))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

pub(super) fn list(_request: &ListGroupsRequest, shared: &Shared) -> ListGroupsResponse {
    let mut groups: Vec<(String, String, &'static str)> = shared
        .coordinator
        .list()
        .into_iter()
        .map(|(id, protocol_type, state)| (id, protocol_type, state.name()))
        .collect();
    // Groups that only have committed offsets (embedded consumers, earlier runs).
    for id in shared.broker.list_groups() {
        if !groups.iter().any(|(g, _, _)| *g == id) {
            groups.push((id, "consumer".into(), "Empty"));
        }
    }
    groups.sort();
    ListGroupsResponse::default().with_groups(
        groups
            .into_iter()
            .map(|(id, protocol_type, state)| {
                ListedGroup::default()
                    .with_group_id(GroupId(text(&id)))
                    .with_protocol_type(text(&protocol_type))
                    .with_group_state(text(state))
            })
            .collect(),
    )
}

pub(super) fn describe(request: &DescribeGroupsRequest, shared: &Shared) -> DescribeGroupsResponse {
    DescribeGroupsResponse::default().with_groups(
        request
            .groups
            .iter()
            .map(|id| {
                let described = DescribedGroup::default().with_group_id(id.clone());
                match shared.coordinator.describe(id) {
                    Some(view) => described
                        .with_group_state(text(view.state.name()))
                        .with_protocol_type(text(&view.protocol_type))
                        .with_protocol_data(text(&view.protocol))
                        .with_members(
                            view.members
                                .into_iter()
                                .map(|m| {
                                    DescribedGroupMember::default()
                                        .with_member_id(text(&m.member_id))
                                        .with_client_id(text(&m.client_id))
                                        .with_member_assignment(m.assignment)
                                })
                                .collect(),
                        ),
                    // Kafka describes an unknown group as a dead one.
                    None => described.with_group_state(text("Dead")),
                }
            })
            .collect(),
    )
}

/// Deletes groups without members: their committed offsets get tombstones in
/// `__consumer_offsets`.
pub(super) async fn delete(request: &DeleteGroupsRequest, shared: &Shared) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in &request.groups_names {
        let result = DeletableGroupResult::default().with_group_id(id.clone());
        let code = match shared.coordinator.remove_if_empty(id) {
            Err(code) => code,
            Ok(known) => match shared.broker.delete_group(id).await {
                Ok(_) => 0,
                // Known to the coordinator only (members came and went, nothing committed).
                Err(logbrook_core::Error::UnknownGroup(_)) if known => 0,
                Err(logbrook_core::Error::UnknownGroup(_)) => ResponseError::GroupIdNotFound.code(),
                Err(logbrook_core::Error::GroupNotEmpty { .. }) => {
                    ResponseError::NonEmptyGroup.code()
                }
                Err(e) => error_code(&e),
            },
        };
        results.push(result.with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}
