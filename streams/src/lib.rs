//! Kafka-Streams-style stream processing on Logbrook's log: a typed DSL, a runtime that runs one
//! task per input partition, and a test driver for users' pipelines.
//!
//! ```
//! use logbrook_streams::serde::{Json, Str};
//! use logbrook_streams::{Produced, StreamsBuilder, TopologyTestDriver};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream_with::<String, u32>("scores", Str, Json::new())
//!     .filter(|_, score| *score >= 50)
//!     .map_values(|score| score * 2)
//!     .to_with("doubled", Produced::with(Str, Json::new()));
//! let topology = builder.build().unwrap();
//!
//! let mut driver = TopologyTestDriver::new(&topology).unwrap();
//! let input = driver.input_topic::<String, u32>("scores", Str, Json::new());
//! let output = driver.output_topic::<String, u32>("doubled", Str, Json::new());
//! driver.pipe(&input, "ann".to_string(), 70, 1_000).unwrap();
//! driver.pipe(&input, "bob".to_string(), 20, 2_000).unwrap();
//! let out = driver.read_all(&output).unwrap();
//! assert_eq!((out[0].key.as_str(), out[0].value), ("ann", 140));
//! assert_eq!(out.len(), 1);
//! ```

mod driver;
mod dsl;
mod error;
mod join;
pub mod processor;
mod record;
mod reset;
mod runtime;
pub mod serde;
mod state;
mod task;
mod topology;
mod window;

pub use driver::{
    DRIVER_APPLICATION_ID, TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver,
};
pub use dsl::{
    BranchedStream, Grouped, KGroupedStream, KStream, KTable, Produced, SessionWindowedKStream,
    SlidingWindowedKStream, StreamsBuilder, TimeWindowedKStream, WindowedTable,
};
pub use error::{Error, Result};
pub use join::JoinWindows;
pub use record::Record;
pub use reset::{ResetReport, reset_application};
pub use runtime::{
    InputBounds, KeyLookup, KeyQueryMetadata, LocalStores, ProcessingGuarantee, StreamsApp,
    StreamsConfig, StreamsMetrics, TaskMetrics, default_state_dir,
};
pub use state::{KeyValueStore, StoreReader};
pub use task::event_time::{MARKER_HEADER, is_event_time_marker};
pub use task::{OnError, TaskContext};
/// Re-exported so users can stop an app without adding `tokio-util` themselves.
pub use tokio_util::sync::CancellationToken;
pub use topology::{Data, Topology};
pub use window::{SessionWindows, SlidingWindows, TimeWindows, Windowed};
