//! User sessions: page views grouped into sessions that end after 5 minutes of inactivity,
//! accepting views up to 15 minutes late; a view that bridges two sessions merges them. Final
//! sessions only, with their page count and length.
//!
//! Run: `cargo run -p logbrook-examples --example user_sessions`

use std::time::Duration;

use anyhow::Result;
use logbrook_examples::{Example, at, clock};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{Grouped, Produced, SessionWindows, StreamsBuilder, Windowed};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<()> {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, String>("page-views", Str, Json::new())
        .group_by_key_with(Grouped::with(Str, Json::new()))
        .windowed_by_session(
            SessionWindows::with_inactivity_gap(Duration::from_secs(300))
                .grace(Duration::from_secs(900)),
        )
        .count("sessions")
        .suppress_until_window_closes("sessions-final")
        .to_with("user-sessions", Produced::with(Json::new(), Json::new()));

    let example = Example::start(&[("page-views", 1), ("user-sessions", 1)]).await?;
    for (user, page, minute) in [
        ("ann", "/home", 0),
        ("ann", "/shoes", 2),
        ("bob", "/home", 3),
        ("ann", "/shoes/red", 6),
        ("ann", "/home", 20), // a new session: 14 idle minutes
        ("bob", "/help", 9),  // late (stream time is 00:20) but within grace: a second session
        ("bob", "/help/faq", 13),
        ("cid", "/home", 45), // moves stream time on so the sessions close
    ] {
        example
            .send("page-views", user, &json!(page), at(minute, 0))
            .await?;
    }
    example.run("user-sessions", builder.build()?).await?;

    println!("sessions (5-minute inactivity gap):");
    let mut rows = Vec::new();
    for record in example.read("user-sessions")? {
        let session: Windowed<String> = serde_json::from_str(&record.key.unwrap_or_default())?;
        rows.push((
            session.key,
            session.start,
            session.end,
            record.value.unwrap_or_default(),
        ));
    }
    rows.sort();
    for (user, start, end, pages) in rows {
        println!(
            "  {user:<4} {}-{} {pages} page views, {} min",
            clock(start),
            clock(end),
            (end - start) / 60_000
        );
    }
    example.finish().await
}
