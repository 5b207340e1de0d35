//! Broker failures no real server produces on demand, injected with librdkafka's mock cluster
//! (three brokers in this process): the group and transaction coordinators move, requests fail
//! with retriable errors and time out, a broker turns slow, one goes down and comes back. An
//! exactly-once word count runs through all of it; every count update appears exactly once.
//!
//! The mock writes no transaction markers: an aborted transaction's records are visible there.
//! So the faults here are the ones a task must ride out without aborting (librdkafka retries
//! them, and so does `ClusterProducer` for transaction calls it calls retriable); the ones that
//! abort a transaction (fencing, a dead instance) are tested against `logbrook serve`, whose
//! `read_committed` hides aborted records (runtime_cluster.rs, runtime_cluster_crash.rs).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::word_count;
use logbrook_client::{Client, Cluster};
use logbrook_core::TopicPartition;
use logbrook_streams::{StreamsApp, StreamsConfig};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio_util::sync::CancellationToken;

const APP: &str = "faults";

/// Reads `word-counts` (read_committed) on: the updates so far, in order per word.
struct Updates {
    consumer: logbrook_client::Consumer,
    seen: Vec<(String, u64)>,
}

impl Updates {
    async fn new(cluster: &Cluster) -> Self {
        let mut consumer = Client::Cluster(cluster.clone())
            .consumer(None, 1 << 20)
            .unwrap();
        let partitions = (0..3)
            .map(|p| TopicPartition::new("word-counts", p))
            .collect();
        consumer.assign(partitions).await.unwrap();
        Self {
            consumer,
            seen: Vec::new(),
        }
    }

    /// Waits until each word's latest count is `expected`, then checks that every word
    /// counted 1, 2, 3, ... with no update lost or repeated.
    async fn reach(&mut self, expected: u64, words: &[&str], during: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let latest: BTreeMap<&str, u64> =
                self.seen.iter().map(|(w, c)| (w.as_str(), *c)).collect();
            if words.iter().all(|w| latest.get(w) == Some(&expected)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{during}: counts stopped at {latest:?}, expected {expected} each"
            );
            for record in self
                .consumer
                .poll(Duration::from_millis(500))
                .await
                .unwrap()
            {
                let word = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
                let count = serde_json::from_slice(&record.value.unwrap()).unwrap();
                self.seen.push((word, count));
            }
        }
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for (word, count) in &self.seen {
            let previous = last.insert(word, *count).unwrap_or(0);
            assert_eq!(*count, previous + 1, "{during}: {word} in {:?}", self.seen);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_word_count_rides_out_coordinator_moves_errors_and_a_broker_restart() {
    common::init_tracing();
    let mock = MockCluster::new(3).unwrap();
    // The mock has no CreateTopics: every topic, internal ones too, exists up front.
    for topic in [
        "lines",
        "word-counts",
        "faults-counts-changelog",
        "faults-counts-repartition",
    ] {
        mock.create_topic(topic, 3, 1).unwrap();
    }
    let bootstrap = mock.bootstrap_servers();
    let cluster = Cluster::connect(&bootstrap, Vec::new()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = StreamsConfig {
        state_dir: Some(state.path().to_path_buf()),
        bootstrap_servers: Some(bootstrap.clone()),
        ..StreamsConfig::new(APP)
    };
    let words = ["p", "q", "r", "s", "t", "u"];
    let line = words.join(" ");
    let round = |n: usize| vec![line.clone(); n];
    let mut updates = Updates::new(&cluster).await;

    let app = StreamsApp::connect(word_count(), config).await.unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    common::produce_lines_to(&cluster, &round(3)).await;
    updates.reach(3, &words, "a clean start").await;

    // The group's and every task's transaction coordinator move to other brokers.
    mock.coordinator(MockCoordinator::Group(APP.into()), 2)
        .unwrap();
    for task in 0..3 {
        mock.coordinator(MockCoordinator::Transaction(format!("{APP}-{task}")), 3)
            .unwrap();
    }
    common::produce_lines_to(&cluster, &round(3)).await;
    updates.reach(6, &words, "coordinators moved").await;

    // Retriable errors and time-outs on the requests a task's commit makes.
    let errors = |code, n| vec![code; n];
    use RDKafkaRespErr::*;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &errors(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 4),
    );
    mock.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &errors(RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS, 3),
    );
    mock.request_errors(
        RDKafkaApiKey::TxnOffsetCommit,
        &errors(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, 3),
    );
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &errors(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 3),
    );
    mock.request_errors(
        RDKafkaApiKey::FindCoordinator,
        &errors(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, 2),
    );
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &errors(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 3),
    );
    common::produce_lines_to(&cluster, &round(3)).await;
    updates.reach(9, &words, "requests failing").await;

    // A slow broker: every answer from the transaction coordinator takes 1.5 s.
    mock.broker_round_trip_time(3, Duration::from_millis(1500))
        .unwrap();
    common::produce_lines_to(&cluster, &round(2)).await;
    updates.reach(11, &words, "a slow coordinator").await;
    mock.broker_round_trip_time(3, Duration::ZERO).unwrap();

    // A broker leading some of every topic's partitions goes down and comes back. (Taking
    // down the group coordinator's broker stalls the app on the mock: see docs/streams.md.)
    mock.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    mock.broker_up(1).unwrap();
    common::produce_lines_to(&cluster, &round(3)).await;
    updates.reach(14, &words, "a broker down and up").await;

    assert!(!running.is_finished(), "the app rode out every fault");
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
