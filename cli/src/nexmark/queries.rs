//! The queries as streams topologies, written the way a new user would write them, and the
//! rules they share with the hand loop (price conversion, selection, tie-breaks).
//!
//! Every result is deterministic whatever the partition count and the interleaving of tasks:
//! each maximum breaks ties by a total order.

use std::cmp::Reverse;
use std::time::Duration;

use anyhow::Result;
use clap::ValueEnum;
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    Data, JoinWindows, Produced, StreamsBuilder, TimeWindows, Topology, Windowed,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::events::{AUCTIONS, Auction, BIDS, Bid, PERSONS, Person};

/// Tumbling windows (q7, count, q8) and hopping windows' size (q5).
pub(super) const WINDOW_MS: i64 = 10_000;
/// How far q5's hopping windows advance.
pub(super) const HOP_MS: i64 = 2_000;
const WINDOW: Duration = Duration::from_millis(WINDOW_MS as u64);
const HOP: Duration = Duration::from_millis(HOP_MS as u64);

/// A Nexmark query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Query {
    /// Currency conversion: every bid's price in euros.
    Q1,
    /// Selection: the bids on a few auctions.
    Q2,
    /// Hot items: the auction with the most bids per 10 s window hopping by 2 s.
    Q5,
    /// Highest bid per 10 s tumbling window.
    Q7,
    /// Bids per channel per 10 s tumbling window.
    Count,
    /// New persons who opened an auction in the same 10 s tumbling window.
    Q8,
}

impl Query {
    /// The name on the command line.
    pub(super) fn name(self) -> &'static str {
        match self {
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Count => "count",
            Query::Q8 => "q8",
        }
    }

    /// Published Flink Nexmark throughput per core (events/s), the bar to beat by 10x.
    pub(super) fn flink_per_core(self) -> Option<f64> {
        match self {
            Query::Q1 => Some(158_000.0),
            Query::Q2 => Some(175_000.0),
            Query::Q5 => Some(22_000.0),
            Query::Q7 => Some(12_300.0),
            Query::Q8 => Some(146_000.0),
            Query::Count => None,
        }
    }

    /// The topic the streams app writes its results to.
    pub(super) fn output_topic(self) -> String {
        format!("{}-out", self.name())
    }

    /// The topic the hand loop writes its results to.
    pub(super) fn hand_topic(self) -> String {
        format!("{}-hand", self.name())
    }
}

/// q1's price conversion.
pub(super) fn euros(price: u64) -> u64 {
    price * 908 / 1000
}

/// q2's selection.
pub(super) fn selected(auction: u64) -> bool {
    auction.is_multiple_of(123)
}

/// q2's result.
pub(super) type AuctionPrice = (u64, u64);

/// q5's result: the auction with the most bids in the hopping window starting at
/// `window_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct HotItem {
    pub window_start: i64,
    pub auction: u64,
    pub bids: u64,
}

impl HotItem {
    /// Hotter is more bids, then the lower auction id.
    pub(super) fn rank(&self) -> (u64, Reverse<u64>) {
        (self.bids, Reverse(self.auction))
    }
}

/// q7's order of bids: by price, ties broken by auction, bidder and time (unique per event).
pub(super) fn bid_rank(b: &Bid) -> (u64, u64, u64, i64) {
    (b.price, b.auction, b.bidder, b.date_time)
}

/// count's result: bids on `channel` in the tumbling window starting at `window_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ChannelCount {
    pub channel: String,
    pub window_start: i64,
    pub bids: u64,
}

/// q8's result: (person id, person name, auction id).
pub(super) type NewSeller = (u64, String, u64);

/// Start of the tumbling window holding `timestamp`.
pub(super) fn window_start(timestamp: i64) -> i64 {
    timestamp - timestamp.rem_euclid(WINDOW_MS)
}

/// JSON keys and values, as the hand loop writes them.
fn json<K, V>() -> Produced<K, V>
where
    K: Data + Serialize + DeserializeOwned,
    V: Data + Serialize + DeserializeOwned,
{
    Produced::with(Json::new(), Json::new())
}

/// The query as a streams topology writing to [`Query::output_topic`], JSON keys and values.
/// Windows and joins accept records up to `grace` late.
pub(super) fn topology(query: Query, grace: Duration) -> Result<Topology> {
    let builder = StreamsBuilder::new();
    let bids = || builder.stream_with::<String, Bid>(BIDS, Str, Json::new());
    let out = query.output_topic();
    match query {
        Query::Q1 => bids()
            .map_values(|b| Bid {
                price: euros(b.price),
                ..b
            })
            .to_with(&out, json()),
        Query::Q2 => bids()
            .filter(|_, b| selected(b.auction))
            .map_values(|b| -> AuctionPrice { (b.auction, b.price) })
            .to_with(&out, json()),
        // Bids per auction and hopping window; then, re-keyed to one constant key, the
        // hottest auction of each hopping window. A final hopping-window count carries the
        // timestamp `end - 1`, which lies in exactly one 2 s tumbling window per hopping window.
        Query::Q5 => bids()
            .group_by_key()
            .windowed_by(TimeWindows::of(WINDOW).advance_by(HOP).grace(grace))
            .aggregate(
                "q5-counts",
                || (0, 0),
                |_, b: Bid, (_, bids): (u64, u64)| (b.auction, bids + 1),
            )
            .suppress_until_window_closes("q5-counts-final")
            .map(|window: Windowed<String>, (auction, bids)| {
                let hot = HotItem {
                    window_start: window.start,
                    auction,
                    bids,
                };
                ("all".to_string(), hot)
            })
            .group_by_key()
            .windowed_by(TimeWindows::of(HOP).grace(grace))
            .reduce("q5-hottest", |a, b| if b.rank() > a.rank() { b } else { a })
            .suppress_until_window_closes("q5-hottest-final")
            .map(|_, hot| (hot.window_start, hot))
            .to_with(&out, json()),
        Query::Q7 => bids()
            .group_by(|_, _| "all".to_string())
            .windowed_by(TimeWindows::of(WINDOW).grace(grace))
            .reduce(
                "q7-max",
                |a, b| {
                    if bid_rank(&b) > bid_rank(&a) { b } else { a }
                },
            )
            .suppress_until_window_closes("q7-final")
            .map(|window, bid| (window.start, bid))
            .to_with(&out, json()),
        Query::Count => bids()
            .group_by(|_, b| b.channel.clone())
            .windowed_by(TimeWindows::of(WINDOW).grace(grace))
            .count("count-bids")
            .suppress_until_window_closes("count-final")
            .map(|window, bids| {
                let count = ChannelCount {
                    channel: window.key.clone(),
                    window_start: window.start,
                    bids,
                };
                (window.key, count)
            })
            .to_with(&out, json()),
        Query::Q8 => {
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
                    JoinWindows::of(WINDOW).grace(grace),
                    "q8-join",
                )
                .filter(|_, (p, a)| window_start(p.date_time) == window_start(a.date_time))
                .map_values(|(p, a)| -> NewSeller { (p.id, p.name, a.id) })
                .to_with(&out, json());
        }
    }
    Ok(builder.build()?)
}
