//! A Connect cluster: the workers that share one `group_id` on a Kafka-protocol cluster.
//!
//! Each task has a slot, a partition of the `{group_id}-task-slots` topic chosen by a hash of
//! its connector and number. The workers are one consumer group over that topic, so
//! librdkafka's cooperative-sticky assignor spreads the slots over the live workers and moves
//! only those of a worker that joined, left or died (after its session timeout). A revoked
//! slot's task stops first (a sink flushes and commits, a source's open transaction ends), and
//! only then does the group hand the slot on; a dead worker's exactly-once source tasks are
//! fenced by their transactional ids when they start elsewhere.
//!
//! Every worker follows the configs topic, so a connector submitted, changed, paused or
//! deleted through any worker changes on all of them, and the status topic, so any worker's
//! REST API reports every task's state. The configs topic has one partition: its order is the
//! cluster's order of changes, whichever worker wrote them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use logbrook_client::{Cluster, GroupChange};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::stores::{Follower, RESTART_PREFIX, StoredConnector};
use super::{TaskState, Worker, stop};
use crate::error::{ConfigOrigin, Result};

/// Partitions of the task-slot topic: the most workers a cluster spreads tasks over.
pub const TASK_SLOTS: u32 = 64;

/// This worker's part of the cluster: the slots it owns and what the others report.
#[derive(Debug, Default)]
pub(crate) struct ClusterView {
    slots: Mutex<BTreeSet<u32>>,
    /// Status records by key (`status-task-NAME-ID`): the state and the worker.
    states: Mutex<HashMap<String, (TaskState, String)>>,
    /// Cancelled at shutdown once this worker's tasks stopped: then it leaves the group.
    leave: CancellationToken,
    membership: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ClusterView {
    /// Whether task `task` of `connector` runs on this worker.
    pub(crate) fn owns(&self, connector: &str, task: usize) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.contains(&slot_of(connector, task))
    }

    /// How many task slots this worker owns.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The state of a task running elsewhere, as its worker last reported it.
    pub(crate) fn remote_state(&self, connector: &str, task: usize) -> (TaskState, String) {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states
            .get(&format!("status-task-{connector}-{task}"))
            .cloned()
            .unwrap_or((TaskState::Unassigned, String::new()))
    }

    /// Leaves the group (after this worker's tasks stopped) and waits until it has.
    pub(crate) async fn leave(&self) {
        self.leave.cancel();
        let membership = self
            .membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(membership) = membership {
            let _ = membership.await;
        }
    }
}

/// The slot of a task: FNV-1a of `connector/task`, stable across workers and releases.
fn slot_of(connector: &str, task: usize) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in format!("{connector}/{task}").bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % TASK_SLOTS
}

/// Joins the cluster's group and starts following its configs and statuses.
pub(crate) async fn join(worker: &Arc<Worker>, cluster: &Cluster) -> Result<()> {
    let Some(view) = worker.cluster.clone() else {
        return Ok(());
    };
    let group = worker.shared.config.group_id.clone();
    let slots_topic = format!("{group}-task-slots");
    worker
        .shared
        .log
        .create_topic(&slots_topic, TASK_SLOTS, false)
        .await?;
    let worker_id = worker.shared.config.rest_listen.to_string();
    let mut membership = cluster.join_group(&group, &slots_topic, &worker_id)?;
    tracing::info!(group, worker = worker_id, "joined the connect cluster");

    let membership_worker = worker.clone();
    let leave = view.leave.clone();
    let handle = tokio::spawn(async move {
        let worker = membership_worker;
        loop {
            let change = tokio::select! {
                () = leave.cancelled() => break,
                change = membership.next() => change,
            };
            let Some(view) = worker.cluster.as_ref() else {
                break;
            };
            match change {
                Some(GroupChange::Assigned(slots)) => {
                    tracing::info!(?slots, "task slots assigned");
                    view.slots
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(slots);
                    worker.start_owned_everywhere().await;
                }
                Some(GroupChange::Revoked { partitions, done }) => {
                    tracing::info!(slots = ?partitions, "task slots revoked");
                    {
                        let mut owned = view.slots.lock().unwrap_or_else(|e| e.into_inner());
                        for slot in &partitions {
                            owned.remove(slot);
                        }
                    }
                    worker.stop_unowned_everywhere().await;
                    let _ = done.send(());
                }
                None => break,
            }
        }
        // Leaving blocks on librdkafka's poller thread.
        let _ = tokio::task::spawn_blocking(move || membership.leave()).await;
    });
    *view.membership.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);

    let configs_topic = worker.configs.topic().to_string();
    let configs = Follower::new(&worker.shared.log, &configs_topic).await?;
    tokio::spawn(follow_configs(worker.clone(), configs, configs_topic));
    if let Some(status) = &worker.shared.status {
        let statuses = Follower::new(&worker.shared.log, status.topic()).await?;
        tokio::spawn(follow_statuses(worker.clone(), view.clone(), statuses));
    }
    Ok(())
}

/// Applies every config record, this worker's own too, until shutdown.
async fn follow_configs(worker: Arc<Worker>, mut follower: Follower, topic: String) {
    // Restart requests from before this worker started are history: its tasks are new.
    let started = logbrook_core::now_ms();
    loop {
        let records = tokio::select! {
            () = worker.root.cancelled() => return,
            records = follower.next() => records,
        };
        let records = match records {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(topic, error = %e, "reading the configs topic failed; reading on");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        for (key, value, timestamp) in records {
            let name = String::from_utf8_lossy(&key).into_owned();
            if let Some(connector) = name.strip_prefix(RESTART_PREFIX) {
                if value.is_some() && timestamp >= started {
                    match worker.restart_here(connector).await {
                        Ok(()) | Err(crate::Error::UnknownConnector(_)) => {}
                        Err(e) => {
                            tracing::warn!(connector, error = %e, "restarting the connector failed");
                        }
                    }
                }
                continue;
            }
            let stored = match value.map(|v| StoredConnector::parse(&topic, &name, &v)) {
                Some(Err(e)) => {
                    tracing::warn!(connector = name, error = %e, "skipping a config record");
                    continue;
                }
                Some(Ok(stored)) => Some(stored),
                None => None,
            };
            worker.apply_stored(&name, stored).await;
        }
    }
}

/// Keeps the last state every task's worker reported, until shutdown.
async fn follow_statuses(worker: Arc<Worker>, view: Arc<ClusterView>, mut follower: Follower) {
    loop {
        let records = tokio::select! {
            () = worker.root.cancelled() => return,
            records = follower.next() => records,
        };
        let Ok(records) = records else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        let mut states = view.states.lock().unwrap_or_else(|e| e.into_inner());
        for (key, value, _) in records {
            let key = String::from_utf8_lossy(&key).into_owned();
            match value.and_then(|v| serde_json::from_slice::<Value>(&v).ok()) {
                Some(record) => {
                    let state = parse_state(&record);
                    let at = record["worker_id"].as_str().unwrap_or_default().to_string();
                    states.insert(key, (state, at));
                }
                None => {
                    states.remove(&key);
                }
            }
        }
    }
}

/// A state from a status record (Kafka Connect's names).
fn parse_state(record: &Value) -> TaskState {
    match record["state"].as_str().unwrap_or_default() {
        "RUNNING" => TaskState::Running,
        "PAUSED" => TaskState::Paused,
        "FAILED" => TaskState::Failed(record["trace"].as_str().unwrap_or_default().to_string()),
        "UNASSIGNED" => TaskState::Unassigned,
        _ => TaskState::Stopped,
    }
}

impl Worker {
    /// Starts every task this worker owns now and is not running.
    async fn start_owned_everywhere(&self) {
        let mut connectors = self.connectors.lock().await;
        for runtime in connectors.values_mut() {
            if runtime.failure.is_none() {
                self.start_owned_tasks(runtime);
            }
        }
    }

    /// Stops every task this worker no longer owns.
    async fn stop_unowned_everywhere(&self) {
        let mut connectors = self.connectors.lock().await;
        for runtime in connectors.values_mut() {
            self.stop_unowned_tasks(runtime).await;
        }
    }

    /// Applies a config record, from this worker or another: a new or changed connector
    /// starts (its tasks on the workers owning their slots), a tombstone stops it, a changed
    /// `paused` pauses or resumes it. A record this worker already applied changes nothing.
    async fn apply_stored(&self, name: &str, stored: Option<StoredConnector>) {
        let mut connectors = self.connectors.lock().await;
        let current = connectors
            .get(name)
            .map(|c| (c.raw.clone(), *c.paused.borrow()));
        match (stored, current) {
            (None, Some(_)) => {
                if let Some(old) = connectors.remove(name) {
                    stop(old).await;
                    self.metrics.remove_connector(name);
                    tracing::info!(connector = name, "connector deleted on another worker");
                }
            }
            (None, None) => {}
            (Some(stored), Some((raw, paused))) if raw == stored.config => {
                if paused != stored.paused
                    && let Some(c) = connectors.get(name)
                {
                    c.paused.send_replace(stored.paused);
                    tracing::info!(
                        connector = name,
                        paused = stored.paused,
                        "connector target state changed on another worker"
                    );
                }
            }
            (Some(stored), _) => {
                drop(connectors);
                let origin = ConfigOrigin::Rest(name.to_string());
                let outcome = match self.validate(&stored.config, &origin) {
                    Ok(config) => {
                        self.put_inner(name, stored.config, config, true, Some(stored.paused))
                            .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    tracing::error!(connector = name, error = %e, "a connector from the configs topic does not start");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_spread() {
        assert_eq!(slot_of("orders", 0), slot_of("orders", 0));
        let slots: BTreeSet<u32> = (0..16).map(|task| slot_of("orders", task)).collect();
        assert!(slots.len() >= 12, "16 tasks share too few slots: {slots:?}");
        assert!(slots.iter().all(|s| *s < TASK_SLOTS));
    }
}
