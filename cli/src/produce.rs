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
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use clap::Args;
use futures::FutureExt;
use logbrook_client::{Client, Cluster, ClusterProducer, ProducerSettings};
use logbrook_core::{
    Broker, CleanupPolicy, Header, OFFSETS_TOPIC, Producer, ProducerConfig, ProducerRecord,
    RecordMetadata, TRANSACTIONS_TOPIC,
};
use memchr::memmem;
use tokio::sync::mpsc;

use crate::target::{Access, ClusterArgs};

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
    #[command(flatten)]
    cluster: ClusterArgs,
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
    if args.topic == OFFSETS_TOPIC || args.topic == TRANSACTIONS_TOPIC {
        bail!(
            "topic {:?} is internal; write to it through consumer groups or transactions",
            args.topic
        );
    }
    let started = Instant::now();
    let broker = match args.cluster.open(data_dir, Access::Write).await? {
        Client::Embedded(broker) => broker,
        Client::Cluster(cluster) => {
            let count = produce_to_cluster(&cluster, &args).await?;
            eprintln!("produced {count} record(s) to topic {:?}", args.topic);
            return Ok(());
        }
    };
    let opened = started.elapsed();
    let result = produce(&broker, &args).await;
    let produced = started.elapsed();
    // Close even after a failure: the records acknowledged so far stay flushed.
    let closed = broker.close().await.context("closing the data dir");
    // Where the time went, for `RUST_LOG=logbrook=debug` (close fsyncs what `flush never` left).
    tracing::debug!(
        open_ms = opened.as_millis(),
        produce_ms = (produced - opened).as_millis(),
        close_ms = (started.elapsed() - produced).as_millis(),
        "produce finished"
    );
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

    /// The record for line `line_number`; a compacted topic (`needs_key`) refuses a keyless
    /// one, naming the line (the log would refuse its whole batch).
    fn checked_record(
        &self,
        line: Bytes,
        line_number: u64,
        needs_key: bool,
    ) -> Result<ProducerRecord> {
        let record = self.record(line);
        if needs_key && record.key.is_none() {
            bail!(
                "line {line_number} of stdin has no key, but topic {:?} is compacted and needs one (see --key-separator)",
                self.topic
            );
        }
        Ok(record)
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
    let topic = broker.topic(&args.topic)?;
    if let Some(p) = args.partition {
        topic.partition(p)?;
    }
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
    // The log rejects keyless records on compacted topics a whole batch at a time; say which line.
    let needs_key = topic.config().cleanup_policy == CleanupPolicy::Compact;
    send_lines(&producer, &template, needs_key, spawn_stdin_reader()?).await
}

/// Sends one record per line of `blocks` and waits until all are acknowledged; returns how
/// many lines there were. Stops at the first read error, rejected record or failed batch.
async fn send_lines(
    producer: &Producer,
    template: &RecordTemplate<'_>,
    needs_key: bool,
    mut blocks: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<u64> {
    // The acknowledgement of each batch in flight with the number of its first line, oldest
    // first. Every record belongs to exactly one batch and shares its outcome, so the futures
    // of the other records are dropped without losing a failure.
    let mut batches: VecDeque<(u64, Acknowledgement)> = VecDeque::new();
    let mut line_number = 0u64;
    while let Some(block) = blocks.recv().await {
        let block = block.context("reading stdin")?;
        for line in lines(&block) {
            line_number += 1;
            let record = template.checked_record(line, line_number, needs_key)?;
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

/// Sends one record per stdin line to a cluster and waits until all are acknowledged (acks=all);
/// returns how many lines there were. librdkafka batches and retries; its delivery reports are
/// counted, and the first failure names its line.
async fn produce_to_cluster(cluster: &Cluster, args: &ProduceArgs) -> Result<u64> {
    let partitions = cluster.partition_count(&args.topic).await?;
    if let Some(p) = args.partition.filter(|&p| p >= partitions) {
        return Err(logbrook_core::Error::UnknownPartition {
            topic: args.topic.clone(),
            partition: p,
            partitions,
        }
        .into());
    }
    let needs_key =
        cluster.topic_config(&args.topic).await?.cleanup_policy == CleanupPolicy::Compact;
    let producer = Arc::new(cluster.producer(&ProducerSettings::default())?);
    let template = RecordTemplate::new(args);
    let mut blocks = spawn_stdin_reader()?;
    let mut line_number = 0u64;
    let failed = |producer: &ClusterProducer| -> Result<()> {
        match producer.first_failure() {
            Some(failure) => Err(failure.error)
                .with_context(|| format!("line {} of stdin was not acknowledged", failure.tag)),
            None => Ok(()),
        }
    };
    while let Some(block) = blocks.recv().await {
        let block = block.context("reading stdin")?;
        for line in lines(&block) {
            line_number += 1;
            let record = template.checked_record(line, line_number, needs_key)?;
            producer
                .send(&record, line_number)
                .await
                .with_context(|| format!("sending line {line_number} of stdin"))?;
        }
        failed(&producer)?;
    }
    // librdkafka retries until its delivery timeout (`message.timeout.ms`, 5 minutes).
    producer.flush(Duration::from_secs(330)).await?;
    failed(&producer)?;
    let acknowledged = producer.acknowledged();
    if acknowledged != line_number {
        bail!("{acknowledged} of {line_number} line(s) of stdin were acknowledged");
    }
    Ok(line_number)
}

/// The lines of `block` without their line endings (`\n` or `\r\n`) as slices of it. Empty
/// lines are kept; a last line without a newline is a line too, with a trailing `\r` dropped.
fn lines(block: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= block.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &block[start..]).map_or(block.len(), |at| start + at);
        let line_start = start;
        start = end + 1;
        let end = if end > line_start && block[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        Some(block.slice(line_start..end))
    })
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use logbrook_core::storage::{FsStorage, Storage, StorageFile};
    use logbrook_core::{BrokerConfig, FlushPolicy, TopicConfig};

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
            cluster: crate::target::ClusterArgs {
                bootstrap_server: None,
                properties: vec![],
            },
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
    fn lines_drop_their_endings_and_keep_empty_and_unterminated_lines() {
        let split =
            |input: &'static [u8]| -> Vec<Bytes> { lines(&Bytes::from_static(input)).collect() };
        assert_eq!(split(b""), Vec::<Bytes>::new());
        assert_eq!(split(b"a\n"), ["a"]);
        assert_eq!(split(b"a\r\nb\n"), ["a", "b"]);
        assert_eq!(split(b"\n\r\n\n"), ["", "", ""]);
        assert_eq!(
            split(b"a\rb\n"),
            ["a\rb"],
            "only a \\r before the newline goes"
        );
        assert_eq!(split(b"a\r\r\n"), ["a\r"]);
        assert_eq!(split(b"a\nlast"), ["a", "last"]);
        assert_eq!(split(b"a\nlast\r"), ["a", "last"]);
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

    /// A storage whose writes fail once `budget` bytes have been written.
    #[derive(Debug)]
    struct FailingStorage {
        budget: Arc<AtomicI64>,
    }

    #[derive(Debug)]
    struct FailingFile {
        inner: Arc<dyn StorageFile>,
        budget: Arc<AtomicI64>,
    }

    impl Storage for FailingStorage {
        fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
            Ok(Arc::new(FailingFile {
                inner: FsStorage.open(path, create)?,
                budget: self.budget.clone(),
            }))
        }
        fn open_read_only(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
            FsStorage.open_read_only(path)
        }
    }

    impl StorageFile for FailingFile {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.inner.read_at(buf, offset)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            if self.budget.fetch_sub(buf.len() as i64, Ordering::SeqCst) < buf.len() as i64 {
                return Err(io::Error::other("injected write failure"));
            }
            self.inner.write_all_at(buf, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.inner.sync_data()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
        fn allocate(&self, len: u64) -> io::Result<()> {
            self.inner.allocate(len)
        }
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
    }

    /// A broker in `dir` with topic `t` (1 partition, flush never) whose writes fail after
    /// `budget` bytes.
    async fn broker_with_topic(dir: &Path, budget_after_create: i64) -> Broker {
        let budget = Arc::new(AtomicI64::new(i64::MAX));
        let config = BrokerConfig {
            storage: Arc::new(FailingStorage {
                budget: budget.clone(),
            }),
            ..BrokerConfig::new(dir)
        };
        let broker = Broker::open_with(config).await.unwrap();
        let topic_config = TopicConfig {
            flush: FlushPolicy::Never,
            ..TopicConfig::default()
        };
        broker.create_topic("t", topic_config).unwrap();
        budget.store(budget_after_create, Ordering::SeqCst);
        broker
    }

    /// `input` cut into blocks of at most `block_bytes`, each ending with a newline but the
    /// last, as the stdin reader hands them over.
    fn blocks(input: Vec<u8>, block_bytes: usize) -> mpsc::Receiver<io::Result<Bytes>> {
        let (sender, receiver) = mpsc::channel(1024);
        std::thread::spawn(move || {
            let mut input = &input[..];
            while !input.is_empty() {
                let cut = memchr::memrchr(b'\n', &input[..block_bytes.min(input.len())])
                    .map_or(input.len().min(block_bytes), |at| at + 1);
                let block = Bytes::copy_from_slice(&input[..cut]);
                input = &input[cut..];
                if sender.blocking_send(Ok(block)).is_err() {
                    return;
                }
            }
        });
        receiver
    }

    fn args(key_separator: Option<&str>) -> ProduceArgs {
        ProduceArgs {
            topic: "t".into(),
            key_separator: key_separator.map(str::to_string),
            partition: None,
            headers: vec![],
            cluster: crate::target::ClusterArgs {
                bootstrap_server: None,
                properties: vec![],
            },
        }
    }

    fn producer(broker: &Broker) -> Producer {
        Producer::new(
            broker.clone(),
            ProducerConfig {
                batch_size: 16 << 10,
                ..ProducerConfig::default()
            },
        )
    }

    fn stored(broker: &Broker) -> Vec<(Option<Bytes>, Option<Bytes>)> {
        let mut records = Vec::new();
        let topic = broker.topic("t").unwrap();
        let log = topic.partition(0).unwrap().log();
        log.for_each_record(0, |r| records.push((r.key, r.value)))
            .unwrap();
        records
    }

    #[tokio::test]
    async fn every_line_lands_once_and_in_order_across_blocks_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker_with_topic(dir.path(), i64::MAX).await;
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for i in 0..50_000 {
            // Keys on most lines, some empty values, CRLF on some, no separator on others.
            let (line, key, value) = match i % 5 {
                0 => (
                    format!("k{i}=v{i}\r\n"),
                    Some(format!("k{i}")),
                    format!("v{i}"),
                ),
                1 => (format!("k{i}=\n"), Some(format!("k{i}")), String::new()),
                2 => ("\n".to_string(), None, String::new()),
                3 => (
                    format!("no separator {i}\n"),
                    None,
                    format!("no separator {i}"),
                ),
                _ => (format!("=a=b{i}\n"), Some(String::new()), format!("a=b{i}")),
            };
            input.extend_from_slice(line.as_bytes());
            expected.push((key.map(Bytes::from), Some(Bytes::from(value))));
        }
        input.extend_from_slice(b"k=last without newline");
        expected.push((
            Some(Bytes::from("k")),
            Some(Bytes::from("last without newline")),
        ));
        let args = args(Some("="));
        let template = RecordTemplate::new(&args);
        let producer = producer(&broker);
        let count = send_lines(&producer, &template, false, blocks(input, 4096))
            .await
            .unwrap();
        assert_eq!(count, expected.len() as u64);
        assert_eq!(stored(&broker), expected);
        broker.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_append_fails_the_run_naming_the_topic_and_a_line() {
        let dir = tempfile::tempdir().unwrap();
        // Room for a few 16 KiB batches of the 100-byte lines, not for all of them.
        let broker = broker_with_topic(dir.path(), 100_000).await;
        let line = format!("{}\n", "x".repeat(99));
        let input = line.repeat(20_000).into_bytes();
        let args = args(None);
        let template = RecordTemplate::new(&args);
        let producer = producer(&broker);
        let error = send_lines(&producer, &template, false, blocks(input, 1 << 20))
            .await
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("append to t-0 failed"), "{message}");
        assert!(
            message.contains("of stdin was not acknowledged"),
            "{message}"
        );
        assert!(message.contains("injected write failure"), "{message}");
        let _ = broker.close().await;
    }

    #[tokio::test]
    async fn a_keyless_line_on_a_compacted_topic_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker_with_topic(dir.path(), i64::MAX).await;
        let args = args(Some(":"));
        let template = RecordTemplate::new(&args);
        let producer = producer(&broker);
        let input = b"a:1\nb:2\nno key\n".to_vec();
        let error = send_lines(&producer, &template, true, blocks(input, 1 << 20))
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("line 3 of stdin has no key"),
            "{error:#}"
        );
        broker.close().await.unwrap();
    }
}
