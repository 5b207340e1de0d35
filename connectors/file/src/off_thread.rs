//! Blocking file work on tokio's blocking pool, with its state kept between calls.
//!
//! Files are read and written with `std::fs` (large buffers, positional reads, `fsync`), which
//! blocks; the async worker threads must not. [`OffThread`] moves the state into
//! `spawn_blocking` for one operation and takes it back afterwards. A call that is cancelled
//! (its future dropped) leaves the operation running; the next call collects its outcome with
//! [`OffThread::settle`] first, so no state and no read data are lost to cancellation.

use logbrook_connect::{Error, Result};
use tokio::task::JoinHandle;

/// State `S` used by blocking operations whose outcome is `O`.
pub(crate) struct OffThread<S, O> {
    /// `None` while an operation runs, or for good after one panicked.
    state: Option<S>,
    running: Option<JoinHandle<(S, O)>>,
    /// Names the owner in errors.
    what: &'static str,
}

impl<S: Send + 'static, O: Send + 'static> OffThread<S, O> {
    /// Wraps `state`.
    pub(crate) fn new(state: S, what: &'static str) -> Self {
        Self {
            state: Some(state),
            running: None,
            what,
        }
    }

    /// Waits for an operation that a cancelled call left running and returns its outcome, or
    /// `None` when nothing was running.
    ///
    /// # Errors
    /// Fatal when the operation panicked (its state is lost).
    ///
    /// # Cancel safety
    /// Cancel-safe: the operation stays pending for the next call.
    pub(crate) async fn settle(&mut self) -> Result<Option<O>> {
        let Some(running) = self.running.as_mut() else {
            return Ok(None);
        };
        let joined = running.await;
        self.running = None;
        let (state, outcome) = joined
            .map_err(|e| Error::fatal(format!("{}: blocking operation failed: {e}", self.what)))?;
        self.state = Some(state);
        Ok(Some(outcome))
    }

    /// Runs `operation` on the blocking pool and returns its outcome. Call
    /// [`settle`](Self::settle) first.
    ///
    /// # Errors
    /// Fatal when the operation panics, or when an earlier one did.
    ///
    /// # Cancel safety
    /// Cancel-safe: the operation goes on, and the next [`settle`](Self::settle) returns its
    /// outcome.
    pub(crate) async fn run<F>(&mut self, operation: F) -> Result<O>
    where
        F: FnOnce(&mut S) -> O + Send + 'static,
    {
        let mut state = self.state.take().ok_or_else(|| {
            Error::fatal(format!(
                "{}: state lost to an earlier failed operation",
                self.what
            ))
        })?;
        self.running = Some(tokio::task::spawn_blocking(move || {
            let outcome = operation(&mut state);
            (state, outcome)
        }));
        self.settle()
            .await?
            .ok_or_else(|| Error::fatal(format!("{}: operation vanished", self.what)))
    }
}
