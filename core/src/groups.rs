//! Consumer groups: committed offsets and in-process membership.
//!
//! Committed offsets live in the compacted internal topic `__consumer_offsets` (flush always),
//! as Kafka keeps them: key `["group","topic",partition]`, value `{"offset":N,"committed_at":MS}`
//! (both JSON), a tombstone when a topic is deleted. The whole topic is folded into memory on open.
//!
//! Members of a group inside this process share its partitions: each member gets a contiguous
//! range of each subscribed topic's partitions (Kafka's range assignor), recomputed whenever a
//! member joins or leaves; members notice through a generation counter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::batch::BatchBuilder;
use crate::broker::Broker;
use crate::config::{CleanupPolicy, FlushPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::record::{TopicPartition, now_ms};

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A committed offset: the next offset the group will read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// Next offset to read.
    pub offset: u64,
    /// When it was committed (ms since the epoch).
    pub committed_at: i64,
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

/// The in-memory side of consumer groups.
#[derive(Debug, Default)]
pub(crate) struct GroupCoordinator {
    committed: Mutex<BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>>>,
    membership: Mutex<HashMap<String, Membership>>,
    next_member_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCoordinator {
    /// Creates the offsets topic if needed and folds it into memory.
    pub(crate) async fn load(&self, broker: &Broker) -> Result<()> {
        if broker.topic(OFFSETS_TOPIC).is_err() && !broker.is_read_only() {
            let config = TopicConfig {
                partitions: 1,
                segment_bytes: 64 << 20,
                cleanup_policy: CleanupPolicy::Compact,
                flush: FlushPolicy::Always,
                retention_ms: None,
                preallocate: false,
                ..TopicConfig::default()
            };
            broker.create_topic(OFFSETS_TOPIC, config)?;
        }
        let log = broker.topic(OFFSETS_TOPIC)?.partition(0)?.log().clone();
        let folded = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut folded: BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>> =
                BTreeMap::new();
            log.for_each_record(0, |r| {
                let Some(OffsetKey(group, topic, partition)) =
                    r.key.as_ref().and_then(|k| serde_json::from_slice(k).ok())
                else {
                    return;
                };
                let tp = TopicPartition::new(topic, partition);
                match r
                    .value
                    .as_ref()
                    .and_then(|v| serde_json::from_slice::<CommittedOffset>(v).ok())
                {
                    Some(committed) => {
                        folded.entry(group).or_default().insert(tp, committed);
                    }
                    None => {
                        if let Some(g) = folded.get_mut(&group) {
                            g.remove(&tp);
                        }
                    }
                }
            })?;
            folded.retain(|_, offsets| !offsets.is_empty());
            Ok(folded)
        })
        .await
        .map_err(|_| Error::Closed)??;
        *lock(&self.committed) = folded;
        Ok(())
    }

    fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<u64> {
        lock(&self.committed)
            .get(group)
            .and_then(|g| g.get(tp))
            .map(|c| c.offset)
    }

    /// Appends commits (or tombstones, for `None`) and applies them once durable.
    pub(crate) async fn write(
        &self,
        broker: &Broker,
        group_entries: Vec<(String, TopicPartition, Option<u64>)>,
    ) -> Result<()> {
        if group_entries.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut builder = BatchBuilder::with_capacity(64 * group_entries.len());
        for (group, tp, offset) in &group_entries {
            let key = serde_json::to_vec(&OffsetKey(group.clone(), tp.topic.clone(), tp.partition))
                .unwrap_or_default();
            let value = offset.map(|offset| {
                serde_json::to_vec(&CommittedOffset {
                    offset,
                    committed_at: now,
                })
                .unwrap_or_default()
            });
            builder.push(now, Some(&key), value.as_deref(), &[]);
        }
        let partition = broker.topic(OFFSETS_TOPIC)?.partition(0)?.clone();
        partition.append(builder.finish()).await?;
        let mut committed = lock(&self.committed);
        for (group, tp, offset) in group_entries {
            match offset {
                Some(offset) => {
                    committed.entry(group).or_default().insert(
                        tp,
                        CommittedOffset {
                            offset,
                            committed_at: now,
                        },
                    );
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

    pub(crate) async fn forget_topic(&self, broker: &Broker, topic: &str) -> Result<()> {
        let entries: Vec<_> = lock(&self.committed)
            .iter()
            .flat_map(|(group, offsets)| {
                offsets
                    .keys()
                    .filter(|tp| tp.topic == topic)
                    .map(|tp| (group.clone(), tp.clone(), None))
            })
            .collect();
        self.write(broker, entries).await
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

impl Broker {
    /// Commits `offsets` (the next offset to read, per partition) for `group`, durably.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], append errors.
    ///
    /// # Cancel safety
    /// If dropped, the commit may or may not have been written.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly {
                operation: "commit offsets",
            });
        }
        let entries = offsets
            .iter()
            .map(|(tp, o)| (group.to_string(), tp.clone(), Some(*o)))
            .collect();
        self.groups().write(self, entries).await
    }

    /// The committed offset of `group` for a partition.
    pub fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<u64> {
        self.groups().committed_offset(group, tp)
    }

    /// Groups with committed offsets or members, sorted.
    pub fn list_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = lock(&self.groups().committed).keys().cloned().collect();
        groups.extend(lock(&self.groups().membership).keys().cloned());
        groups.sort();
        groups.dedup();
        groups
    }

    /// Deletes a group: tombstones for every committed offset it has go to
    /// `__consumer_offsets` (durably, as commits do), so the group is gone after a restart too.
    /// Returns how many committed offsets were deleted.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`] for a group without committed offsets or members,
    /// [`Error::GroupNotEmpty`] while members run in this process, [`Error::ReadOnly`], append
    /// errors.
    ///
    /// # Cancel safety
    /// If dropped, the deletion may or may not have been written (every offset or none).
    pub async fn delete_group(&self, group: &str) -> Result<usize> {
        if self.is_read_only() {
            return Err(Error::ReadOnly {
                operation: "delete group",
            });
        }
        let members = self.groups().member_count(group);
        if members > 0 {
            return Err(Error::GroupNotEmpty {
                group: group.to_string(),
                members,
            });
        }
        let entries: Vec<_> = lock(&self.groups().committed)
            .get(group)
            .ok_or_else(|| Error::UnknownGroup(group.to_string()))?
            .keys()
            .map(|tp| (group.to_string(), tp.clone(), None))
            .collect();
        let deleted = entries.len();
        self.groups().write(self, entries).await?;
        tracing::info!(group, offsets = deleted, "deleted consumer group");
        Ok(deleted)
    }

    /// Committed offsets, end offsets and lag of a group.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`].
    pub fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let committed = lock(&self.groups().committed).get(group).cloned();
        let members = self.groups().member_count(group);
        if committed.is_none() && members == 0 {
            return Err(Error::UnknownGroup(group.to_string()));
        }
        let mut partitions = Vec::new();
        for (tp, c) in committed.unwrap_or_default() {
            let Ok(topic) = self.topic(&tp.topic) else {
                continue;
            };
            let Ok(partition) = topic.partition(tp.partition) else {
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

    /// Moves a group's committed offsets on every partition of `topic` (Kafka's
    /// `kafka-consumer-groups --reset-offsets`). With `dry_run`, only reports.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::GroupNotEmpty`] while members run in this process.
    ///
    /// # Cancel safety
    /// If dropped, the reset may or may not have been written (all partitions or none).
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        target: ResetTarget,
        dry_run: bool,
    ) -> Result<Vec<OffsetChange>> {
        let members = self.groups().member_count(group);
        if members > 0 {
            return Err(Error::GroupNotEmpty {
                group: group.to_string(),
                members,
            });
        }
        let topic = self.topic(topic)?;
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
            self.commit_offsets(group, &offsets).await?;
        }
        Ok(changes)
    }
}
