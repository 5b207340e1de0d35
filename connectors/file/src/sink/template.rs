//! The sink's path template (`/data/{topic}/{date}/{hour}/{partition}.jsonl`) and the cache
//! that resolves it per record.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use logbrook_connect::Record;

/// The placeholders a template may use.
const PLACEHOLDERS: &str = "{topic}, {partition}, {date}, {hour}";

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PathTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    Partition,
    /// `YYYY-MM-DD`, UTC.
    Date,
    /// `HH`, UTC.
    Hour,
}

impl PathTemplate {
    /// Parses a template. There is no escape: `{` always opens a placeholder.
    ///
    /// # Errors
    /// Why the template is bad: empty, an unknown placeholder (named), or an unclosed `{`.
    pub(super) fn parse(template: &str) -> Result<Self, String> {
        if template.trim().is_empty() {
            return Err("must be a path template".to_string());
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                format!(
                    "`{{` at byte {} is never closed",
                    template.len() - rest.len() + open
                )
            })?;
            parts.push(match &after[..close] {
                "topic" => Part::Topic,
                "partition" => Part::Partition,
                "date" => Part::Date,
                "hour" => Part::Hour,
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{other}}}` (known: {PLACEHOLDERS})"
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// Parses the sink's `path`: a template, or a directory (ending in `/`, or one that exists)
    /// meaning one file per topic and partition in it, `{topic}-{partition}.{extension}`.
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub(super) fn for_sink(path: &str, extension: &str) -> Result<Self, String> {
        let is_directory = path.ends_with(std::path::MAIN_SEPARATOR)
            || (!path.contains('{') && Path::new(path).is_dir());
        if is_directory {
            let directory = path.trim_end_matches(std::path::MAIN_SEPARATOR);
            return Self::parse(&format!("{directory}/{{topic}}-{{partition}}.{extension}"));
        }
        Self::parse(path)
    }

    /// Checks, before any record, that the files the template names can be created: the
    /// nearest existing directory above them must be a writable directory, and a fixed path
    /// that exists must be a writable file.
    ///
    /// # Errors
    /// Which path is in the way and why.
    pub(super) fn check_writable(&self) -> Result<(), String> {
        let fixed = match self.parts.as_slice() {
            [Part::Text(text)] => {
                let file = Path::new(text);
                if file.exists() {
                    return writable(file, "file");
                }
                file.parent()
            }
            // Only the text before the first placeholder is known before a record arrives.
            [Part::Text(text), ..] => Some(match text.rfind(std::path::MAIN_SEPARATOR) {
                Some(0) => Path::new("/"),
                // Without the separator: `file/` does not exist even when `file` does.
                Some(at) => Path::new(&text[..at]),
                None => Path::new(""),
            }),
            _ => None,
        };
        let fixed = match fixed {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut directory = fixed;
        while !directory.exists() {
            match directory.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => directory = parent,
                _ => {
                    directory = Path::new(".");
                    break;
                }
            }
        }
        if !directory.is_dir() {
            return Err(format!(
                "{} is a file, so no directory can be created in it",
                directory.display()
            ));
        }
        let checked = writable(directory, "directory");
        // Directories a placeholder names (`/data/{topic}/`) may exist and be writable where
        // their parent is not: only a warning then.
        let placeholder_dirs = self.parts.iter().skip(1).any(|part| match part {
            Part::Text(text) => text.contains(std::path::MAIN_SEPARATOR),
            _ => false,
        });
        match checked {
            Err(why) if placeholder_dirs && directory == fixed => {
                tracing::warn!(path = %self.render_pattern(), "{why}; files can only go into directories that already exist under it");
                Ok(())
            }
            other => other,
        }
    }

    /// The template as written, for messages.
    fn render_pattern(&self) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.clone(),
                Part::Topic => "{topic}".into(),
                Part::Partition => "{partition}".into(),
                Part::Date => "{date}".into(),
                Part::Hour => "{hour}".into(),
            })
            .collect()
    }

    /// Whether the path depends on the record's time.
    pub(super) fn uses_time(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Date | Part::Hour))
    }

    /// The path for a record of `topic` and `partition` at `time`.
    pub(super) fn render(&self, topic: &str, partition: u32, time: DateTime<Utc>) -> String {
        let mut path = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => path.push_str(text),
                Part::Topic => path.push_str(topic),
                Part::Partition => path.push_str(&partition.to_string()),
                Part::Date => path.push_str(&format!(
                    "{:04}-{:02}-{:02}",
                    time.year(),
                    time.month(),
                    time.day()
                )),
                Part::Hour => path.push_str(&format!("{:02}", time.hour())),
            }
        }
        path
    }
}

/// Whether this process may write to `path` (a `file`, or a `directory` to create files in).
fn writable(path: &Path, what: &str) -> Result<(), String> {
    let access = if what == "directory" {
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK
    } else {
        rustix::fs::Access::WRITE_OK
    };
    rustix::fs::access(path, access)
        .map_err(|e| format!("{what} {} is not writable: {e}", path.display()))
}

const MS_PER_HOUR: i64 = 3_600_000;
/// Past this many cached resolutions the cache starts over, so that it stays small when the
/// path changes every hour.
const MAX_RESOLVED: usize = 10_000;

/// Resolves records to paths, caching the result by topic, partition and hour.
pub(super) struct PathResolver {
    template: PathTemplate,
    /// Paths by topic, then by partition and hour (0 when the template has no time).
    resolved: HashMap<String, HashMap<(u32, i64), Arc<Path>>>,
    count: usize,
}

impl PathResolver {
    pub(super) fn new(template: PathTemplate) -> Self {
        Self {
            template,
            resolved: HashMap::new(),
            count: 0,
        }
    }

    /// The path `record` goes to: its timestamp (or now) picks `{date}` and `{hour}`, and a
    /// record without a partition counts as partition 0.
    pub(super) fn resolve(&mut self, record: &Record) -> Arc<Path> {
        let partition = record.partition.unwrap_or(0);
        let hour = if self.template.uses_time() {
            record
                .timestamp
                .unwrap_or_else(|| Utc::now().timestamp_millis())
                .div_euclid(MS_PER_HOUR)
        } else {
            0
        };
        if let Some(path) = self
            .resolved
            .get(&record.topic)
            .and_then(|paths| paths.get(&(partition, hour)))
        {
            return Arc::clone(path);
        }
        if self.count >= MAX_RESOLVED {
            self.resolved.clear();
            self.count = 0;
        }
        let time = DateTime::from_timestamp_millis(hour * MS_PER_HOUR).unwrap_or_else(Utc::now);
        let path: Arc<Path> =
            Path::new(&self.template.render(&record.topic, partition, time)).into();
        self.resolved
            .entry(record.topic.clone())
            .or_default()
            .insert((partition, hour), Arc::clone(&path));
        self.count += 1;
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_by_topic_partition_date_and_hour() {
        let template = PathTemplate::parse("/d/{topic}/{date}/{hour}/{partition}.jsonl").unwrap();
        let time = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        assert!(template.uses_time());
        assert_eq!(
            template.render("orders", 3, time),
            "/d/orders/2023-11-14/22/3.jsonl"
        );
    }

    #[test]
    fn records_without_a_timestamp_resolve_to_the_current_hour() {
        let mut resolver = PathResolver::new(PathTemplate::parse("/d/{date}-{hour}").unwrap());
        let before = Utc::now();
        let path = resolver.resolve(&Record::new("t", serde_json::json!(1)));
        let after = Utc::now();
        let expected = [before, after].map(|time| format!("/d/{}", time.format("%Y-%m-%d-%H")));
        assert!(expected.iter().any(|e| Path::new(e) == &*path), "{path:?}");
    }

    #[test]
    fn a_directory_means_one_file_per_topic_and_partition_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let time = Utc::now();
        let existing = dir.path().display().to_string();
        for path in [existing.clone(), format!("{existing}/"), "out/".to_string()] {
            let template = PathTemplate::for_sink(&path, "jsonl").unwrap();
            let expected = Path::new(path.trim_end_matches('/')).join("orders-2.jsonl");
            assert_eq!(Path::new(&template.render("orders", 2, time)), expected);
        }
        let file = PathTemplate::for_sink(&format!("{existing}/out.txt"), "jsonl").unwrap();
        assert_eq!(
            file.render("orders", 2, time),
            format!("{existing}/out.txt")
        );
    }

    #[test]
    fn paths_that_cannot_be_written_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        for under_a_file in ["{}/sub/{topic}.jsonl", "{}/{topic}.jsonl", "{}/x.jsonl"] {
            let path = under_a_file.replace("{}", &blocker.display().to_string());
            let error = PathTemplate::parse(&path)
                .unwrap()
                .check_writable()
                .unwrap_err();
            assert!(error.contains(&blocker.display().to_string()), "{error}");
            assert!(error.contains("is a file"), "{error}");
        }
        let fine = format!("{}/new/{{topic}}/{{partition}}.jsonl", dir.path().display());
        PathTemplate::parse(&fine)
            .unwrap()
            .check_writable()
            .unwrap();
        PathTemplate::parse(&blocker.display().to_string())
            .unwrap()
            .check_writable()
            .unwrap();
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_rejected() {
        let error = PathTemplate::parse("/d/{topik}.log").unwrap_err();
        assert!(error.contains("{topik}"), "{error}");
        assert!(PathTemplate::parse("/d/{topic.log").is_err());
        assert!(PathTemplate::parse(" ").is_err());
    }
}
