//! The plugin registry: connector types by name, with their typed configs erased so the runtime
//! can hold them in one list.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Sink, SinkConnector, SinkContext, Source, SourceConnector, SourceContext};
use crate::error::{ConfigIssue, Error, Result};

/// Whether a connector reads into the log or writes out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    /// Reads an outside system into a topic.
    Source,
    /// Writes topics to an outside system.
    Sink,
}

impl std::fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Sink => "sink",
        })
    }
}

/// A registered connector type (`file-source`, `postgres-sink`, ...).
#[derive(Clone)]
pub struct Plugin {
    name: &'static str,
    kind: ConnectorKind,
    erased: Arc<dyn ErasedPlugin>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Plugin {
    /// A source type whose config is `C`.
    pub fn source<C: SourceConnector>(name: &'static str) -> Self {
        Self {
            name,
            kind: ConnectorKind::Source,
            erased: Arc::new(SourcePlugin::<C>(PhantomData)),
        }
    }

    /// A sink type whose config is `C`.
    pub fn sink<C: SinkConnector>(name: &'static str) -> Self {
        Self {
            name,
            kind: ConnectorKind::Sink,
            erased: Arc::new(SinkPlugin::<C>(PhantomData)),
        }
    }

    /// The type name used in `connector = "..."`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Source or sink.
    pub fn kind(&self) -> ConnectorKind {
        self.kind
    }

    /// Parses and validates the connector's own keys, without I/O.
    ///
    /// # Errors
    /// The first bad key.
    pub fn validate(&self, own: &Map<String, Value>) -> Result<(), ConfigIssue> {
        self.erased.validate(own)
    }

    /// Splits a source's work into at most `max_tasks` task configs.
    ///
    /// # Errors
    /// Config errors; listing errors from the connector.
    pub fn source_tasks(&self, own: &Map<String, Value>, max_tasks: usize) -> Result<Vec<Value>> {
        self.erased.source_tasks(own, max_tasks)
    }

    /// The partitions topics need before a source connector's first record (see
    /// [`SourceConnector::partitions_needed`]).
    pub fn partitions_needed(
        &self,
        own: &Map<String, Value>,
        topic: &str,
    ) -> BoxFuture<'static, Result<Vec<(String, u32)>>> {
        self.erased.partitions_needed(own, topic.to_string())
    }

    /// Opens one source task from a config returned by [`source_tasks`](Self::source_tasks).
    pub fn open_source(
        &self,
        task: Value,
        context: SourceContext,
    ) -> BoxFuture<'static, Result<Box<dyn Source>>> {
        self.erased.open_source(task, context)
    }

    /// Whether a source names its records' topics itself, so `topic` is optional.
    ///
    /// # Errors
    /// The first bad key.
    pub fn names_own_topics(&self, own: &Map<String, Value>) -> Result<bool, ConfigIssue> {
        self.erased.names_own_topics(own)
    }

    /// Tells a source connector it was deleted.
    pub fn deleted(
        &self,
        own: &Map<String, Value>,
        connector: &str,
    ) -> BoxFuture<'static, Result<()>> {
        self.erased.deleted(own, connector.to_string())
    }

    /// Opens one sink task.
    pub fn open_sink(
        &self,
        own: &Map<String, Value>,
        context: SinkContext,
    ) -> BoxFuture<'static, Result<Box<dyn Sink>>> {
        self.erased.open_sink(own, context)
    }
}

/// The connector types a worker can run.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    plugins: Vec<Plugin>,
}

impl Registry {
    /// A registry of these plugins.
    pub fn new(plugins: Vec<Plugin>) -> Self {
        Self { plugins }
    }

    /// All plugins, in registration order.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The plugin of a type.
    ///
    /// # Errors
    /// [`Error::UnknownPlugin`] listing the known types.
    pub fn get(&self, name: &str) -> Result<&Plugin> {
        self.plugins
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::UnknownPlugin {
                name: name.to_string(),
                known: self
                    .plugins
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

trait ErasedPlugin: Send + Sync {
    fn validate(&self, own: &Map<String, Value>) -> Result<(), ConfigIssue>;
    fn names_own_topics(&self, _own: &Map<String, Value>) -> Result<bool, ConfigIssue> {
        Ok(false)
    }
    fn deleted(
        &self,
        _own: &Map<String, Value>,
        _connector: String,
    ) -> BoxFuture<'static, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn source_tasks(&self, own: &Map<String, Value>, max_tasks: usize) -> Result<Vec<Value>>;
    fn partitions_needed(
        &self,
        _own: &Map<String, Value>,
        _topic: String,
    ) -> BoxFuture<'static, Result<Vec<(String, u32)>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn open_source(
        &self,
        task: Value,
        context: SourceContext,
    ) -> BoxFuture<'static, Result<Box<dyn Source>>>;
    fn open_sink(
        &self,
        own: &Map<String, Value>,
        context: SinkContext,
    ) -> BoxFuture<'static, Result<Box<dyn Sink>>>;
}

struct SourcePlugin<C>(PhantomData<fn() -> C>);
struct SinkPlugin<C>(PhantomData<fn() -> C>);

/// Deserializes a typed config, naming the key of the first error (`path.to.key`).
pub(crate) fn parse_typed<C: DeserializeOwned>(value: &Value) -> Result<C, ConfigIssue> {
    serde_path_to_error::deserialize::<_, C>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // The path usually ends in the bad key; inside tagged enums it stops short, and the
        // unknown key is only in the message.
        let unknown = inner
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next());
        let key = match unknown {
            Some(field) if path == "." => field.to_string(),
            Some(field) if !path.ends_with(field) => format!("{path}.{field}"),
            _ => path,
        };
        ConfigIssue::new(key, inner)
    })
}

fn parse_connector<C: DeserializeOwned>(
    own: &Map<String, Value>,
    validate: impl Fn(&C) -> Result<(), ConfigIssue>,
) -> Result<C, ConfigIssue> {
    let config: C = parse_typed(&Value::Object(own.clone()))?;
    validate(&config)?;
    Ok(config)
}

impl<C: SourceConnector> ErasedPlugin for SourcePlugin<C> {
    fn validate(&self, own: &Map<String, Value>) -> Result<(), ConfigIssue> {
        parse_connector::<C>(own, C::validate).map(|_| ())
    }

    fn names_own_topics(&self, own: &Map<String, Value>) -> Result<bool, ConfigIssue> {
        parse_connector::<C>(own, C::validate).map(|c| c.names_own_topics())
    }

    fn deleted(
        &self,
        own: &Map<String, Value>,
        connector: String,
    ) -> BoxFuture<'static, Result<()>> {
        let parsed = parse_connector::<C>(own, C::validate);
        Box::pin(async move {
            let config = parsed.map_err(|issue| Error::fatal(issue.to_string()))?;
            config.deleted(connector).await
        })
    }

    fn source_tasks(&self, own: &Map<String, Value>, max_tasks: usize) -> Result<Vec<Value>> {
        let config = parse_connector::<C>(own, C::validate)
            .map_err(|issue| Error::fatal(issue.to_string()))?;
        config
            .task_configs(max_tasks.max(1))?
            .into_iter()
            .map(|task| {
                serde_json::to_value(task)
                    .map_err(|e| Error::fatal(format!("task config does not serialize: {e}")))
            })
            .collect()
    }

    fn partitions_needed(
        &self,
        own: &Map<String, Value>,
        topic: String,
    ) -> BoxFuture<'static, Result<Vec<(String, u32)>>> {
        let parsed = parse_connector::<C>(own, C::validate);
        Box::pin(async move {
            let config = parsed.map_err(|issue| Error::fatal(issue.to_string()))?;
            config.partitions_needed(&topic).await
        })
    }

    fn open_source(
        &self,
        task: Value,
        context: SourceContext,
    ) -> BoxFuture<'static, Result<Box<dyn Source>>> {
        Box::pin(async move {
            let config: C = parse_typed(&task).map_err(|issue| Error::fatal(issue.to_string()))?;
            config.open(context).await
        })
    }

    fn open_sink(
        &self,
        _own: &Map<String, Value>,
        _context: SinkContext,
    ) -> BoxFuture<'static, Result<Box<dyn Sink>>> {
        Box::pin(async { Err(Error::fatal("a source plugin cannot open a sink")) })
    }
}

impl<C: SinkConnector> ErasedPlugin for SinkPlugin<C> {
    fn validate(&self, own: &Map<String, Value>) -> Result<(), ConfigIssue> {
        parse_connector::<C>(own, C::validate).map(|_| ())
    }

    fn source_tasks(&self, _own: &Map<String, Value>, _max_tasks: usize) -> Result<Vec<Value>> {
        Err(Error::fatal("a sink plugin has no source tasks"))
    }

    fn open_source(
        &self,
        _task: Value,
        _context: SourceContext,
    ) -> BoxFuture<'static, Result<Box<dyn Source>>> {
        Box::pin(async { Err(Error::fatal("a sink plugin cannot open a source")) })
    }

    fn open_sink(
        &self,
        own: &Map<String, Value>,
        context: SinkContext,
    ) -> BoxFuture<'static, Result<Box<dyn Sink>>> {
        let parsed = parse_connector::<C>(own, C::validate);
        Box::pin(async move {
            let config = parsed.map_err(|issue| Error::fatal(issue.to_string()))?;
            config.open(context).await
        })
    }
}
