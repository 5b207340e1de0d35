//! The plugin API: what a connector, a transform or a converter implements.

mod plugin;
mod record;
pub mod schema;
mod share;
mod sink;
mod source;

pub use logbrook_core::Header;
pub(crate) use plugin::parse_typed;
pub use plugin::{ConnectorKind, Plugin, Registry};
pub use record::{OriginalBytes, Record, SourceRecord};
pub use share::TaskShare;
pub use sink::{Rejected, Sink, SinkConnector, SinkContext};
pub use source::{Source, SourceConnector, SourceContext};
