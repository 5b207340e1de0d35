//! Consumer groups: committed offsets and in-process membership.
//!
//! Committed offsets live in the compacted internal topic `__consumer_offsets` (flush always),
//! as Kafka keeps them: key `["group","topic",partition]`, value `{"offset":N,"committed_at":MS,"metadata":"...","leader_epoch":E}` (metadata and epoch only when given)
//! (both JSON), a tombstone when a topic is deleted. The whole topic is folded into memory on open.
//!
//! Members of a group inside this process share its partitions: each member gets a contiguous
//! range of each subscribed topic's partitions (Kafka's range assignor), recomputed whenever a
//! member joins or leaves; members notice through a generation counter.
//!
//! The [`GroupCoordinator`] sits below the broker: it owns the offsets partition and is handed
//! a [`TopicLookup`] where it needs other partitions (end offsets for lag, reset targets). The
//! broker's group methods (`broker/groups.rs`) delegate to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::batch::BatchBuilder;
use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::record::{TopicPartition, now_ms};
use crate::topic::TopicLookup;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A committed offset: the next offset the group will read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// Next offset to read.
    pub offset: u64,
    /// When it was committed (ms since the epoch).
    pub committed_at: i64,
    /// The committer's note (Kafka's commit metadata), handed back with the offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// The leader epoch of the record before `offset`, as the committer saw it (Kafka's
    /// `committed_leader_epoch`, which clients use to detect a truncated log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<i32>,
}

impl CommittedOffset {
    fn new(offset: u64, committed_at: i64, details: CommitDetails) -> Self {
        Self {
            offset,
            committed_at,
            metadata: details.metadata,
            leader_epoch: details.leader_epoch,
        }
    }
}

/// What a committer stores with an offset besides the offset itself, handed back by
/// [`Broker::committed`](crate::Broker::committed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitDetails {
    /// Kafka's commit metadata.
    pub metadata: Option<String>,
    /// Kafka's `committed_leader_epoch`.
    pub leader_epoch: Option<i32>,
}

/// One partition of a group's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartition {
    /// Topic and partition.
    pub topic_partition: TopicPartition,
    /// Committed offset, if any.
    pub committed: Option<u64>,
    /// The partition's log end offset.
    pub log_end_offset: u64,
    /// Records between the committed offset (or the log start) and the end.
    pub lag: u64,
}

/// Committed offsets and lag of a group.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// Active members in this process.
    pub members: usize,
    /// Per partition, sorted.
    pub partitions: Vec<GroupPartition>,
}

/// Where `reset_group_offsets` moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// An offset, clamped into the log.
    Offset(u64),
    /// The first offset with a timestamp `>=` this (ms), or the end.
    Timestamp(i64),
}

/// One partition's move by `reset_group_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetChange {
    /// Partition number.
    pub partition: u32,
    /// Committed offset before.
    pub previous: Option<u64>,
    /// Committed offset after.
    pub new: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OffsetKey(String, String, u32);

#[derive(Debug)]
struct Membership {
    members: BTreeMap<u64, Vec<(String, u32)>>,
    assignment: HashMap<u64, Vec<TopicPartition>>,
    generation: watch::Sender<u64>,
}

/// An offset to commit and its details; `None` in its place is a tombstone.
type OffsetAndMetadata = (u64, CommitDetails);

/// An offset committed in an open transaction: group, partition, offset.
type PendingOffset = (String, TopicPartition, CommittedOffset);

/// Committed offsets by group, then partition.
type Committed = BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>>;

/// Consumer groups: committed offsets (in memory, backed by `__consumer_offsets`) and the
/// members in this process.
#[derive(Debug)]
pub(crate) struct GroupCoordinator {
    /// Partition 0 of `__consumer_offsets`, where commits go; `None` on a read-only broker.
    offsets: Option<Arc<Partition>>,
    committed: Mutex<Committed>,
    /// Offsets committed inside transactions still open, by producer id: applied at the
    /// commit marker, dropped at the abort marker.
    pending: Mutex<HashMap<i64, Vec<PendingOffset>>>,
    membership: Mutex<HashMap<String, Membership>>,
    next_member_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCoordinator {
    /// Folds `offsets` (partition 0 of `__consumer_offsets`, if the data dir has it) into
    /// memory. Commits are written to it when `writable`. Blocks while it reads the log.
    ///
    /// # Errors
    /// Read errors of the offsets log, such as [`Error::CorruptBatch`].
    pub(crate) fn load(offsets: Option<Arc<Partition>>, writable: bool) -> Result<Self> {
        let mut folded = Committed::new();
        let mut pending: HashMap<i64, Vec<(String, TopicPartition, CommittedOffset)>> =
            HashMap::new();
        if let Some(partition) = &offsets {
            let mut records = Vec::new();
            for batch in partition.log().scan(0) {
                let batch = batch?;
                let header = *batch.header();
                if header.is_control() {
                    let entries = pending.remove(&header.producer_id).unwrap_or_default();
                    if crate::batch::marker_commits(&header, &batch.bytes()) == Some(true) {
                        for (group, tp, committed) in entries {
                            folded.entry(group).or_default().insert(tp, committed);
                        }
                    }
                    continue;
                }
                batch.records(&mut records)?;
                for r in records.drain(..) {
                    let Some((group, tp, value)) = decode_entry(&r) else {
                        continue;
                    };
                    match (value, header.is_transactional()) {
                        (Some(committed), true) => pending
                            .entry(header.producer_id)
                            .or_default()
                            .push((group, tp, committed)),
                        (Some(committed), false) => {
                            folded.entry(group).or_default().insert(tp, committed);
                        }
                        (None, _) => {
                            if let Some(g) = folded.get_mut(&group) {
                                g.remove(&tp);
                            }
                        }
                    }
                }
            }
            folded.retain(|_, offsets| !offsets.is_empty());
        }
        Ok(Self {
            offsets: offsets.filter(|_| writable),
            committed: Mutex::new(folded),
            pending: Mutex::new(pending),
            membership: Mutex::new(HashMap::new()),
            next_member_id: AtomicU64::new(0),
        })
    }

    fn writable(&self, operation: &'static str) -> Result<&Arc<Partition>> {
        self.offsets.as_ref().ok_or(Error::ReadOnly { operation })
    }

    /// Commits `offsets` for `group`, durably.
    pub(crate) async fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        self.writable("commit offsets")?;
        let entries = offsets
            .iter()
            .map(|(tp, o)| {
                let details = CommitDetails::default();
                (group.to_string(), tp.clone(), Some((*o, details)))
            })
            .collect();
        self.write(entries).await
    }

    /// Commits offsets with each one's metadata and leader epoch.
    pub(crate) async fn commit_with_metadata(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64, CommitDetails)],
    ) -> Result<()> {
        self.writable("commit offsets")?;
        let entries = offsets
            .iter()
            .map(|(tp, o, m)| (group.to_string(), tp.clone(), Some((*o, m.clone()))))
            .collect();
        self.write(entries).await
    }

    /// What `group` committed for a partition, metadata included.
    pub(crate) fn committed(&self, group: &str, tp: &TopicPartition) -> Option<CommittedOffset> {
        lock(&self.committed)
            .get(group)
            .and_then(|g| g.get(tp))
            .cloned()
    }

    /// The committed offset of `group` for a partition.
    pub(crate) fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<u64> {
        lock(&self.committed)
            .get(group)
            .and_then(|g| g.get(tp))
            .map(|c| c.offset)
    }

    /// Groups with committed offsets or members, sorted.
    pub(crate) fn list(&self) -> Vec<String> {
        let mut groups: Vec<String> = lock(&self.committed).keys().cloned().collect();
        groups.extend(lock(&self.membership).keys().cloned());
        groups.sort();
        groups.dedup();
        groups
    }

    /// Tombstones every committed offset of an empty group; returns how many.
    pub(crate) async fn delete(&self, group: &str) -> Result<usize> {
        self.writable("delete group")?;
        let members = self.member_count(group);
        if members > 0 {
            return Err(Error::GroupNotEmpty {
                group: group.to_string(),
                members,
            });
        }
        let entries: Vec<_> = lock(&self.committed)
            .get(group)
            .ok_or_else(|| Error::UnknownGroup(group.to_string()))?
            .keys()
            .map(|tp| (group.to_string(), tp.clone(), None))
            .collect();
        let deleted = entries.len();
        self.write(entries).await?;
        tracing::info!(group, offsets = deleted, "deleted consumer group");
        Ok(deleted)
    }

    /// Committed offsets of `group` with the end offsets and lag of their partitions, found in
    /// `topics` (partitions gone since are left out).
    pub(crate) fn describe(
        &self,
        group: &str,
        topics: &impl TopicLookup,
    ) -> Result<GroupDescription> {
        let committed = lock(&self.committed).get(group).cloned();
        let members = self.member_count(group);
        if committed.is_none() && members == 0 {
            return Err(Error::UnknownGroup(group.to_string()));
        }
        let mut partitions = Vec::new();
        for (tp, c) in committed.unwrap_or_default() {
            let Ok(partition) = topics.partition(&tp) else {
                continue;
            };
            let stats = partition.log().stats();
            let from = c.offset.max(stats.log_start_offset);
            partitions.push(GroupPartition {
                topic_partition: tp,
                committed: Some(c.offset),
                log_end_offset: stats.log_end_offset,
                lag: stats.log_end_offset.saturating_sub(from),
            });
        }
        Ok(GroupDescription {
            group: group.to_string(),
            members,
            partitions,
        })
    }

    /// Moves `group`'s committed offsets on every partition of `topic` (found in `topics`) to
    /// `target`; with `dry_run`, only reports.
    pub(crate) async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        target: ResetTarget,
        dry_run: bool,
        topics: &impl TopicLookup,
    ) -> Result<Vec<OffsetChange>> {
        let members = self.member_count(group);
        if members > 0 {
            return Err(Error::GroupNotEmpty {
                group: group.to_string(),
                members,
            });
        }
        let topic = topics.topic(topic)?;
        let mut changes = Vec::new();
        for partition in topic.partitions() {
            let log = partition.log();
            let stats = log.stats();
            let new = match target {
                ResetTarget::Earliest => stats.log_start_offset,
                ResetTarget::Latest => stats.log_end_offset,
                ResetTarget::Offset(o) => o.clamp(stats.log_start_offset, stats.log_end_offset),
                ResetTarget::Timestamp(ts) => log
                    .offset_for_timestamp(ts)?
                    .unwrap_or(stats.log_end_offset),
            };
            let tp = TopicPartition::new(topic.name(), log.partition());
            changes.push(OffsetChange {
                partition: tp.partition,
                previous: self.committed_offset(group, &tp),
                new,
            });
        }
        if !dry_run {
            let offsets: Vec<_> = changes
                .iter()
                .map(|c| (TopicPartition::new(topic.name(), c.partition), c.new))
                .collect();
            self.commit(group, &offsets).await?;
        }
        Ok(changes)
    }

    /// The partition transactional offset commits go to (a transaction adds it when it
    /// commits offsets).
    pub(crate) fn offsets_partition(&self) -> TopicPartition {
        TopicPartition::new(OFFSETS_TOPIC, 0)
    }

    /// Writes offsets committed inside the transaction of `producer_id` at `epoch`; they are
    /// applied when its commit marker is written ([`GroupCoordinator::write_marker`]).
    pub(crate) async fn write_transactional(
        &self,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: &[(TopicPartition, u64, CommitDetails)],
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let partition = self.writable("commit offsets")?;
        let now = now_ms();
        let entries: Vec<_> = offsets
            .iter()
            .map(|(tp, o, m)| (group.to_string(), tp.clone(), Some((*o, m.clone()))))
            .collect();
        let mut batch = encode_entries(&entries, now);
        batch.set_producer(producer_id, epoch, -1, true);
        partition.append(batch).await?;
        let mut pending = lock(&self.pending);
        let list = pending.entry(producer_id).or_default();
        for (tp, offset, details) in offsets {
            let committed = CommittedOffset::new(*offset, now, details.clone());
            list.push((group.to_string(), tp.clone(), committed));
        }
        Ok(())
    }

    /// Writes the transaction marker of `producer_id` into the offsets partition and applies
    /// (commit) or drops (abort) the offsets its transaction committed.
    pub(crate) async fn write_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<()> {
        let partition = self.writable("end a transaction")?;
        partition
            .append(crate::batch::EncodedBatch::marker(
                producer_id,
                epoch,
                commit,
                now_ms(),
            ))
            .await?;
        let entries = lock(&self.pending).remove(&producer_id).unwrap_or_default();
        if commit {
            let mut committed = lock(&self.committed);
            for (group, tp, offset) in entries {
                committed.entry(group).or_default().insert(tp, offset);
            }
        }
        Ok(())
    }

    /// Appends commits (or tombstones, for `None`) and applies them once durable.
    pub(crate) async fn write(
        &self,
        group_entries: Vec<(String, TopicPartition, Option<OffsetAndMetadata>)>,
    ) -> Result<()> {
        if group_entries.is_empty() {
            return Ok(());
        }
        let partition = self.writable("commit offsets")?;
        let now = now_ms();
        partition
            .append(encode_entries(&group_entries, now))
            .await?;
        let mut committed = lock(&self.committed);
        for (group, tp, offset) in group_entries {
            match offset {
                Some((offset, details)) => {
                    let offset = CommittedOffset::new(offset, now, details);
                    committed.entry(group).or_default().insert(tp, offset);
                }
                None => {
                    if let Some(g) = committed.get_mut(&group) {
                        g.remove(&tp);
                        if g.is_empty() {
                            committed.remove(&group);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Tombstones every group's committed offsets for a deleted topic.
    pub(crate) async fn forget_topic(&self, topic: &str) -> Result<()> {
        let entries: Vec<_> = lock(&self.committed)
            .iter()
            .flat_map(|(group, offsets)| {
                offsets
                    .keys()
                    .filter(|tp| tp.topic == topic)
                    .map(|tp| (group.clone(), tp.clone(), None))
            })
            .collect();
        self.write(entries).await
    }

    /// Adds a member subscribed to `topics` (name, partition count); returns its id and a
    /// receiver of the group's generation.
    pub(crate) fn join(
        &self,
        group: &str,
        topics: Vec<(String, u32)>,
    ) -> (u64, watch::Receiver<u64>) {
        let id = self.next_member_id.fetch_add(1, Ordering::Relaxed);
        let mut all = lock(&self.membership);
        let membership = all.entry(group.to_string()).or_insert_with(|| Membership {
            members: BTreeMap::new(),
            assignment: HashMap::new(),
            generation: watch::channel(0).0,
        });
        membership.members.insert(id, topics);
        rebalance(group, membership);
        (id, membership.generation.subscribe())
    }

    /// Removes a member; the others share its partitions.
    pub(crate) fn leave(&self, group: &str, member: u64) {
        let mut all = lock(&self.membership);
        if let Some(membership) = all.get_mut(group) {
            membership.members.remove(&member);
            if membership.members.is_empty() {
                all.remove(group);
            } else {
                rebalance(group, membership);
            }
        }
    }

    /// The partitions assigned to a member now.
    pub(crate) fn assignment(&self, group: &str, member: u64) -> Vec<TopicPartition> {
        lock(&self.membership)
            .get(group)
            .and_then(|m| m.assignment.get(&member).cloned())
            .unwrap_or_default()
    }

    fn member_count(&self, group: &str) -> usize {
        lock(&self.membership)
            .get(group)
            .map_or(0, |m| m.members.len())
    }
}

/// One batch of commits (or tombstones, for `None`) in the `__consumer_offsets` format.
fn encode_entries(
    entries: &[(String, TopicPartition, Option<OffsetAndMetadata>)],
    now: i64,
) -> crate::batch::EncodedBatch {
    let mut builder = BatchBuilder::with_capacity(64 * entries.len());
    for (group, tp, offset) in entries {
        let key = serde_json::to_vec(&OffsetKey(group.clone(), tp.topic.clone(), tp.partition))
            .unwrap_or_default();
        let value = offset.as_ref().map(|(offset, details)| {
            serde_json::to_vec(&CommittedOffset::new(*offset, now, details.clone()))
                .unwrap_or_default()
        });
        builder.push(now, Some(&key), value.as_deref(), &[]);
    }
    builder.finish()
}

/// A record of `__consumer_offsets`: group, partition and the commit (`None`: a tombstone).
fn decode_entry(
    r: &crate::record::ConsumerRecord,
) -> Option<(String, TopicPartition, Option<CommittedOffset>)> {
    let OffsetKey(group, topic, partition) = serde_json::from_slice(r.key.as_ref()?).ok()?;
    let value = r
        .value
        .as_ref()
        .and_then(|v| serde_json::from_slice::<CommittedOffset>(v).ok());
    Some((group, TopicPartition::new(topic, partition), value))
}

fn rebalance(group: &str, membership: &mut Membership) {
    let mut topics: BTreeMap<&str, (u32, Vec<u64>)> = BTreeMap::new();
    for (&member, subscribed) in &membership.members {
        for (topic, partitions) in subscribed {
            let entry = topics.entry(topic).or_insert((*partitions, Vec::new()));
            entry.1.push(member);
        }
    }
    let mut assignment: HashMap<u64, Vec<TopicPartition>> = membership
        .members
        .keys()
        .map(|&m| (m, Vec::new()))
        .collect();
    for (topic, (partitions, members)) in topics {
        let n = members.len() as u32;
        let (per_member, extra) = (partitions / n, partitions % n);
        let mut next = 0;
        for (i, member) in members.iter().enumerate() {
            let count = per_member + u32::from((i as u32) < extra);
            let list = assignment.entry(*member).or_default();
            list.extend((next..next + count).map(|p| TopicPartition::new(topic, p)));
            next += count;
        }
    }
    membership.assignment = assignment;
    membership.generation.send_modify(|g| *g += 1);
    tracing::debug!(
        group,
        members = membership.members.len(),
        generation = *membership.generation.borrow(),
        "rebalanced group"
    );
}
