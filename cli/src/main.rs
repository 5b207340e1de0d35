//! `logbrook`: the command-line tool for Logbrook's embedded log.
//!
//! Every command works on a data directory (`--data-dir`, env `LOGBROOK_DATA_DIR`). Commands that
//! only read open it read-only, so they can run beside a writer process; commands that write take
//! the directory's writer lock and always close the broker before exiting so data is flushed.
//! The client commands (`topic`, `produce`, `consume`, `group`, `streams reset`, `perf
//! produce|consume`) work on a Kafka-protocol cluster instead with `--bootstrap-server`
//! (env `LOGBROOK_BOOTSTRAP_SERVER`), with the same output.

mod connect;
mod consume;
mod demo;
mod group;
mod nexmark;
mod output;
mod perf;
mod perf_connect;
mod perf_postgres;
mod perf_s3;
mod plugins;
mod produce;
mod serve;
mod streams;
mod target;
mod topic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use logbrook_core::{Broker, BrokerConfig};

/// Logbrook: a Kafka-like durable log, embedded, with no external service.
#[derive(Debug, Parser)]
#[command(name = "logbrook", version, propagate_version = true)]
struct Cli {
    /// Data directory holding the topics.
    #[arg(
        long,
        global = true,
        env = "LOGBROOK_DATA_DIR",
        default_value = "./logbrook-data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    Topic {
        #[command(flatten)]
        cluster: target::ClusterArgs,
        #[command(subcommand)]
        command: topic::TopicCommand,
    },
    /// Append one record per stdin line to a topic.
    Produce(produce::ProduceArgs),
    /// Print a topic's records, optionally as a consumer group.
    Consume(consume::ConsumeArgs),
    /// List, describe and reset consumer groups.
    Group {
        #[command(flatten)]
        cluster: target::ClusterArgs,
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// Manage streams applications.
    Streams {
        #[command(subcommand)]
        command: streams::StreamsCommand,
    },
    /// Run source and sink connectors from config files, with a Kafka-Connect-style REST API.
    Connect {
        #[command(subcommand)]
        command: connect::ConnectCommand,
    },
    /// Serve the data directory over Kafka's wire protocol, for Kafka clients and other
    /// processes.
    Serve(serve::ServeArgs),
    /// Measure produce and consume throughput.
    Perf {
        #[command(subcommand)]
        command: perf::PerfCommand,
    },
    /// Events from a file through file-source, a streams pipeline and file-sink, then reset and
    /// reprocessed, with checks, on the embedded log.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and succeed; usage errors fail like every other error.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // The demo prints its own steps; the connectors' info logs would bury them.
    init_tracing(matches!(cli.command, Command::Demo(_)));
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let data_dir = cli.data_dir.as_path();
    match cli.command {
        Command::Topic { cluster, command } => topic::run(data_dir, &cluster, command).await,
        Command::Produce(args) => produce::run(data_dir, args).await,
        Command::Consume(args) => consume::run(data_dir, args).await,
        Command::Group { cluster, command } => group::run(data_dir, &cluster, command).await,
        Command::Streams { command } => streams::run(data_dir, command).await,
        Command::Connect { command } => connect::run(data_dir, command).await,
        Command::Perf { command } => perf::run(data_dir, command).await,
        Command::Demo(args) => demo::run(data_dir, args).await,
        Command::Serve(args) => serve::run(data_dir, args).await,
    }
}

/// Logs to stderr at `warn` (connectors at `info`, unless `quiet`) unless `RUST_LOG` says
/// otherwise.
fn init_tracing(quiet: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if quiet {
            "warn"
        } else {
            "warn,logbrook_connect=info,logbrook_connector_file=info,logbrook_connector_postgres=info,logbrook_connector_s3=info,logbrook::connect=info"
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Opens an existing data directory without the writer lock.
///
/// # Errors
/// If the directory does not exist, or the broker fails to open it.
pub async fn open_read_only(data_dir: &Path) -> Result<Broker> {
    require_data_dir(data_dir)?;
    Broker::open_with(BrokerConfig::new(data_dir).read_only())
        .await
        .with_context(|| format!("opening data dir {} read-only", data_dir.display()))
}

/// Opens a data directory for writing, taking its writer lock. With `create`, a missing directory
/// is created; otherwise it must exist, so a typo in `--data-dir` is not silently a new log.
///
/// # Errors
/// If the directory is missing (without `create`), or locked by another process (the error names
/// its pid), or fails to open.
pub async fn open_writable(data_dir: &Path, create: bool) -> Result<Broker> {
    if !create {
        require_data_dir(data_dir)?;
    }
    // The core's lock error already names the directory and the holder's pid.
    Ok(Broker::open(data_dir).await?)
}

fn require_data_dir(data_dir: &Path) -> Result<()> {
    if !data_dir.is_dir() {
        bail!(
            "data dir {} does not exist (create a topic with `logbrook topic create`, or pass --data-dir)",
            data_dir.display()
        );
    }
    Ok(())
}

/// Parses an RFC 3339 time into milliseconds since the Unix epoch.
///
/// # Errors
/// A message naming the rejected text.
pub fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e}), e.g. 2025-01-31T12:00:00Z"))
}

/// Resolves on Ctrl-C or SIGTERM; never if the handlers cannot be installed.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives before the first poll (a busy consume loop) must not kill the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        let wait = |handler: Option<tokio::signal::unix::Signal>| async move {
            match handler {
                Some(mut handler) => {
                    handler.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(interrupt) => {}
            () = wait(terminate) => {}
        }
    }
}
