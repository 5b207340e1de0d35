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

impl Error {
    /// Whether the cluster may answer if asked again shortly: a broker connection dropped, a
    /// partition between leaders, a coordinator moving or loading. An unknown partition is one
    /// of these only for partitions known to exist (its leader is down).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        use rdkafka::error::RDKafkaErrorCode::{
            AllBrokersDown, BrokerTransportFailure, CoordinatorLoadInProgress,
            CoordinatorNotAvailable, LeaderNotAvailable, NotCoordinator, NotLeaderForPartition,
            OperationTimedOut, RequestTimedOut, Resolve, UnknownPartition,
        };
        let Self::Kafka { source, .. } = self else {
            return false;
        };
        matches!(
            source.rdkafka_error_code(),
            Some(
                AllBrokersDown
                    | BrokerTransportFailure
                    | CoordinatorLoadInProgress
                    | CoordinatorNotAvailable
                    | LeaderNotAvailable
                    | NotCoordinator
                    | NotLeaderForPartition
                    | OperationTimedOut
                    | RequestTimedOut
                    | Resolve
                    | UnknownPartition
            )
        )
    }
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
