//! S3 connectors for Logbrook Connect, on aws-sdk-s3 (one rustls stack on ring), with arrow
//! and parquet for the columnar format.
//!
//! # `s3-sink`
//!
//! Writes topics into objects named `{prefix}/{topic}/{directory}/{topic}+{partition}+{first
//! offset:020}.json|parquet`: JSON lines holding whole records (key, value, headers, timestamp,
//! topic, partition, offset), or Parquet whose columns follow the records' Arrow schema. The
//! directory is the partition, field values, or the record time. Objects are written by record
//! count, size, age or idleness, large ones by multipart upload, every request retried with
//! backoff. See [`sink::S3SinkConfig`] for the keys.
//!
//! ```toml
//! name = "orders-archive"
//! connector = "s3-sink"
//! topics = ["orders"]
//! bucket = "shop-archive"
//! format = "parquet"
//! partitioner = "time"
//! ```
//!
//! Guarantee: exactly once. Offsets are committed only past records whose objects are
//! uploaded, object names are deterministic, and a restarted task skips the objects a crashed
//! run finished, whatever the object boundaries (the design is in `docs/connect.md`).
//!
//! # `s3-source`
//!
//! Reads objects under a prefix in key order (JSON lines, CSV, Parquet) into records; with
//! `envelope = "record"` it restores what `s3-sink` wrote, with the original keys, headers,
//! timestamps and partitions. See [`source::S3SourceConfig`].
//!
//! Guarantee: exactly once into the log: the object and position after each record are its
//! source offset, committed with it.

mod client;
mod columnar;
pub mod layout;
pub mod raw;
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
