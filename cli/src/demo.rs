//! `logbrook demo`: the README's walk-through, on the embedded log with no external service.
//!
//! Produces a click stream keyed by user, reads it as a consumer group counting clicks per user
//! and committing, resets the group to the earliest offsets and replays it, then checks that the
//! replay saw exactly what the first read saw. Re-running starts over: the topic is recreated,
//! which also drops the group's committed offsets for it.

use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use logbrook_core::{
    Broker, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    ResetTarget, TopicConfig, TopicPartition, now_ms,
};

use crate::output::{self, Table};

const TOPIC: &str = "demo-clicks";
const GROUP: &str = "demo-readers";
const PARTITIONS: u32 = 3;
const TOP_USERS: usize = 5;

/// Arguments of `logbrook demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Clicks to produce.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Distinct users the clicks come from.
    #[arg(long, default_value_t = 1_000)]
    users: u64,
}

/// What one read of the topic saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    total: u64,
    per_user: HashMap<String, u64>,
    per_partition: BTreeMap<u32, u64>,
}

/// Runs `logbrook demo`.
///
/// # Errors
/// Any log error, or a replay that does not match the first read.
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
    output::print(&format!(
        "Logbrook demo in {} (embedded log, no external service)\n\n",
        broker.data_dir().display()
    ))?;
    if broker.topic(TOPIC).is_ok() {
        broker
            .delete_topic(TOPIC)
            .await
            .with_context(|| format!("deleting the previous run's topic {TOPIC:?}"))?;
    }
    let config = TopicConfig {
        partitions: PARTITIONS,
        ..TopicConfig::default()
    };
    broker.create_topic(TOPIC, config)?;
    output::print(&format!(
        "created topic {TOPIC:?} with {PARTITIONS} partitions (flush: always)\n"
    ))?;

    let started = Instant::now();
    produce(broker, args).await?;
    let elapsed = started.elapsed();
    output::print(&format!(
        "produced {} clicks from {} users in {} ({}), each acknowledged after fsync\n",
        args.records,
        args.users,
        seconds(elapsed),
        rate(args.records, elapsed)
    ))?;

    let ends: Vec<(TopicPartition, u64)> = broker
        .topic(TOPIC)?
        .partitions()
        .iter()
        .map(|p| {
            (
                TopicPartition::new(TOPIC, p.log().partition()),
                p.log().high_watermark(),
            )
        })
        .collect();

    let started = Instant::now();
    let first = read_as_group(broker, &ends, "read").await?;
    let elapsed = started.elapsed();
    output::print(&format!(
        "read     {} clicks as group {GROUP:?} in {} ({}), committing after each poll\n",
        first.total,
        seconds(elapsed),
        rate(first.total, elapsed)
    ))?;

    let changes = broker
        .reset_group_offsets(GROUP, TOPIC, ResetTarget::Earliest, false)
        .await?;
    let moves: Vec<String> = changes
        .iter()
        .map(|c| {
            let previous = c.previous.map_or_else(|| "none".into(), |p| p.to_string());
            format!("partition {} {previous} -> {}", c.partition, c.new)
        })
        .collect();
    output::print(&format!(
        "reset    group {GROUP:?} to earliest: {}\n",
        moves.join(", ")
    ))?;

    let started = Instant::now();
    let replay = read_as_group(broker, &ends, "replay").await?;
    let elapsed = started.elapsed();
    output::print(&format!(
        "replayed {} clicks in {} ({})\n",
        replay.total,
        seconds(elapsed),
        rate(replay.total, elapsed)
    ))?;

    verify(args.records, &first, &replay)?;
    output::print(&format!(
        "verified: the replay saw the same {} clicks and the same count for each of {} users\n\n",
        replay.total,
        replay.per_user.len()
    ))?;
    output::print(&summary(&replay))
}

async fn produce(broker: &Broker, args: &DemoArgs) -> Result<()> {
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let bar = progress(args.records, "produce");
    let mut random = SplitMix64(0x5eed_cafe);
    let mut pending = FuturesUnordered::new();
    // Event times end now, one click every 10 ms.
    let first_event = now_ms() - 10 * args.records as i64;
    for i in 0..args.records {
        // Squaring a uniform draw skews clicks toward low user ids, so there are top users.
        let draw = random.next_f64();
        let user = format!("user-{:04}", (draw * draw * args.users as f64) as u64);
        let event_ms = first_event + 10 * i as i64;
        let event_time = chrono::DateTime::from_timestamp_millis(event_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        let value = serde_json::json!({
            "user": user,
            "page": format!("/products/{}", random.next_u64() % 50),
            "event_time": event_time,
        })
        .to_string();
        let record = ProducerRecord::new(TOPIC, value)
            .with_key(user)
            .with_timestamp(event_ms);
        pending.push(producer.send(record).await?.into_future());
        while let Some(Some(outcome)) = pending.next().now_or_never() {
            outcome?;
            bar.inc(1);
        }
    }
    while let Some(outcome) = pending.next().await {
        outcome?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Reads the topic up to `ends` as group `demo-readers`, committing after each poll.
async fn read_as_group(
    broker: &Broker,
    ends: &[(TopicPartition, u64)],
    label: &str,
) -> Result<Tally> {
    let config = ConsumerConfig {
        group_id: Some(GROUP.into()),
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(broker.clone(), config);
    consumer.subscribe(&[TOPIC])?;
    let bar = progress(ends.iter().map(|(_, end)| end).sum(), label);
    let mut tally = Tally::default();
    loop {
        let at_end = ends
            .iter()
            .all(|(tp, end)| consumer.position(tp).is_some_and(|p| p >= *end));
        if at_end {
            break;
        }
        let records = consumer.poll(Duration::from_secs(1)).await?;
        if records.is_empty() {
            // Stalled below the end: stop and let the verification report what is missing.
            break;
        }
        for record in &records {
            let key = record
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .with_context(|| format!("record {}-{} has no key", TOPIC, record.offset))?;
            let value: serde_json::Value = record
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice(v).ok())
                .with_context(|| {
                    format!(
                        "record at {TOPIC}-{} offset {} is not JSON",
                        record.partition, record.offset
                    )
                })?;
            if value["user"].as_str() != Some(key.as_str()) {
                bail!(
                    "record at {TOPIC}-{} offset {} has key {key:?} but user {}",
                    record.partition,
                    record.offset,
                    value["user"]
                );
            }
            *tally.per_user.entry(key).or_default() += 1;
            *tally.per_partition.entry(record.partition).or_default() += 1;
            tally.total += 1;
        }
        consumer.commit().await?;
        bar.inc(records.len() as u64);
    }
    bar.finish_and_clear();
    Ok(tally)
}

fn verify(produced: u64, first: &Tally, replay: &Tally) -> Result<()> {
    if first.total != produced {
        bail!(
            "verification failed: produced {produced} clicks but the group read {}",
            first.total
        );
    }
    if replay != first {
        let differing = first
            .per_user
            .iter()
            .filter(|(user, count)| replay.per_user.get(*user) != Some(count))
            .count();
        bail!(
            "verification failed: the first read saw {} clicks, the replay {} ({differing} users differ)",
            first.total,
            replay.total
        );
    }
    Ok(())
}

fn summary(tally: &Tally) -> String {
    let mut partitions = Table::new(&["PARTITION", "CLICKS"]);
    for (partition, count) in &tally.per_partition {
        partitions.row(vec![partition.to_string(), count.to_string()]);
    }
    let mut users: Vec<(&String, &u64)> = tally.per_user.iter().collect();
    users.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut top = Table::new(&["USER", "CLICKS"]);
    for (user, count) in users.into_iter().take(TOP_USERS) {
        top.row(vec![user.clone(), count.to_string()]);
    }
    format!(
        "clicks per partition (keys hash to partitions as in Kafka):\n{}\ntop {TOP_USERS} users:\n{}",
        partitions.render(),
        top.render()
    )
}

fn progress(len: u64, label: &str) -> ProgressBar {
    // indicatif draws only when stderr is a terminal, so piped runs and tests stay quiet.
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.2} s", elapsed.as_secs_f64())
}

fn rate(records: u64, elapsed: Duration) -> String {
    let per_second = records as f64 / elapsed.as_secs_f64().max(1e-9);
    format!("{per_second:.0} records/s")
}

/// A small deterministic generator, so every run produces the same clicks.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(per_user: &[(&str, u64)]) -> Tally {
        let per_user: HashMap<String, u64> =
            per_user.iter().map(|(u, n)| (u.to_string(), *n)).collect();
        Tally {
            total: per_user.values().sum(),
            per_partition: BTreeMap::from([(0, per_user.values().sum())]),
            per_user,
        }
    }

    #[test]
    fn verification_fails_when_the_replay_differs_or_records_are_missing() {
        let first = tally(&[("a", 2), ("b", 1)]);
        assert!(verify(3, &first, &tally(&[("a", 2), ("b", 1)])).is_ok());
        let error = verify(3, &first, &tally(&[("a", 1), ("b", 2)])).expect_err("differs");
        assert!(error.to_string().contains("2 users differ"), "{error}");
        let error = verify(4, &first, &first).expect_err("missing records");
        assert!(error.to_string().contains("produced 4"), "{error}");
    }

    #[test]
    fn random_draws_stay_in_the_unit_interval() {
        let mut random = SplitMix64(1);
        assert!(
            (0..1000)
                .map(|_| random.next_f64())
                .all(|x| (0.0..1.0).contains(&x))
        );
    }
}
