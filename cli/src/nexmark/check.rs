//! The correctness check: every row the streams app wrote against the expected rows, exactly,
//! as multisets (order within and across partitions is not part of a query's result).

use std::cmp::Ordering;
use std::fmt;

use anyhow::{Context, Result};
use logbrook_core::Broker;
use serde_json::Value;

use super::events::for_each_record;

/// One output record: key and value as compact JSON text with object keys sorted, decoded and
/// encoded again so equal JSON compares equal, and so rows sort.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Row {
    key: String,
    value: String,
}

impl Row {
    /// Decodes a record's key and value (absent ones as `null`).
    ///
    /// # Errors
    /// A key or value that is not JSON.
    pub(super) fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Self> {
        let text = |bytes: Option<&[u8]>, what: &str| -> Result<String> {
            let mut json: Value = match bytes {
                Some(bytes) => {
                    serde_json::from_slice(bytes).with_context(|| format!("{what} is not JSON"))?
                }
                None => Value::Null,
            };
            sort_keys(&mut json);
            Ok(json.to_string())
        };
        Ok(Self {
            key: text(key, "key")?,
            value: text(value, "value")?,
        })
    }
}

/// Sorts every object's keys (they are sorted already unless serde_json's `preserve_order` is on).
fn sort_keys(json: &mut Value) {
    match json {
        Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} => {}", self.key, self.value)
    }
}

/// Every record of `topic` as a row.
///
/// # Errors
/// A record that is not JSON, naming its topic, partition and offset; log errors.
pub(super) fn read_rows(broker: &Broker, topic: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for_each_record(broker, topic, |r| {
        let row = Row::decode(r.key.as_deref(), r.value.as_deref())
            .with_context(|| format!("{topic} partition {} offset {}", r.partition, r.offset))?;
        rows.push(row);
        Ok(())
    })?;
    Ok(rows)
}

/// How the app's rows differ from the expected rows.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Difference {
    /// Expected rows the app did not write (each time one is missing).
    pub missing: Vec<Row>,
    /// Rows the app wrote that were not expected (each time one is extra).
    pub unexpected: Vec<Row>,
}

impl Difference {
    /// Whether the app wrote exactly the expected rows.
    pub(super) fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }

    /// How many rows differ, then the first `shown` missing and unexpected rows.
    pub(super) fn report(&self, shown: usize) -> String {
        let mut text = format!(
            "rows that differ: {} (missing: {}, unexpected: {})",
            self.missing.len() + self.unexpected.len(),
            self.missing.len(),
            self.unexpected.len()
        );
        for (label, rows) in [("missing", &self.missing), ("unexpected", &self.unexpected)] {
            for row in rows.iter().take(shown) {
                text.push_str(&format!("\n  {label}: {row}"));
            }
            if rows.len() > shown {
                text.push_str(&format!("\n  {label}: ... and {} more", rows.len() - shown));
            }
        }
        text
    }
}

/// The rows of `actual` and `expected` that the other lacks, counting duplicates.
pub(super) fn compare(mut expected: Vec<Row>, mut actual: Vec<Row>) -> Difference {
    expected.sort_unstable();
    actual.sort_unstable();
    let mut difference = Difference::default();
    let (mut expected, mut actual) = (
        expected.into_iter().peekable(),
        actual.into_iter().peekable(),
    );
    loop {
        let order = match (expected.peek(), actual.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(e), Some(a)) => e.cmp(a),
        };
        match order {
            Ordering::Less => difference.missing.extend(expected.next()),
            Ordering::Greater => difference.unexpected.extend(actual.next()),
            Ordering::Equal => {
                expected.next();
                actual.next();
            }
        }
    }
    difference
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;

    fn row(key: &str, value: &str) -> Row {
        Row::decode(Some(key.as_bytes()), Some(value.as_bytes())).unwrap()
    }

    fn rows() -> Vec<Row> {
        vec![
            row(
                "1700000000000",
                r#"{"window_start":1700000000000,"auction":7,"bids":12}"#,
            ),
            row(
                "1700000002000",
                r#"{"window_start":1700000002000,"auction":9,"bids":15}"#,
            ),
            row(
                "1700000004000",
                r#"{"window_start":1700000004000,"auction":9,"bids":11}"#,
            ),
        ]
    }

    #[test]
    fn equal_rows_in_any_order_agree() {
        let mut shuffled = rows();
        shuffled.reverse();
        assert!(compare(rows(), shuffled).is_empty());
    }

    #[test]
    fn json_spelled_differently_is_the_same_row() {
        let spaced = row(" 1 ", r#"{ "b": 2, "a": 1 }"#);
        assert!(compare(vec![row("1", r#"{"a":1,"b":2}"#)], vec![spaced]).is_empty());
    }

    #[test]
    fn one_differing_row_is_reported_missing_and_unexpected() {
        let mut actual = rows();
        actual[1] = row(
            "1700000002000",
            r#"{"window_start":1700000002000,"auction":9,"bids":14}"#,
        );
        let difference = compare(rows(), actual);
        assert_eq!(difference.missing, vec![rows()[1].clone()]);
        assert_eq!(
            difference.unexpected,
            vec![row(
                "1700000002000",
                r#"{"window_start":1700000002000,"auction":9,"bids":14}"#
            )]
        );
        let report = difference.report(5);
        assert!(
            report.starts_with("rows that differ: 2 (missing: 1, unexpected: 1)"),
            "{report}"
        );
        assert!(
            report.contains(r#"unexpected: 1700000002000 => {"auction":9,"bids":14"#),
            "{report}"
        );
    }

    #[test]
    fn a_duplicated_row_is_unexpected_and_a_dropped_one_missing() {
        let mut actual = rows();
        actual.push(rows()[0].clone());
        assert_eq!(compare(rows(), actual).unexpected, vec![rows()[0].clone()]);
        let mut actual = rows();
        actual.pop();
        let difference = compare(rows(), actual);
        assert_eq!(difference.missing, vec![rows()[2].clone()]);
        assert!(difference.unexpected.is_empty());
    }

    #[test]
    fn a_report_shows_only_the_first_rows() {
        let difference = compare(rows(), Vec::new());
        let report = difference.report(1);
        assert!(
            report.starts_with("rows that differ: 3 (missing: 3, unexpected: 0)"),
            "{report}"
        );
        assert!(report.contains("missing: ... and 2 more"), "{report}");
    }
}
