//! The broker's consumer-group API: committed offsets, listing, description, deletion and
//! resets, each handed to the [`GroupCoordinator`](crate::groups::GroupCoordinator).

use super::Broker;
use crate::error::Result;
use crate::groups::{CommitDetails, CommittedOffset, GroupDescription, OffsetChange, ResetTarget};
use crate::record::TopicPartition;

impl Broker {
    /// Commits `offsets` (the next offset to read, per partition) for `group`, durably.
    ///
    /// # Errors
    /// [`Error::ReadOnly`](crate::Error::ReadOnly), append errors.
    ///
    /// # Cancel safety
    /// If dropped, the commit may or may not have been written.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        self.inner.groups.commit(group, offsets).await
    }

    /// Commits `offsets` with each one's metadata (Kafka's commit metadata, handed back by
    /// [`Broker::committed`]), durably.
    ///
    /// # Errors
    /// [`Error::ReadOnly`](crate::Error::ReadOnly), append errors.
    ///
    /// # Cancel safety
    /// If dropped, the commit may or may not have been written.
    pub async fn commit_offsets_with_metadata(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64, CommitDetails)],
    ) -> Result<()> {
        self.inner.groups.commit_with_metadata(group, offsets).await
    }

    /// What `group` committed for a partition: offset, time and metadata.
    pub fn committed(&self, group: &str, tp: &TopicPartition) -> Option<CommittedOffset> {
        self.inner.groups.committed(group, tp)
    }

    /// The committed offset of `group` for a partition.
    pub fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<u64> {
        self.inner.groups.committed_offset(group, tp)
    }

    /// Groups with committed offsets or members, sorted.
    pub fn list_groups(&self) -> Vec<String> {
        self.inner.groups.list()
    }

    /// Deletes a group: tombstones for every committed offset it has go to
    /// `__consumer_offsets` (durably, as commits do), so the group is gone after a restart too.
    /// Returns how many committed offsets were deleted.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`](crate::Error::UnknownGroup) for a group without committed
    /// offsets or members, [`Error::GroupNotEmpty`](crate::Error::GroupNotEmpty) while members
    /// run in this process, [`Error::ReadOnly`](crate::Error::ReadOnly), append errors.
    ///
    /// # Cancel safety
    /// If dropped, the deletion may or may not have been written (every offset or none).
    pub async fn delete_group(&self, group: &str) -> Result<usize> {
        self.inner.groups.delete(group).await
    }

    /// Committed offsets, end offsets and lag of a group.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`](crate::Error::UnknownGroup).
    pub fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.inner.groups.describe(group, &self.inner.topics)
    }

    /// Moves a group's committed offsets on every partition of `topic` (Kafka's
    /// `kafka-consumer-groups --reset-offsets`). With `dry_run`, only reports.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`](crate::Error::UnknownTopic),
    /// [`Error::GroupNotEmpty`](crate::Error::GroupNotEmpty) while members run in this process.
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
        self.inner
            .groups
            .reset_offsets(group, topic, target, dry_run, &self.inner.topics)
            .await
    }
}
