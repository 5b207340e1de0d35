//! `logbrook produce`: appends one record per stdin line and exits 0 only once every record is
//! acknowledged under the topic's flush policy.
//!
//! Bulk loads are the common case, so stdin is read in large blocks on a thread of its own and
//! each line's key and value are slices of its block (no copy until the producer encodes the
//! record into its batch). Outcomes are tracked per batch, not per record: the records of a
//! batch are acknowledged or fail together, and a failure names the batch's first line.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::io::{self, Read};
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use clap::Args;
use futures::FutureExt;
use logbrook_core::{
    Broker, CleanupPolicy, Header, OFFSETS_TOPIC, Producer, ProducerConfig, ProducerRecord,
    RecordMetadata, TRANSACTIONS_TOPIC,
};
use memchr::memmem;
use tokio::sync::mpsc;

/// Bytes asked of stdin per read: large reads keep system calls and hand-offs rare.
const READ_BYTES: usize = 1 << 20;
/// Blocks read ahead of the producer; with `READ_BYTES` this bounds the memory stdin takes.
const BLOCKS_AHEAD: usize = 4;

/// Arguments of `logbrook produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to append to.
    topic: String,
    /// Split each line at the first SEP into key and value; lines without SEP have no key.
    /// Without this option lines have no key.
    #[arg(long, value_name = "SEP", value_parser = parse_separator)]
    key_separator: Option<String>,
    /// Write every record to this partition instead of choosing by key.
    #[arg(long)]
    partition: Option<u32>,
    /// Add a header to every record (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
}

fn parse_separator(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the key separator must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("header {s:?} has an empty key")),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(format!("header {s:?} is not KEY=VALUE")),
    }
}

/// Runs `logbrook produce`.
///
/// # Errors
/// Unknown topic or partition, a stdin read error, or a record that was not acknowledged.
pub async fn run(data_dir: &Path, args: ProduceArgs) -> Result<()> {
    let broker = crate::open_writable(data_dir, false).await?;
    let result = produce(&broker, &args).await;
    // Close even after a failure: the records acknowledged so far stay flushed.
    let closed = broker.close().await.context("closing the data dir");
    let count = result?;
    closed?;
    eprintln!("produced {count} record(s) to topic {:?}", args.topic);
    Ok(())
}

/// What every record of one run shares, built once.
struct RecordTemplate<'a> {
    topic: &'a str,
    partition: Option<u32>,
    separator: Option<memmem::Finder<'a>>,
    headers: Vec<Header>,
}

impl<'a> RecordTemplate<'a> {
    fn new(args: &'a ProduceArgs) -> Self {
        Self {
            topic: &args.topic,
            partition: args.partition,
            separator: args.key_separator.as_deref().map(memmem::Finder::new),
            headers: args
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key: key.clone(),
                    value: Some(Bytes::copy_from_slice(value.as_bytes())),
                })
                .collect(),
        }
    }

    /// The record for `line` (no line ending), a slice of a block read from stdin.
    fn record(&self, line: Bytes) -> ProducerRecord {
        let split = self
            .separator
            .as_ref()
            .and_then(|sep| sep.find(&line).map(|at| (at, at + sep.needle().len())));
        let (key, value) = match split {
            Some((key_end, value_start)) => {
                (Some(line.slice(..key_end)), line.slice(value_start..))
            }
            None => (None, line),
        };
        ProducerRecord {
            topic: self.topic.to_string(),
            partition: self.partition,
            key,
            value: Some(value),
            headers: self.headers.clone(),
            timestamp: None,
        }
    }
}

type Acknowledgement = Pin<Box<dyn Future<Output = logbrook_core::Result<RecordMetadata>> + Send>>;

async fn produce(broker: &Broker, args: &ProduceArgs) -> Result<u64> {
    if args.topic == OFFSETS_TOPIC || args.topic == TRANSACTIONS_TOPIC {
        bail!(
            "topic {:?} is internal; write to it through consumer groups or transactions",
            args.topic
        );
    }
    let topic = broker.topic(&args.topic)?;
    if let Some(p) = args.partition {
        topic.partition(p)?;
    }
    // The log rejects keyless records on compacted topics a whole batch at a time; say which line.
    let needs_key = topic.config().cleanup_policy == CleanupPolicy::Compact;
    // Larger batches than the default: fewer appends (and fsyncs under `flush always`) per
    // record on a bulk load; a slow stdin still sees its lines sent after the linger.
    let producer = Producer::new(
        broker.clone(),
        ProducerConfig {
            linger: Duration::from_millis(5),
            batch_size: 256 << 10,
            buffer_memory: 64 << 20,
            ..ProducerConfig::default()
        },
    );
    let template = RecordTemplate::new(args);
    let mut blocks = spawn_stdin_reader()?;
    // The first line of each batch in flight, oldest first, with the batch's acknowledgement.
    let mut batches: VecDeque<(u64, Acknowledgement)> = VecDeque::new();
    let mut line_number = 0u64;
    while let Some(block) = blocks.recv().await {
        let block = block.context("reading stdin")?;
        let mut start = 0;
        while start < block.len() {
            // Every block but the last ends with a newline; the last may not.
            let end = memchr::memchr(b'\n', &block[start..]).map_or(block.len(), |at| start + at);
            let next = end + 1;
            let end = if end > start && block[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            line_number += 1;
            let record = template.record(block.slice(start..end));
            start = next;
            if needs_key && record.key.is_none() {
                bail!(
                    "line {line_number} of stdin has no key, but topic {:?} is compacted and needs one (see --key-separator)",
                    args.topic
                );
            }
            let delivery = producer
                .send(record)
                .await
                .with_context(|| format!("sending line {line_number} of stdin"))?;
            if delivery.starts_batch() {
                batches.push_back((line_number, delivery.into_future()));
            }
        }
        // Settle what is already acknowledged so memory stays bounded on long inputs.
        while let Some((first_line, acknowledgement)) = batches.front_mut() {
            let Some(outcome) = acknowledgement.as_mut().now_or_never() else {
                break;
            };
            acknowledged(outcome, *first_line)?;
            batches.pop_front();
        }
    }
    // Sends the open batches now rather than after the linger, and waits for all of them.
    let flushed = producer.flush().await;
    for (first_line, acknowledgement) in batches {
        acknowledged(acknowledgement.await, first_line)?;
    }
    flushed.context("flushing the last batches")?;
    Ok(line_number)
}

fn acknowledged(outcome: logbrook_core::Result<RecordMetadata>, first_line: u64) -> Result<()> {
    outcome
        .map(drop)
        .with_context(|| format!("line {first_line} of stdin was not acknowledged"))
}

/// Reads stdin on a thread of its own (blocking reads stay off the runtime's workers) and
/// hands over blocks of whole lines, each ending with a newline except perhaps the last one.
fn spawn_stdin_reader() -> Result<mpsc::Receiver<io::Result<Bytes>>> {
    let (sender, receiver) = mpsc::channel(BLOCKS_AHEAD);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            if let Err(e) = read_blocks(io::stdin().lock(), &sender) {
                let _ = sender.blocking_send(Err(e));
            }
        })
        .context("starting the stdin reader thread")?;
    Ok(receiver)
}

/// Sends `input` in blocks that end at a line boundary, until EOF or until the receiver is
/// gone (the producer stopped at an error).
fn read_blocks(mut input: impl Read, sender: &mpsc::Sender<io::Result<Bytes>>) -> io::Result<()> {
    // `buf[..filled]` holds bytes read but not sent yet (the start of a line); the rest of
    // `buf` is zeroed room for the next read. Blocks are split off the front, so the room is
    // zeroed once, and the allocation is reused once the producer has dropped its blocks.
    let mut buf = BytesMut::new();
    let mut filled = 0;
    loop {
        if buf.len() - filled < READ_BYTES / 16 {
            buf.truncate(filled);
            // At least doubling, so one very long line is not copied over and over.
            buf.reserve(READ_BYTES.max(filled));
            buf.resize(filled + READ_BYTES.max(filled), 0);
        }
        let read = match input.read(&mut buf[filled..]) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if read == 0 {
            if filled > 0 {
                let _ = sender.blocking_send(Ok(buf.split_to(filled).freeze()));
            }
            return Ok(());
        }
        let new = filled..filled + read;
        filled += read;
        // Send what arrived as soon as it holds a whole line: input may trickle in (`tail -f`).
        if let Some(last) = memchr::memrchr(b'\n', &buf[new.clone()]) {
            let end = new.start + last + 1;
            let block = buf.split_to(end).freeze();
            filled -= end;
            if sender.blocking_send(Ok(block)).is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_splits_at_the_first_equals_sign() {
        assert_eq!(parse_header("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_header("a="), Ok(("a".into(), String::new())));
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("=v").is_err());
    }

    #[test]
    fn key_is_the_text_before_the_first_separator() {
        let args = ProduceArgs {
            topic: "t".into(),
            key_separator: Some("::".into()),
            partition: None,
            headers: vec![],
        };
        let template = RecordTemplate::new(&args);
        let record = template.record(Bytes::from_static(b"k::v::w"));
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"v::w"[..]));
        let record = template.record(Bytes::from_static(b"no separator"));
        assert_eq!(record.key, None);
        assert_eq!(record.value.as_deref(), Some(&b"no separator"[..]));
    }

    #[test]
    fn blocks_end_at_line_boundaries_whatever_the_read_sizes() {
        // A reader handing out 7 bytes at a time splits lines across reads.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(out.len()).min(7);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let input = b"first line\nsecond\n\nlast without newline";
        let (sender, mut receiver) = mpsc::channel(64);
        read_blocks(Trickle(input), &sender).unwrap();
        drop(sender);
        let mut blocks = Vec::new();
        while let Ok(block) = receiver.try_recv() {
            blocks.push(block.unwrap());
        }
        for block in &blocks[..blocks.len() - 1] {
            assert_eq!(block.last(), Some(&b'\n'), "{block:?}");
        }
        assert_eq!(blocks.concat(), input);
    }
}
