//! The same pipeline on a Kafka-protocol cluster: a `logbrook serve` on loopback (in this
//! process, over its own data dir), reached through `StreamsConfig::bootstrap_servers`.
//! Repartitioning, a store with its changelog, exactly-once and at-least-once, and a restart
//! that restores the store from the cluster's changelog.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::word_count;
use std::collections::BTreeMap;
use std::time::Duration;

use logbrook_core::{
    Broker, CleanupPolicy, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicConfig,
};
use logbrook_streams::{
    KeyLookup, KeyQueryMetadata, LocalStores, ProcessingGuarantee, StreamsApp, StreamsConfig,
};
use tokio_util::sync::CancellationToken;

/// A log in `dir` with word count's topics (3 partitions each) and a server on loopback in
/// front of it: the log, the server's address, and the token that stops it.
async fn word_count_cluster(dir: &std::path::Path) -> (Broker, String, CancellationToken) {
    let broker = Broker::open(dir.join("data")).await.unwrap();
    for topic in ["lines", "word-counts"] {
        let config = TopicConfig {
            partitions: 3,
            ..TopicConfig::default()
        };
        broker.create_topic(topic, config).unwrap();
    }
    let (addr, server) = logbrook_serve::spawn_on_loopback(broker.clone(), |config| config)
        .await
        .unwrap();
    (broker, addr.to_string(), server)
}

/// A count update: the word and its count.
fn update(record: logbrook_core::ConsumerRecord) -> (String, u64) {
    let word = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
    (
        word,
        serde_json::from_slice(&record.value.unwrap()).unwrap(),
    )
}

/// The latest count per word in the output topic (read committed, from the log itself),
/// once `updates` updates arrived; and how many there were.
async fn latest_counts(broker: &Broker, updates: usize) -> (BTreeMap<String, u64>, usize) {
    let all = all_updates(broker, updates).await;
    let seen = all.len();
    assert!(
        seen >= updates,
        "only {seen} of {updates} count updates arrived"
    );
    (all.into_iter().collect(), seen)
}

async fn produce_lines(producer: &Producer, lines: &[&str]) {
    for (i, line) in lines.iter().enumerate() {
        producer
            .send(ProducerRecord::new("lines", line.to_string()).with_partition(i as u32 % 3))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
}

async fn counts_on_a_cluster_survive_a_restart_without_local_state(guarantee: ProcessingGuarantee) {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let (broker, bootstrap, server) = word_count_cluster(dir.path()).await;
    let config = || StreamsConfig {
        state_dir: Some(state_dir.clone()),
        bootstrap_servers: Some(bootstrap.clone()),
        processing_guarantee: guarantee,
        ..StreamsConfig::new("wc")
    };
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    // Lines land on different partitions; equal words must still meet in one task.
    produce_lines(&producer, &["a b a", "b a", "c a"]).await;

    let app = StreamsApp::connect(word_count(), config()).await.unwrap();
    // Created on the cluster, the changelog compacted.
    let changelog = broker.topic("wc-counts-changelog").unwrap();
    assert_eq!(changelog.partition_count(), 3);
    assert_eq!(changelog.config().cleanup_policy, CleanupPolicy::Compact);
    assert_eq!(
        broker
            .topic("wc-counts-repartition")
            .unwrap()
            .partition_count(),
        3
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let (counts, seen) = latest_counts(&broker, 7).await;
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 4), ("b".into(), 2), ("c".into(), 1)])
    );
    assert_eq!(seen, 7, "one update per input word");
    shutdown.cancel();
    running.await.unwrap().unwrap();

    // Lose the local stores: the restart restores them from the cluster's changelog.
    std::fs::remove_dir_all(&state_dir).unwrap();
    produce_lines(&producer, &["a c"]).await;
    let shutdown = CancellationToken::new();
    let app = StreamsApp::connect(word_count(), config()).await.unwrap();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let (counts, seen) = latest_counts(&broker, 9).await;
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 5), ("b".into(), 2), ("c".into(), 2)])
    );
    assert_eq!(seen, 9, "the restart processes only the new line");
    shutdown.cancel();
    running.await.unwrap().unwrap();
    server.cancel();
    broker.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_counts_on_a_cluster_survive_a_restart_without_local_state() {
    counts_on_a_cluster_survive_a_restart_without_local_state(ProcessingGuarantee::ExactlyOnce)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_counts_on_a_cluster_survive_a_restart_without_local_state() {
    counts_on_a_cluster_survive_a_restart_without_local_state(ProcessingGuarantee::AtLeastOnce)
        .await;
}

/// Every count update in the output topic so far (read committed), in order per word.
async fn all_updates(broker: &Broker, expected: usize) -> Vec<(String, u64)> {
    let mut consumer = Consumer::new(
        broker.clone(),
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    );
    consumer.subscribe(&["word-counts"]).unwrap();
    let mut updates = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while updates.len() < expected && std::time::Instant::now() < deadline {
        let polled = consumer.poll(Duration::from_millis(500)).await.unwrap();
        updates.extend(polled.into_iter().map(update));
    }
    // Anything more within a moment is a duplicate and must show.
    let more = consumer.poll(Duration::from_millis(1_000)).await.unwrap();
    updates.extend(more.into_iter().map(update));
    updates
}

/// `key`'s lookup in store `counts` once it is `expected` here or held elsewhere (a task
/// commits its store just after its outputs, so a lookup may trail them for a moment).
fn wait_for_committed(stores: &LocalStores, key: &[u8], expected: &[u8]) -> KeyLookup {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lookup = stores.get("counts", key).unwrap();
        let settled = match &lookup {
            KeyLookup::Local(value) => value.as_deref() == Some(expected),
            KeyLookup::Elsewhere { .. } => true,
        };
        if settled || std::time::Instant::now() > deadline {
            return lookup;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each word's updates must count 1, 2, 3, ... with none missing or repeated.
fn assert_counts_step_by_one(updates: &[(String, u64)]) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (word, count) in updates {
        let previous = last.insert(word, *count).unwrap_or(0);
        assert_eq!(*count, previous + 1, "{word}: {updates:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_tasks_and_one_takes_over_when_the_other_stops() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (broker, bootstrap, server) = word_count_cluster(dir.path()).await;
    let config = |instance: &str| StreamsConfig {
        state_dir: Some(dir.path().join(instance)),
        bootstrap_servers: Some(bootstrap.clone()),
        client_properties: std::env::var("TEST_RDKAFKA_DEBUG")
            .map(|d| vec![("debug".to_string(), d)])
            .unwrap_or_default(),
        ..StreamsConfig::new("shared")
    };
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let start = |instance: &'static str| {
        let config = config(instance);
        async move {
            let app = StreamsApp::connect(word_count(), config).await.unwrap();
            let (metrics, stores) = (app.metrics(), app.local_stores());
            let shutdown = CancellationToken::new();
            let running = tokio::spawn(app.run(shutdown.clone()));
            (shutdown, running, metrics, stores)
        }
    };
    let (stop_a, running_a, metrics_a, stores_a) = start("a").await;
    produce_lines(&producer, &["x y", "y z", "z x"]).await;
    assert_counts_step_by_one(&all_updates(&broker, 6).await);

    // A second instance joins: the group moves some tasks to it, with their state.
    let (stop_b, running_b, metrics_b, stores_b) = start("b").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metrics_b.running_tasks().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (on_a, on_b) = (metrics_a.running_tasks(), metrics_b.running_tasks());
    assert!(!on_b.is_empty(), "the second instance got no task");
    let mut all: Vec<u32> = on_a.iter().chain(&on_b).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        [0, 1, 2],
        "each task runs once: a {on_a:?}, b {on_b:?}"
    );
    produce_lines(&producer, &["x y z", "x y z", "x y z"]).await;
    let updates = all_updates(&broker, 15).await;
    assert_counts_step_by_one(&updates);
    assert_eq!(updates.len(), 15);
    // Interactive queries: each word's count is in exactly one instance's stores.
    for word in ["x", "y", "z"] {
        let answers = [&stores_a, &stores_b]
            .map(|stores| wait_for_committed(stores, word.as_bytes(), b"5".as_slice()));
        let task = stores_a.task_for_key(word.as_bytes());
        let local = answers
            .iter()
            .filter(|a| matches!(a, KeyLookup::Local(_)))
            .count();
        assert_eq!(local, 1, "{word}: {answers:?}");
        assert!(
            answers
                .iter()
                .all(|a| *a == KeyLookup::Local(Some("5".into()))
                    || *a == KeyLookup::Elsewhere { task }),
            "{word}: {answers:?}"
        );
    }

    // The first stops: its tasks go to the second, which goes on from their committed state.
    stop_a.cancel();
    running_a.await.unwrap().unwrap();
    produce_lines(&producer, &["x", "y", "z"]).await;
    let updates = all_updates(&broker, 18).await;
    assert_counts_step_by_one(&updates);
    assert_eq!(updates.len(), 18, "{updates:?}");
    let latest: BTreeMap<String, u64> = updates.into_iter().collect();
    assert_eq!(
        latest,
        BTreeMap::from([("x".into(), 6), ("y".into(), 6), ("z".into(), 6)])
    );
    assert_eq!(metrics_b.running_tasks(), [0, 1, 2]);
    for word in ["x", "y", "z"] {
        assert_eq!(
            wait_for_committed(&stores_b, word.as_bytes(), b"6"),
            KeyLookup::Local(Some("6".into()))
        );
        let task = stores_a.task_for_key(word.as_bytes());
        assert_eq!(
            stores_a.get("counts", word.as_bytes()).unwrap(),
            KeyLookup::Elsewhere { task },
            "a stopped instance holds nothing"
        );
    }
    stop_b.cancel();
    running_b.await.unwrap().unwrap();
    server.cancel();
    broker.close().await.unwrap();
}

/// A producer that takes over a task's transactional id fences the task's producer (as a
/// zombie's successor would): the task's next write or commit fails, the instance starts the
/// task again from its last commit (fencing the intruder in turn), and no update is lost or
/// written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_fenced_by_its_own_transactional_id_restarts_from_its_last_commit() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (broker, bootstrap, server) = word_count_cluster(dir.path()).await;
    let config = StreamsConfig {
        state_dir: Some(dir.path().join("state")),
        bootstrap_servers: Some(bootstrap.clone()),
        ..StreamsConfig::new("fenced")
    };
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    produce_lines(&producer, &["p q", "q r", "r p"]).await;
    let app = StreamsApp::connect(word_count(), config).await.unwrap();
    let metrics = app.metrics();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    assert_counts_step_by_one(&all_updates(&broker, 6).await);

    // Every task's transactional id, initialised elsewhere: the tasks are zombies now.
    let cluster = logbrook_client::Cluster::connect(&bootstrap, Vec::new())
        .await
        .unwrap();
    for task in 0..3 {
        let settings = logbrook_client::ProducerSettings {
            transactional_id: Some(format!("fenced-{task}")),
            ..logbrook_client::ProducerSettings::default()
        };
        let intruder = std::sync::Arc::new(cluster.producer(&settings).unwrap());
        intruder
            .init_transactions(Duration::from_secs(30))
            .await
            .unwrap();
    }
    produce_lines(&producer, &["p q r", "p q r", "p q r"]).await;
    let updates = all_updates(&broker, 15).await;
    assert_counts_step_by_one(&updates);
    assert_eq!(updates.len(), 15, "{updates:?}");
    assert!(
        !running.is_finished(),
        "the instance goes on after its tasks were fenced"
    );
    assert_eq!(metrics.running_tasks(), [0, 1, 2]);
    shutdown.cancel();
    running.await.unwrap().unwrap();
    server.cancel();
    broker.close().await.unwrap();
}

/// Committed records in partition `partition` of `topic`.
fn records_in(broker: &Broker, topic: &str, partition: u32) -> u64 {
    let topic = broker.topic(topic).unwrap();
    let mut records = 0;
    let partition = topic.partition(partition).unwrap();
    partition
        .log()
        .for_each_record(0, |_| records += 1)
        .unwrap();
    records
}

/// Waits until `condition` holds, up to 30 s; `what` names it when it never does.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_replicas_keep_moving_tasks_warm_and_every_instance_knows_where_a_key_is() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (broker, bootstrap, server) = word_count_cluster(dir.path()).await;
    let host = |instance: &str| format!("{instance}.example:8080");
    let start = |instance: &'static str| {
        let config = StreamsConfig {
            state_dir: Some(dir.path().join(instance)),
            bootstrap_servers: Some(bootstrap.clone()),
            application_server: Some(host(instance)),
            num_standby_replicas: 1,
            ..StreamsConfig::new("standby")
        };
        async move {
            let app = StreamsApp::connect(word_count(), config).await.unwrap();
            let (metrics, stores) = (app.metrics(), app.local_stores());
            let shutdown = CancellationToken::new();
            let running = tokio::spawn(app.run(shutdown.clone()));
            (shutdown, running, metrics, stores)
        }
    };
    let words = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9"];
    let line = words.join(" ");
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let (stop_a, running_a, metrics_a, stores_a) = start("a").await;
    let (stop_b, running_b, metrics_b, stores_b) = start("b").await;
    produce_lines(&producer, &[&line, &line]).await;
    assert_counts_step_by_one(&all_updates(&broker, 18).await);
    eventually("both instances run tasks", || {
        !metrics_a.running_tasks().is_empty() && !metrics_b.running_tasks().is_empty()
    })
    .await;
    let on_a = metrics_a.running_tasks();
    let mut all: Vec<u32> = on_a
        .iter()
        .chain(&metrics_b.running_tasks())
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2], "each task runs once");

    // Both instances say the same: a key's task runs on one, the other keeps its standby.
    for word in words {
        let task = stores_a.task_for_key(word.as_bytes());
        let (active, standby) = if on_a.contains(&task) {
            (host("a"), host("b"))
        } else {
            (host("b"), host("a"))
        };
        let expected = KeyQueryMetadata {
            task,
            active_host: Some(active),
            standby_hosts: vec![standby],
        };
        for stores in [&stores_a, &stores_b] {
            assert_eq!(
                stores
                    .query_metadata_for_key(word.as_bytes())
                    .await
                    .unwrap(),
                expected,
                "{word}"
            );
        }
    }

    // b's standbys of a's tasks apply every changelog record a's tasks committed.
    let changelog = "standby-counts-changelog";
    let moving: u64 = on_a
        .iter()
        .map(|p| records_in(&broker, changelog, *p))
        .sum();
    assert!(moving > 0, "a's tasks hold counts");
    let standby_progress = || {
        on_a.iter()
            .map(|p| {
                (
                    metrics_b.task(*p).standby_records(),
                    records_in(&broker, changelog, *p),
                )
            })
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !standby_progress()
        .iter()
        .all(|(applied, written)| applied == written)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "b's standbys of a's tasks {on_a:?} applied, of the changelog records: {:?}",
            standby_progress()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a stops: b takes its tasks over from the warm stores, replaying nothing.
    stop_a.cancel();
    running_a.await.unwrap().unwrap();
    eventually("b runs every task", || {
        metrics_b.running_tasks() == [0, 1, 2]
    })
    .await;
    for p in &on_a {
        assert_eq!(
            metrics_b.task(*p).records_restored(),
            0,
            "task {p} restored from its changelog despite its standby"
        );
    }
    // The counts go on from the standby's state: none restarts or repeats.
    produce_lines(&producer, &[&line]).await;
    let updates = all_updates(&broker, 27).await;
    assert_counts_step_by_one(&updates);
    assert_eq!(updates.len(), 27);
    for word in words {
        let metadata = stores_b
            .query_metadata_for_key(word.as_bytes())
            .await
            .unwrap();
        assert_eq!(metadata.active_host, Some(host("b")), "{word}");
        assert!(
            metadata.standby_hosts.is_empty(),
            "a lone instance keeps no standbys"
        );
        assert_eq!(
            wait_for_committed(&stores_b, word.as_bytes(), b"3"),
            KeyLookup::Local(Some("3".into()))
        );
    }
    stop_b.cancel();
    running_b.await.unwrap().unwrap();
    server.cancel();
    broker.close().await.unwrap();
}
