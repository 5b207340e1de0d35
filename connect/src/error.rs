//! Errors of the Connect runtime and its plugins.
//!
//! Every error says whether retrying can help: [`Error::Retriable`] is retried with backoff,
//! [`Error::Data`] concerns one record (dead-letter topic or fail, by `errors.tolerance`), and the
//! rest fail the task or the request.

use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a config came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// A connector or worker file.
    File(PathBuf),
    /// A REST request for this connector.
    Rest(String),
}

impl std::fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Rest(name) => write!(f, "connector {name:?}"),
        }
    }
}

/// A rejected config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: key `{key}`: {reason}")]
pub struct ConfigError {
    /// The file or connector the config came from.
    pub origin: ConfigOrigin,
    /// The key, dotted for nested keys (`errors.tolerance`, `transforms[1].field`); `.` for the
    /// whole document.
    pub key: String,
    /// Why it was rejected.
    pub reason: String,
}

/// A rejected key, before it is known which file or connector it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {reason}")]
pub struct ConfigIssue {
    /// The key, dotted for nested keys.
    pub key: String,
    /// Why it was rejected.
    pub reason: String,
}

impl ConfigIssue {
    /// An issue with `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The issue as an error naming where the config came from.
    pub fn at(self, origin: &ConfigOrigin) -> ConfigError {
        ConfigError {
            origin: origin.clone(),
            key: self.key,
            reason: self.reason,
        }
    }
}

/// Errors of connectors, transforms, converters and the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A transient failure (network, server busy): retrying may succeed.
    #[error("retriable: {message}")]
    Retriable {
        /// What failed.
        message: String,
    },
    /// One record cannot be handled (bad encoding, wrong type); retrying will not help.
    #[error("bad record: {message}")]
    Data {
        /// What is wrong with it.
        message: String,
    },
    /// The connector cannot go on (lost its source, permission denied).
    #[error("{message}")]
    Fatal {
        /// What failed.
        message: String,
    },
    /// The log failed.
    #[error("log: {0}")]
    Log(#[from] logbrook_core::Error),
    /// File I/O failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// No connector of this name runs.
    #[error("unknown connector {0:?}")]
    UnknownConnector(String),
    /// A connector of this name already exists.
    #[error("connector {0:?} already exists")]
    ConnectorExists(String),
    /// No plugin of this type is registered.
    #[error("unknown connector type {name:?} (known: {known})")]
    UnknownPlugin {
        /// The requested type.
        name: String,
        /// The registered types, comma-separated.
        known: String,
    },
    /// The request needs the connector in another state.
    #[error("connector {name:?} is {state}: {needed}")]
    WrongState {
        /// The connector.
        name: String,
        /// Its state.
        state: String,
        /// What the operation needs.
        needed: &'static str,
    },
    /// The worker is shutting down.
    #[error("the worker is shutting down")]
    ShuttingDown,
}

impl Error {
    /// A retriable error.
    pub fn retriable(message: impl Into<String>) -> Self {
        Self::Retriable {
            message: message.into(),
        }
    }

    /// A per-record data error.
    pub fn data(message: impl Into<String>) -> Self {
        Self::Data {
            message: message.into(),
        }
    }

    /// A fatal error.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::Fatal {
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Retriable { .. })
            || matches!(self, Self::Log(logbrook_core::Error::Io { .. }))
    }
}
