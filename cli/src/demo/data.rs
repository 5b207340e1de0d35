//! The demo's data: the click events and the users table it generates as JSON-lines files, and
//! the answer the pipeline must give, computed here with a plain loop over the same events.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Where event time starts: 2024-01-01T00:00:00Z, so every run gives the same results.
pub const FIRST_EVENT_MS: i64 = 1_704_067_200_000;
/// Event time between two clicks.
const CLICK_SPACING_MS: i64 = 50;
/// When every user row was last updated: before the first click, so each click finds its user.
const USERS_UPDATED_MS: i64 = FIRST_EVENT_MS - 24 * 3600 * 1000;
/// The width of the tumbling windows.
pub const WINDOW_MS: i64 = 60_000;
const COUNTRIES: [&str; 8] = ["BR", "DE", "FR", "IN", "JP", "NL", "US", "ZA"];
const PAGES: u64 = 50;
/// One click in this many is a purchase.
const PURCHASE_EVERY: u64 = 20;

/// One line of `clicks.jsonl`: a page view or a purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    /// When it happened (RFC 3339): the event time the pipeline windows by.
    pub time: String,
    /// Who clicked: a key of the users table.
    pub user: String,
    /// What was clicked.
    pub page: String,
    /// What a purchase cost; 0 for a view.
    pub cents: u64,
}

/// One line of `users.jsonl`: a row of the users table, keyed by `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The key.
    pub user: String,
    /// Where the user lives: what the results are grouped by.
    pub country: String,
    /// When the row was written (RFC 3339): its event time, before every click.
    pub updated_at: String,
}

/// One line of the results file: a country's clicks in one minute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryMinute {
    /// The window's start (RFC 3339).
    pub minute: String,
    /// The users' country.
    pub country: String,
    /// Clicks in the window, purchases included.
    pub clicks: u64,
    /// Clicks that were purchases.
    pub purchases: u64,
    /// What the purchases cost.
    pub revenue_cents: u64,
}

/// The generated input, kept in memory to compute the expected answer.
pub struct Generated {
    /// In event-time order, as in the file.
    pub clicks: Vec<Click>,
    /// One row per user.
    pub users: Vec<User>,
}

/// Generates `clicks` clicks from `users` users (deterministically: the same every run).
pub fn generate(clicks: u64, users: u64) -> Generated {
    let mut random = SplitMix64(0x5eed_cafe);
    let users: Vec<User> = (0..users)
        .map(|i| User {
            user: user_name(i),
            country: COUNTRIES[(random.next_u64() % COUNTRIES.len() as u64) as usize].into(),
            updated_at: rfc3339(USERS_UPDATED_MS),
        })
        .collect();
    let clicks = (0..clicks)
        .map(|i| {
            // Squaring a uniform draw skews clicks toward low user ids, so there are busy users.
            let draw = random.next_f64();
            let user = (draw * draw * users.len() as f64) as u64;
            let purchase = random.next_u64().is_multiple_of(PURCHASE_EVERY);
            Click {
                time: rfc3339(FIRST_EVENT_MS + CLICK_SPACING_MS * i as i64),
                user: user_name(user),
                page: format!("/products/{}", random.next_u64() % PAGES),
                cents: if purchase {
                    500 + random.next_u64() % 20_000
                } else {
                    0
                },
            }
        })
        .collect();
    Generated { clicks, users }
}

/// Writes `rows` to `path` as JSON lines.
///
/// # Errors
/// If the file cannot be written.
pub fn write_json_lines<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let write = || -> Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for row in rows {
            serde_json::to_writer(&mut out, row)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(())
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// The answer, by a plain loop: per country and minute, clicks, purchases and revenue.
pub fn expected(data: &Generated) -> Vec<CountryMinute> {
    let country: BTreeMap<&str, &str> = data
        .users
        .iter()
        .map(|u| (u.user.as_str(), u.country.as_str()))
        .collect();
    let mut windows: BTreeMap<(i64, &str), (u64, u64, u64)> = BTreeMap::new();
    for click in &data.clicks {
        let (Ok(time), Some(country)) = (
            crate::parse_time(&click.time),
            country.get(click.user.as_str()),
        ) else {
            continue; // the pipeline drops clicks of unknown users (an inner join)
        };
        let minute = time - time.rem_euclid(WINDOW_MS);
        let tally = windows.entry((minute, country)).or_default();
        tally.0 += 1;
        if click.cents > 0 {
            tally.1 += 1;
            tally.2 += click.cents;
        }
    }
    windows
        .into_iter()
        .map(
            |((minute, country), (clicks, purchases, revenue_cents))| CountryMinute {
                minute: rfc3339(minute),
                country: country.to_string(),
                clicks,
                purchases,
                revenue_cents,
            },
        )
        .collect()
}

/// Milliseconds since the epoch as RFC 3339 with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn user_name(i: u64) -> String {
    format!("user-{i:04}")
}

/// A small deterministic generator, so every run produces the same events.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_draws_stay_in_the_unit_interval() {
        let mut random = SplitMix64(1);
        assert!(
            (0..1000)
                .map(|_| random.next_f64())
                .all(|x| (0.0..1.0).contains(&x))
        );
    }

    #[test]
    fn expected_answer_counts_every_click_once_per_minute_and_country() {
        let data = generate(5_000, 30);
        let answer = expected(&data);
        assert_eq!(answer.iter().map(|r| r.clicks).sum::<u64>(), 5_000);
        // 5,000 clicks 50 ms apart span 250 s: five minutes.
        let minutes: std::collections::BTreeSet<&str> =
            answer.iter().map(|r| r.minute.as_str()).collect();
        assert_eq!(minutes.len(), 5);
        assert!(answer.iter().all(|r| r.purchases <= r.clicks));
        assert_eq!(answer, expected(&generate(5_000, 30)), "deterministic");
    }
}
