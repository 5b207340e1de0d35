//! `logbrook connect run --bootstrap-server` on `logbrook serve`: the worker keeps its configs and
//! source offsets in the cluster's `connect-configs` and `connect-offsets` topics, and a source
//! writes each batch and its offsets in one Kafka transaction (KIP-618), so a `kill -9` and a
//! restart neither lose nor duplicate a line in the topic.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::io::Write;

use common::Logbrook;
use common::connect::{Worker, append_ids, connector_file, file_pipeline, lines_of, wait_for};
use common::serve::Server;
use serde_json::Value;

const TOTAL: usize = 30_000;

fn id_of(line: &str) -> usize {
    serde_json::from_str::<Value>(line).unwrap()["id"]
        .as_u64()
        .unwrap() as usize
}

#[test]
fn file_connectors_on_serve_resume_exactly_once_after_kill_9() {
    let lb = Logbrook::new();
    let server = Server::start(&lb);
    let on_cluster = ["--bootstrap-server", server.bootstrap.as_str()];
    let input = lb.root().join("in.jsonl");
    let output = lb.root().join("out.jsonl");
    append_ids(&input, 0..TOTAL / 2);
    let (source, sink) = file_pipeline(&lb, &input, &output);

    let worker = Worker::start_with(&lb, &on_cluster, &[&source, &sink]);
    wait_for("some output", 30, || !lines_of(&output).is_empty());
    worker.kill9();

    // More data arrives while the worker is down. The restarted worker gets no files: the
    // connectors come from the cluster's config topic.
    append_ids(&input, TOTAL / 2..TOTAL);
    let worker = Worker::start_with(&lb, &on_cluster, &[]);
    let (_, names) = worker.get("/connectors");
    assert_eq!(names, serde_json::json!(["in", "out"]));
    wait_for("every id in the output", 60, || {
        lines_of(&output)
            .iter()
            .map(|l| id_of(l))
            .collect::<BTreeSet<_>>()
            .len()
            == TOTAL
    });
    wait_for("the source's offset at the end of the file", 30, || {
        let (_, offsets) = worker.get("/connectors/in/offsets");
        offsets["offsets"][0]["offset"]["position"].as_u64()
            == Some(std::fs::metadata(&input).unwrap().len())
    });
    let (_, status) = worker.get("/connectors/out/status");
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    assert_eq!(worker.stop().code, Some(0));

    // Read committed, as any Kafka consumer would: each line once, in order.
    let topic: Vec<usize> = lb
        .consume_values("data", &on_cluster)
        .iter()
        .map(|v| id_of(v))
        .collect();
    assert_eq!(
        topic,
        (0..TOTAL).collect::<Vec<_>>(),
        "the topic holds each line exactly once, in order"
    );
    let stored = lb.consume_values("connect-offsets", &on_cluster);
    assert!(
        stored.iter().any(|v| v.contains("\"position\"")),
        "source offsets live in connect-offsets: {stored:?}"
    );
    // Task states are published in connect-status, the last ones written before the worker
    // exits.
    let statuses = lb.consume_values("connect-status", &on_cluster);
    for state in ["\"RUNNING\"", "\"STOPPED\""] {
        assert!(
            statuses
                .iter()
                .any(|v| v.contains(state) && v.contains("worker_id")),
            "{state} in connect-status: {statuses:?}"
        );
    }
    let written: Vec<usize> = lines_of(&output).iter().map(|l| id_of(l)).collect();
    assert_eq!(
        written.iter().copied().collect::<BTreeSet<_>>().len(),
        TOTAL,
        "no record lost by the sink"
    );
    drop(server);
}

/// Appends `count` lines to file `file` of `dir`, ids `file * 1_000_000 + n` after `from`.
fn append_to(dir: &std::path::Path, file: usize, from: usize, count: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("part-{file}.jsonl")))
        .unwrap();
    let mut text = String::new();
    for n in from..from + count {
        text.push_str(&format!("{{\"id\":{}}}\n", file * 1_000_000 + n));
    }
    f.write_all(text.as_bytes()).unwrap();
}

/// The workers every task of `name` runs on, once all of them report RUNNING on workers of
/// `among` (any, when empty).
fn running_on(
    worker: &Worker,
    name: &str,
    tasks: usize,
    among: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    wait_for(
        &format!("{tasks} running tasks of {name} on {among:?}"),
        60,
        || {
            let (_, status) = worker.get(&format!("/connectors/{name}/status"));
            let list = status["tasks"].as_array().cloned().unwrap_or_default();
            found = list
                .iter()
                .map(|t| t["worker_id"].as_str().unwrap_or_default().to_string())
                .collect();
            list.len() == tasks
                && list.iter().all(|t| t["state"] == "RUNNING")
                && (among.is_empty() || found.is_subset(among))
        },
    );
    found
}

#[test]
fn three_workers_share_the_tasks_and_move_them_when_one_dies_one_stops_and_one_joins() {
    const FILES: usize = 4;
    let lb = Logbrook::new();
    let server = Server::start(&lb);
    let on_cluster = ["--bootstrap-server", server.bootstrap.as_str()];
    let mut create = vec!["topic", "create", "data", "--partitions", "4"];
    create.extend_from_slice(&on_cluster);
    lb.ok(&create);
    let input = lb.root().join("in");
    let output = lb.root().join("out");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    let mut written = [0usize; FILES];
    let mut feed = |count: usize| {
        for (file, next) in written.iter_mut().enumerate() {
            append_to(&input, file, *next, count);
            *next += count;
        }
    };
    feed(3_000);
    let source = connector_file(
        &lb,
        "source.toml",
        &format!(
            "name = \"in\"\nconnector = \"file-source\"\ntopic = \"data\"\npath = \"{}\"\nformat = \"json\"\ntasks = {FILES}\nbatch_max_records = 300\n",
            input.display()
        ),
    );
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            "name = \"out\"\nconnector = \"file-sink\"\ntopics = [\"data\"]\npath = \"{}\"\ntasks = 4\n",
            output.display()
        ),
    );

    // The files go to one worker; the others learn the connectors from the cluster.
    let mut workers = vec![Worker::start_with(&lb, &on_cluster, &[&source, &sink])];
    workers.push(Worker::start_with(&lb, &on_cluster, &[]));
    workers.push(Worker::start_with(&lb, &on_cluster, &[]));
    let any = BTreeSet::new();
    let mut busy = running_on(&workers[2], "in", FILES, &any);
    busy.extend(running_on(&workers[2], "out", 4, &any));
    assert!(busy.len() >= 2, "8 tasks on one worker of three: {busy:?}");
    for worker in &workers {
        assert_eq!(
            worker.get("/connectors").1,
            serde_json::json!(["in", "out"])
        );
    }
    let id = |worker: &Worker| worker.url.trim_start_matches("http://").to_string();
    // The victims run tasks: the first is killed, the second stopped.
    workers.sort_by_key(|w| !busy.contains(&id(w)));
    let mut workers = workers.into_iter();
    let (victim, stopped, survivor) = (
        workers.next().unwrap(),
        workers.next().unwrap(),
        workers.next().unwrap(),
    );
    let in_output = |output: &std::path::Path| {
        let mut seen = BTreeSet::new();
        for entry in std::fs::read_dir(output).unwrap() {
            seen.extend(lines_of(&entry.unwrap().path()).iter().map(|l| id_of(l)));
        }
        seen.len()
    };

    // Data flows while a worker dies, another stops cleanly and a new one joins.
    let before = in_output(&output);
    feed(40_000);
    wait_for("the sinks to move", 30, || in_output(&output) > before);
    victim.kill9();
    let at_kill = in_output(&output);
    feed(3_000);
    assert_eq!(stopped.stop().code, Some(0));
    feed(3_000);
    let joined = Worker::start_with(&lb, &on_cluster, &[]);
    feed(3_000);
    let alive: BTreeSet<String> = [id(&survivor), id(&joined)].into_iter().collect();
    for name in ["in", "out"] {
        let tasks = if name == "in" { FILES } else { 4 };
        // A dead worker's tasks move once the group notices (its session timeout).
        running_on(&joined, name, tasks, &alive);
    }
    // A restart through one worker restarts the connector's tasks on every worker.
    assert_eq!(joined.call("POST", "/connectors/in/restart", None).0, 204);
    wait_for("the restart on both workers", 30, || {
        [&survivor, &joined]
            .iter()
            .all(|w| w.stderr().contains("connector restarted connector=\"in\""))
    });
    running_on(&joined, "in", FILES, &alive);

    let total: usize = written.iter().sum();
    let expected: BTreeSet<usize> = written
        .iter()
        .enumerate()
        .flat_map(|(file, count)| (0..*count).map(move |n| file * 1_000_000 + n))
        .collect();
    assert!(
        at_kill < total,
        "the kill landed after everything was written"
    );
    wait_for("every id in the sink's files", 120, || {
        in_output(&output) == total
    });
    assert_eq!(survivor.stop().code, Some(0));
    assert_eq!(joined.stop().code, Some(0));

    // Exactly once in the topic, although a worker died mid-transaction: each id once, and
    // each file's lines in order within their partition.
    let mut consume = vec!["consume", "data", "--format", "json"];
    consume.extend_from_slice(&on_cluster);
    let records: Vec<Value> = lb
        .ok(&consume)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<usize> = records
        .iter()
        .map(|r| id_of(r["value"].as_str().unwrap()))
        .collect();
    let mut copies = std::collections::BTreeMap::new();
    for (record, id) in records.iter().zip(&ids) {
        copies
            .entry(*id)
            .or_insert_with(Vec::new)
            .push((record["partition"].clone(), record["offset"].clone()));
    }
    let twice: Vec<_> = copies.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{} ids are in the topic more than once, the first at (partition, offset) {:?}",
        twice.len(),
        twice.first()
    );
    assert_eq!(ids.len(), total, "records in the topic");
    assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), expected);
    drop(server);
}

/// The `id` in the value of every line of every object, in key order.
fn ids_in_objects(bucket: &common::s3::Bucket) -> Vec<i64> {
    bucket
        .json_objects()
        .iter()
        .flat_map(|(_, lines)| {
            lines.iter().map(|line| {
                let value = match &line["value"] {
                    Value::String(text) => serde_json::from_str(text).unwrap(),
                    other => other.clone(),
                };
                value["id"].as_i64().unwrap()
            })
        })
        .collect()
}

#[test]
fn postgres_source_and_s3_sink_on_serve_keep_every_row_once_when_a_worker_dies() {
    use common::postgres::{create_database, psql, server_url};
    const ROWS: i64 = 20_000;
    let url = create_database(&server_url(), &format!("lb_cluster_{}", std::process::id()));
    psql(&url, "CREATE TABLE events (id int PRIMARY KEY, body text)");
    let insert = |from: i64, to: i64| {
        psql(
            &url,
            &format!(
                "INSERT INTO events SELECT g, repeat('x', 100) FROM generate_series({from}, {}) g",
                to - 1
            ),
        );
    };
    insert(1, ROWS / 2);
    let bucket = common::s3::Bucket::new("cluster");
    let lb = Logbrook::new();
    let server = Server::start(&lb);
    let on_cluster = ["--bootstrap-server", server.bootstrap.as_str()];
    let source = connector_file(
        &lb,
        "source.toml",
        &format!(
            "name = \"pg\"\nconnector = \"postgres-source\"\ntopic = \"events\"\nurl = \"{url}\"\n\
             table = \"public.events\"\nmode = \"incrementing\"\nincrementing_column = \"id\"\n\
             batch_rows = 500\npoll_interval_ms = 50\n"
        ),
    );
    let sink = connector_file(
        &lb,
        "sink.toml",
        &format!(
            "name = \"archive\"\nconnector = \"s3-sink\"\ntopics = [\"events\"]\n{}\
             prefix = \"arc\"\nflush_records = 1500\nflush_idle_ms = 400\n",
            bucket.connector_keys()
        ),
    );
    let first = Worker::start_with(&lb, &on_cluster, &[&source, &sink]);
    let second = Worker::start_with(&lb, &on_cluster, &[]);
    let any = BTreeSet::new();
    let mut busy = running_on(&second, "pg", 1, &any);
    busy.extend(running_on(&second, "archive", 1, &any));
    wait_for("the first objects", 60, || bucket.keys().len() >= 2);

    // Kill a worker that runs a task while rows flow; a third joins.
    let id = |worker: &Worker| worker.url.trim_start_matches("http://").to_string();
    let (victim, survivor) = if busy.contains(&id(&first)) {
        (first, second)
    } else {
        (second, first)
    };
    insert(ROWS / 2, ROWS);
    victim.kill9();
    let joined = Worker::start_with(&lb, &on_cluster, &[]);
    let alive: BTreeSet<String> = [id(&survivor), id(&joined)].into_iter().collect();
    running_on(&joined, "pg", 1, &alive);
    running_on(&joined, "archive", 1, &alive);
    wait_for("every row in S3", 120, || {
        ids_in_objects(&bucket)
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len() as i64
            == ROWS - 1
    });
    std::thread::sleep(std::time::Duration::from_millis(800)); // room for a late duplicate
    assert_eq!(survivor.stop().code, Some(0));
    assert_eq!(joined.stop().code, Some(0));

    let topic: Vec<i64> = lb
        .consume_values("events", &on_cluster)
        .iter()
        .map(|v| {
            serde_json::from_str::<Value>(v).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        topic,
        (1..ROWS).collect::<Vec<_>>(),
        "each row once in the topic, in order"
    );
    assert_eq!(
        ids_in_objects(&bucket),
        (1..ROWS).collect::<Vec<_>>(),
        "each row in exactly one object, objects in order"
    );
    drop(server);
}
