//! Clicks per user in 1-minute tumbling windows, with 30 s of grace for late clicks; every
//! update is written to `clicks-per-user` as it happens (the changelog view), and a click
//! arriving after its window closed is dropped. Runs exactly-once on the embedded log. (Stream
//! time is per task, that is per partition: one partition keeps this example's clock simple.)
//!
//! Run: `cargo run -p logbrook-examples --example clicks_per_user`

use std::time::Duration;

use anyhow::Result;
use logbrook_examples::{Example, at, clock};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{Grouped, Produced, StreamsBuilder, TimeWindows, Windowed};
use serde::Deserialize;
use serde_json::json;

#[derive(Clone, Deserialize, serde::Serialize)]
struct Click {
    page: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, Click>("clicks", Str, Json::new())
        .group_by_key_with(Grouped::with(Str, Json::new()))
        .windowed_by(TimeWindows::of(Duration::from_secs(60)).grace(Duration::from_secs(30)))
        .count("clicks-per-user-store")
        .to_stream()
        .to_with("clicks-per-user", Produced::with(Json::new(), Json::new()));

    let example = Example::start(&[("clicks", 1), ("clicks-per-user", 1)]).await?;
    for (user, page, ts) in [
        ("ann", "/home", at(0, 1)),
        ("bob", "/home", at(0, 12)),
        ("ann", "/cart", at(0, 30)),
        ("ann", "/pay", at(1, 5)),
        ("ann", "/late-but-in-grace", at(0, 55)), // window 00:00 closes at 01:30
        ("bob", "/help", at(1, 40)),
        ("bob", "/search", at(2, 10)),
        ("ann", "/too-late", at(0, 50)), // stream time is 02:10: dropped
    ] {
        example
            .send("clicks", user, &json!({ "page": page }), ts)
            .await?;
    }
    example.run("clicks-per-user", builder.build()?).await?;

    println!("clicks per user and minute (every update):");
    for record in example.read("clicks-per-user")? {
        let window: Windowed<String> = serde_json::from_str(&record.key.unwrap_or_default())?;
        println!(
            "  {}-{} {:<4} {}",
            clock(window.start),
            clock(window.end),
            window.key,
            record.value.unwrap_or_default()
        );
    }
    example.finish().await
}
