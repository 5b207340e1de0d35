//! Joins on event time. Stream-stream joins buffer both sides in state stores until no partner
//! can arrive any more (`stream`); stream-table joins need no time and live in the DSL.

mod stream;

pub use stream::JoinWindows;
pub(crate) use stream::{Buffered, JoinCore, Joiner};
