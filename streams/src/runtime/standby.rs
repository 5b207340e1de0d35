//! Standby replicas (Kafka Streams' `num.standby.replicas`): warm copies of the stores of tasks
//! other instances run, kept by tailing the tasks' changelogs into local stores, so a task that
//! moves here restores only what it missed instead of its whole changelog.
//!
//! Which instance keeps which standby follows from the group's assignment as its coordinator
//! reports it: with the members sorted by client id, the standbys of a task are the
//! `replicas` members after its owner. Every instance computes the same placement from the same
//! answer; while a rebalance makes answers differ, a standby is at worst kept twice or briefly
//! not at all, never wrong: it is a cache of committed changelog records.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbrook_client::{Client, Cluster, MemberPartitions};
use logbrook_core::{SeekTo, TopicPartition};
use tokio_util::sync::CancellationToken;

use super::metrics::TaskMetrics;
use crate::error::{Error, Result};
use crate::state::KeyValueStore;
use crate::topology::changelog_topic;

/// How often a standby commits what it applied to its stores.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a poll waits for changelog records: also how long stopping a standby may take.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// Per task, the client ids of the members keeping its standbys.
pub(super) fn standby_placement(
    members: &[MemberPartitions],
    replicas: u32,
) -> BTreeMap<u32, Vec<&str>> {
    let mut placement = BTreeMap::new();
    let others = members.len().saturating_sub(1);
    let replicas = (replicas as usize).min(others);
    for (owner, member) in members.iter().enumerate() {
        for task in &member.partitions {
            let hosts = (1..=replicas)
                .map(|step| members[(owner + step) % members.len()].client_id.as_str())
                .collect();
            placement.insert(*task, hosts);
        }
    }
    placement
}

/// The changelog partitions of task `partition`'s stores, in `store_names` order.
pub(super) fn changelog_partitions(
    application_id: &str,
    store_names: &[String],
    partition: u32,
) -> Vec<TopicPartition> {
    store_names
        .iter()
        .map(|name| TopicPartition::new(changelog_topic(application_id, name), partition))
        .collect()
}

/// Opens task `partition`'s store `name` in the application's state dir.
pub(super) fn open_task_store(
    state_dir: &Path,
    partition: u32,
    name: &str,
) -> Result<KeyValueStore> {
    let path = state_dir
        .join(format!("task-{partition}"))
        .join(format!("{name}.redb"));
    KeyValueStore::open(name, &path)
}

/// A standby replica running in this instance; stop it before the task's active copy opens
/// the same stores.
pub(super) struct Standby {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<()>>,
}

impl Standby {
    /// Starts keeping task `partition`'s stores warm.
    pub(super) fn spawn(
        cluster: &Cluster,
        application_id: &str,
        store_names: Vec<String>,
        state_dir: &Path,
        partition: u32,
        metrics: Arc<TaskMetrics>,
    ) -> Self {
        let stop = CancellationToken::new();
        let work = keep_warm(
            cluster.clone(),
            changelog_partitions(application_id, &store_names, partition),
            store_names,
            state_dir.to_path_buf(),
            partition,
            metrics,
            stop.clone(),
        );
        Self {
            stop,
            handle: tokio::spawn(work),
        }
    }

    /// Stops it after a last flush; its stores are closed when this returns.
    pub(super) async fn stop(self, partition: u32) {
        self.stop.cancel();
        let outcome = self
            .handle
            .await
            .unwrap_or_else(|e| Err(Error::Topology(format!("a standby panicked: {e}"))));
        if let Err(e) = outcome {
            tracing::warn!(partition, error = %e, "standby replica failed; the task restores from its changelog");
        }
    }
}

async fn keep_warm(
    cluster: Cluster,
    changelogs: Vec<TopicPartition>,
    store_names: Vec<String>,
    state_dir: std::path::PathBuf,
    partition: u32,
    metrics: Arc<TaskMetrics>,
    stop: CancellationToken,
) -> Result<()> {
    let mut stores = tokio::task::spawn_blocking(move || {
        store_names
            .iter()
            .map(|name| open_task_store(&state_dir, partition, name))
            .collect::<Result<Vec<_>>>()
    })
    .await
    .map_err(|e| Error::Topology(format!("opening standby stores panicked: {e}")))??;
    let mut consumer = Client::Cluster(cluster).consumer(None, 1 << 20)?;
    consumer.assign(changelogs.clone()).await?;
    let ends = consumer.end_offsets().await?;
    let mut store_of: HashMap<String, usize> = HashMap::new();
    for (index, (store, tp)) in stores.iter_mut().zip(&changelogs).enumerate() {
        let end = ends
            .iter()
            .find(|(t, _)| t == tp)
            .map_or(0, |(_, end)| *end);
        if store.checkpoint()? > end {
            store.clear()?; // ahead of a changelog that was reset: not to be trusted
        }
        consumer
            .seek(tp, SeekTo::Offset(store.checkpoint()?))
            .await?;
        store_of.insert(tp.topic.clone(), index);
    }
    tracing::info!(partition, "standby replica started");
    let mut flushed = Instant::now();
    // Polls are not cancelled: a poll dropped midway would lose the records it fetched.
    while !stop.is_cancelled() {
        for record in consumer.poll_available(POLL_TIMEOUT).await? {
            let (Some(index), Some(key)) = (store_of.get(&*record.topic), record.key) else {
                continue;
            };
            stores[*index].put_logged(key, record.value);
            metrics.add_standby_records(1);
        }
        if flushed.elapsed() >= FLUSH_INTERVAL {
            stores = flush_at_positions(stores, &changelogs, &consumer).await?;
            flushed = Instant::now();
        }
    }
    flush_at_positions(stores, &changelogs, &consumer).await?;
    tracing::info!(partition, "standby replica stopped");
    Ok(())
}

/// Commits each store at its changelog position: what it holds is the changelog up to there.
async fn flush_at_positions(
    mut stores: Vec<KeyValueStore>,
    changelogs: &[TopicPartition],
    consumer: &logbrook_client::Consumer,
) -> Result<Vec<KeyValueStore>> {
    let positions: Vec<Option<u64>> = changelogs.iter().map(|tp| consumer.position(tp)).collect();
    tokio::task::spawn_blocking(move || {
        for (store, position) in stores.iter_mut().zip(positions) {
            if let Some(position) = position {
                store.flush(position)?;
            }
        }
        Ok(stores)
    })
    .await
    .map_err(|e| Error::Topology(format!("flushing standby stores panicked: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(client_id: &str, partitions: &[u32]) -> MemberPartitions {
        MemberPartitions {
            client_id: client_id.into(),
            partitions: partitions.to_vec(),
        }
    }

    #[test]
    fn standbys_go_to_the_members_after_the_owner() {
        let members = [member("a", &[0, 3]), member("b", &[1]), member("c", &[2])];
        let placement = standby_placement(&members, 1);
        assert_eq!(placement[&0], ["b"]);
        assert_eq!(placement[&1], ["c"]);
        assert_eq!(placement[&2], ["a"]);
        assert_eq!(placement[&3], ["b"]);
        let placement = standby_placement(&members, 5);
        assert_eq!(placement[&2], ["a", "b"], "never the owner, never twice");
    }

    #[test]
    fn a_lone_member_keeps_no_standbys() {
        let lone = [member("a", &[0, 1])];
        let placement = standby_placement(&lone, 1);
        assert!(placement.values().all(Vec::is_empty));
        assert!(standby_placement(&[], 1).is_empty());
    }
}
