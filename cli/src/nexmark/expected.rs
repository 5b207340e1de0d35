//! The hand loop: each query as a plain loop over the input topics with hash maps, writing its
//! results with a producer. It is the speed peer of the streams app (no state stores, no
//! changelogs, no transactions, no windows to close incrementally) and, computed from the
//! events' own timestamps, the expected output the app's is checked against.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use bytes::Bytes;
use logbrook_core::{Broker, Producer, ProducerConfig, ProducerRecord};
use serde::Serialize;

use super::events::{AUCTIONS, Auction, BIDS, Bid, PERSONS, Person, read_all};
use super::queries::{
    AuctionPrice, ChannelCount, HOP_MS, HotItem, NewSeller, Query, WINDOW_MS, bid_rank, euros,
    selected, window_start,
};

/// Output records as JSON key and value.
pub(super) type Records = Vec<(Bytes, Bytes)>;

/// Runs `query` by hand: writes its results to [`Query::hand_topic`] and returns them.
pub(super) async fn hand_loop(broker: &Broker, query: Query) -> Result<Records> {
    let mut results = Records::new();
    match query {
        Query::Q1 => {
            for (_, b) in read_all::<Bid>(broker, BIDS)? {
                let b = Bid {
                    price: euros(b.price),
                    ..b
                };
                results.push(record(&b.auction.to_string(), &b)?);
            }
        }
        Query::Q2 => {
            for (_, b) in read_all::<Bid>(broker, BIDS)? {
                if selected(b.auction) {
                    let row: AuctionPrice = (b.auction, b.price);
                    results.push(record(&b.auction.to_string(), &row)?);
                }
            }
        }
        Query::Q5 => {
            let mut counts: HashMap<(i64, u64), u64> = HashMap::new();
            for (ts, b) in read_all::<Bid>(broker, BIDS)? {
                let last = ts - ts.rem_euclid(HOP_MS);
                let mut start = last - WINDOW_MS + HOP_MS;
                while start <= last {
                    *counts.entry((start, b.auction)).or_default() += 1;
                    start += HOP_MS;
                }
            }
            let mut hottest: BTreeMap<i64, HotItem> = BTreeMap::new();
            for ((window_start, auction), bids) in counts {
                let item = HotItem {
                    window_start,
                    auction,
                    bids,
                };
                match hottest.get(&window_start) {
                    Some(best) if best.rank() >= item.rank() => {}
                    _ => {
                        hottest.insert(window_start, item);
                    }
                }
            }
            for (start, item) in hottest {
                results.push(record(&start, &item)?);
            }
        }
        Query::Q7 => {
            let mut highest: BTreeMap<i64, Bid> = BTreeMap::new();
            for (ts, b) in read_all::<Bid>(broker, BIDS)? {
                match highest.get(&window_start(ts)) {
                    Some(top) if bid_rank(top) >= bid_rank(&b) => {}
                    _ => {
                        highest.insert(window_start(ts), b);
                    }
                }
            }
            for (start, bid) in highest {
                results.push(record(&start, &bid)?);
            }
        }
        Query::Count => {
            let mut counts: HashMap<(String, i64), u64> = HashMap::new();
            for (ts, b) in read_all::<Bid>(broker, BIDS)? {
                *counts.entry((b.channel, window_start(ts))).or_default() += 1;
            }
            for ((channel, window_start), bids) in counts {
                let count = ChannelCount {
                    channel,
                    window_start,
                    bids,
                };
                results.push(record(&count.channel, &count)?);
            }
        }
        Query::Q8 => {
            let mut persons: HashMap<(i64, u64), Person> = HashMap::new();
            for (ts, p) in read_all::<Person>(broker, PERSONS)? {
                persons.insert((window_start(ts), p.id), p);
            }
            for (ts, a) in read_all::<Auction>(broker, AUCTIONS)? {
                if let Some(p) = persons.get(&(window_start(ts), a.seller)) {
                    let row: NewSeller = (p.id, p.name.clone(), a.id);
                    results.push(record(&p.id.to_string(), &row)?);
                }
            }
        }
    }
    let producer = Producer::new(broker.clone(), ProducerConfig::default());
    let topic = query.hand_topic();
    for (key, value) in &results {
        let record = ProducerRecord::new(topic.as_str(), value.clone()).with_key(key.clone());
        producer.send(record).await?;
    }
    producer.flush().await?;
    Ok(results)
}

/// A key and a value as JSON.
fn record(key: &impl Serialize, value: &impl Serialize) -> Result<(Bytes, Bytes)> {
    Ok((
        serde_json::to_vec(key)?.into(),
        serde_json::to_vec(value)?.into(),
    ))
}
