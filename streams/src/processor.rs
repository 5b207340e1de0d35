//! The processor API: custom stateful operators with `init`/`process`/`punctuate`/`close`,
//! access to state stores and stream-time or wall-clock punctuation (Kafka Streams' `Processor`).
//!
//! ```
//! use std::time::Duration;
//! use logbrook_streams::processor::{Processor, ProcessorContext, PunctuationType};
//! use logbrook_streams::serde::{Json, Str};
//! use logbrook_streams::{Produced, Record, StreamsBuilder, TopologyTestDriver};
//!
//! /// Emits, every 10 s of stream time, how many records each key had since the last emit.
//! struct Tally;
//! impl Processor<String, String> for Tally {
//!     type KeyOut = String;
//!     type ValueOut = u64;
//!     fn init(&mut self, ctx: &mut ProcessorContext<'_, String, u64>) -> logbrook_streams::Result<()> {
//!         ctx.schedule(Duration::from_secs(10), PunctuationType::StreamTime);
//!         Ok(())
//!     }
//!     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, u64>, r: Record<String, String>) -> logbrook_streams::Result<()> {
//!         let mut store = ctx.store::<String, u64>("tally")?;
//!         let n = store.get(&r.key)?.unwrap_or(0);
//!         store.put(&r.key, &(n + 1))
//!     }
//!     fn punctuate(&mut self, ctx: &mut ProcessorContext<'_, String, u64>, _: PunctuationType, at: i64) -> logbrook_streams::Result<()> {
//!         for (key, n) in ctx.store::<String, u64>("tally")?.all()? {
//!             ctx.store::<String, u64>("tally")?.delete(&key)?;
//!             ctx.forward(Record::new(key, n, at))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream_with::<String, String>("events", Str, Str)
//!     .process(|| Tally, &["tally"])
//!     .to_with("tallies", Produced::with(Str, Json::new()));
//! let mut driver = TopologyTestDriver::new(&builder.build().unwrap()).unwrap();
//! let input = driver.input_topic::<String, String>("events", Str, Str);
//! let output = driver.output_topic::<String, u64>("tallies", Str, Json::new());
//! // Stream-time punctuation fires at the first record, then every 10 s of stream time.
//! driver.pipe(&input, "a".into(), "x".into(), 1_000).unwrap();
//! driver.pipe(&input, "a".into(), "y".into(), 2_000).unwrap();
//! driver.pipe(&input, "a".into(), "z".into(), 5_000).unwrap();
//! driver.pipe(&input, "b".into(), "w".into(), 11_000).unwrap();
//! let out: Vec<(String, u64)> = driver.read_all(&output).unwrap().into_iter().map(|r| (r.key, r.value)).collect();
//! assert_eq!(out, [("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]);
//! ```

use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::record::Record;
use crate::task::ProcessorHooks;
use crate::task::TaskContext;
use crate::topology::{Data, Emit};

/// What drives a punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// Stream time: the task's event time, the slowest of its inputs (in the test driver, the
    /// largest timestamp piped). Fires after records as it advances, so it is deterministic on
    /// replay and in the test driver.
    StreamTime,
    /// Wall-clock time: fires while the task runs, records or not (advanced by hand in the test
    /// driver).
    WallClockTime,
}

/// A custom operator. One instance per task, made by the supplier given to
/// [`KStream::process`](crate::KStream::process).
pub trait Processor<K, V>: Send + 'static {
    /// Key type of the records it forwards.
    type KeyOut: Data;
    /// Value type of the records it forwards.
    type ValueOut: Data;

    /// Called once when the task starts, after its stores are restored: schedule punctuations
    /// here.
    ///
    /// # Errors
    /// An error stops the task.
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Self::KeyOut, Self::ValueOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called for every record.
    ///
    /// # Errors
    /// An error stops the task.
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Self::KeyOut, Self::ValueOut>,
        record: Record<K, V>,
    ) -> Result<()>;

    /// Called for each due punctuation scheduled with [`ProcessorContext::schedule`], with the
    /// stream time or wall-clock time (ms) it fires at.
    ///
    /// # Errors
    /// An error stops the task.
    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, Self::KeyOut, Self::ValueOut>,
        kind: PunctuationType,
        timestamp: i64,
    ) -> Result<()> {
        let _ = (ctx, kind, timestamp);
        Ok(())
    }

    /// Called once when the task stops cleanly, before its last commit.
    ///
    /// # Errors
    /// An error is reported by the runtime.
    fn close(
        &mut self,
        ctx: &mut ProcessorContext<'_, Self::KeyOut, Self::ValueOut>,
    ) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Schedule {
    interval: i64,
    kind: PunctuationType,
    /// When it next fires; `None` until the first stream time is known.
    next: Option<i64>,
}

/// What a [`Processor`] sees of its task.
pub struct ProcessorContext<'a, K, V> {
    task: &'a mut TaskContext,
    downstream: &'a mut Emit<K, V>,
    stores: &'a [(String, usize)],
    schedules: &'a mut Vec<Schedule>,
    wall_clock: i64,
}

impl<K, V> std::fmt::Debug for ProcessorContext<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext")
            .field("partition", &self.task.partition)
            .finish_non_exhaustive()
    }
}

impl<K: Data, V: Data> ProcessorContext<'_, K, V> {
    /// Sends a record to the downstream operators.
    ///
    /// # Errors
    /// Errors of the downstream operators.
    pub fn forward(&mut self, record: Record<K, V>) -> Result<()> {
        (self.downstream)(self.task, record)
    }

    /// Calls [`Processor::punctuate`] every `interval` of stream time or wall-clock time.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) {
        let interval = (interval.as_millis() as i64).max(1);
        let next = match kind {
            PunctuationType::StreamTime => None,
            PunctuationType::WallClockTime => Some(self.wall_clock + interval),
        };
        self.schedules.push(Schedule {
            interval,
            kind,
            next,
        });
    }

    /// A state store named in [`KStream::process`](crate::KStream::process), with JSON keys
    /// and values. Writes go to its changelog like any store's.
    ///
    /// # Errors
    /// [`Error::State`] if the store was not named when the processor was added.
    pub fn store<SK, SV>(&mut self, name: &str) -> Result<ProcessorStore<'_, SK, SV>>
    where
        SK: Serialize + DeserializeOwned,
        SV: Serialize + DeserializeOwned,
    {
        let index = self
            .stores
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| *i)
            .ok_or_else(|| Error::State {
                store: name.to_string(),
                reason: "not connected to this processor; name it in KStream::process".into(),
            })?;
        Ok(ProcessorStore {
            task: self.task,
            index,
            name: name.to_string(),
            _types: PhantomData,
        })
    }

    /// The task's stream time.
    pub fn stream_time(&self) -> i64 {
        self.task.event_time
    }

    /// The task's partition.
    pub fn partition(&self) -> u32 {
        self.task.partition
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.task.application_id
    }
}

/// A typed view of a state store for a processor.
pub struct ProcessorStore<'a, K, V> {
    task: &'a mut TaskContext,
    index: usize,
    name: String,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for ProcessorStore<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> ProcessorStore<'_, K, V> {
    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::State {
            store: self.name.clone(),
            reason: e.to_string(),
        }
    }

    fn key(&self, key: &K) -> Result<Bytes> {
        serde_json::to_vec(key)
            .map(Bytes::from)
            .map_err(|e| self.error(e))
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// [`Error::State`] on a read or decoding failure.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let slot = self.key(key)?;
        self.task
            .store_get(self.index, &slot)?
            .map(|b| serde_json::from_slice(&b).map_err(|e| self.error(e)))
            .transpose()
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// [`Error::State`] on an encoding failure.
    pub fn put(&mut self, key: &K, value: &V) -> Result<()> {
        let slot = self.key(key)?;
        let bytes = serde_json::to_vec(value).map_err(|e| self.error(e))?;
        let at = self.task.event_time;
        self.task
            .store_put(self.index, slot, Some(Bytes::from(bytes)), at)
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// [`Error::State`] on an encoding failure.
    pub fn delete(&mut self, key: &K) -> Result<()> {
        let slot = self.key(key)?;
        let at = self.task.event_time;
        self.task.store_put(self.index, slot, None, at)
    }

    /// Every entry, in the order of the encoded keys.
    ///
    /// # Errors
    /// [`Error::State`] on a read or decoding failure.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.task
            .store_entries(self.index)?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    serde_json::from_slice(&k).map_err(|e| self.error(e))?,
                    serde_json::from_slice(&v).map_err(|e| self.error(e))?,
                ))
            })
            .collect()
    }
}

/// One task's processor with its downstream and schedules.
pub(crate) struct ProcessorCell<P: Processor<K, V>, K, V> {
    pub(crate) processor: P,
    pub(crate) downstream: Emit<P::KeyOut, P::ValueOut>,
    pub(crate) stores: Vec<(String, usize)>,
    schedules: Vec<Schedule>,
    _input: PhantomData<fn(K, V)>,
}

impl<P: Processor<K, V>, K: Data, V: Data> ProcessorCell<P, K, V> {
    pub(crate) fn new(
        processor: P,
        downstream: Emit<P::KeyOut, P::ValueOut>,
        stores: Vec<(String, usize)>,
    ) -> Self {
        Self {
            processor,
            downstream,
            stores,
            schedules: Vec::new(),
            _input: PhantomData,
        }
    }

    pub(crate) fn process(&mut self, task: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        let mut ctx = ProcessorContext {
            task,
            downstream: &mut self.downstream,
            stores: &self.stores,
            schedules: &mut self.schedules,
            wall_clock: 0,
        };
        self.processor.process(&mut ctx, record)
    }
}

impl<P: Processor<K, V>, K: Data, V: Data> ProcessorHooks for ProcessorCell<P, K, V> {
    fn init(&mut self, task: &mut TaskContext, wall_clock: i64) -> Result<()> {
        let mut ctx = ProcessorContext {
            task,
            downstream: &mut self.downstream,
            stores: &self.stores,
            schedules: &mut self.schedules,
            wall_clock,
        };
        self.processor.init(&mut ctx)
    }

    fn punctuate(&mut self, task: &mut TaskContext, kind: PunctuationType, now: i64) -> Result<()> {
        for i in 0..self.schedules.len() {
            let schedule = self.schedules[i];
            if schedule.kind != kind {
                continue;
            }
            let due = schedule.next.is_none_or(|next| now >= next);
            if !due {
                continue;
            }
            // Fires once however many intervals passed, then waits for the next boundary.
            let next = match schedule.next {
                None => now + schedule.interval,
                Some(next) => next + ((now - next) / schedule.interval + 1) * schedule.interval,
            };
            self.schedules[i].next = Some(next);
            let mut ctx = ProcessorContext {
                task: &mut *task,
                downstream: &mut self.downstream,
                stores: &self.stores,
                schedules: &mut self.schedules,
                wall_clock: now,
            };
            self.processor.punctuate(&mut ctx, kind, now)?;
        }
        Ok(())
    }

    fn close(&mut self, task: &mut TaskContext) -> Result<()> {
        let mut ctx = ProcessorContext {
            task,
            downstream: &mut self.downstream,
            stores: &self.stores,
            schedules: &mut self.schedules,
            wall_clock: 0,
        };
        self.processor.close(&mut ctx)
    }
}
