//! `file-source` tasks: the glob's files split among tasks, each read by exactly one.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{append, lines, poll_for, source_config};
use logbrook_connect::{Source, SourceConnector, SourceContext};
use serde_json::json;

async fn open_tasks(config: &serde_json::Value, max_tasks: usize) -> Vec<Box<dyn Source>> {
    let mut tasks = Vec::new();
    for (index, task) in source_config(config.clone())
        .task_configs(max_tasks)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        // Task configs go through JSON between the connector and its tasks.
        let task = source_config(serde_json::to_value(task).unwrap());
        tasks.push(
            task.open(SourceContext::new("c", index, "topic", vec![]))
                .await
                .unwrap(),
        );
    }
    tasks
}

/// Each task's lines, polled for a while.
async fn poll_tasks(tasks: &mut [Box<dyn Source>], time: Duration) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for task in tasks {
        out.push(lines(&poll_for(task.as_mut(), time).await));
    }
    out
}

#[tokio::test]
async fn a_glob_split_across_two_tasks_reads_each_file_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..8 {
        append(
            &dir.path().join(format!("f{i}.log")),
            &format!("file {i}\n"),
        );
    }
    let config = json!({"path": dir.path().join("*.log"), "poll_interval_ms": 20});
    let mut tasks = open_tasks(&config, 2).await;
    assert_eq!(tasks.len(), 2);

    let mut per_task = poll_tasks(&mut tasks, Duration::from_millis(400)).await;
    // A file that appears later belongs to exactly one task too.
    append(&dir.path().join("late.log"), "late\n");
    for (seen, more) in per_task
        .iter_mut()
        .zip(poll_tasks(&mut tasks, Duration::from_millis(2500)).await)
    {
        seen.extend(more);
    }

    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for (task, seen) in per_task.iter().enumerate() {
        for line in seen {
            assert!(
                owners.insert(line.clone(), task).is_none(),
                "{line} read twice"
            );
        }
    }
    let expected: BTreeSet<String> = (0..8)
        .map(|i| format!("file {i}"))
        .chain(["late".to_string()])
        .collect();
    assert_eq!(owners.keys().cloned().collect::<BTreeSet<_>>(), expected);
}

#[tokio::test]
async fn there_are_never_more_tasks_than_files_and_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = source_config(json!({"path": dir.path().join("*.log")}));
    assert_eq!(config.task_configs(4).unwrap().len(), 1);
    assert_eq!(config.task_configs(4).unwrap()[0].task_share, None);

    append(&dir.path().join("a.log"), "a\n");
    append(&dir.path().join("b.log"), "b\n");
    let shares: Vec<_> = config
        .task_configs(4)
        .unwrap()
        .into_iter()
        .map(|task| task.task_share.unwrap())
        .collect();
    assert_eq!(shares.len(), 2);
    assert!(
        shares
            .iter()
            .enumerate()
            .all(|(i, s)| s.index == i && s.count == 2)
    );
}

#[tokio::test]
async fn a_glob_that_matches_nothing_yet_waits_for_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = open_tasks(&json!({"path": dir.path().join("*.log")}), 2).await;
    assert!(
        poll_for(tasks[0].as_mut(), Duration::from_millis(300))
            .await
            .is_empty()
    );

    append(&dir.path().join("first.log"), "first\n");

    let seen = poll_for(tasks[0].as_mut(), Duration::from_millis(2500)).await;
    assert_eq!(lines(&seen), ["first"]);
}
