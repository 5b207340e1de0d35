//! `logbrook perf produce|consume`: throughput and latency, as Kafka's perf-test tools.
//!
//! Figures only mean something next to the machine's own limits; `scripts/bench.sh` runs these
//! beside `dd` and `fio` on the same disk and prints the ratios.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use logbrook_client::{Client, ProducerSettings};
use logbrook_core::{
    Broker, BrokerConfig, DeliveryFuture, FlushPolicy, Producer, ProducerConfig, ProducerRecord,
    SeekTo, TopicConfig, TopicPartition, kafka_config,
};

use crate::target::{Access, ClusterArgs};

/// Benchmarks of the embedded log (`produce` and `consume` also of a cluster, with
/// `--bootstrap-server`).
#[derive(Debug, Subcommand)]
pub enum PerfCommand {
    /// Produce records as fast as possible; print records/s, MB/s and ack latency percentiles.
    Produce(PerfProduceArgs),
    /// Consume a topic from its start; print records/s and MB/s.
    Consume(PerfConsumeArgs),
    /// Nexmark queries q1, q2, q5, q7, count, q8 on the streams runtime (exactly-once), in events/s
    /// per core, next to a hand-written loop and Flink's published figures.
    Nexmark(crate::nexmark::NexmarkArgs),
    /// File source and file sink throughput through the Connect runtime, next to `cat` and
    /// `dd conv=fsync` copying the same file.
    Connect(crate::perf_connect::PerfConnectArgs),
    /// Postgres source and sink rows/s through the Connect runtime, next to `psql \\copy` of
    /// the same rows on the same server.
    Postgres(crate::perf_postgres::PerfPostgresArgs),
    /// S3 sink MB/s through the Connect runtime, next to a raw multipart upload of the same
    /// bytes to the same server.
    S3(crate::perf_s3::PerfS3Args),
}

/// Flags of `perf produce`.
#[derive(Debug, Clone, Args)]
pub struct PerfProduceArgs {
    /// Topic to write (created with the flags below if missing).
    #[arg(long, default_value = "perf-test")]
    topic: String,
    /// Number of records.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Producer batch size in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_size: usize,
    /// Producer linger in milliseconds.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Flush policy of a created topic: always, never or interval:MS.
    #[arg(long, default_value = "always")]
    flush: FlushPolicy,
    /// Partitions of a created topic.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Append ready-encoded batches of `batch_size` bytes straight to partition 0, one at a time,
    /// waiting for each acknowledgement: every fsync covers exactly one batch, as each write of
    /// `fio --fdatasync=1` does at the same block size. Measures the log's append path alone.
    #[arg(long)]
    wait_each_batch: bool,
    /// Producer buffer memory in MiB.
    #[arg(long, default_value_t = 64)]
    buffer_mb: usize,
    /// With --bootstrap-server: produce in transactions of this transactional id, committed
    /// every --commit-interval-ms.
    #[arg(long)]
    transactional_id: Option<String>,
    /// How often a --transactional-id producer commits, in milliseconds.
    #[arg(long, default_value_t = 100)]
    commit_interval_ms: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Flags of `perf consume`.
#[derive(Debug, Args)]
pub struct PerfConsumeArgs {
    /// Topic to read.
    #[arg(long, default_value = "perf-test")]
    topic: String,
    /// Stop after this many records (default: everything up to the end at start).
    #[arg(long)]
    records: Option<u64>,
    /// Bytes per partition fetch.
    #[arg(long, default_value_t = 4 << 20)]
    fetch_max_bytes: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Runs a perf command.
///
/// # Errors
/// Broker, topic and append errors.
pub async fn run(data_dir: &Path, command: PerfCommand) -> Result<()> {
    match command {
        PerfCommand::Produce(args) => produce(data_dir, args).await,
        PerfCommand::Consume(args) => consume(data_dir, args).await,
        PerfCommand::Nexmark(args) => crate::nexmark::run(data_dir, args).await,
        PerfCommand::Connect(args) => crate::perf_connect::run(data_dir, args).await,
        PerfCommand::Postgres(args) => crate::perf_postgres::run(data_dir, args).await,
        PerfCommand::S3(args) => crate::perf_s3::run(data_dir, args).await,
    }
}

pub(crate) fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} records ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

async fn produce(data_dir: &Path, args: PerfProduceArgs) -> Result<()> {
    if args.cluster.bootstrap_server.is_some() {
        return produce_to_cluster(data_dir, args).await;
    }
    anyhow::ensure!(
        args.transactional_id.is_none(),
        "--transactional-id needs --bootstrap-server (embedded transactions are Broker::commit_transaction's)"
    );
    let broker = Broker::open_with(BrokerConfig::new(data_dir))
        .await
        .with_context(|| format!("opening {}", data_dir.display()))?;
    let topic = match broker.topic(&args.topic) {
        Ok(topic) => topic,
        Err(_) => broker.create_topic(
            &args.topic,
            TopicConfig {
                partitions: args.partitions,
                flush: args.flush,
                ..TopicConfig::default()
            },
        )?,
    };
    if args.wait_each_batch {
        return append_batches_one_by_one(&broker, &topic, &args).await;
    }
    let fsyncs_before: u64 = topic
        .partitions()
        .iter()
        .map(|p| p.log().fsync_count())
        .sum();
    let producer = Producer::new(
        broker.clone(),
        ProducerConfig {
            linger: Duration::from_millis(args.linger_ms),
            batch_size: args.batch_size,
            buffer_memory: args.buffer_mb << 20,
            ..ProducerConfig::default()
        },
    );
    let value = Bytes::from(vec![b'x'; args.record_size]);
    // Latency is sampled to keep the send loop cheap.
    let sample_every = 997;
    let (samples_tx, mut samples_rx) =
        tokio::sync::mpsc::unbounded_channel::<(Instant, DeliveryFuture)>();
    let latencies = tokio::spawn(async move {
        let mut histogram = latency_histogram()?;
        while let Some((sent, delivery)) = samples_rx.recv().await {
            delivery.await?;
            histogram.saturating_record(sent.elapsed().as_micros() as u64);
        }
        anyhow::Ok(histogram)
    });
    let bar = progress(args.records, "producing");
    // Peak memory at half of the run, to compare with the end: flat memory means equal.
    let mut rss_at_half = 0.0;
    let cpu_before = cpu_time();
    let started = Instant::now();
    for i in 0..args.records {
        let record = ProducerRecord {
            topic: args.topic.clone(),
            value: Some(value.clone()),
            ..ProducerRecord::default()
        };
        let sent = (i % sample_every == 0).then(Instant::now);
        let delivery = producer.send(record).await?;
        if let Some(sent) = sent {
            let _ = samples_tx.send((sent, delivery));
        }
        if i % 65_536 == 0 {
            bar.set_position(i);
        }
        if i == args.records / 2 {
            rss_at_half = max_rss_mb();
        }
    }
    producer.flush().await?;
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    bar.finish_and_clear();
    drop(samples_tx);
    let histogram = latencies.await??;
    let fsyncs = topic
        .partitions()
        .iter()
        .map(|p| p.log().fsync_count())
        .sum::<u64>()
        - fsyncs_before;
    drop(producer);
    broker.close().await?;

    report(&args, elapsed, cpu, &histogram, Some(fsyncs), rss_at_half);
    Ok(())
}

/// `perf produce --bootstrap-server`: the same records through librdkafka (acks=all).
async fn produce_to_cluster(data_dir: &Path, args: PerfProduceArgs) -> Result<()> {
    anyhow::ensure!(
        !args.wait_each_batch,
        "--wait-each-batch measures the embedded log's append path; leave out --bootstrap-server"
    );
    let Client::Cluster(cluster) = args.cluster.open(data_dir, Access::ReadOnly).await? else {
        unreachable!("--bootstrap-server opens a cluster");
    };
    if cluster.partition_count(&args.topic).await.is_err() {
        let config = TopicConfig {
            flush: args.flush,
            ..TopicConfig::default()
        };
        let flush: Vec<(&str, String)> = kafka_config::configs(&config)
            .into_iter()
            .filter(|(key, _)| key.starts_with("flush."))
            .collect();
        cluster
            .create_topic(&args.topic, args.partitions, &flush)
            .await
            .with_context(|| format!("creating topic {:?}", args.topic))?;
    }
    let producer = std::sync::Arc::new(cluster.producer(&ProducerSettings {
        linger_ms: args.linger_ms,
        batch_bytes: args.batch_size,
        buffer_bytes: args.buffer_mb << 20,
        transactional_id: args.transactional_id.clone(),
        ..ProducerSettings::default()
    })?);
    let commit_interval = Duration::from_millis(args.commit_interval_ms);
    let transactional = args.transactional_id.is_some();
    if transactional {
        producer.init_transactions(Duration::from_secs(30)).await?;
        producer.begin_transaction()?;
    }
    let (mut last_commit, mut commits) = (Instant::now(), 0u64);
    let record = ProducerRecord {
        topic: args.topic.clone(),
        value: Some(Bytes::from(vec![b'x'; args.record_size])),
        ..ProducerRecord::default()
    };
    let sample_every = 997;
    let bar = progress(args.records, "producing");
    let mut rss_at_half = 0.0;
    let cpu_before = cpu_time();
    let started = Instant::now();
    for i in 0..args.records {
        if i % sample_every == 0 {
            producer.send_timed(&record, i).await?;
        } else {
            producer.send(&record, i).await?;
        }
        if i % 65_536 == 0 {
            bar.set_position(i);
            if let Some(failure) = producer.first_failure() {
                return Err(failure.error).context("a record was not acknowledged");
            }
        }
        if i == args.records / 2 {
            rss_at_half = max_rss_mb();
        }
        if transactional && i % 256 == 0 && last_commit.elapsed() >= commit_interval {
            producer.commit_transaction(Duration::from_secs(60)).await?;
            producer.begin_transaction()?;
            (last_commit, commits) = (Instant::now(), commits + 1);
        }
    }
    if transactional {
        producer
            .commit_transaction(Duration::from_secs(330))
            .await?;
        commits += 1;
    }
    producer.flush(Duration::from_secs(330)).await?;
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    bar.finish_and_clear();
    if let Some(failure) = producer.first_failure() {
        return Err(failure.error).context("a record was not acknowledged");
    }
    let acknowledged = producer.acknowledged();
    anyhow::ensure!(
        acknowledged == args.records,
        "{acknowledged} of {} records were acknowledged",
        args.records
    );
    let mut histogram = latency_histogram()?;
    for latency in producer.take_latencies() {
        histogram.saturating_record(latency.as_micros() as u64);
    }
    report(&args, elapsed, cpu, &histogram, None, rss_at_half);
    if transactional {
        // Beside the JSON, not in it: scripts read the figures from stdout.
        if args.json {
            eprintln!("{commits} transactions committed");
        } else {
            println!("{commits} transactions committed");
        }
    }
    Ok(())
}

/// The `--wait-each-batch` mode: no producer, one pre-encoded batch per append and fsync.
async fn append_batches_one_by_one(
    broker: &Broker,
    topic: &logbrook_core::Topic,
    args: &PerfProduceArgs,
) -> Result<()> {
    let partition = topic.partition(0)?.clone();
    let value = vec![b'x'; args.record_size];
    let mut builder = logbrook_core::batch::BatchBuilder::with_capacity(args.batch_size);
    while builder.is_empty() || builder.size() + args.record_size + 16 <= args.batch_size {
        builder.push(logbrook_core::now_ms(), None, Some(&value), &[]);
    }
    let batch = builder.finish();
    let per_batch = u64::from(batch.record_count());
    let batches = args.records.div_ceil(per_batch);
    let fsyncs_before = partition.log().fsync_count();
    let mut histogram = latency_histogram()?;
    let cpu_before = cpu_time();
    let started = Instant::now();
    for _ in 0..batches {
        let sent = Instant::now();
        partition.append(batch.clone()).await?;
        histogram.saturating_record(sent.elapsed().as_micros() as u64);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let fsyncs = partition.log().fsync_count() - fsyncs_before;
    broker.close().await?;
    let args = PerfProduceArgs {
        records: batches * per_batch,
        ..args.clone()
    };
    report(&args, elapsed, cpu, &histogram, Some(fsyncs), 0.0);
    Ok(())
}

fn report(
    args: &PerfProduceArgs,
    elapsed: Duration,
    cpu: Duration,
    histogram: &Histogram<u64>,
    fsyncs: Option<u64>,
    rss_at_half: f64,
) {
    let secs = elapsed.as_secs_f64();
    let bytes = args.records as f64 * args.record_size as f64;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "records": args.records, "record_size": args.record_size, "batch_size": args.batch_size,
                "flush": args.flush.to_string(), "seconds": secs,
                "records_per_sec": args.records as f64 / secs, "mb_per_sec": bytes / secs / 1e6,
                "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": histogram.max() as f64 / 1000.0},
                "fsyncs": fsyncs, "fsyncs_per_sec": fsyncs.map(|f| f as f64 / secs),
                "cpu_seconds": cpu.as_secs_f64(), "max_rss_mb": max_rss_mb(),
                "max_rss_mb_at_half": rss_at_half,
            })
        );
    } else {
        println!(
            "produced {} records of {} B to {:?} in {secs:.2} s (flush {}, batch {} B, linger {} ms)",
            args.records, args.record_size, args.topic, args.flush, args.batch_size, args.linger_ms
        );
        println!(
            "  throughput: {:.0} records/s, {:.1} MB/s",
            args.records as f64 / secs,
            bytes / secs / 1e6
        );
        println!(
            "  ack latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            ms(0.5),
            ms(0.99),
            ms(0.999),
            histogram.max() as f64 / 1000.0
        );
        match fsyncs {
            Some(fsyncs) => println!(
                "  fsyncs: {fsyncs} ({:.0}/s, {:.0} B each)",
                fsyncs as f64 / secs,
                if fsyncs > 0 {
                    bytes / fsyncs as f64
                } else {
                    0.0
                }
            ),
            None => println!("  fsyncs: on the cluster's side, not counted here"),
        }
        println!(
            "  cpu: {:.2} s, max RSS {:.1} MB ({rss_at_half:.1} MB after half of the records)",
            cpu.as_secs_f64(),
            max_rss_mb()
        );
    }
}

async fn consume(data_dir: &Path, args: PerfConsumeArgs) -> Result<()> {
    let client = args.cluster.open(data_dir, Access::ReadOnly).await?;
    let partitions: Vec<TopicPartition> = (0..client.partition_count(&args.topic).await?)
        .map(|p| TopicPartition::new(args.topic.clone(), p))
        .collect();
    let mut consumer = client.consumer(None, args.fetch_max_bytes)?;
    consumer.assign(partitions.clone()).await?;
    let mut available = 0;
    let ends = consumer.end_offsets().await?;
    for (tp, end) in &ends {
        available += end - consumer.seek(tp, SeekTo::Earliest).await?;
    }
    // Offsets, not records, bound the run: transaction markers take offsets too.
    let limit = args.records.unwrap_or(u64::MAX);
    let bar = progress(
        args.records.unwrap_or(available).min(available),
        "consuming",
    );
    let cpu_before = cpu_time();
    let started = Instant::now();
    let (mut count, mut bytes) = (0u64, 0u64);
    let at_end = |consumer: &logbrook_client::Consumer| {
        ends.iter()
            .all(|(tp, end)| consumer.position(tp).is_some_and(|p| p >= *end))
    };
    while count < limit && !at_end(&consumer) {
        let records = consumer.poll(Duration::from_secs(5)).await?;
        anyhow::ensure!(
            !records.is_empty() || at_end(&consumer),
            "no records for 5 s after {count}, short of the end offsets {ends:?}"
        );
        for r in &records {
            bytes += r.value.as_ref().map_or(0, |v| v.len() as u64)
                + r.key.as_ref().map_or(0, |k| k.len() as u64);
        }
        count += records.len() as u64;
        bar.set_position(count);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    bar.finish_and_clear();
    client.close().await?;
    let secs = elapsed.as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "records": count, "bytes": bytes, "seconds": secs,
                "records_per_sec": count as f64 / secs, "mb_per_sec": bytes as f64 / secs / 1e6,
                "cpu_seconds": cpu.as_secs_f64(), "max_rss_mb": max_rss_mb(),
            })
        );
    } else {
        println!(
            "consumed {count} records ({:.1} MB) from {:?} in {secs:.2} s",
            bytes as f64 / 1e6,
            args.topic
        );
        println!(
            "  throughput: {:.0} records/s, {:.1} MB/s",
            count as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        println!(
            "  cpu: {:.2} s, max RSS {:.1} MB",
            cpu.as_secs_f64(),
            max_rss_mb()
        );
    }
    Ok(())
}

/// Microseconds from 1 µs to an hour. `saturating_record` clamps into the range a histogram has,
/// and an auto-resizing one starts with almost none: every latency read 2 µs.
fn latency_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).context("latency histogram")
}

/// User plus system CPU time of this process (getrusage).
pub(crate) fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |usage| {
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000)
        };
        tv(usage.user_time()) + tv(usage.system_time())
    })
}

/// Peak resident memory of this process in MB (getrusage's `ru_maxrss`, KiB on Linux).
fn max_rss_mb() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |usage| usage.max_rss() as f64 / 1024.0)
}
