//! `logbrook perf s3`: `s3-sink` MB/s through the Connect runtime, next to a raw aws-sdk
//! multipart upload of the same bytes to the same server in the same run.
//!
//! The sink's figure covers everything from the log to S3: reading the topic, converting each
//! value, encoding the objects and uploading them, until the last offset is committed. The raw
//! figure uploads the objects the sink wrote (read back first, not timed) again, with the same
//! part size and as many parts in flight.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::Args;
use logbrook_connect::runtime::ConnectorOffsets;
use logbrook_connect::{Worker, WorkerConfig};
use logbrook_connector_s3::raw::RawBucket;
use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use serde_json::json;

use crate::perf_connect::{start_connector, wait};
use crate::plugins::registry;

/// Flags of `perf s3`.
#[derive(Debug, Clone, Args)]
pub struct PerfS3Args {
    /// The S3-compatible server (`scripts/s3-server.sh url`).
    #[arg(long, env = "LOGBROOK_S3_ENDPOINT")]
    endpoint: String,
    /// Its access key id.
    #[arg(long, env = "LOGBROOK_S3_ACCESS_KEY")]
    access_key: String,
    /// Its secret access key.
    #[arg(long, env = "LOGBROOK_S3_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// The bucket (created when missing; objects go under `perf-s3/<time>/` and are deleted).
    #[arg(long, default_value = "logbrook-perf")]
    bucket: String,
    /// Records in the topic.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per record value (a JSON object).
    #[arg(long, default_value_t = 1000)]
    record_size: usize,
    /// The sink's format: json or parquet.
    #[arg(long, default_value = "json")]
    format: String,
    /// Bytes per object (the sink's `flush_bytes`).
    #[arg(long, default_value_t = 64 << 20)]
    object_bytes: u64,
    /// Bytes per part of a multipart upload, for the sink and the raw upload.
    #[arg(long, default_value_t = 8 << 20)]
    part_bytes: u64,
    /// Requests in flight, for the sink and the raw upload.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const TOPIC: &str = "perf-s3";

/// Runs the benchmark in `DATA_DIR/perf-s3` (removed afterwards).
///
/// # Errors
/// S3 failures, a failed connector, or objects that do not hold every record.
pub async fn run(data_dir: &Path, args: PerfS3Args) -> Result<()> {
    ensure!(args.record_size >= 32, "--record-size must be at least 32");
    ensure!(
        args.format == "json" || args.format == "parquet",
        "--format is json or parquet"
    );
    let dir = data_dir.join("perf-s3");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let bucket = RawBucket::new(
        &args.endpoint,
        &args.access_key,
        &args.secret_key,
        &args.bucket,
    )
    .await;
    bucket.create().await?;
    // A prefix of its own per run: s3s-fs keeps a deleted object's checksum and serves it for
    // a later object of the same key written by multipart upload.
    let run_prefix = format!("perf-s3/{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"));
    let (sink_prefix, raw_prefix) = (format!("{run_prefix}/sink"), format!("{run_prefix}/raw"));

    let broker = Broker::open(dir.join("data")).await?;
    let value_bytes = produce(&broker, &args).await?;
    let sink_seconds = run_sink(&broker, &args, &sink_prefix).await;
    broker.close().await?;
    let sink_seconds = sink_seconds?;

    let mut objects = Vec::new();
    for (i, (key, _)) in bucket.list(&sink_prefix).await?.into_iter().enumerate() {
        objects.push((format!("{raw_prefix}/{i:06}"), bucket.get(&key).await?));
    }
    if objects.is_empty() {
        bail!("the sink wrote no objects under {sink_prefix}");
    }
    let bytes: u64 = objects.iter().map(|(_, b)| b.len() as u64).sum();
    let started = Instant::now();
    bucket
        .upload_all(objects, usize::try_from(args.part_bytes)?, args.concurrency)
        .await?;
    let raw_seconds = started.elapsed().as_secs_f64();
    bucket.delete_prefix(&run_prefix).await?;
    std::fs::remove_dir_all(&dir).ok();

    let mb = bytes as f64 / 1e6;
    let sink_rate = mb / sink_seconds;
    let raw_rate = mb / raw_seconds;
    if args.json {
        println!(
            "{}",
            json!({
                "records": args.records, "record_size": args.record_size, "format": args.format,
                "value_bytes": value_bytes, "object_bytes": bytes,
                "sink_seconds": sink_seconds, "sink_mb_per_sec": sink_rate,
                "sink_value_mb_per_sec": value_bytes as f64 / 1e6 / sink_seconds,
                "sink_records_per_sec": args.records as f64 / sink_seconds,
                "raw_seconds": raw_seconds, "raw_mb_per_sec": raw_rate,
                "sink_vs_raw": sink_rate / raw_rate,
            })
        );
        return Ok(());
    }
    println!(
        "{} records of {} B ({:.1} MB of values) as {}: {:.1} MB of objects (part {} MiB, {} in flight)",
        args.records,
        args.record_size,
        value_bytes as f64 / 1e6,
        args.format,
        mb,
        args.part_bytes >> 20,
        args.concurrency
    );
    println!(
        "{:<42} {:>10} {:>12} {:>9}",
        "", "MB/s", "records/s", "vs raw"
    );
    println!(
        "{:<42} {:>10.0} {:>12}",
        "raw aws-sdk multipart upload, same bytes", raw_rate, "-"
    );
    println!(
        "{:<42} {:>10.0} {:>12.0} {:>8.2}x",
        "topic -> s3-sink (until committed)",
        sink_rate,
        args.records as f64 / sink_seconds,
        sink_rate / raw_rate
    );
    println!(
        "(s3-sink read {:.0} MB/s of values)",
        value_bytes as f64 / 1e6 / sink_seconds
    );
    Ok(())
}

/// Fills the topic; returns the bytes of the values.
async fn produce(broker: &Broker, args: &PerfS3Args) -> Result<u64> {
    broker.create_topic(TOPIC, TopicConfig::default())?;
    let producer = Producer::new(
        broker.clone(),
        ProducerConfig {
            batch_size: 1 << 20,
            ..ProducerConfig::default()
        },
    );
    let filler = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(args.record_size / 36 + 1);
    let bar = crate::perf::progress(args.records, "producing");
    let mut bytes = 0u64;
    for i in 0..args.records {
        let head = format!(
            "{{\"id\":{i},\"customer\":\"c-{}\",\"amount\":{}.{:02},\"note\":\"",
            i % 9973,
            i % 1000,
            i % 100
        );
        let body = args.record_size.saturating_sub(head.len() + 2);
        let value = format!("{head}{}\"}}", &filler[..body]);
        bytes += value.len() as u64;
        let _ = producer
            .send(ProducerRecord {
                topic: TOPIC.into(),
                key: Some(Bytes::from(format!("c-{}", i % 9973))),
                value: Some(Bytes::from(value)),
                ..ProducerRecord::default()
            })
            .await?;
        if i % 65_536 == 0 {
            bar.set_position(i);
        }
    }
    producer.flush().await?;
    bar.finish_and_clear();
    Ok(bytes)
}

/// Runs the sink until every offset is committed; returns the seconds it took.
async fn run_sink(broker: &Broker, args: &PerfS3Args, prefix: &str) -> Result<f64> {
    let config = WorkerConfig {
        rest_enabled: false,
        // Short, so the run's end (the last object is written once idle, then committed at a
        // flush) adds little to a steady rate.
        offset_flush_interval_ms: 100,
        ..WorkerConfig::default()
    };
    let worker = Worker::start(broker.clone(), registry(), config).await?;
    let outcome = async {
        let sink = json!({
            "name": "perf-s3-sink", "connector": "s3-sink", "topics": [TOPIC],
            "key_converter": "string",
            "bucket": args.bucket, "prefix": prefix, "endpoint": args.endpoint,
            "region": "us-east-1", "access_key_id": args.access_key,
            "secret_access_key": args.secret_key, "format": args.format,
            "flush_records": 100_000_000u64, "flush_bytes": args.object_bytes,
            "part_bytes": args.part_bytes, "max_concurrent_uploads": args.concurrency,
            "flush_idle_ms": 50,
        });
        let bar = crate::perf::progress(args.records, "s3-sink");
        let started = Instant::now();
        start_connector(&worker, sink).await?;
        wait(
            &worker,
            "perf-s3-sink",
            &bar,
            ConnectorOffsets::sink_total,
            args.records,
        )
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        Ok::<_, anyhow::Error>(seconds)
    }
    .await;
    worker.shutdown().await;
    outcome
}
