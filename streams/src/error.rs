//! Errors of the streams library.

/// Result type of the streams library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong building or running a topology.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record's key or value could not be decoded.
    #[error(
        "cannot deserialize the {part} of the record at {topic}-{partition}@{offset}: {reason}"
    )]
    Deserialize {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: u32,
        /// Source offset.
        offset: u64,
        /// `key` or `value`.
        part: &'static str,
        /// The serde's message.
        reason: String,
    },
    /// A key or value could not be encoded for an output topic.
    #[error("cannot serialize the {part} of a record for topic {topic:?}: {reason}")]
    Serialize {
        /// Target topic.
        topic: String,
        /// `key` or `value`.
        part: &'static str,
        /// The serde's message.
        reason: String,
    },
    /// User code (a closure or processor) panicked on a record.
    #[error("processing the record at {topic}-{partition}@{offset} failed: {message}")]
    Processing {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: u32,
        /// Source offset.
        offset: u64,
        /// The panic message.
        message: String,
    },
    /// A state store failed.
    #[error("state store {store:?}: {reason}")]
    State {
        /// The store.
        store: String,
        /// What failed.
        reason: String,
    },
    /// The topology cannot run as built.
    #[error("invalid topology: {0}")]
    Topology(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] logbrook_core::Error),
    /// The log client (embedded or cluster) failed.
    #[error(transparent)]
    Client(#[from] logbrook_client::Error),
}
