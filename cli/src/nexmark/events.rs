//! Nexmark's events, the generator that writes them to the log, and reading a topic back.
//!
//! Persons, auctions and bids come at Flink's default proportions (1:3:46), one event per
//! millisecond of event time, as JSON, to `nexmark-person` (keyed by person id),
//! `nexmark-auction` (by auction id) and `nexmark-bid` (by auction id). The content is a fixed
//! sequence: every run, partition count and disorder sees the same events.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use logbrook_core::{Broker, ConsumerRecord, Producer, ProducerConfig, ProducerRecord};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Persons, keyed by id.
pub(super) const PERSONS: &str = "nexmark-person";
/// Auctions, keyed by id.
pub(super) const AUCTIONS: &str = "nexmark-auction";
/// Bids, keyed by auction id.
pub(super) const BIDS: &str = "nexmark-bid";

/// Event time of the first event (ms): a multiple of every window size and advance.
const FIRST_EVENT_MS: i64 = 1_700_000_000_000;

/// A new user of the auction site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Person {
    pub id: u64,
    pub name: String,
    pub city: String,
    pub date_time: i64,
}

/// An item put up for auction by a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Auction {
    pub id: u64,
    pub seller: u64,
    pub category: u32,
    pub initial_bid: u64,
    pub date_time: i64,
}

/// A bid on an auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Bid {
    pub auction: u64,
    pub bidder: u64,
    pub price: u64,
    pub channel: String,
    pub date_time: i64,
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

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// One generated event as the record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    topic: &'static str,
    key: u64,
    value: Vec<u8>,
    timestamp: i64,
}

/// Makes the events in event-time order: per 50, 1 person, 3 auctions and 46 bids, 1 ms apart.
struct Generator {
    rng: Rng,
    persons: u64,
    auctions: u64,
}

impl Generator {
    fn new() -> Self {
        Self {
            rng: Rng(42),
            persons: 0,
            auctions: 0,
        }
    }

    /// Event number `n`; must be called for n = 0, 1, 2, ...
    fn event(&mut self, n: u64) -> Result<Event> {
        let ts = FIRST_EVENT_MS + n as i64;
        let rng = &mut self.rng;
        let (topic, key, value) = match n % 50 {
            0 => {
                self.persons += 1;
                let p = Person {
                    id: self.persons,
                    name: format!("person-{}", self.persons),
                    city: ["Paris", "Lyon", "Oslo", "Quito"][rng.below(4) as usize].into(),
                    date_time: ts,
                };
                (PERSONS, p.id, serde_json::to_vec(&p)?)
            }
            1..=3 => {
                self.auctions += 1;
                let a = Auction {
                    id: self.auctions,
                    // Sellers are mostly recent persons, as in Nexmark.
                    seller: self.persons.saturating_sub(rng.below(10)).max(1),
                    category: rng.below(10) as u32,
                    initial_bid: 1 + rng.below(1000),
                    date_time: ts,
                };
                (AUCTIONS, a.id, serde_json::to_vec(&a)?)
            }
            _ => {
                // Half the bids go to the 100 newest auctions ("hot"), half to any.
                let auction = if rng.below(2) == 0 {
                    self.auctions.saturating_sub(rng.below(100)).max(1)
                } else {
                    1 + rng.below(self.auctions.max(1))
                };
                let b = Bid {
                    auction,
                    bidder: 1 + rng.below(self.persons.max(1)),
                    price: 1 + rng.below(10_000),
                    channel: ["web", "app", "api"][rng.below(3) as usize].into(),
                    date_time: ts,
                };
                (BIDS, b.auction, serde_json::to_vec(&b)?)
            }
        };
        Ok(Event {
            topic,
            key,
            value,
            timestamp: ts,
        })
    }
}

/// The events in the order they are sent. With `disorder_ms > 0`, in runs of `disorder_ms`
/// consecutive milliseconds, shuffled within each run, so an event follows events at most
/// `disorder_ms - 1` ms newer than itself (in every partition too, as each partition's order
/// is a subsequence of the send order).
struct SendOrder {
    generator: Generator,
    /// Its own sequence, so the events' content does not depend on the disorder.
    order: Rng,
    /// The rest of the current run, taken from the end.
    run: Vec<Event>,
    run_len: u64,
    next: u64,
    events: u64,
}

impl SendOrder {
    fn new(events: u64, disorder_ms: u64) -> Self {
        Self {
            generator: Generator::new(),
            order: Rng(7),
            run: Vec::new(),
            run_len: disorder_ms.max(1),
            next: 0,
            events,
        }
    }
}

impl Iterator for SendOrder {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        if self.run.is_empty() {
            let end = self.events.min(self.next.saturating_add(self.run_len));
            for n in self.next..end {
                match self.generator.event(n) {
                    Ok(event) => self.run.push(event),
                    Err(e) => return Some(Err(e)),
                }
            }
            self.next = end;
            self.order.shuffle(&mut self.run);
        }
        self.run.pop().map(Ok)
    }
}

/// Writes `events` events, out of order by up to `disorder_ms` (see [`SendOrder`]).
pub(super) async fn generate(broker: &Broker, events: u64, disorder_ms: u64) -> Result<()> {
    let producer = Producer::new(
        broker.clone(),
        ProducerConfig {
            linger: Duration::from_millis(5),
            batch_size: 256 * 1024,
            ..ProducerConfig::default()
        },
    );
    let started = Instant::now();
    for event in SendOrder::new(events, disorder_ms) {
        let event = event?;
        let record = ProducerRecord::new(event.topic, event.value)
            .with_key(event.key.to_string())
            .with_timestamp(event.timestamp);
        producer.send(record).await?;
    }
    producer.flush().await?;
    eprintln!(
        "generated {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Calls `f` on every record of `topic`, partition by partition, in offset order.
pub(super) fn for_each_record(
    broker: &Broker,
    topic: &str,
    mut f: impl FnMut(&ConsumerRecord) -> Result<()>,
) -> Result<()> {
    // The first error `f` returns stops the work on what follows.
    let mut failed = None;
    for partition in broker.topic(topic)?.partitions() {
        partition.log().for_each_record(0, |record| {
            if failed.is_none() {
                failed = f(&record).err();
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}

/// Every record of `topic` as (timestamp, value decoded from JSON).
pub(super) fn read_all<T: DeserializeOwned>(broker: &Broker, topic: &str) -> Result<Vec<(i64, T)>> {
    let mut out = Vec::new();
    for_each_record(broker, topic, |r| {
        let value: &Bytes = r.value.as_ref().with_context(|| {
            format!(
                "{topic} partition {} offset {}: null value",
                r.partition, r.offset
            )
        })?;
        let decoded = serde_json::from_slice(value).with_context(|| {
            format!(
                "{topic} partition {} offset {}: not JSON",
                r.partition, r.offset
            )
        })?;
        out.push((r.timestamp, decoded));
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;

    fn send_order(events: u64, disorder_ms: u64) -> Vec<Event> {
        SendOrder::new(events, disorder_ms)
            .collect::<Result<_>>()
            .unwrap()
    }

    #[test]
    fn events_without_disorder_come_in_timestamp_order() {
        let events = send_order(1_000, 0);
        assert_eq!(events.len(), 1_000);
        assert!(
            events
                .windows(2)
                .all(|w| w[1].timestamp == w[0].timestamp + 1)
        );
    }

    #[test]
    fn disordered_events_trail_the_newest_by_less_than_the_disorder() {
        let events = send_order(5_003, 500);
        let mut newest = events[0].timestamp;
        let mut out_of_order = 0;
        for event in &events {
            assert!(
                newest - event.timestamp < 500,
                "{} after {newest}",
                event.timestamp
            );
            out_of_order += usize::from(event.timestamp < newest);
            newest = newest.max(event.timestamp);
        }
        assert!(out_of_order > 2_000, "only {out_of_order} out of order");
    }

    #[test]
    fn disorder_changes_the_order_but_not_the_events() {
        let mut disordered = send_order(5_003, 500);
        assert_ne!(disordered, send_order(5_003, 0));
        disordered.sort_by_key(|e| e.timestamp);
        assert_eq!(disordered, send_order(5_003, 0));
    }
}
