//! Runnable examples of Logbrook; see the `[[example]]` targets (`cargo run -p logbrook-examples --example NAME`).
