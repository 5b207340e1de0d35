//! A streams application's metrics, per task, rendered in Prometheus' text format in the same
//! style as the connect worker's `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::topology::lock;

/// Counters and gauges of one task (one input partition number).
#[derive(Debug)]
pub struct TaskMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    records_skipped: AtomicU64,
    commits: AtomicU64,
    commit_micros_total: AtomicU64,
    commit_micros_max: AtomicU64,
    event_time: AtomicI64,
    state_entries_written: AtomicU64,
    state_entries: AtomicU64,
    records_restored: AtomicU64,
    standby_records: AtomicU64,
    late_by_operator: Mutex<BTreeMap<String, u64>>,
    lag_by_partition: Mutex<BTreeMap<String, u64>>,
}

impl Default for TaskMetrics {
    fn default() -> Self {
        Self {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            records_skipped: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_micros_total: AtomicU64::new(0),
            commit_micros_max: AtomicU64::new(0),
            event_time: AtomicI64::new(i64::MIN),
            state_entries_written: AtomicU64::new(0),
            state_entries: AtomicU64::new(0),
            records_restored: AtomicU64::new(0),
            standby_records: AtomicU64::new(0),
            late_by_operator: Mutex::new(BTreeMap::new()),
            lag_by_partition: Mutex::new(BTreeMap::new()),
        }
    }
}

impl TaskMetrics {
    pub(crate) fn add_in(&self, n: u64) {
        self.records_in.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_out(&self, n: u64) {
        self.records_out.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_skipped(&self, n: u64) {
        self.records_skipped.store(n, Ordering::Relaxed);
    }

    pub(crate) fn add_commit(&self, took: std::time::Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_micros_total
            .fetch_add(micros, Ordering::Relaxed);
        self.commit_micros_max.fetch_max(micros, Ordering::Relaxed);
    }

    pub(crate) fn set_event_time(&self, watermark: i64) {
        self.event_time.store(watermark, Ordering::Relaxed);
    }

    pub(crate) fn add_state_writes(&self, n: u64) {
        self.state_entries_written.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_state_entries(&self, n: u64) {
        self.state_entries.store(n, Ordering::Relaxed);
    }

    /// Entries in the task's state stores at its last commit.
    pub fn state_entries(&self) -> u64 {
        self.state_entries.load(Ordering::Relaxed)
    }

    pub(crate) fn add_restored(&self, n: u64) {
        self.records_restored.fetch_add(n, Ordering::Relaxed);
    }

    /// Changelog records replayed into the task's stores when it started here.
    pub fn records_restored(&self) -> u64 {
        self.records_restored.load(Ordering::Relaxed)
    }

    pub(crate) fn add_standby_records(&self, n: u64) {
        self.standby_records.fetch_add(n, Ordering::Relaxed);
    }

    /// Changelog records a standby replica of the task applied here.
    pub fn standby_records(&self) -> u64 {
        self.standby_records.load(Ordering::Relaxed)
    }

    pub(crate) fn set_late(&self, by_operator: impl Iterator<Item = (String, u64)>) {
        let mut late = lock(&self.late_by_operator);
        late.extend(by_operator);
    }

    pub(crate) fn set_lag(&self, partition: String, lag: u64) {
        lock(&self.lag_by_partition).insert(partition, lag);
    }

    /// Records read from the task's input partitions (event-time markers not counted).
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Records written to output, repartition and changelog topics.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }

    /// Records dropped for arriving after every window they belong to had closed.
    pub fn late_records_dropped(&self) -> u64 {
        lock(&self.late_by_operator).values().sum()
    }

    /// Late drops per operator (named by its state store).
    pub fn late_records_by_operator(&self) -> BTreeMap<String, u64> {
        lock(&self.late_by_operator).clone()
    }

    /// Commits done.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The task's event time (`i64::MIN` before every input was heard from).
    pub fn event_time(&self) -> i64 {
        self.event_time.load(Ordering::Relaxed)
    }

    /// Records not yet processed, per input partition (`topic-partition`).
    pub fn lag(&self) -> BTreeMap<String, u64> {
        lock(&self.lag_by_partition).clone()
    }
}

/// Every task's metrics of one application. Cheap to clone; stays valid after the app stops.
#[derive(Debug, Clone, Default)]
pub struct StreamsMetrics {
    application_id: Arc<str>,
    tasks: Arc<Mutex<BTreeMap<u32, Arc<TaskMetrics>>>>,
    /// The tasks running in this instance now.
    running: Arc<Mutex<std::collections::BTreeSet<u32>>>,
}

impl StreamsMetrics {
    pub(crate) fn new(application_id: &str) -> Self {
        Self {
            application_id: application_id.into(),
            tasks: Arc::default(),
            running: Arc::default(),
        }
    }

    /// The tasks (by partition) running in this instance now: all of them on the embedded
    /// log, those the application's group assigned it on a cluster.
    pub fn running_tasks(&self) -> Vec<u32> {
        lock(&self.running).iter().copied().collect()
    }

    pub(crate) fn set_running(&self, partition: u32, running: bool) {
        let mut set = lock(&self.running);
        if running {
            set.insert(partition);
        } else {
            set.remove(&partition);
        }
    }

    /// The metrics of task `partition`, created on first use.
    pub fn task(&self, partition: u32) -> Arc<TaskMetrics> {
        lock(&self.tasks).entry(partition).or_default().clone()
    }

    fn sum(&self, f: impl Fn(&TaskMetrics) -> u64) -> u64 {
        lock(&self.tasks).values().map(|t| f(t)).sum()
    }

    /// Records read by every task.
    pub fn records_in(&self) -> u64 {
        self.sum(TaskMetrics::records_in)
    }

    /// Records written by every task.
    pub fn records_out(&self) -> u64 {
        self.sum(TaskMetrics::records_out)
    }

    /// Late records dropped by every task.
    pub fn late_records_dropped(&self) -> u64 {
        self.sum(TaskMetrics::late_records_dropped)
    }

    /// Commits by every task.
    pub fn commits(&self) -> u64 {
        self.sum(TaskMetrics::commits)
    }

    /// Changelog records replayed into stores by tasks starting here.
    pub fn records_restored(&self) -> u64 {
        self.sum(TaskMetrics::records_restored)
    }

    /// Changelog records applied by the standby replicas here.
    pub fn standby_records(&self) -> u64 {
        self.sum(TaskMetrics::standby_records)
    }

    /// Records not yet processed, over every input partition.
    pub fn lag(&self) -> u64 {
        self.sum(|t| t.lag().values().sum())
    }

    /// The least event time over the tasks: how far the whole application has come.
    pub fn event_time(&self) -> i64 {
        lock(&self.tasks)
            .values()
            .map(|t| t.event_time())
            .min()
            .unwrap_or(i64::MIN)
    }

    /// Prometheus text exposition, one sample per task (and per operator or partition).
    pub fn render_prometheus(&self) -> String {
        let tasks: Vec<(u32, Arc<TaskMetrics>)> = lock(&self.tasks)
            .iter()
            .map(|(p, t)| (*p, t.clone()))
            .collect();
        let app = escape(&self.application_id);
        let mut out = String::new();
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&TaskMetrics) -> i64,
        );
        let families: [Family; 11] = [
            (
                "records_in_total",
                "counter",
                "Records read by the task.",
                |t| t.records_in() as i64,
            ),
            (
                "records_out_total",
                "counter",
                "Records written by the task.",
                |t| t.records_out() as i64,
            ),
            (
                "records_skipped_total",
                "counter",
                "Records skipped or dead-lettered by the error policies.",
                |t| t.records_skipped.load(Ordering::Relaxed) as i64,
            ),
            ("commits_total", "counter", "Commits by the task.", |t| {
                t.commits() as i64
            }),
            (
                "commit_latency_seconds_sum",
                "counter",
                "Time spent committing, in seconds (micro-second resolution; as *1e-6).",
                |t| t.commit_micros_total.load(Ordering::Relaxed) as i64,
            ),
            (
                "commit_latency_max_microseconds",
                "gauge",
                "The longest commit so far, in microseconds.",
                |t| t.commit_micros_max.load(Ordering::Relaxed) as i64,
            ),
            (
                "event_time_ms",
                "gauge",
                "The task's event time (watermark), ms since the epoch.",
                |t| t.event_time(),
            ),
            (
                "state_entries",
                "gauge",
                "Entries in the task's state stores at its last commit.",
                |t| t.state_entries() as i64,
            ),
            (
                "state_entries_written_total",
                "counter",
                "State store entries written (one per key per commit).",
                |t| t.state_entries_written.load(Ordering::Relaxed) as i64,
            ),
            (
                "records_restored_total",
                "counter",
                "Changelog records replayed into the task's stores when it started here.",
                |t| t.records_restored() as i64,
            ),
            (
                "standby_records_total",
                "counter",
                "Changelog records a standby replica of the task applied here.",
                |t| t.standby_records() as i64,
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP logbrook_streams_{name} {help}");
            let _ = writeln!(out, "# TYPE logbrook_streams_{name} {kind}");
            for (task, t) in &tasks {
                let mut v = value(t);
                if name == "commit_latency_seconds_sum" {
                    let _ = writeln!(
                        out,
                        "logbrook_streams_{name}{{application=\"{app}\",task=\"{task}\"}} {:.6}",
                        v as f64 / 1e6
                    );
                    continue;
                }
                if name == "event_time_ms" && v == i64::MIN {
                    v = -1; // not known yet
                }
                let _ = writeln!(
                    out,
                    "logbrook_streams_{name}{{application=\"{app}\",task=\"{task}\"}} {v}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP logbrook_streams_late_records_dropped_total Records dropped for arriving after their windows closed."
        );
        let _ = writeln!(
            out,
            "# TYPE logbrook_streams_late_records_dropped_total counter"
        );
        for (task, t) in &tasks {
            for (operator, n) in t.late_records_by_operator() {
                let _ = writeln!(
                    out,
                    "logbrook_streams_late_records_dropped_total{{application=\"{app}\",task=\"{task}\",operator=\"{}\"}} {n}",
                    escape(&operator)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP logbrook_streams_lag_records Records not yet processed per input partition."
        );
        let _ = writeln!(out, "# TYPE logbrook_streams_lag_records gauge");
        for (task, t) in &tasks {
            for (partition, lag) in t.lag() {
                let _ = writeln!(
                    out,
                    "logbrook_streams_lag_records{{application=\"{app}\",task=\"{task}\",partition=\"{}\"}} {lag}",
                    escape(&partition)
                );
            }
        }
        out
    }
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_task_operator_and_partition() {
        let metrics = StreamsMetrics::new("app");
        let task = metrics.task(1);
        task.add_in(5);
        task.set_late([("q7-max".to_string(), 3)].into_iter());
        task.set_lag("bids-1".into(), 42);
        task.set_event_time(1_000);
        let text = metrics.render_prometheus();
        assert!(
            text.contains("logbrook_streams_records_in_total{application=\"app\",task=\"1\"} 5")
        );
        assert!(text.contains(
            "logbrook_streams_late_records_dropped_total{application=\"app\",task=\"1\",operator=\"q7-max\"} 3"
        ));
        assert!(text.contains(
            "logbrook_streams_lag_records{application=\"app\",task=\"1\",partition=\"bids-1\"} 42"
        ));
        assert!(
            text.contains("logbrook_streams_event_time_ms{application=\"app\",task=\"1\"} 1000")
        );
        assert_eq!(metrics.late_records_dropped(), 3);
        assert_eq!(metrics.lag(), 42);
    }
}
