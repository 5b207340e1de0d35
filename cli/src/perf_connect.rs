//! `logbrook perf connect`: file source and file sink throughput through the Connect runtime,
//! next to `cat` and `dd conv=fsync` copying the same file in the same run.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use logbrook_client::{Client, Cluster};
use logbrook_connect::runtime::{ConnectorOffsets, TASK_SLOTS};
use logbrook_connect::{ConfigOrigin, Worker, WorkerConfig};
use logbrook_core::Broker;
use serde_json::{Value, json};

use crate::plugins::registry;

/// Flags of `perf connect`.
#[derive(Debug, Clone, Args)]
pub struct PerfConnectArgs {
    /// Lines in the generated input.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per line, newline included.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Also run the connectors through a Connect cluster of one and of `--workers` workers on
    /// this Kafka-protocol cluster (e.g. `logbrook serve`), after the embedded run.
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    /// Workers of the larger cluster run (in this process); the input is split into this many
    /// files, read by as many source tasks into as many partitions.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

struct Measured {
    name: String,
    seconds: f64,
}

/// Runs the benchmark in `DATA_DIR/perf-connect` (removed afterwards).
///
/// # Errors
/// I/O errors, `cat`/`dd` failures, connector failures, or an output that differs from the input.
pub async fn run(data_dir: &Path, args: PerfConnectArgs) -> Result<()> {
    ensure!(args.record_size >= 2, "--record-size must be at least 2");
    ensure!(args.workers >= 1, "--workers must be at least 1");
    let dir = data_dir.join("perf-connect");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let input = dir.join("input.txt");
    let bytes = generate(&input, args.records, args.record_size)?;
    let mut results = vec![
        Measured {
            name: "cat (page cache copy)".into(),
            seconds: copy_with(
                "cat",
                &[input.to_str().unwrap_or_default()],
                &dir.join("cat.txt"),
            )?,
        },
        Measured {
            name: "dd bs=1M conv=fsync".into(),
            seconds: copy_with(
                "dd",
                &[
                    &format!("if={}", input.display()),
                    &format!("of={}", dir.join("dd.txt").display()),
                    "bs=1M",
                    "conv=fsync",
                    "status=none",
                ],
                Path::new("/dev/null"),
            )?,
        },
    ];
    let mut all_match = true;
    for (bootstrap, workers, label) in runs(args.bootstrap_server.as_ref(), args.workers) {
        let run_dir = dir.join(label.replace([' ', ','], "-"));
        std::fs::create_dir_all(&run_dir)?;
        let (source_seconds, sink_seconds, same) =
            run_connectors(&run_dir, &input, bytes, bootstrap.as_deref(), workers)
                .await
                .with_context(|| format!("the {label} run"))?;
        all_match &= same;
        results.push(Measured {
            name: format!("file-source -> topic ({label})"),
            seconds: source_seconds,
        });
        results.push(Measured {
            name: format!("topic -> file-sink ({label})"),
            seconds: sink_seconds,
        });
    }
    std::fs::remove_dir_all(&dir).ok();
    if !all_match {
        bail!("the file sink's output differs from the input");
    }
    let mb = bytes as f64 / 1e6;
    let (cat, dd) = (results[0].seconds, results[1].seconds);
    if args.json {
        let rows: Vec<Value> = results
            .iter()
            .map(|m| {
                json!({"name": m.name, "seconds": m.seconds, "mb_per_sec": mb / m.seconds,
                           "records_per_sec": args.records as f64 / m.seconds})
            })
            .collect();
        println!(
            "{}",
            json!({"records": args.records, "bytes": bytes, "results": rows, "output_matches_input": all_match})
        );
        return Ok(());
    }
    println!(
        "{} lines x {} B = {:.1} MB; output identical to input (as sorted lines): {all_match}",
        args.records, args.record_size, mb
    );
    println!(
        "{:<44} {:>8} {:>12} {:>8} {:>8}",
        "", "MB/s", "records/s", "vs cat", "vs dd"
    );
    for m in &results {
        println!(
            "{:<44} {:>8.0} {:>12.0} {:>7.2}x {:>7.2}x",
            m.name,
            mb / m.seconds,
            args.records as f64 / m.seconds,
            cat / m.seconds,
            dd / m.seconds
        );
    }
    Ok(())
}

/// Writes `records` lines of `size` bytes; returns the file size.
fn generate(path: &Path, records: u64, size: usize) -> Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let filler = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(size / 36 + 1);
    for i in 0..records {
        let head = format!("{i:012} ");
        let body = size.saturating_sub(head.len() + 1);
        out.write_all(head.as_bytes())?;
        out.write_all(&filler.as_bytes()[..body])?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(std::fs::metadata(path)?.len())
}

fn copy_with(program: &str, args: &[&str], stdout: &Path) -> Result<f64> {
    let out =
        std::fs::File::create(stdout).with_context(|| format!("creating {}", stdout.display()))?;
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::from(out))
        .status()
        .with_context(|| format!("running {program}"))?;
    ensure!(status.success(), "{program} failed: {status}");
    Ok(started.elapsed().as_secs_f64())
}

/// Splits `input`'s lines over `parts` files in `dir`, in turn.
fn split(input: &Path, dir: &Path, parts: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut outs = (0..parts)
        .map(|i| {
            let file = std::fs::File::create(dir.join(format!("part-{i}.txt")))?;
            Ok(std::io::BufWriter::with_capacity(1 << 20, file))
        })
        .collect::<Result<Vec<_>>>()?;
    let text = std::fs::read(input)?;
    for (i, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        outs[i % parts].write_all(line)?;
    }
    for out in outs {
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    Ok(())
}

/// Every line of the files in `dir`, sorted.
fn sorted_lines(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read(entry?.path())?;
        lines.extend(
            text.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    lines.sort_unstable();
    Ok(lines)
}

/// Runs file-source then file-sink over `input` split into `workers` files, on the embedded
/// log in `dir` or on the cluster at `bootstrap` with `workers` workers. Returns the source's
/// and the sink's seconds, and whether the output holds exactly the input's lines.
async fn run_connectors(
    dir: &Path,
    input: &Path,
    bytes: u64,
    bootstrap: Option<&str>,
    workers: usize,
) -> Result<(f64, f64, bool)> {
    let in_dir = dir.join("in");
    split(input, &in_dir, workers)?;
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir)?;
    let cluster = PerfWorkers::start(dir, bootstrap, workers).await?;
    let topic = cluster.unique("perf-connect");
    let (source_name, sink_name) = (cluster.unique("perf-source"), cluster.unique("perf-sink"));
    let worker = cluster.first();
    let outcome = async {
        let source = json!({
            "name": source_name, "connector": "file-source", "topic": topic,
            "value_converter": "string", "path": in_dir.display().to_string(), "tasks": workers,
        });
        let bar = crate::perf::progress(bytes, "file-source");
        let started = Instant::now();
        start_connector(worker, source).await?;
        wait(
            worker,
            &source_name,
            &bar,
            |o| o.source_total("position"),
            bytes,
        )
        .await?;
        let source_seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let end = cluster.end_offset(&topic).await?;
        let sink = json!({
            "name": sink_name, "connector": "file-sink", "topics": [topic],
            "value_converter": "string", "format": "lines",
            "path": format!("{}/", out_dir.display()), "tasks": workers,
        });
        let bar = crate::perf::progress(end, "file-sink");
        let started = Instant::now();
        start_connector(worker, sink).await?;
        wait(worker, &sink_name, &bar, ConnectorOffsets::sink_total, end).await?;
        let sink_seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        Ok::<_, anyhow::Error>((source_seconds, sink_seconds))
    }
    .await;
    cluster.stop(&[&source_name, &sink_name]).await?;
    let (source_seconds, sink_seconds) = outcome?;
    let same = sorted_lines(&in_dir)? == sorted_lines(&out_dir)?;
    Ok((source_seconds, sink_seconds, same))
}

/// The runs a connector benchmark makes: the embedded log, then with `--bootstrap-server` a
/// cluster of one worker and one of `workers`.
pub(crate) fn runs(
    bootstrap: Option<&String>,
    workers: usize,
) -> Vec<(Option<String>, usize, String)> {
    let mut runs = vec![(None, 1, "embedded".to_string())];
    if let Some(bootstrap) = bootstrap {
        runs.push((Some(bootstrap.clone()), 1, "cluster, 1 worker".to_string()));
        if workers > 1 {
            runs.push((
                Some(bootstrap.clone()),
                workers,
                format!("cluster, {workers} workers"),
            ));
        }
    }
    runs
}

/// The workers of one benchmark run: one on an embedded log in a directory of its own, or
/// `count` in this process forming one Connect cluster on a Kafka-protocol cluster.
pub(crate) struct PerfWorkers {
    log: Client,
    workers: Vec<std::sync::Arc<Worker>>,
    /// Makes names unique: a cluster keeps the topics and groups of earlier runs.
    run: String,
}

impl PerfWorkers {
    /// Starts the workers; on a cluster, returns once every worker owns task slots, so the
    /// figures do not include the group's first rebalance.
    pub(crate) async fn start(dir: &Path, bootstrap: Option<&str>, count: usize) -> Result<Self> {
        let log = match bootstrap {
            Some(bootstrap) => Client::Cluster(Cluster::connect(bootstrap, Vec::new()).await?),
            None => Client::Embedded(Broker::open(dir.join("data")).await?),
        };
        let run = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        );
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let config = WorkerConfig {
                rest_enabled: false,
                // The worker's id in its group and in statuses.
                rest_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 1 + i as u16)),
                topic_partitions: count as u32,
                group_id: format!("perf-{run}"),
                ..WorkerConfig::default()
            };
            workers.push(Worker::start(log.clone(), registry(), config).await?);
        }
        if bootstrap.is_some() {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let slots: Vec<usize> = workers.iter().filter_map(|w| w.task_slots()).collect();
                if slots.iter().all(|s| *s > 0)
                    && slots.iter().sum::<usize>() == TASK_SLOTS as usize
                {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "the workers' group did not assign the task slots in 60 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(Self { log, workers, run })
    }

    /// The worker connectors are started through (the others learn them from the cluster).
    pub(crate) fn first(&self) -> &Worker {
        &self.workers[0]
    }

    /// `base` made unique to this run.
    pub(crate) fn unique(&self, base: &str) -> String {
        format!("{base}-{}", self.run)
    }

    /// The sum of `topic`'s end offsets: where a sink that read everything has committed
    /// (transaction markers take offsets too).
    pub(crate) async fn end_offset(&self, topic: &str) -> Result<u64> {
        Ok(self
            .log
            .describe_topic(topic)
            .await?
            .partitions
            .iter()
            .map(|p| p.log_end_offset)
            .sum())
    }

    /// Deletes `connectors` on a cluster (so no later worker runs them), stops the workers and
    /// closes the log.
    pub(crate) async fn stop(self, connectors: &[&str]) -> Result<()> {
        if matches!(self.log, Client::Cluster(_)) {
            for name in connectors {
                self.first().delete(name).await.ok();
            }
        }
        for worker in &self.workers {
            worker.shutdown().await;
        }
        Ok(self.log.close().await?)
    }
}

/// Starts a connector from a JSON config, as `connect run` does for a file.
pub(crate) async fn start_connector(worker: &Worker, config: Value) -> Result<()> {
    let Value::Object(raw) = config else {
        unreachable!("a JSON object literal")
    };
    worker
        .run_file(raw, &ConfigOrigin::Rest("perf".into()))
        .await?;
    Ok(())
}

/// Waits until `progress` of the connector's offsets reaches `target`, failing if a task fails.
pub(crate) async fn wait(
    worker: &Worker,
    name: &str,
    bar: &indicatif::ProgressBar,
    progress: impl Fn(&ConnectorOffsets) -> u64,
    target: u64,
) -> Result<()> {
    loop {
        let offsets = worker.offsets(name).await?;
        let done = progress(&offsets);
        bar.set_position(done);
        if done >= target {
            return Ok(());
        }
        let status = worker.status(name).await?;
        if let Some(logbrook_connect::runtime::TaskState::Failed(message)) = status
            .tasks
            .iter()
            .find(|t| matches!(t, logbrook_connect::runtime::TaskState::Failed(_)))
        {
            bail!("{name} failed: {message}");
        }
        // A cluster's offsets are lookups over the network: ask less often.
        let pause = if matches!(worker.log(), Client::Cluster(_)) {
            200
        } else {
            5
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
