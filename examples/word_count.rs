//! Word count per minute with the streams DSL, run through the test driver so it needs no
//! broker: words are repartitioned, counted in 1-minute tumbling windows with 10 s of grace, and
//! emitted once per closed window.
//!
//! Run: `cargo run -p logbrook-examples --example word_count`

use std::time::Duration;

use anyhow::Result;
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    Grouped, Produced, StreamsBuilder, TimeWindows, TopologyTestDriver, Windowed,
};

fn main() -> Result<()> {
    let builder = StreamsBuilder::new();
    builder
        .stream_with::<Option<String>, String>("lines", Str, Str)
        .flat_map_values(|line| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by_with(|_, word| word.clone(), Grouped::with(Str, Str))
        .windowed_by(TimeWindows::of(Duration::from_secs(60)).grace(Duration::from_secs(10)))
        .count("word-counts")
        .suppress_until_window_closes("word-counts-final")
        .to_with(
            "counts-per-minute",
            Produced::with(Json::<Windowed<String>>::new(), Json::<u64>::new()),
        );
    let topology = builder.build()?;

    let mut driver = TopologyTestDriver::new(&topology)?;
    let lines = driver.input_topic::<Option<String>, String>("lines", Str, Str);
    for (text, second) in [
        ("to be or not", 5),
        ("to be", 40),
        ("that is", 70),
        ("the question", 200),
    ] {
        driver.pipe(&lines, None, text.to_string(), second * 1_000)?;
    }
    let output =
        driver.output_topic::<Windowed<String>, u64>("counts-per-minute", Json::new(), Json::new());
    for record in driver.read_all(&output)? {
        let minute = record.key.start / 60_000;
        println!("minute {minute}: {:<8} {}", record.key.key, record.value);
    }
    Ok(())
}
