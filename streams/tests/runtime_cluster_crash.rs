//! Exactly-once on a cluster under `kill -9`: three instances of an application (separate OS
//! processes: this test's own binary, selected by an environment variable) share the tasks of
//! a pipeline whose topics live on a `logbrook serve` (in this process). Instances are killed
//! with SIGKILL and started again while data flows; the group moves their tasks, and a task's
//! next owner fences the killed one's producer. Once every input is processed, the output
//! topics hold exactly what a clean run on the embedded log writes: stateless, counted,
//! repartitioned, joined (with a table) and windowed (suppressed) outputs, record for record.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use logbrook_core::{
    Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig, TopicPartition,
};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{Produced, StreamsApp, StreamsBuilder, StreamsConfig, Topology};
use tokio_util::sync::CancellationToken;

const CHILD_BOOTSTRAP: &str = "LOGBROOK_CLUSTER_CHILD_BOOTSTRAP";
const CHILD_STATE: &str = "LOGBROOK_CLUSTER_CHILD_STATE";
const APP: &str = "cluster-crash";
const EVENTS: u64 = 6_000;
const OUTPUTS: [&str; 5] = [
    "doubled",
    "user-counts",
    "bucket-counts",
    "window-finals",
    "enriched",
];
/// Users with a profile row (the table the events are joined with).
const USERS: u64 = 41;

/// Stateless, stateful, repartitioned and windowed outputs; a short sleep per record keeps the
/// run long enough for kills to land in the middle of it.
fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    let events = builder
        .stream_with::<String, u64>("events", Str, Json::new())
        .peek(|_, _| std::thread::sleep(Duration::from_millis(3)));
    common::crash_test_outputs(&events);
    let profiles = builder.table_with::<String, u64>("profiles", "profile-store", Str, Json::new());
    events
        .join_table(&profiles, |_, value, tier| value * 10 + tier)
        .to_with("enriched", Produced::with(Str, Json::new()));
    builder.build().unwrap()
}

fn config(bootstrap: Option<&str>, state_dir: PathBuf) -> StreamsConfig {
    StreamsConfig {
        commit_interval: Duration::from_millis(50),
        state_dir: Some(state_dir),
        bootstrap_servers: bootstrap.map(str::to_string),
        // A killed instance's tasks move once its session expires.
        client_properties: vec![("session.timeout.ms".into(), "6000".into())],
        ..StreamsConfig::new(APP)
    }
}

async fn create_input(broker: &Broker) {
    for topic in ["events", "profiles"].into_iter().chain(OUTPUTS) {
        let config = TopicConfig {
            partitions: 3,
            ..TopicConfig::default()
        };
        broker.create_topic(topic, config).unwrap();
    }
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    // Profiles come first in event time, so every event meets its user's row.
    for user in 0..USERS {
        let record = ProducerRecord::new("profiles", (user % 3).to_string())
            .with_key(format!("user-{user}"))
            .with_timestamp(0);
        producer.send(record).await.unwrap();
    }
    for i in 0..EVENTS {
        let record = ProducerRecord::new("events", i.to_string())
            .with_key(format!("user-{}", i % USERS))
            .with_timestamp(1_000 + i as i64);
        producer.send(record).await.unwrap();
    }
    producer.flush().await.unwrap();
}

/// How many input records (events and repartitioned) are committed and how many exist.
fn progress(broker: &Broker) -> (u64, u64) {
    let (mut committed, mut total) = (0, 0);
    for topic in [
        "events",
        "profiles",
        &format!("{APP}-bucket-count-store-repartition"),
    ] {
        for p in 0..3 {
            let tp = TopicPartition::new(topic, p);
            committed += broker.committed_offset(APP, &tp).unwrap_or(0);
            // The repartition topic exists once an instance created it.
            if let Ok(topic) = broker.topic(topic) {
                total += topic.partition(p).unwrap().log().last_stable_offset();
            }
        }
    }
    (committed, total)
}

/// Every input record (events, profiles and the repartitioned events) is committed.
fn finished(committed: u64, total: u64) -> bool {
    committed == total && total >= EVENTS * 2 + USERS
}

/// Runs `app` until every input record is committed.
async fn run_to_completion(broker: &Broker, app: StreamsApp) {
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (committed, total) = progress(broker);
        if finished(committed, total) {
            break;
        }
        assert!(Instant::now() < deadline, "stuck at {committed} of {total}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// Every committed output record as (topic, partition, key, value), sorted.
fn outputs(broker: &Broker) -> Vec<(String, u32, String, u64)> {
    common::committed_outputs(broker, &OUTPUTS, 3)
}

fn start_instance(exe: &Path, bootstrap: &str, state: &Path) -> Child {
    Command::new(exe)
        .args([
            "--exact",
            "instances_killed_while_data_flows_write_what_a_clean_run_writes",
            "--test-threads=1",
        ])
        .env(CHILD_BOOTSTRAP, bootstrap)
        .env(CHILD_STATE, state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn instances_killed_while_data_flows_write_what_a_clean_run_writes() {
    if let (Ok(bootstrap), Ok(state)) = (std::env::var(CHILD_BOOTSTRAP), std::env::var(CHILD_STATE))
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let config = config(Some(&bootstrap), state.into());
            let app = StreamsApp::connect(topology(), config).await.unwrap();
            app.run(CancellationToken::new()).await.unwrap();
        });
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (broker, bootstrap, server) = rt.block_on(async {
        let broker = Broker::open(dir.path().join("cluster")).await.unwrap();
        create_input(&broker).await;
        let (addr, server) = logbrook_serve::spawn_on_loopback(broker.clone(), |config| {
            logbrook_serve::ServeConfig {
                group_initial_rebalance_delay: Duration::ZERO,
                ..config
            }
        })
        .await
        .unwrap();
        (broker, addr.to_string(), server)
    });

    let exe = std::env::current_exe().unwrap();
    let states = [
        dir.path().join("state-a"),
        dir.path().join("state-b"),
        dir.path().join("state-c"),
    ];
    let mut instances: Vec<Child> = states
        .iter()
        .map(|state| start_instance(&exe, &bootstrap, state))
        .collect();
    let mut kills_mid_run = 0;
    let mut seen: Vec<u64> = Vec::new();
    for round in 0..12usize {
        // Kill once the instances made progress since the last kill: the first time once
        // anything is committed, later once the group moved the last victim's tasks (after
        // its session timeout) and they went on. Progress, not a clock, so a slow machine's
        // kills still land mid-run; a varying delay after it varies the point in a transaction.
        let step = if round == 0 { 1 } else { 800 };
        let last = seen.last().copied().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (committed, total) = progress(&broker);
            if committed >= last + step || finished(committed, total) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no progress before kill {round}: {committed} of {total} inputs committed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(40 * (round as u64 % 5)));
        let victim = round % states.len();
        instances[victim].kill().unwrap(); // SIGKILL
        instances[victim].wait().unwrap();
        let (committed, total) = progress(&broker);
        seen.push(committed);
        if committed > 0 && committed < total {
            kills_mid_run += 1;
        }
        if kills_mid_run >= 3 || finished(committed, total) {
            break;
        }
        instances[victim] = start_instance(&exe, &bootstrap, &states[victim]);
    }
    for instance in &mut instances {
        let _ = instance.kill();
        let _ = instance.wait();
    }
    assert!(
        kills_mid_run >= 2,
        "too few kills landed mid-run (committed inputs after each kill: {seen:?})"
    );
    assert!(
        seen.windows(2).any(|w| w[1] > w[0]),
        "the instances made no progress between kills: {seen:?}"
    );
    eprintln!("committed inputs after each kill: {seen:?}");
    // One instance finishes the work, here, on the cluster.
    rt.block_on(async {
        let config = config(Some(&bootstrap), states[0].clone());
        let app = StreamsApp::connect(topology(), config).await.unwrap();
        run_to_completion(&broker, app).await;
    });
    let actual = outputs(&broker);
    server.cancel();

    // The same pipeline, never interrupted, on the embedded log.
    let expected = rt.block_on(async {
        let clean = Broker::open(dir.path().join("clean")).await.unwrap();
        create_input(&clean).await;
        let config = config(None, dir.path().join("state-clean"));
        let app = StreamsApp::new(clean.clone(), topology(), config).unwrap();
        run_to_completion(&clean, app).await;
        let expected = outputs(&clean);
        clean.close().await.unwrap();
        expected
    });
    let doubled = expected.iter().filter(|(t, ..)| t == "doubled").count() as u64;
    assert_eq!(doubled, EVENTS, "clean run is incomplete");
    let enriched = expected.iter().filter(|(t, ..)| t == "enriched").count() as u64;
    assert_eq!(
        enriched, EVENTS,
        "every event meets its profile in the clean run"
    );
    let count = |v: &[(String, u32, String, u64)], topic: &str| {
        v.iter().filter(|(t, ..)| t == topic).count()
    };
    // On a difference, show which records: a few missing and a few unexpected, per topic.
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !actual.contains(r))
        .take(5)
        .collect();
    let extra: Vec<_> = actual
        .iter()
        .filter(|r| !expected.contains(r))
        .take(5)
        .collect();
    for topic in OUTPUTS {
        assert_eq!(
            count(&actual, topic),
            count(&expected, topic),
            "{topic}: records differ after kills at {seen:?}; missing {missing:?}, unexpected {extra:?}"
        );
    }
    assert!(
        actual == expected,
        "outputs differ from the clean run; missing {missing:?}, unexpected {extra:?}"
    );
    rt.block_on(broker.close()).unwrap();
}
