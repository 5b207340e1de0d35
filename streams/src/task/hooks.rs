//! What a task calls on processor-API instances besides records: `init`, punctuation and
//! `close` (the instances themselves are in [`crate::processor`]).

use std::sync::{Arc, Mutex};

use super::TaskContext;
use crate::error::Result;
use crate::processor::PunctuationType;
use crate::topology::lock;

/// What the task calls on a processor instance besides records.
pub(crate) trait ProcessorHooks: Send {
    fn init(&mut self, task: &mut TaskContext, wall_clock: i64) -> Result<()>;
    /// Fires the due punctuations of `kind` at `now` (stream time or wall clock).
    fn punctuate(&mut self, task: &mut TaskContext, kind: PunctuationType, now: i64) -> Result<()>;
    fn close(&mut self, task: &mut TaskContext) -> Result<()>;
}

/// A processor instance shared by the record path and the task's hooks.
pub(crate) type SharedHooks = Arc<Mutex<dyn ProcessorHooks>>;

/// Runs `f` on every hook, stopping at the first error.
pub(crate) fn each_hook(
    hooks: &[SharedHooks],
    task: &mut TaskContext,
    mut f: impl FnMut(&mut dyn ProcessorHooks, &mut TaskContext) -> Result<()>,
) -> Result<()> {
    for hook in hooks {
        f(&mut *lock(hook), task)?;
    }
    Ok(())
}
