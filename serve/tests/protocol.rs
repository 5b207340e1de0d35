//! The server over loopback with hand-built requests (the `kafka-protocol` codecs): produce,
//! fetch and list offsets round trips, and hostile frames that must close only their own
//! connection. Real clients (kcat, confluent-kafka) are in `cli/tests/serve_clients.rs`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{batch, call, fetch, produce, start, topic_name};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn produce_fetch_and_list_offsets_round_trip_the_stored_bytes() {
    let server = start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let versions: ApiVersionsResponse = call(
        &mut client,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    let produce_range = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .map(|k| (k.min_version, k.max_version));
    assert_eq!(produce_range, Some((0, 11)));
    // v0-2 carry the old message formats (the codec has none): refused per partition in the
    // v2 layout, nothing appended, the connection stays usable.
    assert_eq!(
        produce_v2(&mut client, 1, b"an old message set").await,
        vec![(
            1,
            kafka_protocol::error::ResponseError::UnsupportedVersion.code(),
            -1,
            -1
        )]
    );

    for version in [3, 9] {
        let response: ProduceResponse = call(
            &mut client,
            ApiKey::Produce,
            version,
            &produce(1, batch(&["a", "b"])),
        )
        .await;
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "{partition:?}");
        assert_eq!(partition.base_offset, if version == 3 { 0 } else { 2 });
    }
    // A fetch returns both batches as stored, with the offsets the log gave them.
    let response: FetchResponse = call(&mut client, ApiKey::Fetch, 12, &fetch(1, 0, 0)).await;
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 4);
    let mut records = data.records.clone().unwrap();
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records).unwrap();
    let offsets: Vec<i64> = sets
        .iter()
        .flat_map(|s| s.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, [0, 1, 2, 3]);

    // A long poll at the end wakes up when a record arrives.
    let mut waiter = TcpStream::connect(server.addr).await.unwrap();
    let poll = tokio::spawn(async move {
        let response: FetchResponse =
            call(&mut waiter, ApiKey::Fetch, 11, &fetch(1, 4, 10_000)).await;
        response
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: ProduceResponse = call(
        &mut client,
        ApiKey::Produce,
        9,
        &produce(1, batch(&["late"])),
    )
    .await;
    let woken = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    let data = &woken.responses[0].partitions[0];
    assert!(
        data.records.as_ref().is_some_and(|r| !r.is_empty()),
        "{data:?}"
    );

    let list = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(topic_name())
            .with_partitions(
                [-2, -1, 1_001]
                    .into_iter()
                    .map(|ts| {
                        ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_timestamp(ts)
                    })
                    .collect(),
            ),
    ]);
    let offsets: ListOffsetsResponse = call(&mut client, ApiKey::ListOffsets, 5, &list).await;
    let found: Vec<i64> = offsets.topics[0]
        .partitions
        .iter()
        .map(|p| p.offset)
        .collect();
    assert_eq!(found, [0, 5, 1]);

    // Logbrook's own topics take no records from clients.
    let mut internal = produce(0, batch(&["x"]));
    internal.topic_data[0].name = TopicName(StrBytes::from_static_str("__consumer_offsets"));
    let response: ProduceResponse = call(&mut client, ApiKey::Produce, 9, &internal).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 17);
    let offsets = server.broker.topic("__consumer_offsets").unwrap();
    assert_eq!(offsets.partition(0).unwrap().log().high_watermark(), 0);

    // A corrupt batch is refused and nothing is appended.
    let mut bad = BytesMut::from(&batch(&["x"])[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let response: ProduceResponse =
        call(&mut client, ApiKey::Produce, 9, &produce(0, bad.freeze())).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 2);
    let log = server
        .broker
        .topic("t")
        .unwrap()
        .partition(0)
        .unwrap()
        .log()
        .clone();
    assert_eq!(log.high_watermark(), 0);
    server.stop().await;
}

#[tokio::test]
async fn hostile_frames_close_only_their_own_connection() {
    let server = start().await;
    let mut good = TcpStream::connect(server.addr).await.unwrap();
    let frames: Vec<Vec<u8>> = vec![
        // An absurd length prefix: nothing is allocated for it.
        i32::MAX.to_be_bytes().to_vec(),
        (-5i32).to_be_bytes().to_vec(),
        // An unknown api key.
        [
            &12i32.to_be_bytes()[..],
            &[0x7f, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        ]
        .concat(),
        // Produce v9 with a body of garbage.
        [
            &12i32.to_be_bytes()[..],
            &[0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ]
        .concat(),
        // Cut short: says 100 bytes, sends 6, then hangs up.
        [&100i32.to_be_bytes()[..], &[0, 18, 0, 3, 0, 0]].concat(),
    ];
    for frame in frames {
        let mut hostile = TcpStream::connect(server.addr).await.unwrap();
        hostile.write_all(&frame).await.unwrap();
        hostile.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), hostile.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server closed the connection");
        assert!(rest.is_empty(), "no answer to {frame:?}");
        // The other connection still works.
        let versions: ApiVersionsResponse = call(
            &mut good,
            ApiKey::ApiVersions,
            0,
            &ApiVersionsRequest::default(),
        )
        .await;
        assert_eq!(versions.error_code, 0);
    }
    server.stop().await;
}

/// xorshift64*: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[tokio::test]
async fn random_requests_to_every_api_never_take_the_server_down() {
    let server = start().await;
    let mut good = TcpStream::connect(server.addr).await.unwrap();
    let mut noise = Noise(0x5eed_1234_abcd_0001);
    for case in 0..250i32 {
        // A well-formed header (so the body reaches the API's decoder) and a random body, often
        // with huge array and string lengths in it.
        let key = (noise.next() % 70) as i16;
        let version = (noise.next() % 14) as i16;
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&case.to_be_bytes());
        frame.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
        let len = (noise.next() % 256) as usize;
        for _ in 0..len {
            let byte = match noise.next() % 4 {
                0 => 0xff,
                1 => 0x7f,
                _ => noise.next() as u8,
            };
            frame.extend_from_slice(&[byte]);
        }
        let mut hostile = TcpStream::connect(server.addr).await.unwrap();
        hostile.write_i32(frame.len() as i32).await.unwrap();
        hostile.write_all(&frame).await.unwrap();
        hostile.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), hostile.read_to_end(&mut rest)).await;
        assert!(
            read.is_ok(),
            "case {case} (api {key} v{version}): no answer and no close"
        );
        let versions: ApiVersionsResponse = call(
            &mut good,
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default(),
        )
        .await;
        assert_eq!(versions.error_code, 0, "after case {case}");
    }
    server.stop().await;
}

/// Sends a Produce v2 request (built by hand: the codec has no v0-2) of one message set to
/// partition `index` of topic "t"; returns each partition's (index, error, base offset, log
/// append time).
async fn produce_v2(
    client: &mut tokio::net::TcpStream,
    index: i32,
    message_set: &[u8],
) -> Vec<(i32, i16, i64, i64)> {
    use bytes::{Buf, BufMut, BytesMut};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = BytesMut::new();
    request.put_i16(ApiKey::Produce as i16);
    request.put_i16(2);
    request.put_i32(41); // correlation id
    request.put_i16(4);
    request.put_slice(b"test");
    request.put_i16(-1); // acks
    request.put_i32(5_000); // timeout
    request.put_i32(1);
    request.put_i16(1);
    request.put_slice(b"t");
    request.put_i32(1);
    request.put_i32(index);
    request.put_i32(message_set.len() as i32);
    request.put_slice(message_set);
    client.write_i32(request.len() as i32).await.unwrap();
    client.write_all(&request).await.unwrap();
    let size = client.read_i32().await.unwrap();
    let mut response = vec![0; size as usize];
    client.read_exact(&mut response).await.unwrap();
    let mut response = bytes::Bytes::from(response);
    assert_eq!(response.get_i32(), 41, "correlation id");
    assert_eq!(response.get_i32(), 1, "one topic");
    assert_eq!(response.get_i16(), 1);
    assert_eq!(&response.split_to(1)[..], b"t");
    let partitions = response.get_i32();
    let answers = (0..partitions)
        .map(|_| {
            (
                response.get_i32(),
                response.get_i16(),
                response.get_i64(),
                response.get_i64(),
            )
        })
        .collect();
    assert_eq!(response.get_i32(), 0, "throttle time");
    assert!(!response.has_remaining());
    answers
}

#[tokio::test]
async fn only_the_first_partition_with_data_may_exceed_the_fetch_limits() {
    let server = common::start().await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    // One ~600 KB batch in each of the two partitions.
    let big = "x".repeat(600_000);
    for partition in 0..2 {
        let response: ProduceResponse = call(
            &mut client,
            ApiKey::Produce,
            9,
            &produce(partition, batch(&[&big])),
        )
        .await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let both = |max_bytes: i32, partition_max_bytes: i32| {
        let mut request = fetch(0, 0, 0).with_max_bytes(max_bytes);
        let partitions = (0..2)
            .map(|p| {
                request.topics[0].partitions[0]
                    .clone()
                    .with_partition(p)
                    .with_partition_max_bytes(partition_max_bytes)
            })
            .collect();
        request.topics[0].partitions = partitions;
        request
    };
    let sizes = |response: &FetchResponse| -> Vec<usize> {
        response.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .collect()
    };
    // 1 MB for the whole fetch: the first batch fits, the second would overshoot and waits.
    let response: FetchResponse =
        call(&mut client, ApiKey::Fetch, 12, &both(1_000_000, 1 << 20)).await;
    let got = sizes(&response);
    assert!(got[0] > 600_000 && got[1] == 0, "{got:?}");
    // Limits smaller than one batch: the first partition still gets its batch (KIP-74), the
    // second nothing.
    let response: FetchResponse = call(&mut client, ApiKey::Fetch, 12, &both(1000, 1000)).await;
    let got = sizes(&response);
    assert!(got[0] > 600_000 && got[1] == 0, "{got:?}");
    // Room for both: both come.
    let response: FetchResponse =
        call(&mut client, ApiKey::Fetch, 12, &both(4 << 20, 1 << 20)).await;
    let got = sizes(&response);
    assert!(got[0] > 600_000 && got[1] > 600_000, "{got:?}");
    server.stop().await;
}
