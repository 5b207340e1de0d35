//! `logbrook perf postgres`: `postgres-source` and `postgres-sink` rows/s through the Connect
//! runtime, next to `psql \copy` moving the same rows out of and into the same server in the
//! same run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use logbrook_connect::runtime::ConnectorOffsets;
use serde_json::json;

use crate::perf_connect::{PerfWorkers, runs, start_connector, wait};

/// Flags of `perf postgres`.
#[derive(Debug, Clone, Args)]
pub struct PerfPostgresArgs {
    /// The server to measure (tables `logbrook_perf_*` are created and dropped there).
    #[arg(long, env = "LOGBROOK_PG_URL")]
    url: String,
    /// Rows in the generated table.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Rows per source query and per sink COPY.
    #[arg(long, default_value_t = 10_000)]
    batch_rows: u64,
    /// Also run the connectors through a Connect cluster of one and of `--workers` workers on
    /// this Kafka-protocol cluster (e.g. `logbrook serve`), after the embedded run.
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    /// Workers of the larger cluster run (in this process); its topic has as many partitions,
    /// written by the one source task and read by as many sink tasks.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const COLUMNS: &str =
    "id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), at timestamptz, flag boolean";

/// Runs the benchmark in `DATA_DIR/perf-postgres` (removed afterwards).
///
/// # Errors
/// `psql` missing or failing, connector failures, or a sink table that differs from the source.
pub async fn run(data_dir: &Path, args: PerfPostgresArgs) -> Result<()> {
    let dir = data_dir.join("perf-postgres");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rows = args.rows;
    psql(
        &args.url,
        &format!(
            "DROP TABLE IF EXISTS logbrook_perf_src, logbrook_perf_copy, logbrook_perf_dst; \
             CREATE TABLE logbrook_perf_src ({COLUMNS}); \
             CREATE TABLE logbrook_perf_copy ({COLUMNS}); \
             CREATE TABLE logbrook_perf_dst ({COLUMNS}); \
             INSERT INTO logbrook_perf_src SELECT g, 'customer-' || g, (g % 100000) / 100.0, \
               '2024-01-01'::timestamptz + g * interval '1 second', g % 2 = 0 \
             FROM generate_series(1, {rows}) g"
        ),
    )?;
    psql(&args.url, "VACUUM ANALYZE logbrook_perf_src")?;
    let dump = dir.join("rows.tsv");
    let started = Instant::now();
    psql(
        &args.url,
        &format!("\\copy logbrook_perf_src TO '{}'", dump.display()),
    )?;
    let copy_out = started.elapsed().as_secs_f64();
    let started = Instant::now();
    psql(
        &args.url,
        &format!("\\copy logbrook_perf_copy FROM '{}'", dump.display()),
    )?;
    let copy_in = started.elapsed().as_secs_f64();

    let mut measured = Vec::new();
    let mut failure = None;
    for (bootstrap, workers, label) in runs(args.bootstrap_server.as_ref(), args.workers) {
        psql(&args.url, "TRUNCATE logbrook_perf_dst")?;
        let outcome = run_connectors(
            &dir.join(label.replace([' ', ','], "-")),
            &args,
            bootstrap.as_deref(),
            workers,
        )
        .await
        .with_context(|| format!("the {label} run"));
        let differing = psql(
            &args.url,
            "SELECT count(*) FROM logbrook_perf_src s FULL JOIN logbrook_perf_dst d USING (id) \
             WHERE s IS DISTINCT FROM d",
        )?;
        match outcome {
            Ok(_) if differing.trim() != "0" => {
                failure = Some(anyhow::anyhow!(
                    "{label}: {} rows differ between logbrook_perf_src and the sink's copy",
                    differing.trim()
                ));
                break;
            }
            Ok((source, sink)) => measured.push((label, source, sink)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    psql(
        &args.url,
        "DROP TABLE logbrook_perf_src, logbrook_perf_copy, logbrook_perf_dst",
    )?;
    std::fs::remove_dir_all(&dir).ok();
    if let Some(e) = failure {
        return Err(e);
    }
    let rate = |seconds: f64| rows as f64 / seconds;
    if args.json {
        let runs: Vec<serde_json::Value> = measured
            .iter()
            .map(|(label, source, sink)| {
                json!({
                    "run": label,
                    "source_rows_per_sec": rate(*source),
                    "source_vs_copy": copy_out / source,
                    "sink_rows_per_sec": rate(*sink),
                    "sink_vs_copy": copy_in / sink,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "rows": rows,
                "psql_copy_out_rows_per_sec": rate(copy_out),
                "psql_copy_in_rows_per_sec": rate(copy_in),
                "runs": runs,
                "sink_table_equals_source": true,
            })
        );
        return Ok(());
    }
    println!("{rows} rows ({COLUMNS}); sink table equals the source table after every run: true");
    println!("{:<48} {:>12} {:>10}", "", "rows/s", "vs \\copy");
    println!(
        "{:<48} {:>12.0}",
        "psql \\copy table TO file",
        rate(copy_out)
    );
    println!(
        "{:<48} {:>12.0}",
        "psql \\copy table FROM file",
        rate(copy_in)
    );
    for (label, source, sink) in &measured {
        println!(
            "{:<48} {:>12.0} {:>9.2}x",
            format!("postgres-source -> topic ({label})"),
            rate(*source),
            copy_out / source
        );
        println!(
            "{:<48} {:>12.0} {:>9.2}x",
            format!("topic -> postgres-sink ({label})"),
            rate(*sink),
            copy_in / sink
        );
    }
    Ok(())
}

fn psql(url: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .output()
        .context("running psql (install postgresql-client)")?;
    if !out.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn run_connectors(
    dir: &Path,
    args: &PerfPostgresArgs,
    bootstrap: Option<&str>,
    workers: usize,
) -> Result<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let cluster = PerfWorkers::start(dir, bootstrap, workers).await?;
    let topic = cluster.unique("perf-postgres");
    let (source_name, sink_name) = (
        cluster.unique("perf-pg-source"),
        cluster.unique("perf-pg-sink"),
    );
    let worker = cluster.first();
    let rows = args.rows;
    let outcome = async {
        let source = json!({
            "name": source_name, "connector": "postgres-source", "topic": topic,
            "url": args.url, "table": "logbrook_perf_src", "mode": "incrementing",
            "incrementing_column": "id", "batch_rows": args.batch_rows,
        });
        let bar = crate::perf::progress(rows, "postgres-source");
        let started = Instant::now();
        start_connector(worker, source).await?;
        let incrementing =
            |offsets: &ConnectorOffsets| offsets.source_position("incrementing").unwrap_or(0);
        wait(worker, &source_name, &bar, incrementing, rows).await?;
        let source_seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let end = cluster.end_offset(&topic).await?;
        let sink = json!({
            "name": sink_name, "connector": "postgres-sink", "topics": [topic],
            "url": args.url, "table": "logbrook_perf_dst", "mode": "insert",
            "batch_rows": args.batch_rows, "tasks": workers,
        });
        let bar = crate::perf::progress(end, "postgres-sink");
        let started = Instant::now();
        start_connector(worker, sink).await?;
        wait(worker, &sink_name, &bar, ConnectorOffsets::sink_total, end).await?;
        let sink_seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        Ok::<_, anyhow::Error>((source_seconds, sink_seconds))
    }
    .await;
    cluster.stop(&[&source_name, &sink_name]).await?;
    outcome
}
