//! Logbrook Connect: runs source and sink connectors from config files, as Kafka Connect does,
//! on Logbrook's embedded log.
//!
//! - [`api`]: what a connector implements ([`SourceConnector`]/[`Source`],
//!   [`SinkConnector`]/[`Sink`]) and the [`Record`] data model, typed by Arrow schemas.
//! - [`config`]: connector and worker files: parsing, `${env:...}`/`${file:...}` interpolation,
//!   validation with the file and key of every error.
//! - [`converters`]: bytes in the log to and from data (`json`, `string`, `bytes`).
//! - [`transforms`]: single-message transforms, chained per connector.
//! - [`runtime`]: the [`Worker`] running tasks, storing source offsets and connector configs in
//!   internal topics, retrying, dead-lettering and counting.
//! - [`rest`]: Kafka Connect's REST API over a worker.

pub mod api;
/// Arrow's type system, which record schemas use.
pub use arrow_schema;
pub mod config;
pub mod converters;
mod error;
pub mod rest;
pub mod runtime;
pub mod transforms;

pub use api::{
    ConnectorKind, Header, OriginalBytes, Plugin, Record, Registry, Rejected, Sink, SinkConnector,
    SinkContext, Source, SourceConnector, SourceContext, SourceRecord, TaskShare,
};
pub use config::{ConnectorConfig, WorkerConfig};
pub use error::{ConfigError, ConfigIssue, ConfigOrigin, Error, Result};
pub use runtime::Worker;
