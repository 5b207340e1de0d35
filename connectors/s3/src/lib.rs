//! S3 connectors for Logbrook Connect.

mod client;
mod columnar;
pub mod layout;
pub mod sink;
pub mod source;

use logbrook_connect::Plugin;

/// The connector types of this crate, for the worker's registry: `s3-sink` and `s3-source`.
pub fn plugins() -> Vec<Plugin> {
    vec![
        Plugin::sink::<sink::S3SinkConfig>("s3-sink"),
        Plugin::source::<source::S3SourceConfig>("s3-source"),
    ]
}
