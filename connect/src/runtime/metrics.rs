//! Per-task counters, rendered in Prometheus' text format for `GET /metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// Counters of one task.
#[derive(Debug, Default)]
pub struct TaskMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    errors: AtomicU64,
    dead_lettered: AtomicU64,
    retries: AtomicU64,
    lag: AtomicU64,
}

impl TaskMetrics {
    pub(crate) fn add_in(&self, n: u64) {
        self.records_in.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_out(&self, n: u64) {
        self.records_out.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_lag(&self, lag: u64) {
        self.lag.store(lag, Ordering::Relaxed);
    }

    /// Records read (from the source, or from the log by a sink).
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Records written (to the log by a source, or to the sink).
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }
}

/// All tasks' counters, by connector and task number.
#[derive(Debug, Default)]
pub struct Metrics {
    tasks: DashMap<(String, usize), Arc<TaskMetrics>>,
}

impl Metrics {
    /// The counters of a task, created on first use. A restarted task keeps counting.
    pub fn task(&self, connector: &str, task: usize) -> Arc<TaskMetrics> {
        self.tasks
            .entry((connector.to_string(), task))
            .or_default()
            .clone()
    }

    /// Forgets a deleted connector's counters.
    pub fn remove_connector(&self, connector: &str) {
        self.tasks.retain(|(name, _), _| name != connector);
    }

    /// Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut rows: Vec<((String, usize), Arc<TaskMetrics>)> = self
            .tasks
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&TaskMetrics) -> u64,
        );
        let families: [Family; 6] = [
            (
                "records_in_total",
                "counter",
                "Records read by the task.",
                |m| m.records_in(),
            ),
            (
                "records_out_total",
                "counter",
                "Records written by the task.",
                |m| m.records_out(),
            ),
            (
                "errors_total",
                "counter",
                "Bad records met by the task.",
                |m| m.errors.load(Ordering::Relaxed),
            ),
            (
                "dead_lettered_total",
                "counter",
                "Records sent to the dead-letter topic.",
                |m| m.dead_lettered.load(Ordering::Relaxed),
            ),
            (
                "retries_total",
                "counter",
                "Retries after retriable errors.",
                |m| m.retries.load(Ordering::Relaxed),
            ),
            (
                "lag_records",
                "gauge",
                "Records in the log not yet read by a sink task.",
                |m| m.lag.load(Ordering::Relaxed),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, read) in families {
            let _ = writeln!(out, "# HELP logbrook_connect_{name} {help}");
            let _ = writeln!(out, "# TYPE logbrook_connect_{name} {kind}");
            for ((connector, task), metrics) in &rows {
                let _ = writeln!(
                    out,
                    "logbrook_connect_{name}{{connector=\"{}\",task=\"{task}\"}} {}",
                    connector.replace('\\', "\\\\").replace('"', "\\\""),
                    read(metrics)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_each_task_under_each_family() {
        let metrics = Metrics::default();
        metrics.task("orders", 0).add_in(5);
        metrics.task("orders", 1).add_out(2);
        let text = metrics.render();
        assert!(
            text.contains("logbrook_connect_records_in_total{connector=\"orders\",task=\"0\"} 5")
        );
        assert!(
            text.contains("logbrook_connect_records_out_total{connector=\"orders\",task=\"1\"} 2")
        );
        assert!(text.contains("# TYPE logbrook_connect_lag_records gauge"));
        metrics.remove_connector("orders");
        assert!(!metrics.render().contains("orders"));
    }
}
