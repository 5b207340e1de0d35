//! `logbrook perf nexmark`: Nexmark-style queries on the streams runtime, exactly-once, reading
//! from and writing to the log, against a hand-written loop over the same data.
//!
//! The generator ([`events`]) writes persons, auctions and bids to three topics, in event-time
//! order or, with `--disorder-ms`, shuffled within a bounded span. Each query ([`queries`])
//! then runs as a `StreamsApp` to the end of its input, every window closed; its CPU time
//! (getrusage, user + system, every thread of the process) gives events per second per core,
//! counted over all generated events as Flink's Nexmark figures are. The hand loop
//! ([`expected`]) computes the same query with plain maps, timed as the speed peer; its rows
//! are the expected result, and the app's output must equal them exactly ([`check`]), with no
//! record dropped as late.

mod check;
mod events;
mod expected;
mod queries;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use logbrook_core::{Broker, BrokerConfig, FlushPolicy, TopicConfig};
use logbrook_streams::{StreamsApp, StreamsConfig};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::check::Row;
use self::queries::Query;
use crate::perf::cpu_time;

/// Rows of each kind shown when a query's output differs from the expected.
const SHOWN_ROWS: usize = 5;

/// Flags of `perf nexmark`.
#[derive(Debug, Clone, Args)]
pub struct NexmarkArgs {
    /// Events to generate (persons, auctions and bids together).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Queries to run, comma-separated.
    #[arg(long, default_value = "q1,q2,q5,q7,count,q8", value_delimiter = ',')]
    queries: Vec<Query>,
    /// Partitions per topic (one streams task each).
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    /// Send the events out of timestamp order by up to this many milliseconds (shuffled within
    /// spans of this length); windows and joins get this much grace, so none is late.
    #[arg(long, default_value_t = 0)]
    disorder_ms: u64,
    /// Print one JSON object per query instead of a table.
    #[arg(long)]
    json: bool,
    /// Run each query's app as a Kafka client of a `logbrook serve` on loopback, in this
    /// process (its CPU counts too), instead of on the embedded log.
    #[arg(long)]
    serve: bool,
    /// Run each query as this many app instances of one worker thread each (Kafka Streams'
    /// default of one stream thread), splitting the tasks (`StreamsApp::with_task_share`);
    /// without it, one instance runs every task on the process's threads.
    #[arg(long)]
    instances: Option<u32>,
}

/// Runs the query's app until it has read its input to the end and closed every window: on
/// the embedded log, or as a client of the server at `bootstrap`; as one instance, or as
/// `instances` of one worker thread each, splitting the tasks. Returns the records it dropped
/// as late.
async fn run_streams(
    broker: &Broker,
    bootstrap: Option<&str>,
    query: Query,
    grace: Duration,
    instances: Option<u32>,
) -> Result<u64> {
    let application_id = format!("nexmark-{}", query.name());
    let mut runs = Vec::new();
    for index in 0..instances.unwrap_or(1) {
        let topology = queries::topology(query, grace)?;
        let config = StreamsConfig {
            worker_threads: instances.map(|_| 1),
            ..StreamsConfig::new(application_id.clone())
        };
        let app = match bootstrap {
            None => StreamsApp::new(broker.clone(), topology, config)?,
            Some(bootstrap) => {
                let config = StreamsConfig {
                    bootstrap_servers: Some(bootstrap.to_string()),
                    state_dir: Some(
                        broker
                            .data_dir()
                            .join("streams-state")
                            .join(&application_id)
                            .join(format!("instance-{index}")),
                    ),
                    ..config
                };
                StreamsApp::connect(topology, config).await?
            }
        };
        let app = match instances {
            Some(of) => app.with_task_share(index, of)?,
            None => app,
        };
        let metrics = app.metrics();
        let run = tokio::spawn(app.run_to_end(CancellationToken::new()));
        runs.push((run, metrics));
    }
    let mut late = 0;
    for (run, metrics) in runs {
        run.await
            .context("a streams instance panicked")?
            .with_context(|| format!("streams app of {}", query.name()))?;
        late += metrics.late_records_dropped();
    }
    Ok(late)
}

/// Whether a query's output was right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Check {
    /// Exactly the expected rows, no record dropped as late.
    Ok,
    /// Rows missing or unexpected.
    Mismatch,
    /// The expected rows, yet records were dropped as late (the input was never later than
    /// the grace period allows).
    Late,
}

#[derive(Debug, Serialize)]
struct QueryResult {
    query: &'static str,
    events: u64,
    partitions: u32,
    disorder_ms: u64,
    /// App instances (one worker thread each), when not one app on every thread.
    instances: Option<u32>,
    /// Rows the streams app wrote.
    outputs: u64,
    wall_s: f64,
    cpu_s: f64,
    /// All generated events over the wall time of the run.
    events_per_s: f64,
    events_per_s_per_core: f64,
    /// Records the streams app dropped as late.
    late_records_dropped: u64,
    /// Rows the hand loop wrote: the expected rows.
    hand_outputs: u64,
    hand_cpu_s: f64,
    hand_events_per_s_per_core: f64,
    framework_vs_hand: f64,
    flink_per_core: Option<f64>,
    vs_flink: Option<f64>,
    /// Expected rows the app did not write.
    rows_missing: u64,
    /// Rows the app wrote that were not expected.
    rows_unexpected: u64,
    check: Check,
}

/// Runs `perf nexmark`.
///
/// # Errors
/// Log errors, a query that fails, and a query whose output differs from the expected rows or
/// that dropped records as late.
pub async fn run(data_dir: &Path, args: NexmarkArgs) -> Result<()> {
    let dir = data_dir.join("nexmark");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let broker = Broker::open_with(BrokerConfig::new(&dir)).await?;
    for topic in [events::PERSONS, events::AUCTIONS, events::BIDS] {
        let config = TopicConfig {
            partitions: args.partitions,
            flush: FlushPolicy::Never, // input generation is not what is measured
            ..TopicConfig::default()
        };
        broker.create_topic(topic, config)?;
    }
    events::generate(&broker, args.events, args.disorder_ms).await?;
    let grace = Duration::from_millis(args.disorder_ms);
    let (bootstrap, server) = if args.serve {
        let (addr, server) =
            logbrook_serve::spawn_on_loopback(broker.clone(), |config| config).await?;
        (Some(addr.to_string()), server)
    } else {
        (None, CancellationToken::new())
    };
    let mut results = Vec::new();
    for &query in &args.queries {
        for topic in [query.output_topic(), query.hand_topic()] {
            let config = TopicConfig {
                partitions: args.partitions,
                ..TopicConfig::default()
            };
            broker.create_topic(&topic, config)?;
        }
        let (cpu, wall) = (cpu_time(), Instant::now());
        let late = run_streams(&broker, bootstrap.as_deref(), query, grace, args.instances).await?;
        let (cpu_s, wall_s) = (
            (cpu_time() - cpu).as_secs_f64(),
            wall.elapsed().as_secs_f64(),
        );
        let hand_cpu = cpu_time();
        let expected = expected::hand_loop(&broker, query).await?;
        let hand_cpu_s = (cpu_time() - hand_cpu).as_secs_f64();

        let expected = expected
            .iter()
            .map(|(key, value)| Row::decode(Some(key.as_ref()), Some(value.as_ref())))
            .collect::<Result<Vec<_>>>()?;
        let hand_outputs = expected.len() as u64;
        let actual = check::read_rows(&broker, &query.output_topic())?;
        let outputs = actual.len() as u64;
        let difference = check::compare(expected, actual);
        let check = if !difference.is_empty() {
            eprintln!("{}: {}", query.name(), difference.report(SHOWN_ROWS));
            Check::Mismatch
        } else if late > 0 {
            Check::Late
        } else {
            Check::Ok
        };
        if late > 0 {
            let input = match args.disorder_ms {
                0 => "in timestamp order".to_string(),
                ms => format!("out of order by less than the grace period of {ms} ms"),
            };
            eprintln!(
                "{}: records dropped as late: {late}, though the input was {input}",
                query.name()
            );
        }

        let per_core = args.events as f64 / cpu_s.max(1e-9);
        let hand_per_core = args.events as f64 / hand_cpu_s.max(1e-9);
        let flink = query.flink_per_core();
        let result = QueryResult {
            query: query.name(),
            events: args.events,
            partitions: args.partitions,
            disorder_ms: args.disorder_ms,
            instances: args.instances,
            outputs,
            wall_s,
            cpu_s,
            events_per_s: args.events as f64 / wall_s.max(1e-9),
            events_per_s_per_core: per_core,
            late_records_dropped: late,
            hand_outputs,
            hand_cpu_s,
            hand_events_per_s_per_core: hand_per_core,
            framework_vs_hand: per_core / hand_per_core,
            flink_per_core: flink,
            vs_flink: flink.map(|f| per_core / f),
            rows_missing: difference.missing.len() as u64,
            rows_unexpected: difference.unexpected.len() as u64,
            check,
        };
        if args.json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            eprintln!("{}: {per_core:.0} events/s per core", query.name());
        }
        results.push(result);
    }
    server.cancel();
    broker.close().await?;
    if !args.json {
        crate::output::print(&table(&results))?;
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.check != Check::Ok)
        .map(|r| match r.check {
            Check::Mismatch => format!(
                "{} (of {} expected rows, missing: {}, unexpected: {})",
                r.query, r.hand_outputs, r.rows_missing, r.rows_unexpected
            ),
            _ => format!(
                "{} (records dropped as late: {})",
                r.query, r.late_records_dropped
            ),
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "the streams output differs from the expected rows: {}",
            failed.join(", ")
        );
    }
    Ok(())
}

/// The results as a table.
fn table(results: &[QueryResult]) -> String {
    let mut table = crate::output::Table::new(&[
        "QUERY",
        "EVENTS",
        "OUTPUTS",
        "WALL S",
        "EV/S",
        "CPU S",
        "EV/S/CORE",
        "LATE",
        "HAND EV/S/CORE",
        "VS HAND",
        "FLINK EV/S/CORE",
        "VS FLINK",
        "CHECK",
    ]);
    for r in results {
        table.row(vec![
            r.query.to_string(),
            r.events.to_string(),
            r.outputs.to_string(),
            format!("{:.2}", r.wall_s),
            format!("{:.0}", r.events_per_s),
            format!("{:.2}", r.cpu_s),
            format!("{:.0}", r.events_per_s_per_core),
            r.late_records_dropped.to_string(),
            format!("{:.0}", r.hand_events_per_s_per_core),
            format!("{:.2}x", r.framework_vs_hand),
            r.flink_per_core.map_or("-".into(), |f| format!("{f:.0}")),
            r.vs_flink.map_or("-".into(), |v| format!("{v:.2}x")),
            match r.check {
                Check::Ok => "ok",
                Check::Mismatch => "MISMATCH",
                Check::Late => "LATE",
            }
            .to_string(),
        ]);
    }
    table.render()
}
