//! Hot items: bids counted per item over a 10-minute window that hops every 5 minutes, final
//! counts only (emitted when each window closes), then the item with the most bids per window.
//! The second step re-keys by window, so it goes through a repartition topic.
//!
//! Run: `cargo run -p logbrook-examples --example hot_items`

use std::time::Duration;

use anyhow::Result;
use logbrook_examples::{Example, at, clock};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{Grouped, Produced, StreamsBuilder, TimeWindows};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<()> {
    let builder = StreamsBuilder::new();
    let windows = TimeWindows::of(Duration::from_secs(600)).advance_by(Duration::from_secs(300));
    builder
        .stream_with::<String, u64>("bids", Str, Json::new()) // key: item, value: price
        .group_by_key_with(Grouped::with(Str, Json::new()))
        .windowed_by(windows)
        .count("bids-per-item")
        .suppress_until_window_closes("bids-per-item-final")
        // Re-key by window start: all items of a window meet in one task.
        .map(|window, bids| (window.start, (window.key, bids)))
        .group_by_key()
        .reduce("hottest-item", |a, b| if b.1 > a.1 { b } else { a })
        .to_stream()
        .to_with("hot-items", Produced::with(Json::new(), Json::new()));

    let example = Example::start(&[("bids", 1), ("hot-items", 1)]).await?;
    let bids = [
        ("lamp", 1, 10),
        ("chair", 2, 25),
        ("lamp", 4, 12),
        ("desk", 6, 80),
        ("desk", 7, 85),
        ("desk", 8, 90),
        ("chair", 12, 30),
        ("chair", 13, 31),
        ("lamp", 14, 14),
        ("chair", 16, 33),
        ("sofa", 40, 100), // moves stream time on so the earlier windows close
    ];
    for (item, minute, price) in bids {
        example
            .send("bids", item, &json!(price), at(minute, 0))
            .await?;
    }
    example.run("hot-items", builder.build()?).await?;

    println!("hottest item per 10-minute window (hopping every 5 minutes):");
    // The table's latest row per window is its answer.
    let mut hottest = std::collections::BTreeMap::new();
    for record in example.read("hot-items")? {
        let start: i64 = serde_json::from_str(&record.key.unwrap_or_default())?;
        let (item, bids): (String, u64) = serde_json::from_str(&record.value.unwrap_or_default())?;
        hottest.insert(start, (item, bids));
    }
    for (start, (item, bids)) in hottest {
        println!(
            "  {}-{} {item:<6} {bids} bids",
            clock(start),
            clock(start + 600_000)
        );
    }
    example.finish().await
}
