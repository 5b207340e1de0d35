//! `logbrook perf nexmark`: Nexmark-style queries on the streams runtime, exactly-once, reading
//! from and writing to the log, against a hand-written loop over the same data.
//!
//! The generator writes persons, auctions and bids at Flink's default proportions (1:3:46), one
//! event per millisecond of event time, as JSON to `nexmark-person` (keyed by person id),
//! `nexmark-auction` (by auction id) and `nexmark-bid` (by auction id). Each query then runs as a
//! `StreamsApp` until it has processed everything; its CPU time (getrusage, user + system, every
//! thread of the process) gives events per second per core, counted over all generated events
//! as Flink's Nexmark figures are.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use logbrook_core::{
    Broker, BrokerConfig, FlushPolicy, Producer, ProducerConfig, ProducerRecord, TopicConfig,
};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    JoinWindows, Produced, StreamsApp, StreamsBuilder, StreamsConfig, TimeWindows, Topology,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::perf::cpu_time;

const PERSONS: &str = "nexmark-person";
const AUCTIONS: &str = "nexmark-auction";
const BIDS: &str = "nexmark-bid";
const WINDOW: Duration = Duration::from_secs(10);
const WINDOW_MS: i64 = 10_000;

/// Published Flink Nexmark throughput per core (events/s), the bar to beat by 10x.
const FLINK_PER_CORE: [(&str, f64); 5] = [
    ("q1", 158_000.0),
    ("q2", 175_000.0),
    ("q5", 22_000.0),
    ("q7", 12_300.0),
    ("q8", 146_000.0),
];

/// Flags of `perf nexmark`.
#[derive(Debug, Clone, Args)]
pub struct NexmarkArgs {
    /// Events to generate (persons, auctions and bids together).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Queries to run, comma-separated.
    #[arg(long, default_value = "q1,q2,q5,q7,q8", value_delimiter = ',')]
    queries: Vec<String>,
    /// Partitions per topic (one streams task each).
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    /// Print one JSON object per query instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Person {
    id: u64,
    name: String,
    city: String,
    date_time: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Auction {
    id: u64,
    seller: u64,
    category: u32,
    initial_bid: u64,
    date_time: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bid {
    auction: u64,
    bidder: u64,
    price: u64,
    channel: String,
    date_time: i64,
}

/// splitmix64: a fixed sequence, so every run and the hand loop see the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Writes `events` events: per 50, 1 person, 3 auctions and 46 bids, 1 ms apart.
async fn generate(broker: &Broker, events: u64) -> Result<()> {
    let producer = Producer::new(
        broker.clone(),
        ProducerConfig {
            linger: Duration::from_millis(5),
            batch_size: 256 * 1024,
            ..ProducerConfig::default()
        },
    );
    let mut rng = Rng(42);
    let (mut persons, mut auctions) = (0u64, 0u64);
    let started = Instant::now();
    for n in 0..events {
        let ts = 1_700_000_000_000 + n as i64;
        let (topic, key, value) = match n % 50 {
            0 => {
                persons += 1;
                let p = Person {
                    id: persons,
                    name: format!("person-{persons}"),
                    city: ["Paris", "Lyon", "Oslo", "Quito"][rng.below(4) as usize].into(),
                    date_time: ts,
                };
                (PERSONS, p.id, serde_json::to_vec(&p)?)
            }
            1..=3 => {
                auctions += 1;
                let a = Auction {
                    id: auctions,
                    // Sellers are mostly recent persons, as in Nexmark.
                    seller: persons.saturating_sub(rng.below(10)).max(1),
                    category: rng.below(10) as u32,
                    initial_bid: 1 + rng.below(1000),
                    date_time: ts,
                };
                (AUCTIONS, a.id, serde_json::to_vec(&a)?)
            }
            _ => {
                // Half the bids go to the 100 newest auctions ("hot"), half to any.
                let auction = if rng.below(2) == 0 {
                    auctions.saturating_sub(rng.below(100)).max(1)
                } else {
                    1 + rng.below(auctions.max(1))
                };
                let b = Bid {
                    auction,
                    bidder: 1 + rng.below(persons.max(1)),
                    price: 1 + rng.below(10_000),
                    channel: ["web", "app", "api"][rng.below(3) as usize].into(),
                    date_time: ts,
                };
                (BIDS, b.auction, serde_json::to_vec(&b)?)
            }
        };
        let record = ProducerRecord::new(topic, value)
            .with_key(key.to_string())
            .with_timestamp(ts);
        producer.send(record).await?;
    }
    producer.flush().await?;
    eprintln!(
        "generated {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn output_topic(query: &str, hand: bool) -> String {
    format!("{query}-{}", if hand { "hand" } else { "out" })
}

/// The query as a streams topology.
fn topology(query: &str) -> Result<Topology> {
    let builder = StreamsBuilder::new();
    let bids = || builder.stream_with::<String, Bid>(BIDS, Str, Json::new());
    let out = output_topic(query, false);
    match query {
        // Currency conversion: every bid's price in euros.
        "q1" => bids()
            .map_values(|b| Bid {
                price: b.price * 908 / 1000,
                ..b
            })
            .to_with(&out, Produced::with(Str, Json::new())),
        // Selection: bids on a few auctions.
        "q2" => bids()
            .filter(|_, b| b.auction % 123 == 0)
            .map_values(|b| (b.auction, b.price))
            .to_with(&out, Produced::with(Str, Json::new())),
        // Hot items: the auction with the most bids per 10 s window sliding by 2 s.
        "q5" => bids()
            .group_by_key()
            .windowed_by(TimeWindows::of(WINDOW).advance_by(Duration::from_secs(2)))
            .count("q5-counts")
            .suppress_until_window_closes("q5-final")
            .map(|window, count| (window.start, (window.key, count)))
            .group_by_key()
            .reduce("q5-hottest", |a, b| if b.1 > a.1 { b } else { a })
            .to_stream()
            .to_with(&out, Produced::with(Json::new(), Json::new())),
        // Highest bid per 10 s tumbling window.
        "q7" => bids()
            .group_by(|_, _| "all".to_string())
            .windowed_by(TimeWindows::of(WINDOW))
            .reduce("q7-max", |a, b| if b.price > a.price { b } else { a })
            .suppress_until_window_closes("q7-final")
            .map(|window, bid| (window.start, bid))
            .to_with(&out, Produced::with(Json::new(), Json::new())),
        // New persons who opened an auction in the same 10 s tumbling window.
        "q8" => {
            let persons = builder.stream_with::<String, Person>(PERSONS, Str, Json::new());
            // Re-keyed by seller with the persons topic's key serde, so equal ids meet.
            let auctions = builder
                .stream_with::<String, Auction>(AUCTIONS, Str, Json::new())
                .select_key(|_, a| a.seller.to_string())
                .repartition_with("q8-auctions-by-seller", Str, Json::new());
            persons
                .join(
                    &auctions,
                    |_, p, a| (p, a),
                    // The auctions come back through a repartition topic after the persons
                    // were read: a grace period keeps them from being late.
                    JoinWindows::of(WINDOW).grace(Duration::from_secs(3600)),
                    "q8-join",
                )
                .filter(|_, (p, a)| p.date_time / WINDOW_MS == a.date_time / WINDOW_MS)
                .map_values(|(p, a)| (p.id, p.name, a.id))
                .to_with(&out, Produced::with(Str, Json::new()));
        }
        other => bail!("unknown query {other:?}: choose from q1, q2, q5, q7, q8"),
    }
    Ok(builder.build()?)
}

/// Every record of `topic` decoded as `T`, in partition order.
fn read_all<T: for<'de> Deserialize<'de>>(broker: &Broker, topic: &str) -> Result<Vec<(i64, T)>> {
    let mut out = Vec::new();
    let mut records = Vec::new();
    for partition in broker.topic(topic)?.partitions() {
        let log = partition.log();
        let mut offset = log.log_start_offset();
        loop {
            let chunk = log.read(offset, 4 << 20)?;
            if chunk.is_empty() {
                break;
            }
            records.clear();
            chunk.records(offset, &mut records)?;
            for r in &records {
                let value = r.value.as_deref().context("null value")?;
                out.push((r.timestamp, serde_json::from_slice(value)?));
            }
            offset = chunk.next_offset;
        }
    }
    Ok(out)
}

/// The query as a plain loop: read the topics, compute with hash maps, write the results with a
/// producer. No state stores, no changelogs, no transactions, no windows to close incrementally.
async fn hand_loop(broker: &Broker, query: &str) -> Result<u64> {
    let out = output_topic(query, true);
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let mut results: Vec<(String, Vec<u8>)> = Vec::new();
    match query {
        "q1" => {
            for (_, b) in read_all::<Bid>(broker, BIDS)? {
                let b = Bid {
                    price: b.price * 908 / 1000,
                    ..b
                };
                results.push((b.auction.to_string(), serde_json::to_vec(&b)?));
            }
        }
        "q2" => {
            for (_, b) in read_all::<Bid>(broker, BIDS)? {
                if b.auction % 123 == 0 {
                    results.push((
                        b.auction.to_string(),
                        serde_json::to_vec(&(b.auction, b.price))?,
                    ));
                }
            }
        }
        "q5" => {
            let mut counts: HashMap<(i64, u64), u64> = HashMap::new();
            for (ts, b) in read_all::<Bid>(broker, BIDS)? {
                let last = ts - ts.rem_euclid(2_000);
                let mut start = last - WINDOW_MS + 2_000;
                while start <= last {
                    *counts.entry((start, b.auction)).or_default() += 1;
                    start += 2_000;
                }
            }
            let mut hottest: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
            for ((start, auction), count) in counts {
                let best = hottest.entry(start).or_insert((auction, count));
                if count > best.1 {
                    *best = (auction, count);
                }
            }
            for (start, best) in hottest {
                results.push((start.to_string(), serde_json::to_vec(&best)?));
            }
        }
        "q7" => {
            let mut highest: BTreeMap<i64, Bid> = BTreeMap::new();
            for (ts, b) in read_all::<Bid>(broker, BIDS)? {
                let start = ts - ts.rem_euclid(WINDOW_MS);
                match highest.get(&start) {
                    Some(top) if top.price >= b.price => {}
                    _ => {
                        highest.insert(start, b);
                    }
                }
            }
            for (start, bid) in highest {
                results.push((start.to_string(), serde_json::to_vec(&bid)?));
            }
        }
        "q8" => {
            let mut persons: HashMap<(i64, u64), Person> = HashMap::new();
            for (ts, p) in read_all::<Person>(broker, PERSONS)? {
                persons.insert((ts / WINDOW_MS, p.id), p);
            }
            for (ts, a) in read_all::<Auction>(broker, AUCTIONS)? {
                if let Some(p) = persons.get(&(ts / WINDOW_MS, a.seller)) {
                    results.push((
                        p.id.to_string(),
                        serde_json::to_vec(&(p.id, &p.name, a.id))?,
                    ));
                }
            }
        }
        other => bail!("unknown query {other:?}"),
    }
    let written = results.len() as u64;
    for (key, value) in results {
        producer
            .send(ProducerRecord::new(out.as_str(), value).with_key(key))
            .await?;
    }
    producer.flush().await?;
    Ok(written)
}

fn records_in(broker: &Broker, topic: &str) -> u64 {
    broker.topic(topic).map_or(0, |t| {
        t.partitions()
            .iter()
            .map(|p| p.log().high_watermark() - p.log().log_start_offset())
            .sum()
    })
}

/// Runs the query's app until its group has committed every input partition to the end.
async fn run_streams(broker: &Broker, query: &str) -> Result<()> {
    let app_id = format!("nexmark-{query}");
    let app = StreamsApp::new(
        broker.clone(),
        topology(query)?,
        StreamsConfig::new(&app_id),
    )?;
    let shutdown = CancellationToken::new();
    let mut running = tokio::spawn(app.run(shutdown.clone()));
    loop {
        tokio::select! {
            result = &mut running => {
                result??;
                bail!("{query} stopped early");
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let done = broker
            .describe_group(&app_id)
            .is_ok_and(|g| !g.partitions.is_empty() && g.partitions.iter().all(|p| p.lag == 0));
        // Every source must be in the group, repartition topics included (they appear later).
        let plan = topology(query)?;
        let sources = plan.source_topics().len()
            + plan
                .internal_topic_names(&app_id)
                .iter()
                .filter(|t| t.ends_with("-repartition"))
                .count();
        let committed_topics = broker
            .describe_group(&app_id)
            .map(|g| {
                let mut topics: Vec<_> = g
                    .partitions
                    .iter()
                    .map(|p| p.topic_partition.topic.clone())
                    .collect();
                topics.dedup();
                topics.len()
            })
            .unwrap_or(0);
        if done && committed_topics >= sources {
            break;
        }
    }
    shutdown.cancel();
    running.await.context("streams app")??;
    Ok(())
}

#[derive(Debug, Serialize)]
struct QueryResult {
    query: String,
    events: u64,
    outputs: u64,
    wall_s: f64,
    cpu_s: f64,
    events_per_s_per_core: f64,
    hand_outputs: u64,
    hand_cpu_s: f64,
    hand_events_per_s_per_core: f64,
    framework_vs_hand: f64,
    flink_per_core: f64,
    vs_flink: f64,
    /// Whether the streams result agrees with the hand loop's.
    agrees: bool,
}

/// Whether the app's output agrees with the hand loop's. q1, q2 and q8 write the same records;
/// q7 writes one result per closed window (the last window stays open); q5's app writes every
/// update of the per-window maximum, so at least one record per window the loop found.
fn agrees(query: &str, outputs: u64, hand: u64) -> bool {
    match query {
        "q7" => outputs + 1 == hand,
        "q5" => outputs >= hand.saturating_sub(5),
        _ => outputs == hand,
    }
}

/// Runs `perf nexmark`.
///
/// # Errors
/// Unknown queries, log errors, a query that fails.
pub async fn run(data_dir: &Path, args: NexmarkArgs) -> Result<()> {
    let dir = data_dir.join("nexmark");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let broker = Broker::open_with(BrokerConfig::new(&dir)).await?;
    for topic in [PERSONS, AUCTIONS, BIDS] {
        let config = TopicConfig {
            partitions: args.partitions,
            flush: FlushPolicy::Never, // input generation is not what is measured
            ..TopicConfig::default()
        };
        broker.create_topic(topic, config)?;
    }
    generate(&broker, args.events).await?;
    let mut rows = Vec::new();
    for query in &args.queries {
        for hand in [false, true] {
            let config = TopicConfig {
                partitions: args.partitions,
                ..TopicConfig::default()
            };
            broker.create_topic(&output_topic(query, hand), config)?;
        }
        let (cpu, wall) = (cpu_time(), Instant::now());
        run_streams(&broker, query).await?;
        let (cpu_s, wall_s) = (
            (cpu_time() - cpu).as_secs_f64(),
            wall.elapsed().as_secs_f64(),
        );
        let hand_cpu = cpu_time();
        let hand_outputs = hand_loop(&broker, query).await?;
        let hand_cpu_s = (cpu_time() - hand_cpu).as_secs_f64();
        let per_core = args.events as f64 / cpu_s.max(1e-9);
        let hand_per_core = args.events as f64 / hand_cpu_s.max(1e-9);
        let flink = FLINK_PER_CORE
            .iter()
            .find(|(q, _)| q == query)
            .map_or(0.0, |(_, f)| *f);
        let outputs = records_in(&broker, &output_topic(query, false));
        let row = QueryResult {
            query: query.clone(),
            events: args.events,
            outputs,
            agrees: agrees(query, outputs, hand_outputs),
            wall_s,
            cpu_s,
            events_per_s_per_core: per_core,
            hand_outputs,
            hand_cpu_s,
            hand_events_per_s_per_core: hand_per_core,
            framework_vs_hand: per_core / hand_per_core,
            flink_per_core: flink,
            vs_flink: per_core / flink.max(1.0),
        };
        if args.json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            eprintln!("{query}: {per_core:.0} events/s per core");
        }
        rows.push(row);
    }
    broker.close().await?;
    if !args.json {
        let mut table = crate::output::Table::new(&[
            "QUERY",
            "EVENTS",
            "OUTPUTS",
            "WALL S",
            "CPU S",
            "EV/S/CORE",
            "HAND EV/S/CORE",
            "VS HAND",
            "FLINK EV/S/CORE",
            "VS FLINK",
            "CHECK",
        ]);
        for r in &rows {
            table.row(vec![
                r.query.clone(),
                r.events.to_string(),
                r.outputs.to_string(),
                format!("{:.2}", r.wall_s),
                format!("{:.2}", r.cpu_s),
                format!("{:.0}", r.events_per_s_per_core),
                format!("{:.0}", r.hand_events_per_s_per_core),
                format!("{:.2}x", r.framework_vs_hand),
                format!("{:.0}", r.flink_per_core),
                format!("{:.2}x", r.vs_flink),
                if r.agrees { "ok" } else { "MISMATCH" }.to_string(),
            ]);
        }
        crate::output::print(&table.render())?;
    }
    if let Some(bad) = rows.iter().find(|r| !r.agrees) {
        bail!(
            "{}: the streams app wrote {} records, the hand loop {}",
            bad.query,
            bad.outputs,
            bad.hand_outputs
        );
    }
    Ok(())
}
