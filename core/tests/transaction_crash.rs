//! A process that dies at each step of committing an embedded transaction (records in three
//! partitions and a group's offsets): after recovery the transaction is committed in all its
//! partitions and its offsets, or in none, and no partition is left with an open transaction.
//!
//! The test re-runs its own binary as the child (selected by an environment variable), which
//! aborts itself at the step named by `LOGBROOK_CRASH_AT` (as `kill -9` would stop it).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::process::Command;

use logbrook_core::{CRASH_POINTS, TopicConfig, TopicPartition, Transaction};

const CHILD_DIR: &str = "LOGBROOK_TXN_CRASH_CHILD_DIR";
const PARTITIONS: u32 = 3;
const GROUP: &str = "app";

/// Child: commits one transaction (3 records per partition, the group's offset 42 of `in/0`).
async fn run_child(dir: &str) {
    let broker = common::open(std::path::Path::new(dir)).await;
    for (topic, partitions) in [("out", PARTITIONS), ("in", 1)] {
        let config = TopicConfig {
            partitions,
            ..TopicConfig::default()
        };
        broker.create_topic(topic, config).unwrap();
    }
    let mut txn = Transaction::new();
    for p in 0..PARTITIONS {
        for i in 0..3 {
            let value = format!("{p}-{i}");
            txn.send("out", p, 1_000, None, Some(value.as_bytes()), &[]);
        }
    }
    txn.commit_offsets(GROUP, vec![(TopicPartition::new("in", 0), 42)]);
    broker.commit_transaction(txn).await.unwrap();
    println!("committed without crashing");
}

/// The committed values of each partition of `out`, the group's offset, and whether every
/// partition is stable (no transaction left open).
async fn recovered(dir: &std::path::Path) -> (Vec<Vec<String>>, Option<u64>, bool) {
    let broker = common::open(dir).await;
    let mut values = Vec::new();
    let mut stable = true;
    for p in 0..PARTITIONS {
        let log = common::log_of(&broker, "out", p);
        stable &= log.last_stable_offset() == log.high_watermark();
        let mut records = Vec::new();
        let mut offset = 0;
        loop {
            let chunk = log.read_committed(offset, 1 << 20).unwrap();
            if chunk.is_empty() {
                break;
            }
            chunk.records(offset, &mut records).unwrap();
            offset = chunk.next_offset;
        }
        values.push(records.iter().map(common::value).collect());
    }
    let offset = broker.committed_offset(GROUP, &TopicPartition::new("in", 0));
    broker.close().await.unwrap();
    (values, offset, stable)
}

#[test]
fn a_crash_at_any_step_of_a_commit_leaves_the_transaction_in_all_partitions_or_in_none() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(run_child(&dir));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for point in CRASH_POINTS {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&exe)
            .args([
                "--exact",
                "a_crash_at_any_step_of_a_commit_leaves_the_transaction_in_all_partitions_or_in_none",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env("LOGBROOK_CRASH_AT", point)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&child.stdout);
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert!(
            !child.status.success() && stderr.contains(&format!("LOGBROOK_CRASH_AT={point}")),
            "the child did not stop at {point}: {}\n{stdout}\n{stderr}",
            child.status
        );
        let (values, offset, stable) = rt.block_on(recovered(dir.path()));
        let all: Vec<Vec<String>> = (0..PARTITIONS)
            .map(|p| (0..3).map(|i| format!("{p}-{i}")).collect())
            .collect();
        let none: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS as usize];
        // Before the decision is durable nothing is committed; after it, everything is.
        let (want_values, want_offset) = if point == "txn-before-decision" {
            (none, None)
        } else {
            (all, Some(42))
        };
        assert_eq!(values, want_values, "records after a crash at {point}");
        assert_eq!(offset, want_offset, "offsets after a crash at {point}");
        assert!(
            stable,
            "a transaction is still open after a crash at {point}"
        );
    }
}
