//! What operators see of the task running them: outputs, stores, event time, drop counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use logbrook_core::Header;

use super::error_policy::OnError;
use crate::error::{Error, Result};
use crate::state::KeyValueStore;

/// A late-record warning is logged at most this often per task.
const LATE_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// A record an operator wrote to an output topic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputRecord {
    pub topic: Arc<str>,
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
    pub headers: Vec<Header>,
}

/// What operators see of the task running them.
#[derive(Default)]
pub struct TaskContext {
    pub(crate) outputs: Vec<OutputRecord>,
    /// The task's event time (watermark): no record still to come from an input that is in
    /// timestamp order is older than this. `i64::MIN` until every input has been heard from.
    pub(crate) event_time: i64,
    /// The largest record timestamp processed (changelog and marker records carry it).
    pub(crate) max_timestamp: i64,
    /// Policy for records that do not deserialize.
    pub(crate) on_error: OnError,
    /// Policy for records on which user code panics.
    pub(crate) on_processing_error: OnError,
    pub(crate) skipped: u64,
    pub(crate) partition_counts: HashMap<String, u32>,
    pub(crate) application_id: Arc<str>,
    /// The task's partition: it reads this partition of every source and writes it of every
    /// changelog.
    pub(crate) partition: u32,
    pub(crate) stores: Vec<KeyValueStore>,
    pub(crate) changelogs: Vec<Arc<str>>,
    /// Records dropped for arriving after their windows closed, per operator (store name).
    late_dropped: BTreeMap<Arc<str>, u64>,
    /// Late drops not yet reported in a warning, and when the last warning went out.
    late_unreported: u64,
    last_late_warning: Option<Instant>,
}

impl TaskContext {
    /// A context for task `partition` of `application_id`, before any input.
    pub(crate) fn new(application_id: &str, partition: u32, on_error: OnError) -> Self {
        Self {
            on_error,
            application_id: application_id.into(),
            partition,
            event_time: i64::MIN,
            max_timestamp: i64::MIN,
            ..Self::default()
        }
    }

    /// The task's event time: the watermark below which no in-order record can still arrive.
    /// Windows close and joins expire against it. Kafka calls it stream time; here it is the
    /// minimum over every input the task waits for, not the largest timestamp seen.
    pub fn stream_time(&self) -> i64 {
        self.event_time
    }

    /// Partitions of an output topic, when known.
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.partition_counts.get(topic).copied()
    }

    /// The task's partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The application id the task runs under.
    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// Records dropped so far for arriving after every window they belong to had closed.
    pub fn late_records_dropped(&self) -> u64 {
        self.late_dropped.values().sum()
    }

    /// Late drops per operator, named by its store.
    pub(crate) fn late_drops_by_operator(&self) -> &BTreeMap<Arc<str>, u64> {
        &self.late_dropped
    }

    /// Counts a record that `operator` dropped as late, with a rate-limited warning: drops are
    /// never silent, and never a log line per record.
    pub(crate) fn record_late(&mut self, operator: &Arc<str>, timestamp: i64) {
        *self.late_dropped.entry(operator.clone()).or_default() += 1;
        self.late_unreported += 1;
        let due = self
            .last_late_warning
            .is_none_or(|at| at.elapsed() >= LATE_WARNING_INTERVAL);
        if due {
            tracing::warn!(
                application = %self.application_id,
                partition = self.partition,
                operator = %operator,
                dropped = self.late_unreported,
                record_timestamp = timestamp,
                event_time = self.event_time,
                "dropped records that arrived after their windows closed (raise the grace period to keep them)"
            );
            self.late_unreported = 0;
            self.last_late_warning = Some(Instant::now());
        }
    }

    pub(crate) fn store_get(&self, store: usize, key: &[u8]) -> Result<Option<Bytes>> {
        self.store(store)?.get(key)
    }

    pub(crate) fn store_range(
        &self,
        store: usize,
        from: &[u8],
        to: &[u8],
    ) -> Result<Vec<(Bytes, Bytes)>> {
        self.store(store)?.range(from, to)
    }

    pub(crate) fn store_entries(&self, store: usize) -> Result<Vec<(Bytes, Bytes)>> {
        self.store(store)?.entries()
    }

    fn store(&self, store: usize) -> Result<&KeyValueStore> {
        self.stores
            .get(store)
            .ok_or_else(|| Error::Topology(format!("store #{store} is not open")))
    }

    /// Writes to a store; the write reaches its changelog at the next
    /// [`TaskInstance::log_store_writes`](super::TaskInstance::log_store_writes).
    pub(crate) fn store_put(
        &mut self,
        store: usize,
        key: Bytes,
        value: Option<Bytes>,
        _timestamp: i64,
    ) -> Result<()> {
        self.stores
            .get_mut(store)
            .ok_or_else(|| Error::Topology(format!("store #{store} is not open")))?
            .put(key, value);
        Ok(())
    }
}
