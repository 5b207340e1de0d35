//! One running task: its operator instances (built from the topology), its context, its
//! event time and what it does with records that fail. The runtime and the test driver both
//! drive tasks through [`TaskInstance`].

mod context;
mod error_policy;
pub(crate) mod event_time;
mod hooks;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use logbrook_core::ConsumerRecord;

pub(crate) use context::OutputRecord;
pub use context::TaskContext;
pub use error_policy::OnError;
pub(crate) use error_policy::apply_error_policy;
use error_policy::panic_message;
pub(crate) use event_time::{Channel, EventTime, Progress};
use hooks::each_hook;
pub(crate) use hooks::{ProcessorHooks, SharedHooks};

use crate::error::{Error, Result};
use crate::processor::PunctuationType;
use crate::state::KeyValueStore;
use crate::topology::{SourceEmit, lock};

/// An operator that acts when event time advances: windows close, suppressed results go out,
/// join buffers expire.
pub(crate) trait EventTimeOperator: Send {
    /// Event time reached `watermark` (it only grows). Results go to the operator's downstream.
    fn advance(&mut self, ctx: &mut TaskContext, watermark: i64) -> Result<()>;
}

/// An event-time operator of a task, with the source topics whose records reach it: it waits
/// for those inputs only.
pub(crate) struct Timer {
    operator: Arc<Mutex<dyn EventTimeOperator>>,
    sources: Vec<Arc<str>>,
    /// Event time as last told to the operator.
    told: i64,
}

impl Timer {
    pub(crate) fn new(operator: Arc<Mutex<dyn EventTimeOperator>>, sources: Vec<Arc<str>>) -> Self {
        Self {
            operator,
            sources,
            told: i64::MIN,
        }
    }
}

/// One task's running topology.
pub(crate) struct TaskInstance {
    pub(crate) sources: HashMap<String, SourceEmit>,
    pub(crate) hooks: Vec<SharedHooks>,
    /// Event-time operators, upstream first.
    pub(crate) timers: Vec<Timer>,
    /// For each topic the task writes, the source topics whose records reach it.
    pub(crate) sink_sources: BTreeMap<Arc<str>, Vec<Arc<str>>>,
    pub(crate) store_names: Vec<String>,
    /// The store that keeps the task's [`EventTime`] across restarts, if any operator uses time.
    pub(crate) event_time_store: Option<usize>,
    pub(crate) context: TaskContext,
}

impl TaskInstance {
    /// Runs one input record through the graph; its outputs collect in the context. A panic in
    /// user code is handled by the processing-error policy; outputs and store writes made
    /// before the panic stay (as in Kafka Streams). Event time is advanced by the caller first.
    pub(crate) fn process(&mut self, record: &ConsumerRecord) -> Result<()> {
        let source = self
            .sources
            .get_mut(&*record.topic)
            .ok_or_else(|| Error::Topology(format!("no source reads topic {:?}", record.topic)))?;
        let context = &mut self.context;
        context.max_timestamp = context.max_timestamp.max(record.timestamp);
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source(context, record)));
        let result = match outcome {
            Ok(result) => result,
            Err(panic) => {
                let error = Error::Processing {
                    topic: record.topic.to_string(),
                    partition: record.partition,
                    offset: record.offset,
                    message: panic_message(&*panic),
                };
                let policy = self.context.on_processing_error.clone();
                apply_error_policy(&mut self.context, record, error, &policy)
            }
        };
        result.and_then(|()| self.punctuate_stream_time())
    }

    /// Tells every event-time operator how far the inputs feeding it have come, upstream
    /// first. A panic in user code here fails the task: there is no single record to skip.
    /// Stream-time punctuations fire after the next record, or at
    /// [`TaskInstance::punctuate_stream_time`].
    pub(crate) fn advance_event_time(&mut self, time: &mut EventTime) -> Result<()> {
        let watermark = time.watermark();
        let context = &mut self.context;
        let timers = &mut self.timers;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            timers.iter_mut().try_for_each(|timer| {
                let reached = time.watermark_of(&timer.sources);
                if reached <= timer.told {
                    return Ok(());
                }
                timer.told = reached;
                lock(&timer.operator).advance(context, reached)
            })
        }));
        match outcome {
            Ok(result) => result?,
            Err(panic) => {
                return Err(Error::Topology(format!(
                    "user code panicked while event time advanced to {watermark}: {}",
                    panic_message(&*panic)
                )));
            }
        }
        self.context.event_time = self.context.event_time.max(watermark);
        Ok(())
    }

    /// Turns the store writes since the last call into changelog records (the latest value per
    /// key), stamped with the largest record timestamp seen.
    pub(crate) fn log_store_writes(&mut self) {
        let ctx = &mut self.context;
        let timestamp = ctx.max_timestamp.max(0);
        for (store, changelog) in ctx.stores.iter_mut().zip(&ctx.changelogs) {
            for (key, value) in store.take_unlogged() {
                ctx.outputs.push(OutputRecord {
                    topic: changelog.clone(),
                    partition: Some(ctx.partition),
                    key: Some(key),
                    value,
                    timestamp,
                    headers: Vec::new(),
                });
            }
        }
    }

    /// Reads the progress of each channel back from the event-time store (after a restore).
    pub(crate) fn load_event_time(&self, time: &mut EventTime) -> Result<()> {
        let Some(store) = self.event_time_store else {
            return Ok(());
        };
        let channels: Vec<Channel> = time.channels().cloned().collect();
        for channel in channels {
            let saved = self.context.store_get(store, &channel.store_key())?;
            if let Some(bytes) = saved
                && let Ok(bytes) = <[u8; 8]>::try_from(&bytes[..])
            {
                time.restore(&channel, i64::from_be_bytes(bytes));
            }
        }
        Ok(())
    }

    /// Writes the channels' progress that moved to the event-time store (and its changelog),
    /// before a commit, so a restart resumes the same event time.
    pub(crate) fn save_event_time(&mut self, time: &mut EventTime) -> Result<()> {
        let Some(store) = self.event_time_store else {
            return Ok(());
        };
        for (channel, watermark) in time.take_unsaved() {
            let value = Bytes::copy_from_slice(&watermark.to_be_bytes());
            self.context
                .store_put(store, channel.store_key(), Some(value), 0)?;
        }
        Ok(())
    }

    /// Starts the processor-API instances (after the stores are open and restored).
    pub(crate) fn init_processors(&mut self, wall_clock: i64) -> Result<()> {
        each_hook(&self.hooks, &mut self.context, |h, ctx| {
            h.init(ctx, wall_clock)
        })
    }

    /// Fires stream-time punctuations that the current event time made due (as Kafka Streams,
    /// after a record is processed).
    pub(crate) fn punctuate_stream_time(&mut self) -> Result<()> {
        let now = self.context.event_time;
        if now == i64::MIN {
            return Ok(());
        }
        each_hook(&self.hooks, &mut self.context, |h, ctx| {
            h.punctuate(ctx, PunctuationType::StreamTime, now)
        })
    }

    /// Fires wall-clock punctuations due at `now` (ms).
    pub(crate) fn punctuate_wall_clock(&mut self, now: i64) -> Result<()> {
        each_hook(&self.hooks, &mut self.context, |h, ctx| {
            h.punctuate(ctx, PunctuationType::WallClockTime, now)
        })
    }

    /// Closes the processor-API instances.
    pub(crate) fn close_processors(&mut self) -> Result<()> {
        each_hook(&self.hooks, &mut self.context, |h, ctx| h.close(ctx))
    }

    /// Opens the task's stores, in the order the operators registered them.
    pub(crate) fn open_stores(
        &mut self,
        mut open: impl FnMut(&str) -> Result<KeyValueStore>,
    ) -> Result<()> {
        self.context.stores = self
            .store_names
            .iter()
            .map(|name| open(name))
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Whether the task reads `topic` (resolved name).
    pub(crate) fn reads(&self, topic: &str) -> bool {
        self.sources.contains_key(topic)
    }

    pub(crate) fn take_outputs(&mut self) -> Vec<OutputRecord> {
        std::mem::take(&mut self.context.outputs)
    }

    /// Records skipped by `OnError::LogAndSkip` or sent to the dead-letter topic so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.context.skipped
    }
}
