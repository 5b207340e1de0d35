//! Interactive queries: read-only lookups in the state stores of the tasks this instance runs
//! (Kafka Streams' `store()`), and which instance holds a key (`queryMetadataForKey`).
//!
//! A store's key lives in task `murmur2(key) % partitions`, the partition Kafka's default
//! partitioner and Logbrook's repartition topics give it. Lookups read what the task last
//! committed; writes since are not visible until its next commit.
//!
//! On a cluster each instance joins the application's group with a client id that carries its
//! [`StreamsConfig::application_server`](super::StreamsConfig::application_server); the group
//! coordinator's view of who owns which task (DescribeGroups) then says where a key is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use logbrook_client::Cluster;
use logbrook_core::partition_for_key;

use super::standby::standby_placement;
use crate::error::Result;
use crate::state::StoreReader;

/// Where the instances of an application serve lookups of a key (Kafka Streams'
/// `KeyQueryMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQueryMetadata {
    /// The task (partition) holding the key.
    pub task: u32,
    /// The `application_server` of the instance running the task; `None` while no instance
    /// runs it (a rebalance) or when that instance set no `application_server`.
    pub active_host: Option<String>,
    /// The `application_server`s of the instances keeping standby replicas of the task.
    pub standby_hosts: Vec<String>,
}

/// This instance in its application's group, as the others see it.
#[derive(Debug, Clone)]
pub(crate) struct GroupView {
    pub(crate) cluster: Cluster,
    pub(crate) group: String,
    /// The topic whose partitions stand for the tasks.
    pub(crate) task_topic: String,
    pub(crate) standby_replicas: u32,
}

/// The client id an instance joins its group with: unique per process, carrying the
/// instance's `application_server` after the last `@`.
pub(crate) fn member_client_id(application_id: &str, application_server: Option<&str>) -> String {
    use std::hash::BuildHasher;
    let nonce = std::hash::RandomState::new().hash_one(std::process::id());
    match application_server {
        Some(server) => format!("{application_id}-{nonce:016x}@{server}"),
        None => format!("{application_id}-{nonce:016x}"),
    }
}

/// The `application_server` a member's client id carries.
fn application_server(client_id: &str) -> Option<String> {
    client_id
        .rsplit_once('@')
        .map(|(_, server)| server.to_string())
}

/// Where a key of a store is, as this instance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// The task holding the key runs here: its committed value (`None`: no such key).
    Local(Option<Bytes>),
    /// The key belongs to `task`, which another instance runs (or none, during a rebalance).
    Elsewhere {
        /// The task (partition) holding the key.
        task: u32,
    },
}

/// The stores of the tasks running in this instance; a handle that stays valid after `run`
/// consumed the app. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalStores {
    partitions: u32,
    stores: Arc<Mutex<HashMap<(String, u32), StoreReader>>>,
    /// This instance's `application_server`.
    server: Option<String>,
    /// On a cluster: where the other instances are.
    group: Option<GroupView>,
}

impl LocalStores {
    pub(crate) fn new(partitions: u32, server: Option<String>, group: Option<GroupView>) -> Self {
        Self {
            partitions,
            stores: Arc::default(),
            server,
            group,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), StoreReader>> {
        self.stores.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self, task: u32, readers: impl IntoIterator<Item = StoreReader>) {
        let mut stores = self.lock();
        for reader in readers {
            stores.insert((reader.name().to_string(), task), reader);
        }
    }

    pub(crate) fn unregister(&self, task: u32) {
        self.lock().retain(|(_, t), _| *t != task);
    }

    /// The task holding `key` (the bytes the store's key serde writes).
    #[must_use]
    pub fn task_for_key(&self, key: &[u8]) -> u32 {
        partition_for_key(key, self.partitions.max(1))
    }

    /// Which instance runs the task holding `key`, and which keep its standbys, as the group's
    /// coordinator says now. On the embedded log every task runs in this instance.
    ///
    /// # Errors
    /// The cluster did not answer.
    pub async fn query_metadata_for_key(&self, key: &[u8]) -> Result<KeyQueryMetadata> {
        let task = self.task_for_key(key);
        let Some(group) = &self.group else {
            return Ok(KeyQueryMetadata {
                task,
                active_host: self.server.clone(),
                standby_hosts: Vec::new(),
            });
        };
        let members = group
            .cluster
            .group_assignments(&group.group, &group.task_topic)
            .await?;
        let active_host = members
            .iter()
            .find(|m| m.partitions.contains(&task))
            .and_then(|m| application_server(&m.client_id));
        let standby_hosts = standby_placement(&members, group.standby_replicas)
            .remove(&task)
            .unwrap_or_default()
            .into_iter()
            .filter_map(application_server)
            .collect();
        Ok(KeyQueryMetadata {
            task,
            active_host,
            standby_hosts,
        })
    }

    /// The committed value of `key` in `store`, if its task runs here.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn get(&self, store: &str, key: &[u8]) -> Result<KeyLookup> {
        let task = self.task_for_key(key);
        let reader = self.lock().get(&(store.to_string(), task)).cloned();
        match reader {
            Some(reader) => Ok(KeyLookup::Local(reader.get(key)?)),
            None => Ok(KeyLookup::Elsewhere { task }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_client_id_carries_the_application_server() {
        let id = member_client_id("wc", Some("10.0.0.7:8080"));
        assert!(id.starts_with("wc-"), "{id}");
        assert_eq!(application_server(&id).as_deref(), Some("10.0.0.7:8080"));
        assert_eq!(application_server(&member_client_id("wc", None)), None);
        assert_ne!(
            member_client_id("wc", None),
            member_client_id("wc", None),
            "two instances in one process differ"
        );
    }
}
