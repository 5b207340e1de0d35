//! The demo's streams application: clicks re-keyed by user meet the users table, are re-keyed by
//! country, and are tallied per minute of event time into `demo-results`. Run to the end of its
//! input (a bounded run), and reset to reprocess history, as `logbrook streams reset` does.

use std::time::Duration;

use anyhow::{Context, Result};
use logbrook_core::{Broker, ConsumerRecord, ResetTarget, TopicPartition};
use logbrook_streams::serde::{Json, Str};
use logbrook_streams::{
    CancellationToken, Grouped, Produced, ResetReport, StreamsApp, StreamsBuilder, StreamsConfig,
    TimeWindows, Topology,
};
use serde::{Deserialize, Serialize};

use super::data::{Click, CountryMinute, User, WINDOW_MS, rfc3339};
use super::{CLICKS_TOPIC, RESULTS_TOPIC, RecordCounter, USERS_TOPIC, progress};

/// Names the application's consumer group, internal topics and state directory.
pub const APPLICATION_ID: &str = "demo-country-minutes";

/// The users table's key, as the `value_to_key` transform of its connector makes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserKey {
    user: String,
}

/// A click that met its user's row.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CountryClick {
    country: String,
    cents: u64,
}

/// What a window has counted so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Tally {
    clicks: u64,
    purchases: u64,
    revenue_cents: u64,
}

impl Tally {
    fn add(mut self, click: &CountryClick) -> Self {
        self.clicks += 1;
        if click.cents > 0 {
            self.purchases += 1;
            self.revenue_cents += click.cents;
        }
        self
    }
}

/// The pipeline: a re-key, a stream-table join, a re-key and a tumbling-window aggregate.
///
/// # Errors
/// A topology mistake (none, unless this code changes).
pub fn topology() -> Result<Topology> {
    let builder = StreamsBuilder::new();
    // The connector stamped each record when it read the line; windows follow when it happened.
    builder.timestamp_extractor(CLICKS_TOPIC, |r| event_time(r, "time"));
    builder.timestamp_extractor(USERS_TOPIC, |r| event_time(r, "updated_at"));
    let users = builder.table_with::<UserKey, User>(USERS_TOPIC, "users", Json::new(), Json::new());
    builder
        .stream_with::<Option<String>, Click>(CLICKS_TOPIC, Str, Json::new())
        // Re-keyed by user, through a repartition topic, to meet that user's row.
        .select_key(|_, click| UserKey {
            user: click.user.clone(),
        })
        .join_table(&users, |_, click, user| CountryClick {
            country: user.country,
            cents: click.cents,
        })
        // Re-keyed by country, through another repartition topic, and tallied per minute.
        // No grace period: each partition's event times are in order, so nothing comes late.
        .group_by_with(|_, c| c.country.clone(), Grouped::with(Str, Json::new()))
        .windowed_by(TimeWindows::of(Duration::from_millis(WINDOW_MS as u64)))
        .aggregate("country-minutes", Tally::default, |_, click, tally| {
            tally.add(&click)
        })
        // One final result per window, once event time has passed its end.
        .suppress_until_window_closes("country-minutes-final")
        .map(|window, tally| {
            let result = CountryMinute {
                minute: rfc3339(window.start),
                country: window.key.clone(),
                clicks: tally.clicks,
                purchases: tally.purchases,
                revenue_cents: tally.revenue_cents,
            };
            (window.key, result)
        })
        .to_with(RESULTS_TOPIC, Produced::with(Str, Json::new()));
    Ok(builder.build()?)
}

/// The RFC 3339 time in the JSON field `field` of a record's value.
fn event_time(record: &ConsumerRecord, field: &str) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(record.value.as_deref()?).ok()?;
    crate::parse_time(value.get(field)?.as_str()?).ok()
}

/// What one run of the application did.
pub struct Run {
    /// Results it wrote to `demo-results`.
    pub results: u64,
    /// Records dropped as late (the checks want none).
    pub late: u64,
}

/// Runs the application until it has processed every click there is (a bounded run: then every
/// window closes), showing the clicks it has committed.
///
/// # Errors
/// If the application fails.
pub async fn run_to_end(broker: &Broker, clicks: u64, label: &str) -> Result<Run> {
    let mut results = RecordCounter::new(RESULTS_TOPIC);
    let results_before = results.count(broker)?;
    let app = StreamsApp::new(
        broker.clone(),
        topology()?,
        StreamsConfig::new(APPLICATION_ID),
    )?;
    let metrics = app.metrics();
    let mut running = tokio::spawn(app.run_to_end(CancellationToken::new()));
    let bar = progress(clicks, label);
    let partitions = broker.topic(CLICKS_TOPIC)?.partition_count();
    let outcome = loop {
        tokio::select! {
            outcome = &mut running => break outcome,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let committed: u64 = (0..partitions)
            .filter_map(|p| {
                broker.committed_offset(APPLICATION_ID, &TopicPartition::new(CLICKS_TOPIC, p))
            })
            .sum();
        bar.set_position(committed);
    };
    bar.finish_and_clear();
    outcome
        .context("the streams application panicked")?
        .with_context(|| format!("streams application {APPLICATION_ID:?}"))?;
    Ok(Run {
        results: results.count(broker)? - results_before,
        late: metrics.late_records_dropped(),
    })
}

/// Resets the application for reprocessing, as `logbrook streams reset` does: committed input
/// offsets to the earliest, internal topics and local state deleted.
///
/// # Errors
/// If it never ran, or the log fails.
pub async fn reset(broker: &Broker) -> Result<ResetReport> {
    logbrook_streams::reset_application(
        &logbrook_client::Client::Embedded(broker.clone()),
        APPLICATION_ID,
        ResetTarget::Earliest,
        false,
    )
    .await
    .with_context(|| format!("resetting streams application {APPLICATION_ID:?}"))
}
