//! `logbrook produce`: appends one record per stdin line and exits 0 only once every record is
//! acknowledged under the topic's flush policy.

use std::future::{Future, IntoFuture};
use std::path::Path;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use logbrook_core::{
    Broker, CleanupPolicy, OFFSETS_TOPIC, Producer, ProducerConfig, ProducerRecord,
    TRANSACTIONS_TOPIC,
};
use tokio::io::AsyncBufReadExt;

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
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut pending = FuturesUnordered::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).split(b'\n');
    let mut line_number = 0u64;
    let mut acknowledged = 0u64;
    while let Some(mut line) = lines.next_segment().await.context("reading stdin")? {
        line_number += 1;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let record = to_record(args, separator, line);
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
        pending.push(acknowledgement(delivery.into_future(), line_number));
        // Settle what is already acknowledged so memory stays bounded on long inputs.
        while let Some(Some(outcome)) = pending.next().now_or_never() {
            outcome?;
            acknowledged += 1;
        }
    }
    while let Some(outcome) = pending.next().await {
        outcome?;
        acknowledged += 1;
    }
    Ok(acknowledged)
}

async fn acknowledgement(
    delivery: impl Future<Output = logbrook_core::Result<logbrook_core::RecordMetadata>>,
    line_number: u64,
) -> Result<()> {
    delivery
        .await
        .map(drop)
        .with_context(|| format!("line {line_number} of stdin was not acknowledged"))
}

fn to_record(args: &ProduceArgs, separator: Option<&[u8]>, line: Vec<u8>) -> ProducerRecord {
    let (key, value) = match separator.and_then(|sep| find(&line, sep).map(|at| (at, sep.len()))) {
        Some((at, len)) => (
            Some(Bytes::copy_from_slice(&line[..at])),
            Bytes::copy_from_slice(&line[at + len..]),
        ),
        None => (None, Bytes::from(line)),
    };
    let mut record = ProducerRecord::new(args.topic.clone(), value);
    record.key = key;
    record.partition = args.partition;
    for (k, v) in &args.headers {
        record = record.with_header(k.clone(), v.clone());
    }
    record
}

/// Position of the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
        let record = to_record(&args, Some(b"::"), b"k::v::w".to_vec());
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"v::w"[..]));
        let record = to_record(&args, Some(b"::"), b"no separator".to_vec());
        assert_eq!(record.key, None);
        assert_eq!(record.value.as_deref(), Some(&b"no separator"[..]));
    }
}
