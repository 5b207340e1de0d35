//! The admin and recovery APIs over loopback with hand-built requests: DeleteGroups,
//! OffsetForLeaderEpoch, ListOffsets' max timestamp, topics created by Metadata,
//! IncrementalAlterConfigs, CreatePartitions and DeleteRecords, each with Kafka's error codes.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use bytes::Bytes;
use common::{batch, call, fetch, produce, start, start_with, topic_name};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, DeleteGroupsRequest, DeleteGroupsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DescribeConfigsRequest, DescribeConfigsResponse, FetchResponse, GroupId,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, JoinGroupRequest,
    JoinGroupResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use logbrook_core::TopicPartition;
use logbrook_core::batch::BatchBuilder;
use tokio::net::TcpStream;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn name(s: &str) -> TopicName {
    TopicName(text(s))
}

async fn produce_ok(client: &mut TcpStream, partition: i32, records: Bytes) -> i64 {
    let response: ProduceResponse =
        call(client, ApiKey::Produce, 9, &produce(partition, records)).await;
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, 0, "{answer:?}");
    answer.base_offset
}

#[tokio::test]
async fn every_new_api_is_advertised() {
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let versions: ApiVersionsResponse = call(
        &mut client,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    let range = |api: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|k| k.api_key == api as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::DeleteGroups), Some((0, 2)));
    assert_eq!(range(ApiKey::OffsetForLeaderEpoch), Some((2, 4)));
    assert_eq!(range(ApiKey::IncrementalAlterConfigs), Some((0, 1)));
    assert_eq!(range(ApiKey::CreatePartitions), Some((0, 3)));
    assert_eq!(range(ApiKey::DeleteRecords), Some((0, 2)));
    server.stop().await;
}

#[tokio::test]
async fn delete_groups_deletes_committed_offsets_unless_members_are_in() {
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let tp = TopicPartition::new("t", 0);
    server
        .broker
        .commit_offsets("idle", &[(tp.clone(), 3)])
        .await
        .unwrap();
    server
        .broker
        .commit_offsets("busy", &[(tp.clone(), 4)])
        .await
        .unwrap();
    // A member joins "busy" (v3: no second join for a member id).
    let joined: JoinGroupResponse = call(
        &mut client,
        ApiKey::JoinGroup,
        3,
        &JoinGroupRequest::default()
            .with_group_id(GroupId(text("busy")))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(text("range"))
                    .with_metadata(Bytes::new()),
            ]),
    )
    .await;
    assert_eq!(joined.error_code, 0);

    for version in [0, 2] {
        let deleted: DeleteGroupsResponse = call(
            &mut client,
            ApiKey::DeleteGroups,
            version,
            &DeleteGroupsRequest::default().with_groups_names(
                ["idle", "busy", "never"]
                    .into_iter()
                    .map(|g| GroupId(text(g)))
                    .collect(),
            ),
        )
        .await;
        let codes: Vec<i16> = deleted.results.iter().map(|r| r.error_code).collect();
        // The first time idle goes; then it is as unknown as "never" (GROUP_ID_NOT_FOUND).
        let idle = if version == 0 { 0 } else { 69 };
        assert_eq!(codes, [idle, 68, 69], "v{version}");
    }
    assert_eq!(server.broker.committed_offset("idle", &tp), None);
    assert_eq!(server.broker.committed_offset("busy", &tp), Some(4));
    server.stop().await;
}

#[tokio::test]
async fn offset_for_leader_epoch_ends_epoch_zero_at_the_log_end() {
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    produce_ok(&mut client, 0, batch(&["a", "b", "c"])).await;
    let ask = |topic: &str, partition: i32, current: i32, epoch: i32| {
        OffsetForLeaderTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![
                OffsetForLeaderPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch),
            ])
    };
    for version in [2, 4] {
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![
                ask("t", 0, 0, 0),
                ask("t", 1, -1, 0),
                ask("t", 0, 1, 0),
                ask("t", 0, -1, 3),
                ask("t", 9, -1, 0),
                ask("nope", 0, -1, 0),
            ]);
        let response: OffsetForLeaderEpochResponse =
            call(&mut client, ApiKey::OffsetForLeaderEpoch, version, &request).await;
        let answers: Vec<(i16, i32, i64)> = response
            .topics
            .iter()
            .map(|t| &t.partitions[0])
            .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
            .collect();
        assert_eq!(
            answers,
            [
                (0, 0, 3),
                (0, 0, 0),
                (75, -1, -1), // UNKNOWN_LEADER_EPOCH: the client is ahead
                (0, -1, -1),  // an epoch that never was: undefined
                (3, -1, -1),
                (3, -1, -1),
            ],
            "v{version}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn list_offsets_finds_the_record_with_the_largest_timestamp() {
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let list = |timestamp: i64| {
        ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name())
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(1)
                        .with_timestamp(timestamp),
                ]),
        ])
    };
    let empty: ListOffsetsResponse = call(&mut client, ApiKey::ListOffsets, 7, &list(-3)).await;
    let p = &empty.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.timestamp), (0, -1, -1));

    for timestamps in [[10, 50, 20], [30, 50, 40]] {
        let mut builder = BatchBuilder::with_capacity(256);
        for t in timestamps {
            builder.push(t, None, Some(b"v"), &[]);
        }
        produce_ok(
            &mut client,
            1,
            Bytes::copy_from_slice(builder.finish().as_bytes()),
        )
        .await;
    }
    let found: ListOffsetsResponse = call(&mut client, ApiKey::ListOffsets, 7, &list(-3)).await;
    let p = &found.topics[0].partitions[0];
    // The first record with the largest time.
    assert_eq!((p.error_code, p.offset, p.timestamp), (0, 1, 50));
    // Before v7 -3 is not a thing.
    let old: ListOffsetsResponse = call(&mut client, ApiKey::ListOffsets, 6, &list(-3)).await;
    assert_eq!(old.topics[0].partitions[0].error_code, 35);
    server.stop().await;
}

fn metadata(topics: &[&str], allow: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(allow)
}

fn codes(response: &MetadataResponse) -> Vec<(i16, usize)> {
    response
        .topics
        .iter()
        .map(|t| (t.error_code, t.partitions.len()))
        .collect()
}

#[tokio::test]
async fn metadata_creates_unknown_topics_as_kafka_does() {
    let server = start_with(|config| logbrook_serve::ServeConfig {
        num_partitions: 3,
        ..config
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    // Created: LEADER_NOT_AVAILABLE first, the topic the next time. An invalid name is
    // INVALID_TOPIC_EXCEPTION; Logbrook's own names stay unknown.
    let first: MetadataResponse = call(
        &mut client,
        ApiKey::Metadata,
        12,
        &metadata(&["fresh", "a/b", "__mine"], true),
    )
    .await;
    assert_eq!(codes(&first), [(5, 0), (17, 0), (3, 0)]);
    let again: MetadataResponse = call(
        &mut client,
        ApiKey::Metadata,
        12,
        &metadata(&["fresh"], true),
    )
    .await;
    assert_eq!(codes(&again), [(0, 3)]);
    assert_eq!(server.broker.topic("fresh").unwrap().partition_count(), 3);
    // A request that does not allow it creates nothing; v3 and older have no say (always allow).
    let refused: MetadataResponse = call(
        &mut client,
        ApiKey::Metadata,
        9,
        &metadata(&["quiet"], false),
    )
    .await;
    assert_eq!(codes(&refused), [(3, 0)]);
    assert!(server.broker.topic("quiet").is_err());
    let old: MetadataResponse =
        call(&mut client, ApiKey::Metadata, 1, &metadata(&["old"], true)).await;
    assert_eq!(codes(&old), [(5, 0)]);
    assert!(server.broker.topic("old").is_ok());
    // Produce to an unknown topic does not create it.
    let mut unknown = produce(0, batch(&["x"]));
    unknown.topic_data[0].name = name("by-produce");
    let response: ProduceResponse = call(&mut client, ApiKey::Produce, 9, &unknown).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 3);
    assert!(server.broker.topic("by-produce").is_err());
    server.stop().await;
}

#[tokio::test]
async fn metadata_creates_nothing_when_auto_creation_is_off() {
    let server = start_with(|config| logbrook_serve::ServeConfig {
        auto_create_topics: false,
        ..config
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    for version in [1, 12] {
        let response: MetadataResponse = call(
            &mut client,
            ApiKey::Metadata,
            version,
            &metadata(&["fresh"], true),
        )
        .await;
        assert_eq!(codes(&response), [(3, 0)], "v{version}");
    }
    assert!(server.broker.topic("fresh").is_err());
    server.stop().await;
}

fn alter(
    topic: &str,
    changes: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(text(topic))
                .with_configs(
                    changes
                        .iter()
                        .map(|(key, op, value)| {
                            AlterableConfig::default()
                                .with_name(text(key))
                                .with_config_operation(*op)
                                .with_value(value.map(text))
                        })
                        .collect(),
                ),
        ])
}

async fn described(client: &mut TcpStream, topic: &str) -> Vec<(String, String, i8)> {
    let response: DescribeConfigsResponse = call(
        client,
        ApiKey::DescribeConfigs,
        4,
        &DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(text(topic))
                .with_configuration_keys(Some(vec![text("retention.ms"), text("segment.bytes")])),
        ]),
    )
    .await;
    response.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_deref().unwrap_or_default().to_string(),
                c.config_source,
            )
        })
        .collect()
}

#[tokio::test]
async fn incremental_alter_configs_sets_and_deletes_topic_configs() {
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let set = [
        ("retention.ms", 0, Some("60000")),
        ("segment.bytes", 0, Some("1048576")),
    ];
    for (version, validate_only) in [(0, true), (1, false)] {
        let response: IncrementalAlterConfigsResponse = call(
            &mut client,
            ApiKey::IncrementalAlterConfigs,
            version,
            &alter("t", &set, validate_only),
        )
        .await;
        assert_eq!(response.responses[0].error_code, 0, "{response:?}");
        let retention = server.broker.topic("t").unwrap().config().retention_ms;
        assert_eq!(
            retention,
            if validate_only {
                Some(604_800_000)
            } else {
                Some(60_000)
            }
        );
    }
    // Source 1: set on the topic.
    assert_eq!(
        described(&mut client, "t").await,
        [
            ("retention.ms".into(), "60000".into(), 1),
            ("segment.bytes".into(), "1048576".into(), 1)
        ]
    );
    // The live log runs with it.
    let log = server
        .broker
        .topic("t")
        .unwrap()
        .partition(1)
        .unwrap()
        .log()
        .clone();
    assert_eq!(log.config().segment_bytes, 1 << 20);

    // Delete: back to the default (source 5).
    let response: IncrementalAlterConfigsResponse = call(
        &mut client,
        ApiKey::IncrementalAlterConfigs,
        1,
        &alter("t", &[("retention.ms", 1, None)], false),
    )
    .await;
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(
        described(&mut client, "t").await[0],
        ("retention.ms".into(), "604800000".into(), 5)
    );

    // Refused, naming what is wrong; nothing changes.
    for (changes, code, named) in [
        (
            vec![("min.insync.replicas", 0, Some("2"))],
            40,
            "min.insync.replicas",
        ),
        (vec![("retention.ms", 0, Some("soon"))], 40, "retention.ms"),
        (
            vec![("cleanup.policy", 2, Some("compact"))],
            40,
            "cleanup.policy",
        ),
        (
            vec![("retention.ms", 0, Some("1")), ("retention.ms", 1, None)],
            42,
            "retention.ms",
        ),
    ] {
        let response: IncrementalAlterConfigsResponse = call(
            &mut client,
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter("t", &changes, false),
        )
        .await;
        let answer = &response.responses[0];
        assert_eq!(answer.error_code, code, "{changes:?}: {answer:?}");
        let message = answer.error_message.as_deref().unwrap_or_default();
        assert!(
            message.contains(named) && message.contains("\"t\""),
            "{message}"
        );
    }
    let response: IncrementalAlterConfigsResponse = call(
        &mut client,
        ApiKey::IncrementalAlterConfigs,
        1,
        &alter("nope", &set, false),
    )
    .await;
    assert_eq!(response.responses[0].error_code, 3);
    let mut broker = alter("0", &set, false);
    broker.resources[0].resource_type = 4;
    let response: IncrementalAlterConfigsResponse =
        call(&mut client, ApiKey::IncrementalAlterConfigs, 1, &broker).await;
    assert_eq!(response.responses[0].error_code, 42);
    assert_eq!(
        server.broker.topic("t").unwrap().config().retention_ms,
        Some(604_800_000)
    );
    server.stop().await;
}

fn grow(topic: &str, count: i32, validate_only: bool) -> CreatePartitionsRequest {
    CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_validate_only(validate_only)
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(name(topic))
                .with_count(count),
        ])
}

#[tokio::test]
async fn create_partitions_grows_a_topic_and_never_shrinks_it() {
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    for (version, validate_only) in [(0, true), (3, false)] {
        let response: CreatePartitionsResponse = call(
            &mut client,
            ApiKey::CreatePartitions,
            version,
            &grow("t", 4, validate_only),
        )
        .await;
        assert_eq!(response.results[0].error_code, 0, "{response:?}");
        let count = server.broker.topic("t").unwrap().partition_count();
        assert_eq!(count, if validate_only { 2 } else { 4 });
    }
    let listed: MetadataResponse =
        call(&mut client, ApiKey::Metadata, 12, &metadata(&["t"], false)).await;
    assert_eq!(codes(&listed), [(0, 4)]);
    assert_eq!(produce_ok(&mut client, 3, batch(&["new"])).await, 0);

    for (topic, count, code) in [
        ("t", 4, 37),
        ("t", 3, 37),
        ("t", 1_000_000, 37),
        ("nope", 5, 3),
    ] {
        let response: CreatePartitionsResponse = call(
            &mut client,
            ApiKey::CreatePartitions,
            3,
            &grow(topic, count, false),
        )
        .await;
        let answer = &response.results[0];
        assert_eq!(answer.error_code, code, "{topic} to {count}: {answer:?}");
        assert!(answer.error_message.is_some());
    }
    assert_eq!(server.broker.topic("t").unwrap().partition_count(), 4);
    server.stop().await;
}

fn delete_records(partition: i32, offset: i64) -> DeleteRecordsRequest {
    DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(topic_name())
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset),
                ]),
        ])
}

async fn low_watermark(client: &mut TcpStream, partition: i32, offset: i64) -> (i16, i64) {
    let response: DeleteRecordsResponse = call(
        client,
        ApiKey::DeleteRecords,
        2,
        &delete_records(partition, offset),
    )
    .await;
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

#[tokio::test]
async fn delete_records_moves_the_log_start_that_fetch_and_list_offsets_honour() {
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    produce_ok(&mut client, 1, batch(&["a", "b", "c"])).await;
    produce_ok(&mut client, 1, batch(&["d", "e"])).await;
    assert_eq!(low_watermark(&mut client, 1, 4).await, (0, 4));
    assert_eq!(
        low_watermark(&mut client, 1, 2).await,
        (0, 4),
        "the start never moves back"
    );
    assert_eq!(
        low_watermark(&mut client, 1, 6).await,
        (1, -1),
        "past the high watermark"
    );
    assert_eq!(low_watermark(&mut client, 9, 0).await, (3, -1));

    let earliest: ListOffsetsResponse = call(
        &mut client,
        ApiKey::ListOffsets,
        7,
        &ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name())
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(1)
                        .with_timestamp(-2),
                ]),
        ]),
    )
    .await;
    assert_eq!(earliest.topics[0].partitions[0].offset, 4);
    let below: FetchResponse = call(&mut client, ApiKey::Fetch, 12, &fetch(1, 3, 0)).await;
    let data = &below.responses[0].partitions[0];
    assert_eq!((data.error_code, data.log_start_offset), (1, 4));
    let at: FetchResponse = call(&mut client, ApiKey::Fetch, 12, &fetch(1, 4, 0)).await;
    let data = &at.responses[0].partitions[0];
    assert_eq!((data.error_code, data.log_start_offset), (0, 4));

    // -1: up to the high watermark.
    let response: DeleteRecordsResponse = call(
        &mut client,
        ApiKey::DeleteRecords,
        0,
        &delete_records(1, -1),
    )
    .await;
    assert_eq!(response.topics[0].partitions[0].low_watermark, 5);
    server.stop().await;
}

#[tokio::test]
async fn create_topics_takes_replica_assignments_onto_this_broker_only() {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic,
    };
    use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, CreateTopicsResponse};
    let server = start().await;
    let mut client = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let topic = |name: &'static str, brokers: &[i32]| {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                brokers
                    .iter()
                    .enumerate()
                    .map(|(p, &b)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(p as i32)
                            .with_broker_ids(vec![BrokerId(b)])
                    })
                    .collect(),
            )
    };
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            topic("assigned", &[0, 0, 0]),
            topic("elsewhere", &[0, 1]),
        ]);
    let response: CreateTopicsResponse = call(&mut client, ApiKey::CreateTopics, 7, &request).await;
    let outcome: Vec<(String, i16, i32)> = response
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.error_code, t.num_partitions))
        .collect();
    assert_eq!(
        outcome,
        [
            ("assigned".to_string(), 0, 3),
            (
                "elsewhere".to_string(),
                kafka_protocol::error::ResponseError::InvalidReplicaAssignment.code(),
                -1
            ),
        ]
    );
    assert_eq!(
        server.broker.topic("assigned").unwrap().partition_count(),
        3
    );
    assert!(server.broker.topic("elsewhere").is_err());
    server.stop().await;
}

/// A JoinGroup v3 request (no second join for a member id) for `group`.
fn join_request(group: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::new()),
        ])
}

#[tokio::test]
async fn an_empty_groups_first_rebalance_waits_for_members_started_together() {
    use std::time::{Duration, Instant};
    let delay = Duration::from_millis(600);
    let server = start_with(|config| logbrook_serve::ServeConfig {
        group_initial_rebalance_delay: delay,
        ..config
    })
    .await;
    let started = Instant::now();
    let join = |pause: Duration| {
        let addr = server.addr;
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            let mut client = TcpStream::connect(addr).await.unwrap();
            let joined: JoinGroupResponse =
                call(&mut client, ApiKey::JoinGroup, 3, &join_request("together")).await;
            (joined, Instant::now())
        })
    };
    let (first, second) = (join(Duration::ZERO), join(Duration::from_millis(200)));
    let (first, first_at) = first.await.unwrap();
    let (second, _) = second.await.unwrap();
    // One generation for both, completed only after the delay.
    assert_eq!((first.error_code, second.error_code), (0, 0));
    assert_eq!((first.generation_id, second.generation_id), (1, 1));
    assert!(first_at - started >= delay, "{:?}", first_at - started);
    let leader = if first.leader == first.member_id {
        &first
    } else {
        &second
    };
    assert_eq!(leader.members.len(), 2);
    server.stop().await;

    // Without the delay the first member is a generation of its own at once.
    let server = start_with(|config| logbrook_serve::ServeConfig {
        group_initial_rebalance_delay: Duration::ZERO,
        ..config
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let alone: JoinGroupResponse =
        call(&mut client, ApiKey::JoinGroup, 3, &join_request("alone")).await;
    assert_eq!((alone.error_code, alone.generation_id), (0, 1));
    // Well under the 3 s a default server would wait.
    assert!(started.elapsed() < Duration::from_secs(2));
    server.stop().await;
}

#[tokio::test]
async fn a_stopping_server_answers_a_waiting_join_instead_of_hanging() {
    use std::time::Duration;
    // The first rebalance waits a minute: only the shutdown can end the join.
    let server = start_with(|config| logbrook_serve::ServeConfig {
        group_initial_rebalance_delay: Duration::from_secs(60),
        ..config
    })
    .await;
    let addr = server.addr;
    let join = tokio::spawn(async move {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let joined: JoinGroupResponse =
            call(&mut client, ApiKey::JoinGroup, 3, &join_request("waiting")).await;
        joined
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!join.is_finished(), "the join waits for the initial delay");
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the server stops while a member waits in JoinGroup");
    let joined = join.await.unwrap();
    assert_eq!(
        joined.error_code,
        kafka_protocol::error::ResponseError::CoordinatorNotAvailable.code()
    );
}

#[tokio::test]
async fn a_batch_over_the_topics_max_message_bytes_is_refused_as_too_large() {
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let altered: IncrementalAlterConfigsResponse = call(
        &mut client,
        ApiKey::IncrementalAlterConfigs,
        1,
        &alter("t", &[("max.message.bytes", 0, Some("500"))], false),
    )
    .await;
    assert_eq!(altered.responses[0].error_code, 0, "{altered:?}");
    let value = "v".repeat(600);
    let response: ProduceResponse = call(
        &mut client,
        ApiKey::Produce,
        9,
        &produce(0, batch(&[&value])),
    )
    .await;
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(
        answer.error_code,
        kafka_protocol::error::ResponseError::MessageTooLarge.code(),
        "{answer:?}"
    );
    // Under the limit the same partition takes batches.
    assert_eq!(produce_ok(&mut client, 0, batch(&["small"])).await, 0);
    assert_eq!(
        server.broker.topic("t").unwrap().config().max_message_bytes,
        500
    );
    server.stop().await;
}

#[tokio::test]
async fn offset_fetch_hands_back_the_committed_leader_epoch() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    };
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let commit = |partition: i32, offset: i64, epoch: i32| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(epoch)
    };
    let committed: OffsetCommitResponse = call(
        &mut client,
        ApiKey::OffsetCommit,
        7,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(text("epochs")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name())
                    .with_partitions(vec![commit(0, 5, 3), commit(1, 7, -1)]),
            ]),
    )
    .await;
    let codes: Vec<i16> = committed.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, [0, 0]);
    let fetched: OffsetFetchResponse = call(
        &mut client,
        ApiKey::OffsetFetch,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(text("epochs")))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name())
                    .with_partition_indexes(vec![0, 1]),
            ])),
    )
    .await;
    let answers: Vec<(i64, i32)> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| (p.committed_offset, p.committed_leader_epoch))
        .collect();
    assert_eq!(answers, [(5, 3), (7, -1)]);
    server.stop().await;
}
