//! The DSL: [`StreamsBuilder`] starts from topics and yields typed [`KStream`]s.

mod kstream;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use logbrook_core::{ConsumerRecord, Header};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use kstream::{BranchedStream, KStream, Produced};

use crate::error::{Error, Result};
use crate::record::Record;
use crate::serde::{Json, Serde};
use crate::topology::{
    Data, Node, OnError, OutputRecord, SourceEmit, SourceFactory, TaskContext, Topology, lock,
};

#[derive(Default)]
pub(crate) struct BuilderState {
    next_id: AtomicUsize,
    sources: Mutex<BTreeMap<String, SourceFactory>>,
    sinks: Mutex<BTreeSet<String>>,
    /// Mistakes found while building, reported by `build`.
    problems: Mutex<Vec<String>>,
}

impl BuilderState {
    pub(crate) fn next_id(&self) -> usize {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn add_sink(&self, topic: &str) {
        lock(&self.sinks).insert(topic.to_string());
    }
}

/// Records the operators of a topology, starting from source topics.
///
/// # Examples
/// ```
/// use logbrook_streams::{StreamsBuilder, TopologyTestDriver, serde::Str};
/// let builder = StreamsBuilder::new();
/// builder
///     .stream_with::<Option<String>, String>("lines", Str, Str)
///     .flat_map_values(|line| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
///     .filter(|_, word| word.len() > 3)
///     .to_with("words", logbrook_streams::Produced::with(Str, Str));
/// let topology = builder.build().unwrap();
/// assert_eq!(topology.source_topics(), vec!["lines"]);
/// ```
#[derive(Clone, Default)]
pub struct StreamsBuilder {
    state: Arc<BuilderState>,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder").finish_non_exhaustive()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of `topic` with JSON keys and values (the default serde).
    pub fn stream<K, V>(&self, topic: &str) -> KStream<K, V>
    where
        K: Data + Serialize + DeserializeOwned,
        V: Data + Serialize + DeserializeOwned,
    {
        self.stream_with(topic, Json::<K>::new(), Json::<V>::new())
    }

    /// A stream of `topic` with the given serdes.
    pub fn stream_with<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KStream<K, V> {
        let node = Node::<K, V>::new(self.state.next_id());
        let (key_serde, value_serde) = (Arc::new(key_serde), Arc::new(value_serde));
        let graph = node.clone();
        let factory: SourceFactory = Arc::new(move |inst| {
            let mut downstream = graph.instantiate(inst);
            let (key_serde, value_serde) = (key_serde.clone(), value_serde.clone());
            let emit: SourceEmit = Box::new(move |ctx: &mut TaskContext, r: &ConsumerRecord| {
                let key = match key_serde.deserialize(r.key.as_deref()) {
                    Ok(key) => key,
                    Err(reason) => return on_bad_record(ctx, r, "key", reason),
                };
                let value = match value_serde.deserialize(r.value.as_deref()) {
                    Ok(value) => value,
                    Err(reason) => return on_bad_record(ctx, r, "value", reason),
                };
                downstream(
                    ctx,
                    Record {
                        key,
                        value,
                        timestamp: r.timestamp,
                        headers: r.headers.clone(),
                    },
                )
            });
            emit
        });
        let mut sources = lock(&self.state.sources);
        if sources.insert(topic.to_string(), factory).is_some() {
            lock(&self.state.problems).push(format!("topic {topic:?} is read by two sources"));
        }
        KStream::new(node, self.state.clone())
    }

    /// Checks and freezes the topology.
    ///
    /// # Errors
    /// [`Error::Topology`] naming each mistake (no source, a topic read twice).
    pub fn build(self) -> Result<Topology> {
        let problems = std::mem::take(&mut *lock(&self.state.problems));
        if !problems.is_empty() {
            return Err(Error::Topology(problems.join("; ")));
        }
        let sources = std::mem::take(&mut *lock(&self.state.sources));
        if sources.is_empty() {
            return Err(Error::Topology(
                "no source topic: start with StreamsBuilder::stream".into(),
            ));
        }
        let sinks = std::mem::take(&mut *lock(&self.state.sinks));
        Ok(Topology { sources, sinks })
    }
}

/// Applies the task's deserialization error policy to a record that failed to decode.
fn on_bad_record(
    ctx: &mut TaskContext,
    r: &ConsumerRecord,
    part: &'static str,
    reason: String,
) -> Result<()> {
    let error = Error::Deserialize {
        topic: r.topic.to_string(),
        partition: r.partition,
        offset: r.offset,
        part,
        reason,
    };
    match ctx.on_error.clone() {
        OnError::Fail => Err(error),
        OnError::LogAndSkip => {
            tracing::warn!(error = %error, "skipping a record that does not deserialize");
            ctx.skipped += 1;
            Ok(())
        }
        OnError::DeadLetter(topic) => {
            let mut headers = r.headers.clone();
            for (key, value) in [
                ("logbrook.error.topic", r.topic.to_string()),
                ("logbrook.error.partition", r.partition.to_string()),
                ("logbrook.error.offset", r.offset.to_string()),
                ("logbrook.error.message", error.to_string()),
            ] {
                headers.push(Header {
                    key: key.into(),
                    value: Some(value.into()),
                });
            }
            ctx.outputs.push(OutputRecord {
                topic: topic.as_str().into(),
                partition: None,
                key: r.key.clone(),
                value: r.value.clone(),
                timestamp: r.timestamp,
                headers,
            });
            ctx.skipped += 1;
            Ok(())
        }
    }
}
