//! Word count per minute: lines are split into words, re-keyed by word (so they go through a
//! repartition topic), counted in 1-minute tumbling windows with 10 s of grace, and emitted once
//! per closed window. Runs exactly-once on a fresh embedded log.
//!
//! Then it replays minutes [1, 4) of the same input into a fresh application id, as users
//! reprocess a slice of history.
//!
//! Run: `cargo run -p logbrook-examples --example word_count`

use std::time::Duration;

use anyhow::Result;
use logbrook_examples::{Example, at, clock};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    Grouped, InputBounds, Produced, StreamsBuilder, TimeWindows, Topology, Windowed,
};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<()> {
    let example = Example::start(&[
        ("lines", 1),
        ("counts-per-minute", 1),
        ("counts-replayed", 1),
    ])
    .await?;
    for (i, (text, ts)) in [
        ("To be or not", at(0, 5)),
        ("to be", at(0, 40)),
        ("That is", at(1, 10)),
        ("the question", at(3, 20)),
    ]
    .into_iter()
    .enumerate()
    {
        example
            .send("lines", &format!("line-{i}"), &json!(text), ts)
            .await?;
    }
    example
        .run("word-count", word_count("counts-per-minute")?)
        .await?;
    print_counts(
        &example,
        "counts-per-minute",
        "words per minute (final counts, once each window closed):",
    )?;

    // Reprocessing a slice of history: minutes [1, 4) into a fresh application id.
    let bounds = InputBounds {
        start_time: Some(at(1, 0)),
        end_time: Some(at(4, 0)),
    };
    example
        .run_bounded("word-count-replay", word_count("counts-replayed")?, bounds)
        .await?;
    print_counts(
        &example,
        "counts-replayed",
        "replayed [00:01:00, 00:04:00) into a fresh application:",
    )?;
    example.finish().await
}

/// The pipeline, writing to `output`.
fn word_count(output: &str) -> Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<String, String>("lines", Str, Json::new())
        .flat_map_values(|line| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by_with(|_, word| word.clone(), Grouped::with(Str, Str))
        .windowed_by(TimeWindows::of(Duration::from_secs(60)).grace(Duration::from_secs(10)))
        .count("word-counts")
        .suppress_until_window_closes("word-counts-final")
        .to_with(output, Produced::with(Json::new(), Json::new()));
    Ok(builder.build()?)
}

fn print_counts(example: &Example, topic: &str, title: &str) -> Result<()> {
    println!("{title}");
    let mut rows: Vec<(i64, String, String)> = Vec::new();
    for record in example.read(topic)? {
        let window: Windowed<String> = serde_json::from_str(&record.key.unwrap_or_default())?;
        rows.push((window.start, window.key, record.value.unwrap_or_default()));
    }
    rows.sort();
    for (start, word, count) in rows {
        println!("  {} {word:<8} {count}", clock(start));
    }
    Ok(())
}
