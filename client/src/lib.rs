//! Logbrook's log wherever it lives: the embedded [`Broker`] in this process, or a Kafka-protocol
//! cluster (`logbrook serve`, Apache Kafka, Redpanda) reached through librdkafka.
//!
//! [`Client`] answers the admin questions (topics, groups, offsets) the same way for both, in
//! core's types, so a command's output does not depend on where the log is. [`Consumer`] reads
//! assigned partitions from either; [`ClusterProducer`] writes to a cluster (the embedded log has
//! its own `Producer`).

mod client;
mod cluster;
mod consumer;
mod error;
mod membership;

pub use client::{Client, PartitionOffsets, TopicInfo};
pub use cluster::{Cluster, ClusterProducer, GroupMember, ProducerSettings, Unacknowledged};
pub use consumer::Consumer;
pub use error::{Error, Result};
pub use membership::{GroupChange, MemberPartitions, Membership};

#[doc(no_inline)]
pub use logbrook_core::Broker;
