//! File connectors for Logbrook Connect: `file-source` tails files into a topic, `file-sink`
//! writes topics to files.
//!
//! # `file-source`
//!
//! Reads every file matching a path or glob (`/var/log/app/*.log`) line by line, as `tail -F`
//! does: it follows appended data, notices rotation (`mv app.log app.log.1` and a new
//! `app.log`) and truncation, and picks up new files that start matching the glob. Lines become
//! records as plain strings (`lines`), parsed JSON values (`json`) or objects keyed by a CSV
//! header (`csv`). See [`FileSourceConfig`] for the keys.
//!
//! ```toml
//! name = "app-logs"
//! connector = "file-source"
//! topic = "app-logs"
//! path = "/var/log/app/*.log"
//! format = "lines"
//! ```
//!
//! # `file-sink`
//!
//! Writes records to files named by a template (`/data/{topic}/{date}/{partition}.jsonl`), as
//! JSON lines, plain lines or CSV, and rolls files by size or age. See [`FileSinkConfig`].
//!
//! ```toml
//! name = "archive"
//! connector = "file-sink"
//! topics = ["orders"]
//! path = "/data/{topic}/{date}/{partition}.jsonl"
//! roll_bytes = 134217728
//! ```
//!
//! # Delivery guarantees
//!
//! - **`file-source` is exactly-once.** Each record carries the byte position just after its
//!   line, with the file's inode, as its source offset. The runtime stores that offset in the
//!   same log transaction as the records, so after a crash (even `kill -9`) the source resumes at
//!   exactly the first line whose record did not reach the log: no line is lost or repeated. A
//!   file that was rotated or truncated while the connector was down is read again from its
//!   start (with a warning), as its stored position no longer describes it.
//! - **`file-sink` is at-least-once.** Records are buffered and made durable (flushed and
//!   fsynced, with their directories) when the runtime calls `flush`; the runtime commits the
//!   consumer offsets only after that. Records after the last committed offset may be written
//!   again after a `kill -9`, so a file can hold a few duplicates at the end of what it had.
//!
//! # Tasks
//!
//! `file-source` splits the files its glob matches among up to `tasks.max` tasks by a stable
//! hash of each path, so a file that appears later is read by exactly one task. `file-sink` runs
//! one writer per task; when several tasks write, put `{partition}` in the path so no two tasks
//! write the same file.

mod off_thread;
mod sink;
mod source;

use logbrook_connect::Plugin;

pub use sink::{FileSinkConfig, SinkFormat};
pub use source::{FileSourceConfig, SourceFormat, StartPosition, TaskShare};

/// The file connectors, to register with a worker: `file-source` and `file-sink`.
pub fn plugins() -> Vec<Plugin> {
    vec![
        Plugin::source::<FileSourceConfig>("file-source"),
        Plugin::sink::<FileSinkConfig>("file-sink"),
    ]
}
