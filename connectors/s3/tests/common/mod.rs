//! A fresh bucket per test on the server `scripts/s3-server.sh` starts (the test script sets
//! `LOGBROOK_TEST_S3_ENDPOINT`, `LOGBROOK_TEST_S3_ACCESS_KEY` and `LOGBROOK_TEST_S3_SECRET_KEY`),
//! records to write, and a fault-injecting proxy.

#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use logbrook_connect::{
    Header, Record, Sink, SinkConnector, SinkContext, Source, SourceConnector, SourceContext,
    SourceRecord,
};
use logbrook_connector_s3::sink::S3SinkConfig;
use logbrook_connector_s3::source::S3SourceConfig;
use serde_json::{Value, json};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run ./scripts/test.sh, or start a server with \
             scripts/s3-server.sh start and export LOGBROOK_TEST_S3_ENDPOINT=$(scripts/s3-server.sh url) \
             LOGBROOK_TEST_S3_ACCESS_KEY=$(scripts/s3-server.sh access-key) \
             LOGBROOK_TEST_S3_SECRET_KEY=$(scripts/s3-server.sh secret-key)"
        )
    })
}

/// The test server's endpoint URL.
pub fn endpoint() -> String {
    env("LOGBROOK_TEST_S3_ENDPOINT")
}

/// A client for the test server (or a proxy in front of it).
pub fn client_for(endpoint: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            env("LOGBROOK_TEST_S3_ACCESS_KEY"),
            env("LOGBROOK_TEST_S3_SECRET_KEY"),
            None,
            None,
            "test",
        ))
        .build();
    Client::from_conf(config)
}

/// A bucket of its own for one test.
pub struct TestBucket {
    /// Its name.
    pub name: String,
    /// A client of the test server.
    pub client: Client,
}

impl TestBucket {
    /// Creates `lb-<label>-<pid>-<n>`.
    pub async fn new(label: &str) -> Self {
        let name = format!(
            "lb-{}-{}-{}",
            label.replace('_', "-"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = client_for(&endpoint());
        client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "create bucket {name}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        Self { name, client }
    }

    /// The sink/source keys that reach this bucket (through `endpoint`).
    pub fn keys_via(&self, endpoint: &str) -> Value {
        json!({
            "bucket": self.name,
            "endpoint": endpoint,
            "region": "us-east-1",
            "access_key_id": env("LOGBROOK_TEST_S3_ACCESS_KEY"),
            "secret_access_key": env("LOGBROOK_TEST_S3_SECRET_KEY"),
        })
    }

    /// A sink config for this bucket: its keys plus `extra`.
    pub fn sink_config(&self, extra: Value) -> S3SinkConfig {
        self.sink_config_via(&endpoint(), extra)
    }

    /// A sink config reaching this bucket through `endpoint`.
    pub fn sink_config_via(&self, endpoint: &str, extra: Value) -> S3SinkConfig {
        let mut keys = self.keys_via(endpoint);
        merge(&mut keys, extra);
        serde_json::from_value(keys).expect("sink config")
    }

    /// A source config for this bucket: its keys plus `extra`.
    pub fn source_config(&self, extra: Value) -> S3SourceConfig {
        let mut keys = self.keys_via(&endpoint());
        merge(&mut keys, extra);
        serde_json::from_value(keys).expect("source config")
    }

    /// Every key in the bucket, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.name)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// An object's bytes.
    pub async fn get(&self, key: &str) -> Vec<u8> {
        let object = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        object.body.collect().await.expect("body").to_vec()
    }

    /// An object's user metadata.
    pub async fn metadata(&self, key: &str) -> BTreeMap<String, String> {
        let head = self
            .client
            .head_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("head {key}: {e}"));
        head.metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Puts an object.
    pub async fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        self.client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(bytes.into().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }

    /// The JSON lines of every `.json` object, by key.
    pub async fn json_objects(&self) -> BTreeMap<String, Vec<Value>> {
        let mut out = BTreeMap::new();
        for key in self.keys().await {
            if !key.ends_with(".json") {
                continue;
            }
            let bytes = self.get(&key).await;
            let lines = bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("json line"))
                .collect();
            out.insert(key, lines);
        }
        out
    }

    /// Waits until the bucket holds `n` objects (or 20 s), then returns their keys.
    pub async fn wait_for_objects(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let keys = self.keys().await;
            if keys.len() >= n {
                return keys;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} objects after 20 s: {keys:#?}",
                keys.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Overwrites keys of `base` with those of `extra` (both objects).
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
}

/// Opens a sink task.
pub async fn open_sink(config: S3SinkConfig, topics: &[&str]) -> Box<dyn Sink> {
    config
        .open(SinkContext {
            connector: "s3-test".into(),
            task: 0,
            topics: topics.iter().map(|t| t.to_string()).collect(),
        })
        .await
        .unwrap_or_else(|e| panic!("open sink: {e}"))
}

/// A record as the runtime gives sinks: topic, partition, offset, timestamp, a key, a value
/// object and two headers (one without a value).
pub fn record(topic: &str, partition: u32, offset: u64) -> Record {
    Record {
        topic: topic.into(),
        partition: Some(partition),
        offset: Some(offset),
        timestamp: Some(1_714_564_800_000 + offset as i64 * 1000),
        key: Some(json!(format!("k-{offset}"))),
        key_schema: None,
        value: Some(json!({"id": offset, "partition": partition, "name": format!("n{offset}")})),
        value_schema: None,
        headers: vec![
            Header {
                key: "trace".into(),
                value: Some(Bytes::from(vec![0, 255, offset as u8])),
            },
            Header {
                key: "none".into(),
                value: None,
            },
        ],
        original: None,
    }
}

/// Records `from..to` of one partition.
pub fn records(topic: &str, partition: u32, from: u64, to: u64) -> Vec<Record> {
    (from..to).map(|o| record(topic, partition, o)).collect()
}

/// Flushes until the sink holds nothing back (its uploads finished), or fails after 20 s.
pub async fn flush_until_durable(sink: &mut Box<dyn Sink>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sink.flush().await.expect("flush");
        let pending = sink.pending_offsets();
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still pending after 20 s: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Flushes until the sink holds nothing of `partition` back, or fails after 20 s.
pub async fn flush_until_partition_durable(sink: &mut Box<dyn Sink>, partition: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sink.flush().await.expect("flush");
        let pending = sink.pending_offsets();
        if pending.iter().all(|(_, p, _)| *p != partition) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still pending after 20 s: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `offset` field of every line of every object, in key order.
pub fn offsets_of(objects: &BTreeMap<String, Vec<Value>>) -> Vec<u64> {
    objects
        .values()
        .flatten()
        .map(|line| line["offset"].as_u64().expect("offset"))
        .collect()
}

/// Opens a source task with stored `offsets` (source partition, offset) and the connector's
/// `topic` ("" when it has none).
pub async fn open_source(
    config: S3SourceConfig,
    topic: &str,
    offsets: Vec<(Value, Value)>,
) -> Box<dyn Source> {
    config
        .open(SourceContext::new("s3-test", 0, topic, offsets))
        .await
        .unwrap_or_else(|e| panic!("open source: {e}"))
}

/// Polls until `n` records (or 20 s).
pub async fn poll_n(source: &mut Box<dyn Source>, n: usize) -> Vec<SourceRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out: Vec<SourceRecord> = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "got {} of {n} records: {:#?}",
            out.len(),
            out.iter()
                .map(|r| r.record.value.clone())
                .collect::<Vec<_>>()
        );
        out.extend(source.poll().await.expect("poll"));
    }
    out
}

/// Polls for `wait` and returns whatever comes.
pub async fn poll_for(source: &mut Box<dyn Source>, wait: Duration) -> Vec<SourceRecord> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        out.extend(source.poll().await.expect("poll"));
    }
    out
}

/// The last offset of each source partition among `records`: what the runtime stores.
pub fn stored_offsets(records: &[SourceRecord]) -> Vec<(Value, Value)> {
    let mut last: BTreeMap<String, (Value, Value)> = BTreeMap::new();
    for r in records {
        last.insert(
            r.source_partition.to_string(),
            (r.source_partition.clone(), r.source_offset.clone()),
        );
    }
    last.into_values().collect()
}
