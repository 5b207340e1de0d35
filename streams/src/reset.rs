//! Resetting an application for reprocessing (Kafka's `kafka-streams-application-reset`):
//! its committed input offsets move to the earliest offset or to a time, its internal topics
//! (repartition topics and store changelogs) are deleted, and its local state directory is
//! removed. The next run rebuilds its state from the reset point. The application must not be
//! running: the data dir's writer lock keeps another process out, and a group with members (in
//! this process, or on the cluster) is refused.

use std::path::PathBuf;

use logbrook_client::Client;
use logbrook_core::{OffsetChange, ResetTarget};

use crate::error::{Error, Result};
use crate::runtime::default_state_dir;

/// What [`reset_application`] changed (or, on a dry run, would change).
#[derive(Debug, Clone)]
pub struct ResetReport {
    /// Per input topic, the offset moves of its partitions.
    pub inputs: Vec<(String, Vec<OffsetChange>)>,
    /// Internal topics deleted.
    pub internal_topics: Vec<String>,
    /// The local state directory removed, if it existed.
    pub state_dir: Option<PathBuf>,
}

/// Whether `topic` is one of `application_id`'s internal topics.
fn is_internal(application_id: &str, topic: &str) -> bool {
    topic
        .strip_prefix(application_id)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| rest.ends_with("-repartition") || rest.ends_with("-changelog"))
}

/// Resets `application_id`: input offsets to `to` (earliest or a timestamp), internal topics
/// deleted, local state removed (from the default state directory). With `dry_run`, only reports.
///
/// # Errors
/// [`Error::Topology`] when the application has never committed offsets; log errors such as a
/// group with running members.
pub async fn reset_application(
    client: &Client,
    application_id: &str,
    to: ResetTarget,
    dry_run: bool,
) -> Result<ResetReport> {
    let group = client.describe_group(application_id).await.map_err(|e| {
        let place = match client {
            Client::Embedded(broker) => broker.data_dir().display().to_string(),
            Client::Cluster(cluster) => cluster.bootstrap().to_string(),
        };
        Error::Topology(format!(
            "application {application_id:?} has no committed offsets in {place} ({e})"
        ))
    })?;
    let mut inputs: Vec<String> = group
        .partitions
        .iter()
        .map(|p| p.topic_partition.topic.clone())
        .filter(|t| !is_internal(application_id, t))
        .collect();
    inputs.dedup();
    let internal_topics: Vec<String> = client
        .topic_names()
        .await?
        .into_iter()
        .filter(|t| is_internal(application_id, t))
        .collect();
    let mut report = ResetReport {
        inputs: Vec::new(),
        internal_topics: internal_topics.clone(),
        state_dir: None,
    };
    for topic in inputs {
        let changes = client
            .reset_group_offsets(application_id, &topic, to, dry_run)
            .await?;
        report.inputs.push((topic, changes));
    }
    // Local state lives beside the embedded log; on a cluster each instance keeps its own.
    let state_dir = match client {
        Client::Embedded(broker) => Some(default_state_dir(broker, application_id)),
        Client::Cluster(_) => None,
    };
    report.state_dir = state_dir.filter(|dir| dir.exists());
    if dry_run {
        return Ok(report);
    }
    for topic in &internal_topics {
        client.delete_topic(topic).await?;
        tracing::info!(topic, "deleted internal topic");
    }
    if let Some(state_dir) = &report.state_dir {
        std::fs::remove_dir_all(state_dir).map_err(|e| Error::State {
            store: state_dir.display().to_string(),
            reason: format!("cannot remove the state directory: {e}"),
        })?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_topics_are_recognised_by_prefix_and_suffix() {
        assert!(is_internal("app", "app-counts-changelog"));
        assert!(is_internal("app", "app-counts-repartition"));
        assert!(!is_internal("app", "app-counts"));
        assert!(!is_internal("app", "application-counts-changelog"));
        assert!(!is_internal("app", "clicks"));
    }
}
