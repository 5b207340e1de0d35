//! What can go wrong talking to the log.

use rdkafka::error::KafkaError;

/// A client error; each names what was being done and, on a cluster, where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded log refused.
    #[error(transparent)]
    Log(#[from] logbrook_core::Error),
    /// librdkafka failed (the cluster did not answer, or answered with an error).
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done, and on which cluster.
        context: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The cluster answered, but not with what was asked for (an unknown topic or group, a
    /// group with live members, an error code for one item).
    #[error("{0}")]
    Refused(String),
}

/// A client result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to librdkafka's errors.
pub(crate) trait KafkaContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> KafkaContext<T> for Result<T, KafkaError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kafka {
            context: what(),
            source,
        })
    }
}
