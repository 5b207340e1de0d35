//! `logbrook consume`: prints a topic's records, one per line.
//!
//! Without `--follow` it stops at the end offsets seen at start. With `--group` it starts from the
//! group's committed offsets and commits after each printed batch, so a record counts as consumed
//! once it has been written to stdout; this needs the writer lock. Without a group the data dir
//! is opened read-only and the command can run beside a writer process.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use logbrook_client::{Client, Consumer};
use logbrook_core::{ConsumerRecord, SeekTo, TopicPartition};
use tokio::task::JoinHandle;

use crate::target::{Access, ClusterArgs};

/// How long one poll waits for records before checking the stop conditions again.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Bytes read per partition fetch: large fetches and writes keep a bulk read cheap per record.
const FETCH_MAX_BYTES: usize = 4 << 20;

/// Arguments of `logbrook consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Consumer group: start from its committed offsets and commit as records are printed.
    #[arg(long)]
    group: Option<String>,
    /// Where to start: earliest, latest, offset:N or time:RFC3339
    /// [default: the group's committed offset, else earliest].
    #[arg(long, value_name = "POSITION")]
    from: Option<StartPosition>,
    /// Where to stop: offset:N (each partition stops before N) or time:RFC3339 (each partition
    /// stops at its first record at or after that time).
    #[arg(long, value_name = "POSITION")]
    until: Option<EndPosition>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Stop after printing this many records.
    #[arg(long, value_name = "N")]
    max: Option<u64>,
    /// Wait for new records instead of stopping at the end offsets seen at start.
    #[arg(long)]
    follow: bool,
    /// Output: the value alone, or a JSON object per record.
    #[arg(long, value_enum, default_value_t = Format::Value)]
    format: Format,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The record's value as stored.
    Value,
    /// `{"topic","partition","offset","timestamp","key","value","headers"}`, lossy UTF-8.
    Json,
}

/// `--from` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// An offset, clamped into the log.
    Offset(u64),
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
}

impl FromStr for StartPosition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            _ => match parse_bound(s)? {
                Some(EndPosition::Offset(n)) => Ok(Self::Offset(n)),
                Some(EndPosition::Time(t)) => Ok(Self::Time(t)),
                None => Err(format!(
                    "{s:?} is not one of earliest, latest, offset:N, time:RFC3339"
                )),
            },
        }
    }
}

impl From<StartPosition> for SeekTo {
    fn from(position: StartPosition) -> Self {
        match position {
            StartPosition::Earliest => Self::Earliest,
            StartPosition::Latest => Self::Latest,
            StartPosition::Offset(n) => Self::Offset(n),
            StartPosition::Time(t) => Self::Timestamp(t),
        }
    }
}

/// `--until` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndPosition {
    /// Stop each partition before this offset.
    Offset(u64),
    /// Stop each partition at its first record at or after this time (ms since the epoch).
    Time(i64),
}

impl FromStr for EndPosition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_bound(s)?.ok_or_else(|| format!("{s:?} is not one of offset:N, time:RFC3339"))
    }
}

/// Parses `offset:N` or `time:RFC3339`; `None` for any other form.
fn parse_bound(s: &str) -> Result<Option<EndPosition>, String> {
    if let Some(n) = s.strip_prefix("offset:") {
        let offset = n
            .parse()
            .map_err(|_| format!("{n:?} in {s:?} is not an offset"))?;
        Ok(Some(EndPosition::Offset(offset)))
    } else if let Some(t) = s.strip_prefix("time:") {
        Ok(Some(EndPosition::Time(crate::parse_time(t)?)))
    } else {
        Ok(None)
    }
}

/// Where one partition stands.
#[derive(Debug, Clone)]
struct PartitionState {
    tp: TopicPartition,
    /// Offset after the last printed record (or the start position).
    next: u64,
    /// Offset the group has committed for this run; `next` is committed when it moves past it.
    committed: u64,
    /// Stop before this offset.
    limit: Option<u64>,
    done: bool,
}

/// Runs `logbrook consume`.
///
/// # Errors
/// Unknown topic or partition, a missing or locked data dir, read or commit errors.
pub async fn run(data_dir: &Path, args: ConsumeArgs) -> Result<()> {
    let started = Instant::now();
    let access = match args.group {
        Some(_) => Access::Write,
        None => Access::ReadOnly,
    };
    let client = args.cluster.open(data_dir, access).await?;
    let opened = started.elapsed();
    let result = consume(&client, &args).await;
    let consumed = started.elapsed();
    let closed = client.close().await.context("closing the data dir");
    // Where the time went, for `RUST_LOG=logbrook=debug` (opening CRC-checks active segments).
    tracing::debug!(
        open_ms = opened.as_millis(),
        consume_ms = (consumed - opened).as_millis(),
        close_ms = (started.elapsed() - consumed).as_millis(),
        "consume finished"
    );
    result?;
    closed
}

async fn consume(client: &Client, args: &ConsumeArgs) -> Result<()> {
    let partition_count = client.partition_count(&args.topic).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p >= partition_count => {
            return Err(logbrook_core::Error::UnknownPartition {
                topic: args.topic.clone(),
                partition: p,
                partitions: partition_count,
            }
            .into());
        }
        Some(p) => vec![p],
        None => (0..partition_count).collect(),
    };
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|&p| TopicPartition::new(args.topic.clone(), p))
        .collect();
    let mut consumer = client.consumer(args.group.as_deref(), FETCH_MAX_BYTES)?;
    // One CLI process is the whole group, so it reads its partitions directly and commits
    // exactly what it printed.
    consumer.assign(tps.clone()).await?;
    let ends: BTreeMap<u32, u64> = consumer
        .end_offsets()
        .await?
        .into_iter()
        .map(|(tp, end)| (tp.partition, end))
        .collect();
    let until_offset = match args.until {
        Some(EndPosition::Offset(n)) => Some(n),
        _ => None,
    };
    let until_time = match args.until {
        Some(EndPosition::Time(t)) => Some(t),
        _ => None,
    };
    let mut states: BTreeMap<u32, PartitionState> = BTreeMap::new();
    for tp in tps {
        let to = match args.from {
            Some(from) => from.into(),
            None => consumer
                .committed(&tp)
                .await?
                .map_or(SeekTo::Earliest, SeekTo::Offset),
        };
        let start = consumer
            .seek(&tp, to)
            .await
            .with_context(|| format!("seeking {tp} to {to:?}"))?;
        let end = ends.get(&tp.partition).copied().unwrap_or(0);
        let limit = match (args.follow, until_offset) {
            (true, limit) => limit,
            (false, Some(n)) => Some(n.min(end)),
            (false, None) => Some(end),
        };
        states.insert(
            tp.partition,
            PartitionState {
                tp,
                next: start,
                committed: start,
                limit,
                done: limit.is_some_and(|l| start >= l),
            },
        );
    }
    if states.values().any(|s| s.done) {
        narrow(&mut consumer, &states).await?;
    }

    let mut printed = 0u64;
    // Batch N is formatted and written to stdout on a blocking thread while batch N+1 is
    // fetched; its offsets are committed once the write is done, so only printed records count
    // as consumed.
    let mut writing: Option<PendingWrite> = None;
    let mut out = Vec::new();
    let shutdown = crate::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        if states.values().all(|s| s.done) || args.max.is_some_and(|m| printed >= m) {
            break;
        }
        let records = tokio::select! {
            records = consumer.poll(POLL_TIMEOUT) => records?,
            () = &mut shutdown => break,
        };
        // Not raced against `poll`: a cancelled poll would throw away a fetch. So with
        // `--follow` on an idle topic, a group commits up to `POLL_TIMEOUT` after printing.
        if let Some(pending) = writing.take() {
            if !settle(pending.finish().await, &mut out, &mut states)? {
                break;
            }
            if let Some(group) = &args.group {
                commit(&consumer, group, &mut states).await?;
            }
        }
        if records.is_empty() {
            // Nothing readable below the current end: without --follow there is no more to wait
            // for (this also ends runs whose last offsets were removed by compaction).
            if args.follow {
                continue;
            }
            break;
        }
        let before = states.clone();
        let mut finished_partition = false;
        // Which records to print: their index in `records`.
        let mut print = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let Some(state) = states.get_mut(&record.partition) else {
                continue;
            };
            if state.done {
                continue;
            }
            if state.limit.is_some_and(|l| record.offset >= l)
                || until_time.is_some_and(|t| record.timestamp >= t)
            {
                state.done = true;
                finished_partition = true;
                continue;
            }
            if args.max.is_some_and(|m| printed >= m) {
                break;
            }
            state.next = record.offset + 1;
            if state.limit.is_some_and(|l| state.next >= l) {
                state.done = true;
                finished_partition = true;
            }
            // A streams app's event-time markers in its repartition topics are not data.
            if !logbrook_streams::is_event_time_marker(record) {
                print.push(index);
                printed += 1;
            }
        }
        let (format, mut buffer) = (args.format, std::mem::take(&mut out));
        let handle = tokio::task::spawn_blocking(move || {
            buffer.clear();
            for &index in &print {
                write_record(&mut buffer, &records[index], format);
            }
            let written = crate::output::write_stdout(&buffer);
            // The records go back to be released after the next fetch rather than during it:
            // each holds a reference to the topic name, whose count the fetch increments.
            (buffer, records, written)
        });
        writing = Some(PendingWrite { handle, before });
        if finished_partition && !states.values().all(|s| s.done) {
            narrow(&mut consumer, &states).await?;
        }
    }
    if let Some(pending) = writing.take() {
        settle(pending.finish().await, &mut out, &mut states)?;
    }
    if let Some(group) = &args.group {
        commit(&consumer, group, &mut states).await?;
    }
    Ok(())
}

/// A batch being formatted and written to stdout on a blocking thread.
struct PendingWrite {
    /// Hands back the output buffer (for reuse), the records and the write's outcome.
    handle: JoinHandle<(Vec<u8>, Vec<ConsumerRecord>, std::io::Result<()>)>,
    /// The partitions' states before the batch, restored if it was not delivered.
    before: BTreeMap<u32, PartitionState>,
}

type Written = (
    Result<(Vec<u8>, Vec<ConsumerRecord>, std::io::Result<()>), tokio::task::JoinError>,
    BTreeMap<u32, PartitionState>,
);

impl PendingWrite {
    /// Waits for the write to finish.
    async fn finish(self) -> Written {
        (self.handle.await, self.before)
    }
}

/// Takes the outcome of a finished write and hands its buffer back to `out`. Returns whether
/// the batch reached stdout. A reader that is gone (`| head`) is not an error, but the batch
/// was not delivered, so `states` go back to before it and it is not committed either.
fn settle(
    (outcome, before): Written,
    out: &mut Vec<u8>,
    states: &mut BTreeMap<u32, PartitionState>,
) -> Result<bool> {
    let (buffer, records, written) = outcome.context("writing to stdout")?;
    drop(records);
    *out = buffer;
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            *states = before;
            Ok(false)
        }
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// Stops fetching finished partitions, so a bounded read is not slowed by a busy one.
async fn narrow(consumer: &mut Consumer, states: &BTreeMap<u32, PartitionState>) -> Result<()> {
    let remaining: Vec<&PartitionState> = states.values().filter(|s| !s.done).collect();
    consumer
        .assign(remaining.iter().map(|s| s.tp.clone()).collect())
        .await?;
    for state in remaining {
        consumer.seek(&state.tp, SeekTo::Offset(state.next)).await?;
    }
    Ok(())
}

async fn commit(
    consumer: &Consumer,
    group: &str,
    states: &mut BTreeMap<u32, PartitionState>,
) -> Result<()> {
    let offsets: Vec<(TopicPartition, u64)> = states
        .values()
        .filter(|s| s.next != s.committed)
        .map(|s| (s.tp.clone(), s.next))
        .collect();
    if offsets.is_empty() {
        return Ok(());
    }
    consumer
        .commit(&offsets)
        .await
        .with_context(|| format!("committing offsets of group {group:?}"))?;
    for state in states.values_mut() {
        state.committed = state.next;
    }
    Ok(())
}

fn write_record(out: &mut Vec<u8>, record: &ConsumerRecord, format: Format) {
    match format {
        Format::Value => {
            if let Some(value) = &record.value {
                out.extend_from_slice(value);
            }
        }
        Format::Json => {
            // Written field by field to keep the documented order (serde_json's map sorts
            // keys) without building a `Value` per record.
            out.extend_from_slice(br#"{"topic":"#);
            json_string(out, &record.topic);
            // Writing to a `Vec` cannot fail.
            let _ = write!(
                out,
                r#","partition":{},"offset":{},"timestamp":{},"key":"#,
                record.partition, record.offset, record.timestamp
            );
            json_lossy(out, record.key.as_deref());
            out.extend_from_slice(br#","value":"#);
            json_lossy(out, record.value.as_deref());
            out.extend_from_slice(br#","headers":["#);
            for (i, header) in record.headers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"key":"#);
                json_string(out, &header.key);
                out.extend_from_slice(br#","value":"#);
                json_lossy(out, header.value.as_deref());
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
    }
    out.push(b'\n');
}

/// Appends `s` as a JSON string.
fn json_string(out: &mut Vec<u8>, s: &str) {
    // Serializing a string into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends bytes as a JSON string, invalid UTF-8 replaced by U+FFFD, or `null`.
fn json_lossy(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => json_string(out, &String::from_utf8_lossy(bytes)),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_every_documented_form() {
        assert_eq!("earliest".parse(), Ok(StartPosition::Earliest));
        assert_eq!("latest".parse(), Ok(StartPosition::Latest));
        assert_eq!("offset:7".parse(), Ok(StartPosition::Offset(7)));
        assert_eq!(
            "time:1970-01-01T00:00:01.5Z".parse(),
            Ok(StartPosition::Time(1500))
        );
        assert_eq!("offset:3".parse(), Ok(EndPosition::Offset(3)));
        assert!("latest".parse::<EndPosition>().is_err());
        assert!("offset:x".parse::<StartPosition>().is_err());
        assert!("time:yesterday".parse::<StartPosition>().is_err());
        assert!("yesterday".parse::<StartPosition>().is_err());
    }
}
