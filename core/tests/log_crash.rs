//! `kill -9` a process appending with `flush = always`, many times: every acknowledged record
//! must be readable afterwards, at its acknowledged offset, and nothing corrupt is ever returned.
//!
//! The test re-runs its own binary as the child (selected by an environment variable), so the
//! child is the real engine in a real separate process.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logbrook_core::{FlushPolicy, Producer, ProducerConfig, ProducerRecord, TopicConfig};

const CHILD_DIR: &str = "LOGBROOK_CRASH_CHILD_DIR";
const CHILD_RUN: &str = "LOGBROOK_CRASH_CHILD_RUN";

/// Child: appends forever from 4 concurrent tasks, printing `offset value` once acknowledged.
async fn run_child(dir: &str, run: &str) {
    let broker = common::open(std::path::Path::new(dir)).await;
    if broker.topic("crash").is_err() {
        let config = TopicConfig {
            segment_bytes: 64 * 1024,
            flush: FlushPolicy::Always,
            ..TopicConfig::default()
        };
        broker.create_topic("crash", config).unwrap();
    }
    let producer = Producer::new(
        broker.clone(),
        ProducerConfig {
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        },
    );
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (producer, out, run) = (producer.clone(), out.clone(), run.to_string());
        tasks.push(tokio::spawn(async move {
            for n in 0u64.. {
                let value = format!("{run}-{task}-{n}-{}", "x".repeat((n % 200) as usize));
                let delivery = producer
                    .send(ProducerRecord::new("crash", value.clone()))
                    .await
                    .unwrap();
                let meta = delivery.await.unwrap();
                let mut out = out.lock().unwrap();
                std::io::Write::write_all(
                    &mut *out,
                    format!("{} {value}\n", meta.offset).as_bytes(),
                )
                .unwrap();
                std::io::Write::flush(&mut *out).unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn acknowledged_records_survive_repeated_kill_9() {
    if let (Ok(dir), Ok(run)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_RUN)) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(run_child(&dir, &run));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let runs = 10;
    for run in 0..runs {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "acknowledged_records_survive_repeated_kill_9",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_RUN, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let sink = acked.clone();
        let (first_ack_tx, first_ack) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut lines = 0;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Some((offset, value)) = line.split_once(' ') else {
                    continue;
                };
                let Ok(offset) = offset.parse::<u64>() else {
                    continue;
                };
                sink.lock().unwrap().insert(offset, value.to_string());
                lines += 1;
                if lines == 1 {
                    let _ = first_ack_tx.send(());
                }
            }
            lines
        });
        // Wait until the child is appending (a loaded machine may take a while to start it),
        // then kill it at a varying moment.
        let started = first_ack.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(50 + 97 * (run % 5)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        assert!(
            started.is_ok(),
            "run {run}: the child acknowledged nothing within 60 s"
        );
        assert!(lines > 0, "run {run}: the child acknowledged nothing");
    }
    let acked = acked.lock().unwrap().clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let broker = common::open(dir.path()).await;
        let log = common::log_of(&broker, "crash", 0);
        let records = common::read_all(&log, 0).expect("no corrupt data after crashes");
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "offsets are contiguous");
        }
        let stored: BTreeMap<u64, String> = records
            .iter()
            .map(|r| (r.offset, common::value(r)))
            .collect();
        for (offset, value) in &acked {
            assert_eq!(
                stored.get(offset),
                Some(value),
                "acknowledged record at offset {offset} lost or changed"
            );
        }
        assert!(
            acked.len() > 100,
            "too few acknowledged records ({}) to mean anything",
            acked.len()
        );
        broker.close().await.unwrap();
    });
}
