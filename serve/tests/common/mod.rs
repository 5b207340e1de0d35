//! The server on loopback and hand-built requests (the `kafka-protocol` codecs), shared by the
//! protocol tests.
#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use logbrook_core::batch::BatchBuilder;
use logbrook_core::{Broker, TopicConfig};
use logbrook_serve::ServeConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A server with topic `t` (2 partitions) in a fresh data dir.
pub struct Server {
    pub addr: SocketAddr,
    pub broker: Broker,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// Starts a server with the default config.
pub async fn start() -> Server {
    start_with(|config| config).await
}

/// Starts a server with its config changed by `configure`.
pub async fn start_with(configure: impl FnOnce(ServeConfig) -> ServeConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).await.unwrap();
    let config = TopicConfig {
        partitions: 2,
        ..TopicConfig::default()
    };
    broker.create_topic("t", config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(logbrook_serve::serve(
        listener,
        None,
        broker.clone(),
        configure(ServeConfig::new(addr)),
        shutdown.clone(),
    ));
    Server {
        addr,
        broker,
        shutdown,
        task,
        _dir: dir,
    }
}

impl Server {
    /// Stops the server and closes the log.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.broker.close().await.unwrap();
    }
}

/// Sends one request and decodes its response.
pub async fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("test")))
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    stream.write_i32(body.len() as i32).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let size = stream.read_i32().await.unwrap();
    let mut response = vec![0u8; size as usize];
    stream.read_exact(&mut response).await.unwrap();
    let mut response = Bytes::from(response);
    let header =
        ResponseHeader::decode(&mut response, key.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    let decoded = Resp::decode(&mut response, version).unwrap();
    assert!(!response.has_remaining(), "the whole response is decoded");
    decoded
}

pub fn batch(values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::with_capacity(256);
    for (i, value) in values.iter().enumerate() {
        builder.push(1_000 + i as i64, Some(b"k"), Some(value.as_bytes()), &[]);
    }
    Bytes::copy_from_slice(builder.finish().as_bytes())
}

pub fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str("t"))
}

pub fn produce(partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name())
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

pub fn fetch(partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name())
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}
