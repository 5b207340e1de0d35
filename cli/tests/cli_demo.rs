//! End-to-end tests of `logbrook demo`: it verifies its own replay and can run again.
//! (`logbrook perf nexmark` is tested in `cli_nexmark.rs`.)
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::Logbrook;

/// The per-partition click counts printed in the demo's summary.
fn partition_counts(out: &str) -> Vec<u64> {
    out.lines()
        .skip_while(|line| !line.starts_with("PARTITION"))
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .expect("a count")
        })
        .collect()
}

#[test]
fn demo_verifies_its_replay_and_starts_over_when_run_again() {
    let lb = Logbrook::new();
    let args = ["demo", "--records", "3000", "--users", "40"];
    let first = lb.ok(&args);
    assert!(
        first.contains("produced 3000 clicks from 40 users"),
        "{first}"
    );
    assert!(
        first.contains("verified: the replay saw the same 3000 clicks"),
        "{first}"
    );
    let counts = partition_counts(&first);
    assert_eq!(counts.len(), 3);
    assert_eq!(counts.iter().sum::<u64>(), 3000);

    let second = lb.ok(&args);
    assert!(second.contains("verified"), "{second}");
    assert_eq!(partition_counts(&second), counts, "same clicks again");
    // The topic was recreated, not appended to, and the group read all of it.
    let describe = lb.ok(&["group", "describe", "demo-readers"]);
    assert!(
        describe.starts_with("group \"demo-readers\", total lag 0"),
        "{describe}"
    );
    let committed: u64 = describe
        .lines()
        .skip(3)
        .map(|line| {
            line.split_whitespace()
                .nth(2)
                .and_then(|n| n.parse::<u64>().ok())
                .expect("committed offset")
        })
        .sum();
    assert_eq!(committed, 3000);
}

#[test]
fn demo_rejects_an_empty_run() {
    let lb = Logbrook::new();
    let stderr = lb.fails(&["demo", "--records", "0"]);
    assert!(stderr.contains("--records"), "{stderr}");
}
