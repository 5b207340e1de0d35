//! Errors returned by the log engine.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result type of the log engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the log engine. Messages name the topic, partition, file and
/// byte position involved so an operator can find the problem on disk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed on a file or directory.
    // The cause is part of the message rather than a `source()`, so `{:#}` chains
    // do not print it twice.
    #[error("i/o error on {}: {cause}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },
    /// A topic name breaks Kafka's naming rule.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Which part of the rule it breaks.
        reason: &'static str,
    },
    /// `create_topic` for a name that exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A topic that does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// A partition number past the topic's partition count.
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The requested partition.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// A partition count a topic cannot grow to: partitions are only ever added.
    #[error(
        "topic {topic:?} has {partitions} partitions and cannot go to {requested}: partitions can only be added"
    )]
    InvalidPartitionCount {
        /// The topic.
        topic: String,
        /// How many partitions it has.
        partitions: u32,
        /// The count asked for.
        requested: u32,
    },
    /// A batch failed its CRC or structure check where data is supposed to be whole.
    #[error(
        "corrupt batch in topic {topic:?} partition {partition}, segment {}, at byte {position}: {reason}",
        segment.display()
    )]
    CorruptBatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The segment file.
        segment: PathBuf,
        /// Byte position of the bad batch within the segment file.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A read below the log start offset (deleted by retention).
    #[error(
        "offset {offset} is out of range for {topic}-{partition}: the log holds {log_start_offset}..{log_end_offset}"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The requested offset.
        offset: u64,
        /// First offset in the log.
        log_start_offset: u64,
        /// End of the log.
        log_end_offset: u64,
    },
    /// DeleteRecords on a compacted topic, whose log start only compaction moves (Kafka refuses
    /// it as a policy violation).
    #[error("records of {topic}-{partition} cannot be deleted: the topic is compacted")]
    RecordsNotDeletable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// Another process holds the data directory's writer lock.
    #[error("data dir {} is locked by another logbrook process (pid {pid})", path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The pid written in the lock file.
        pid: String,
    },
    /// A configuration value is out of range or malformed.
    #[error("invalid config {key}: {reason}")]
    InvalidConfig {
        /// The config key.
        key: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A record the log cannot accept.
    #[error("invalid record for topic {topic:?}: {reason}")]
    InvalidRecord {
        /// The topic.
        topic: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A batch larger than its topic's `max.message.bytes`.
    #[error(
        "batch of {size} bytes for topic {topic:?} is larger than its max.message.bytes ({limit})"
    )]
    BatchTooLarge {
        /// The topic.
        topic: String,
        /// The batch's size in bytes.
        size: usize,
        /// The topic's limit.
        limit: u64,
    },
    /// A metadata file that cannot be parsed.
    #[error("corrupt metadata file {}: {reason}", path.display())]
    CorruptMetadata {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A data directory written in a format this version does not read.
    #[error(
        "data dir {} is in Logbrook's format {found}, this version reads format {expected} (Kafka's RecordBatch v2) only: copy its topics out with the Logbrook release that wrote it (`logbrook consume`), or start from an empty data dir",
        path.display()
    )]
    UnsupportedFormat {
        /// The data directory.
        path: PathBuf,
        /// The format found.
        found: String,
        /// The format this version reads.
        expected: &'static str,
    },
    /// A write through a broker opened read-only.
    #[error("the data dir is open read-only; {operation} needs the writer")]
    ReadOnly {
        /// What was attempted.
        operation: &'static str,
    },
    /// A partition that stopped taking writes after an fsync failed.
    #[error(
        "partition {topic}-{partition} takes no more writes after a failed fsync ({reason}); reopen the data dir to recover"
    )]
    LogFailed {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The fsync error.
        reason: String,
    },
    /// A batch of an idempotent or transactional producer that the partition refuses: a
    /// sequence gap, a fenced epoch, or a batch outside the producer's transaction.
    #[error("partition {topic}-{partition} refused a batch of producer {producer_id}: {refusal}")]
    ProducerRefused {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer.
        producer_id: i64,
        /// Why.
        refusal: crate::log::ProducerRefusal,
    },
    /// A transactional request the coordinator refuses.
    #[error("transactional id {transactional_id:?}: {refusal}")]
    TransactionRefused {
        /// The transactional id.
        transactional_id: String,
        /// Why.
        refusal: crate::transactions::TxnRefusal,
    },
    /// The broker or partition has been closed.
    #[error("the log is closed")]
    Closed,
    /// An append failed; shared by every record of the failed batch.
    #[error("append to {topic}-{partition} failed: {cause}")]
    Append {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The error the partition writer hit.
        cause: Arc<Error>,
    },
    /// A group that has no committed offsets and no members.
    #[error("unknown consumer group {0:?}")]
    UnknownGroup(String),
    /// An operation that needs a group without active members.
    #[error(
        "consumer group {group:?} has {members} active member(s) in this process; stop them first"
    )]
    GroupNotEmpty {
        /// The group.
        group: String,
        /// Active members.
        members: usize,
    },
    /// A consumer used without an assignment, or a group call on a consumer without a group.
    #[error("consumer: {0}")]
    Consumer(&'static str),
    /// A transaction that cannot be written, or a damaged one in the transaction log.
    #[error("transaction: {0}")]
    Transaction(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |cause| Error::Io { path, cause }
    }
}
