//! `logbrook perf connect`: file source and file sink throughput through the Connect runtime,
//! next to `cat` and `dd conv=fsync` copying the same file in the same run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use logbrook_connect::runtime::ConnectorOffsets;
use logbrook_connect::{ConfigOrigin, Worker, WorkerConfig};
use logbrook_core::Broker;
use serde_json::{Value, json};

use crate::plugins::registry;

/// Flags of `perf connect`.
#[derive(Debug, Clone, Args)]
pub struct PerfConnectArgs {
    /// Lines in the generated input file.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per line, newline included.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

struct Measured {
    name: &'static str,
    seconds: f64,
}

/// Runs the benchmark in `DATA_DIR/perf-connect` (removed afterwards).
///
/// # Errors
/// I/O errors, `cat`/`dd` failures, connector failures, or an output that differs from the input.
pub async fn run(data_dir: &Path, args: PerfConnectArgs) -> Result<()> {
    ensure!(args.record_size >= 2, "--record-size must be at least 2");
    let dir = data_dir.join("perf-connect");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let input = dir.join("input.txt");
    let bytes = generate(&input, args.records, args.record_size)?;
    let mut results = vec![
        Measured {
            name: "cat (page cache copy)",
            seconds: copy_with(
                "cat",
                &[input.to_str().unwrap_or_default()],
                &dir.join("cat.txt"),
            )?,
        },
        Measured {
            name: "dd bs=1M conv=fsync",
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
    let (source_seconds, sink_seconds) = run_connectors(&dir, &input, args.records, bytes).await?;
    results.push(Measured {
        name: "file-source -> topic",
        seconds: source_seconds,
    });
    results.push(Measured {
        name: "topic -> file-sink",
        seconds: sink_seconds,
    });
    let same = std::fs::read(&input)? == std::fs::read(dir.join("output.txt"))?;
    std::fs::remove_dir_all(&dir).ok();
    if !same {
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
            json!({"records": args.records, "bytes": bytes, "results": rows, "output_matches_input": same})
        );
        return Ok(());
    }
    println!(
        "{} lines x {} B = {:.1} MB; output file identical to input: {same}",
        args.records, args.record_size, mb
    );
    println!(
        "{:<24} {:>10} {:>14} {:>9} {:>9}",
        "", "MB/s", "records/s", "vs cat", "vs dd"
    );
    for m in &results {
        println!(
            "{:<24} {:>10.0} {:>14.0} {:>8.2}x {:>8.2}x",
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

async fn run_connectors(dir: &Path, input: &Path, records: u64, bytes: u64) -> Result<(f64, f64)> {
    let broker = Broker::open(dir.join("data")).await?;
    let config = WorkerConfig {
        rest_enabled: false,
        ..WorkerConfig::default()
    };
    let worker = Worker::start(broker.clone(), registry(), config).await?;
    let outcome = async {
        let source = json!({
            "name": "perf-source", "connector": "file-source", "topic": "perf-connect",
            "value_converter": "string", "path": input.display().to_string(),
        });
        let bar = crate::perf::progress(bytes, "file-source");
        let started = Instant::now();
        start_connector(&worker, source).await?;
        wait(
            &worker,
            "perf-source",
            &bar,
            |offsets| offsets.source_position("position").unwrap_or(0),
            bytes,
        )
        .await?;
        let source_seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let output: PathBuf = dir.join("output.txt");
        let sink = json!({
            "name": "perf-sink", "connector": "file-sink", "topics": ["perf-connect"],
            "value_converter": "string", "format": "lines", "path": output.display().to_string(),
        });
        let bar = crate::perf::progress(records, "file-sink");
        let started = Instant::now();
        start_connector(&worker, sink).await?;
        wait(
            &worker,
            "perf-sink",
            &bar,
            ConnectorOffsets::sink_total,
            records,
        )
        .await?;
        let sink_seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        Ok::<_, anyhow::Error>((source_seconds, sink_seconds))
    }
    .await;
    worker.shutdown().await;
    broker.close().await?;
    outcome
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
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
