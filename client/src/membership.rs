//! Membership in a consumer group that spreads work by partition: which partitions of a topic
//! this process owns, heard as assignments and revocations in the order the group decides them.
//! A revocation waits until the owner has let the partitions go (committed what it did), so
//! the next owner starts where this one stopped.
//!
//! The member reads no records: the partitions it is assigned are paused. Its group identity
//! (member id, generation) is what its offset commits carry, so a member the group has moved
//! on from is fenced (KIP-447).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc as sync_mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;

use crate::cluster::{Cluster, GroupMember};
use crate::error::{KafkaContext, Result};

/// How long the group waits for this member to let revoked partitions go.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(120);

/// A change of the partitions this member owns.
#[derive(Debug)]
pub enum GroupChange {
    /// These partitions are this member's from now on.
    Assigned(Vec<u32>),
    /// These partitions go elsewhere: stop working on them, then send on `done`.
    Revoked {
        /// The partitions.
        partitions: Vec<u32>,
        /// Answer once they are let go; the rebalance waits for it.
        done: sync_mpsc::SyncSender<()>,
    },
}

pub(crate) struct MembershipContext {
    changes: mpsc::UnboundedSender<GroupChange>,
}

impl ClientContext for MembershipContext {}

fn partitions(list: &TopicPartitionList) -> Vec<u32> {
    list.elements()
        .iter()
        .map(|e| e.partition() as u32)
        .collect()
}

impl ConsumerContext for MembershipContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let (done, finished) = sync_mpsc::sync_channel(1);
            let change = GroupChange::Revoked {
                partitions: partitions(list),
                done,
            };
            if self.changes.send(change).is_ok() && finished.recv_timeout(REVOKE_TIMEOUT).is_err() {
                tracing::warn!("revoked partitions were not let go in time; the group moves on");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                // Membership only: the work reads its partitions with consumers of its own.
                if let Err(e) = consumer.pause(list) {
                    tracing::warn!(error = %e, "could not pause the member's partitions");
                }
                let _ = self.changes.send(GroupChange::Assigned(partitions(list)));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "group rebalance failed"),
        }
    }
}

/// This process's membership in a group; see the module docs.
pub struct Membership {
    consumer: Arc<BaseConsumer<MembershipContext>>,
    changes: mpsc::UnboundedReceiver<GroupChange>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
    group: String,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Joins `group` for the partitions of `topic`, spread over its members by librdkafka's
    /// cooperative-sticky assignor (a rebalance moves only the partitions that change owner).
    /// The other members see this one as `client_id` in [`Cluster::group_assignments`].
    ///
    /// # Errors
    /// librdkafka refused the configuration or the subscription.
    pub fn join_group(&self, group: &str, topic: &str, client_id: &str) -> Result<Membership> {
        let (sender, changes) = mpsc::unbounded_channel();
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        // The caller's properties win over these defaults.
        for (key, value) in self.properties.iter() {
            config.set(key, value);
        }
        let consumer: BaseConsumer<MembershipContext> = config
            .create_with_context(MembershipContext { changes: sender })
            .context(|| format!("joining group {group:?} on {}", self.bootstrap()))?;
        consumer
            .subscribe(&[topic])
            .context(|| format!("subscribing group {group:?} to {topic:?}"))?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("{group}-membership"))
                .spawn(move || {
                    // Serves the group protocol: heartbeats and rebalance callbacks.
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                            tracing::warn!(error = %e, "group membership");
                        }
                    }
                })
                .map_err(|e| crate::Error::Refused(format!("cannot start a thread: {e}")))?
        };
        Ok(Membership {
            consumer,
            changes,
            stop,
            poller: Some(poller),
            group: group.to_string(),
        })
    }
}

/// What the group coordinator says one member owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPartitions {
    /// The client id the member joined with.
    pub client_id: String,
    /// Its partitions of the topic asked about, sorted.
    pub partitions: Vec<u32>,
}

impl Cluster {
    /// `group`'s members and the partitions of `topic` each was assigned, by the group's
    /// coordinator (DescribeGroups), sorted by client id. Empty while the group rebalances or
    /// has no members.
    ///
    /// # Errors
    /// The coordinator did not answer.
    pub async fn group_assignments(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<MemberPartitions>> {
        let list = self.describe_group_members(group).await?;
        let mut members: Vec<MemberPartitions> = list
            .into_iter()
            .map(|(client_id, assignment)| MemberPartitions {
                client_id,
                partitions: assignment
                    .as_deref()
                    .map(|bytes| assigned_partitions(bytes, topic))
                    .unwrap_or_default(),
            })
            .collect();
        members.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(members)
    }
}

/// The partitions of `topic` in a consumer protocol assignment (version, then an array of
/// topic name and partition array; the user data after it is not read). Undecodable bytes
/// (another protocol's) hold none.
fn assigned_partitions(bytes: &[u8], topic: &str) -> Vec<u32> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    fn int(bytes: &mut &[u8]) -> Option<i32> {
        Some(i32::from_be_bytes(take(bytes, 4)?.try_into().ok()?))
    }
    fn decode(mut bytes: &[u8], topic: &str) -> Option<Vec<u32>> {
        let bytes = &mut bytes;
        take(bytes, 2)?; // version
        let mut found = Vec::new();
        for _ in 0..int(bytes)?.max(0) {
            let len = i16::from_be_bytes(take(bytes, 2)?.try_into().ok()?);
            let name = take(bytes, usize::try_from(len).ok()?)?;
            let count = int(bytes)?.max(0);
            for _ in 0..count {
                let partition = int(bytes)?;
                if name == topic.as_bytes() {
                    found.push(u32::try_from(partition).ok()?);
                }
            }
        }
        found.sort_unstable();
        Some(found)
    }
    decode(bytes, topic).unwrap_or_default()
}

impl Membership {
    /// The next change of this member's partitions; `None` once it left.
    pub async fn next(&mut self) -> Option<GroupChange> {
        self.changes.recv().await
    }

    /// The identity offset commits of this member carry.
    #[must_use]
    pub fn member(&self) -> GroupMember {
        GroupMember::joined(self.consumer.clone(), &self.group)
    }

    /// Leaves the group: the partitions go to the other members at once, not after the
    /// session times out. Call it after letting every partition go.
    pub fn leave(mut self) {
        self.stop_polling();
        // The consumer's close (on drop: it must be the last handle) revokes what is left,
        // answered at once now that nobody listens, and sends LeaveGroup.
        if Arc::strong_count(&self.consumer) > 1 {
            tracing::warn!(group = %self.group, "the group member is still in use; it leaves when its session times out");
        }
    }

    fn stop_polling(&mut self) {
        // Revocations nobody will answer now: dropping them lets the poller go on at once.
        self.changes.close();
        while self.changes.try_recv().is_ok() {}
        self.stop.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_polling();
    }
}

#[cfg(test)]
mod tests {
    use super::assigned_partitions;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut bytes = vec![0, 1];
        bytes.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            bytes.extend((name.len() as i16).to_be_bytes());
            bytes.extend(name.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                bytes.extend(p.to_be_bytes());
            }
        }
        bytes.extend((-1i32).to_be_bytes()); // no user data
        bytes
    }

    #[test]
    fn reads_the_partitions_of_one_topic_from_an_assignment() {
        let bytes = assignment(&[("other", &[0, 1]), ("lines", &[2, 0])]);
        assert_eq!(assigned_partitions(&bytes, "lines"), [0, 2]);
        assert_eq!(assigned_partitions(&bytes, "other"), [0, 1]);
        assert!(assigned_partitions(&bytes, "missing").is_empty());
    }

    #[test]
    fn truncated_or_foreign_bytes_hold_no_partitions() {
        let bytes = assignment(&[("lines", &[2, 0])]);
        for cut in 0..bytes.len() - 4 {
            assert!(
                assigned_partitions(&bytes[..cut], "lines").is_empty(),
                "cut at {cut}"
            );
        }
        assert!(assigned_partitions(&[0xff; 7], "lines").is_empty());
    }
}
