//! `logbrook demo`: the README's walk-through, end to end on the embedded log with no external
//! service.
//!
//! 1. generate: click events and a users table, as JSON-lines files in `{data_dir}/demo/input`;
//! 2. file-source: a connect worker reads them into the topics `demo-clicks` and `demo-users`;
//! 3. streams: an application re-keys the clicks by user, joins them with the users table,
//!    re-keys them by country and tallies each country's clicks per minute of event time into
//!    `demo-results`;
//! 4. file-sink: writes `demo-results` to `demo/output/results.jsonl`;
//! 5. check: the file must equal the answer computed directly from the generated events;
//! 6. reset and reprocess: the application is reset as `logbrook streams reset` does, reads
//!    the history again, and the sink writes the new results to a second file, which must
//!    equal the first.
//!
//! Each run starts over: the demo's topics, internal topics, state and files are removed first.

mod connectors;
mod data;
mod pipeline;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use logbrook_core::{Broker, TopicConfig};

use crate::output::{self, Table};
use connectors::Connectors;
use data::CountryMinute;

const CLICKS_TOPIC: &str = "demo-clicks";
const USERS_TOPIC: &str = "demo-users";
const RESULTS_TOPIC: &str = "demo-results";
/// Partitions of each demo topic: equal, as the streams join needs (co-partitioning).
const PARTITIONS: u32 = 3;
const CLICKS_SOURCE: &str = "demo-clicks-source";
const USERS_SOURCE: &str = "demo-users-source";
const RESULTS_SINK: &str = "demo-results-sink";

/// Arguments of `logbrook demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Click events to generate.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Distinct users the clicks come from (rows of the users table).
    #[arg(long, default_value_t = 1_000)]
    users: u64,
}

/// Runs `logbrook demo`.
///
/// # Errors
/// Any log, connector or streams error, or a check that does not hold.
pub async fn run(data_dir: &Path, args: DemoArgs) -> Result<()> {
    if args.users == 0 || args.records == 0 {
        bail!("--records and --users must be at least 1");
    }
    let broker = crate::open_writable(data_dir, true).await?;
    let result = demo(&broker, &args).await;
    let closed = broker.close().await.context("closing the data dir");
    result?;
    closed
}

async fn demo(broker: &Broker, args: &DemoArgs) -> Result<()> {
    let dir = broker.data_dir().join("demo");
    output::print(&format!(
        "Logbrook demo in {}: a file of events through connectors and a streams pipeline, on the embedded log\n\n",
        broker.data_dir().display()
    ))?;
    start_over(broker, &dir).await?;
    for topic in [CLICKS_TOPIC, USERS_TOPIC, RESULTS_TOPIC] {
        let config = TopicConfig {
            partitions: PARTITIONS,
            ..TopicConfig::default()
        };
        broker.create_topic(topic, config)?;
    }
    let connectors = Connectors::start(broker, &dir.join("connectors")).await?;
    let outcome = steps(broker, &connectors, &dir, args).await;
    connectors.shutdown().await;
    outcome
}

/// Removes what a previous run left: the demo's topics (with the consumer groups' offsets on
/// them), the application's internal topics and state, and the demo's files.
async fn start_over(broker: &Broker, dir: &Path) -> Result<()> {
    let mut topics = vec![
        CLICKS_TOPIC.to_string(),
        USERS_TOPIC.to_string(),
        RESULTS_TOPIC.to_string(),
    ];
    topics.extend(pipeline::topology()?.internal_topic_names(pipeline::APPLICATION_ID));
    let mut removed = 0;
    for topic in topics {
        if broker.topic(&topic).is_ok() {
            broker
                .delete_topic(&topic)
                .await
                .with_context(|| format!("deleting the previous run's topic {topic:?}"))?;
            removed += 1;
        }
    }
    let state = logbrook_streams::default_state_dir(broker, pipeline::APPLICATION_ID);
    for path in [state.as_path(), dir] {
        if path.exists() {
            std::fs::remove_dir_all(path)
                .with_context(|| format!("removing the previous run's {}", path.display()))?;
        }
    }
    if removed > 0 {
        output::print(&format!(
            "{:<12} removed the previous run's {removed} topics, state and files\n",
            "start over"
        ))?;
    }
    Ok(())
}

async fn steps(
    broker: &Broker,
    connectors: &Connectors,
    dir: &Path,
    args: &DemoArgs,
) -> Result<()> {
    // 1. The input files. The sources are set up first, paused, so that they forget any
    // position a previous run stored for the same paths.
    let input = dir.join("input");
    std::fs::create_dir_all(&input).with_context(|| format!("creating {}", input.display()))?;
    let (clicks_file, users_file) = (input.join("clicks.jsonl"), input.join("users.jsonl"));
    let clicks_source = connectors
        .source(CLICKS_SOURCE, &clicks_file, CLICKS_TOPIC, None)
        .await?;
    let users_source = connectors
        .source(USERS_SOURCE, &users_file, USERS_TOPIC, Some("user"))
        .await?;
    let started = Instant::now();
    let generated = data::generate(args.records, args.users);
    data::write_json_lines(&users_file, &generated.users)?;
    data::write_json_lines(&clicks_file, &generated.clicks)?;
    step(
        "generate",
        &format!(
            "{} click events from {} users -> {}, the users table -> {} ({})",
            args.records,
            args.users,
            clicks_file.display(),
            users_file.display(),
            seconds(started.elapsed())
        ),
    )?;

    // 2. Ingest them.
    let started = Instant::now();
    connectors.resume(&users_source).await?;
    connectors.resume(&clicks_source).await?;
    let bar = progress(args.records, "ingest");
    let sources = [clicks_source.as_str(), users_source.as_str()];
    let ingested = async {
        connectors
            .wait_for_records(&sources, CLICKS_TOPIC, args.records, &bar)
            .await?;
        connectors
            .wait_for_records(&sources, USERS_TOPIC, args.users, &ProgressBar::hidden())
            .await
    }
    .await;
    bar.finish_and_clear();
    ingested?;
    connectors.stop(&clicks_source).await?;
    connectors.stop(&users_source).await?;
    let elapsed = started.elapsed();
    step(
        "file-source",
        &format!(
            "ingested {} clicks into {CLICKS_TOPIC:?} and {} users into {USERS_TOPIC:?} ({PARTITIONS} partitions each) in {} ({})",
            args.records,
            args.users,
            seconds(elapsed),
            rate(args.records + args.users, elapsed, "records")
        ),
    )?;

    // 3. The streams application, run to the end of its input.
    let started = Instant::now();
    let first = pipeline::run_to_end(broker, args.records, "streams").await?;
    let elapsed = started.elapsed();
    step(
        "streams",
        &format!(
            "{:?}: re-key by user, join the users table, re-key by country, count per minute \
             of event time -> {} results in {RESULTS_TOPIC:?} in {} ({})",
            pipeline::APPLICATION_ID,
            first.results,
            seconds(elapsed),
            rate(args.records, elapsed, "clicks")
        ),
    )?;

    // 4. The results to a file.
    let output = dir.join("output");
    let results_file = output.join("results.jsonl");
    let started = Instant::now();
    write_results(connectors, "results-sink.toml", &results_file).await?;
    step(
        "file-sink",
        &format!(
            "wrote {} results to {} in {}",
            first.results,
            results_file.display(),
            seconds(started.elapsed())
        ),
    )?;

    // 5. Check them against the answer computed directly from the events.
    let expected = data::expected(&generated);
    check_no_late_records(first.late)?;
    let results = read_results(&results_file)?;
    compare(
        &results_file,
        &results,
        &expected,
        "the answer computed from the events",
    )?;
    step(
        "check",
        &format!(
            "{} equals the answer computed directly from the events: {} country-minutes, {} clicks, {} purchases",
            file_name(&results_file),
            expected.len(),
            expected.iter().map(|r| r.clicks).sum::<u64>(),
            expected.iter().map(|r| r.purchases).sum::<u64>()
        ),
    )?;

    // 6. Reset the application and reprocess the history.
    let report = pipeline::reset(broker).await?;
    let inputs: Vec<&str> = report
        .inputs
        .iter()
        .map(|(topic, _)| topic.as_str())
        .collect();
    step(
        "reset",
        &format!(
            "{:?} as `logbrook streams reset` does: inputs [{}] to the earliest offsets, {} internal topics and the local state deleted",
            pipeline::APPLICATION_ID,
            inputs.join(", "),
            report.internal_topics.len()
        ),
    )?;
    let started = Instant::now();
    let again = pipeline::run_to_end(broker, args.records, "reprocess").await?;
    let reprocessed_file = output.join("results-reprocessed.jsonl");
    write_results(connectors, "reprocessed-sink.toml", &reprocessed_file).await?;
    step(
        "reprocess",
        &format!(
            "read the history again -> {} more results in {RESULTS_TOPIC:?}; the sink resumed from its committed offsets into {} ({})",
            again.results,
            reprocessed_file.display(),
            seconds(started.elapsed())
        ),
    )?;
    check_no_late_records(again.late)?;
    let reprocessed = read_results(&reprocessed_file)?;
    compare(
        &reprocessed_file,
        &reprocessed,
        &results,
        "the first results",
    )?;
    step(
        "check",
        &format!(
            "{} equals {}: the same {} rows",
            file_name(&reprocessed_file),
            file_name(&results_file),
            reprocessed.len()
        ),
    )?;
    output::print(&format!(
        "\nall checks hold. Per country, from {}:\n{}\nconnector files: {} (run them with `logbrook connect run`)\n",
        file_name(&results_file),
        per_country(&results),
        dir.join("connectors").display()
    ))
}

/// Runs the results sink from the connector file `file_name` until `output` holds every
/// result there is, then stops it. The sink's name stays the same, so a second run goes on
/// from its committed offsets: it writes only the records added since.
async fn write_results(connectors: &Connectors, file_name: &str, output: &Path) -> Result<()> {
    let sink = connectors
        .sink(file_name, RESULTS_SINK, RESULTS_TOPIC, output)
        .await?;
    connectors.wait_for_sink(&sink, RESULTS_TOPIC).await?;
    connectors.stop(&sink).await
}

/// Every row of a results file, sorted.
fn read_results(path: &Path) -> Result<Vec<CountryMinute>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("check failed: reading {}", path.display()))?;
    let mut rows = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| {
                format!(
                    "check failed: {} line {} is not a result: {line}",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect::<Result<Vec<CountryMinute>>>()?;
    rows.sort();
    Ok(rows)
}

/// Fails unless `found` (read from `path`) has exactly the rows of `expected`.
fn compare(
    path: &Path,
    found: &[CountryMinute],
    expected: &[CountryMinute],
    what: &str,
) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    let missing = expected.iter().find(|row| !found.contains(row));
    let unexpected = found.iter().find(|row| !expected.contains(row));
    let detail = match (missing, unexpected) {
        (Some(m), _) => format!("first missing row: {m:?}"),
        (None, Some(u)) => format!("first unexpected row: {u:?}"),
        (None, None) => "the same rows, some repeated".to_string(),
    };
    bail!(
        "check failed: {} differs from {what}: {} rows, expected {}; {detail}",
        path.display(),
        found.len(),
        expected.len()
    )
}

fn check_no_late_records(late: u64) -> Result<()> {
    if late > 0 {
        bail!("check failed: the streams application dropped {late} records as late");
    }
    Ok(())
}

/// Totals per country, as a table.
fn per_country(rows: &[CountryMinute]) -> String {
    let mut totals: std::collections::BTreeMap<&str, (u64, u64, u64)> = Default::default();
    for row in rows {
        let total = totals.entry(&row.country).or_default();
        total.0 += row.clicks;
        total.1 += row.purchases;
        total.2 += row.revenue_cents;
    }
    let mut table = Table::new(&["COUNTRY", "CLICKS", "PURCHASES", "REVENUE"]);
    for (country, (clicks, purchases, cents)) in totals {
        table.row(vec![
            country.to_string(),
            clicks.to_string(),
            purchases.to_string(),
            format!("{}.{:02}", cents / 100, cents % 100),
        ]);
    }
    table.render()
}

/// Prints one step's line.
fn step(name: &str, what: &str) -> Result<()> {
    output::print(&format!("{name:<12} {what}\n"))
}

/// Counts the records readers see in a topic: transaction markers take offsets but hold no
/// records, so end offsets overcount. Each call reads only what was appended since the last.
struct RecordCounter {
    topic: String,
    /// Next offset to count from, by partition.
    next: Vec<u64>,
    count: u64,
}

impl RecordCounter {
    fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            next: Vec::new(),
            count: 0,
        }
    }

    /// The committed records in the topic now.
    fn count(&mut self, broker: &Broker) -> Result<u64> {
        let topic = broker.topic(&self.topic)?;
        for partition in topic.partitions() {
            let log = partition.log();
            let index = log.partition() as usize;
            if self.next.len() <= index {
                self.next.resize(index + 1, 0);
            }
            loop {
                let chunk = log.read_committed(self.next[index], 1 << 20)?;
                if chunk.is_empty() {
                    break;
                }
                self.count += chunk.readable_record_count();
                self.next[index] = chunk.next_offset;
            }
        }
        Ok(self.count)
    }
}

fn progress(len: u64, label: &str) -> ProgressBar {
    // indicatif draws only when stderr is a terminal, so piped runs and tests stay quiet.
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.2} s", elapsed.as_secs_f64())
}

fn rate(records: u64, elapsed: Duration, what: &str) -> String {
    let per_second = records as f64 / elapsed.as_secs_f64().max(1e-9);
    format!("{per_second:.0} {what}/s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(country: &str, clicks: u64) -> CountryMinute {
        CountryMinute {
            minute: "2024-01-01T00:00:00.000Z".into(),
            country: country.into(),
            clicks,
            purchases: 0,
            revenue_cents: 0,
        }
    }

    #[test]
    fn comparison_names_the_first_missing_or_unexpected_row() {
        let path = Path::new("results.jsonl");
        let expected = [row("DE", 2), row("NL", 1)];
        assert!(compare(path, &expected, &expected, "x").is_ok());
        let error = compare(path, &[row("DE", 2), row("NL", 3)], &expected, "x")
            .expect_err("a count differs");
        assert!(error.to_string().contains("first missing row"), "{error}");
        assert!(error.to_string().contains("clicks: 1"), "{error}");
        let error = compare(
            path,
            &[row("DE", 2), row("DE", 2), row("NL", 1)],
            &expected,
            "x",
        )
        .expect_err("a row repeated");
        assert!(error.to_string().contains("3 rows, expected 2"), "{error}");
    }
}
