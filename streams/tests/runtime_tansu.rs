//! The same pipeline on an independent Kafka-compatible broker: Tansu 0.6 (in Rust, not
//! Logbrook's code), started on loopback from the binary `scripts/kafka-clients.sh` installs.
//! Tansu's transactions are incomplete (read_committed sees aborted records), so the app runs
//! at-least-once there; docs/streams.md says what works on it and what does not.
//!
//! Without `LOGBROOK_TEST_TANSU` the tests skip locally and fail on CI.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::word_count;
use logbrook_client::{Client, Cluster};
use logbrook_core::{SeekTo, TopicPartition};
use logbrook_streams::{ProcessingGuarantee, StreamsApp, StreamsConfig};
use tokio_util::sync::CancellationToken;

/// A Tansu broker on a free loopback port, storing in memory; killed on drop.
struct Tansu {
    child: Child,
    bootstrap: String,
}

impl Tansu {
    fn start() -> Option<Self> {
        let binary = match std::env::var_os("LOGBROOK_TEST_TANSU") {
            Some(path) if !path.is_empty() => path,
            _ if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) => panic!(
                "LOGBROOK_TEST_TANSU is not set, and CI must run the Tansu tests: run \
                 ./scripts/test.sh (scripts/kafka-clients.sh installs Tansu)"
            ),
            _ => {
                eprintln!("skipped: LOGBROOK_TEST_TANSU is not set (./scripts/test.sh sets it)");
                return None;
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting Tansu ({}): {e}", binary.to_string_lossy()));
        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "Tansu did not listen on {bootstrap}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, bootstrap })
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tansu with word count's topics (3 partitions each), and a client of it.
async fn word_count_on_tansu() -> Option<(Tansu, Cluster)> {
    let tansu = Tansu::start()?;
    let cluster = Cluster::connect(&tansu.bootstrap, Vec::new())
        .await
        .unwrap();
    for topic in ["lines", "word-counts"] {
        cluster.create_topic(topic, 3, &[]).await.unwrap();
    }
    Some((tansu, cluster))
}

/// The latest count per word in `word-counts`, once every word in `expected` reached its
/// count there (at-least-once: an update may come twice, a count may not stop short).
async fn wait_for_counts(cluster: &Cluster, expected: &BTreeMap<String, u64>) {
    let client = Client::Cluster(cluster.clone());
    let mut consumer = client.consumer(None, 1 << 20).unwrap();
    let partitions: Vec<TopicPartition> = (0..3)
        .map(|p| TopicPartition::new("word-counts", p))
        .collect();
    consumer.assign(partitions.clone()).await.unwrap();
    for tp in &partitions {
        consumer.seek(tp, SeekTo::Earliest).await.unwrap();
    }
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while &latest != expected {
        assert!(
            Instant::now() < deadline,
            "counts on Tansu: {latest:?}, expected {expected:?}"
        );
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let word = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
            let count: u64 = serde_json::from_slice(&record.value.unwrap()).unwrap();
            latest.insert(word, count);
        }
    }
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(w, c)| (w.to_string(), *c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_runs_at_least_once_on_tansu_and_restores_its_store_from_the_changelog() {
    let Some((_tansu, cluster)) = word_count_on_tansu().await else {
        return;
    };
    let state_dir = tempfile::tempdir().unwrap();
    let config = || StreamsConfig {
        state_dir: Some(state_dir.path().to_path_buf()),
        bootstrap_servers: Some(cluster.bootstrap().to_string()),
        processing_guarantee: ProcessingGuarantee::AtLeastOnce,
        ..StreamsConfig::new("wc")
    };
    common::produce_lines_to(&cluster, &["a b a", "b a", "c a"]).await;
    let app = StreamsApp::connect(word_count(), config()).await.unwrap();
    // The internal topics were created on Tansu, with the input's partition count.
    for topic in ["wc-counts-changelog", "wc-counts-repartition"] {
        assert_eq!(cluster.partition_count(topic).await.unwrap(), 3, "{topic}");
    }
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    wait_for_counts(&cluster, &counts(&[("a", 4), ("b", 2), ("c", 1)])).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    // Without local stores the restart restores the counts from Tansu's changelog and goes on
    // from the committed offsets: a count that started over would stop short of these.
    std::fs::remove_dir_all(state_dir.path()).unwrap();
    common::produce_lines_to(&cluster, &["a c"]).await;
    let app = StreamsApp::connect(word_count(), config()).await.unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    wait_for_counts(&cluster, &counts(&[("a", 5), ("b", 2), ("c", 2)])).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_tasks_on_tansu_and_one_takes_over_when_the_other_stops() {
    let Some((_tansu, cluster)) = word_count_on_tansu().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let start = |instance: &str| {
        let config = StreamsConfig {
            state_dir: Some(dir.path().join(instance)),
            bootstrap_servers: Some(cluster.bootstrap().to_string()),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            ..StreamsConfig::new("shared")
        };
        async move {
            let app = StreamsApp::connect(word_count(), config).await.unwrap();
            let metrics = app.metrics();
            let shutdown = CancellationToken::new();
            let running = tokio::spawn(app.run(shutdown.clone()));
            (shutdown, running, metrics)
        }
    };
    let (stop_a, running_a, metrics_a) = start("a").await;
    common::produce_lines_to(&cluster, &["x y", "y z", "z x"]).await;
    wait_for_counts(&cluster, &counts(&[("x", 2), ("y", 2), ("z", 2)])).await;

    let (stop_b, running_b, metrics_b) = start("b").await;
    // Tansu's rebalances take ~20 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    while metrics_b.running_tasks().is_empty() {
        assert!(Instant::now() < deadline, "the second instance got no task");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut all: Vec<u32> = metrics_a.running_tasks();
    all.extend(metrics_b.running_tasks());
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2], "each task runs once");
    common::produce_lines_to(&cluster, &["x y z", "x y z", "x y z"]).await;
    wait_for_counts(&cluster, &counts(&[("x", 5), ("y", 5), ("z", 5)])).await;

    stop_a.cancel();
    running_a.await.unwrap().unwrap();
    common::produce_lines_to(&cluster, &["x", "y", "z"]).await;
    wait_for_counts(&cluster, &counts(&[("x", 6), ("y", 6), ("z", 6)])).await;
    assert_eq!(metrics_b.running_tasks(), [0, 1, 2]);
    stop_b.cancel();
    running_b.await.unwrap().unwrap();
}
