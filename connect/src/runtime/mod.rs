//! The worker: runs connectors' tasks on the embedded log, keeps their status, and changes them
//! on request (REST or files).
//!
//! Every task runs under a child of the worker's root `CancellationToken` on one `TaskTracker`.
//! Stopping a connector cancels its tasks: sources stop polling (their last batch is already
//! committed), sinks flush and commit; [`Worker::shutdown`] waits for all of it.

mod distributed;
mod errors;
mod log;
mod metrics;
mod offsets;
mod sink_task;
mod source_task;
mod stores;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logbrook_client::Client;
use logbrook_core::TopicPartition;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use distributed::TASK_SLOTS;
pub use metrics::{Metrics, TaskMetrics};
pub use offsets::{ConnectorOffsets, OffsetChange, SinkOffset, SourceOffset};
pub use sink_task::group_id;
pub use stores::{CONFIGS_TOPIC, OFFSETS_TOPIC, OffsetStore};

use crate::api::{ConnectorKind, Registry};
use crate::config::{ConnectorConfig, WorkerConfig};
use crate::error::{ConfigOrigin, Error, Result};
use log::WorkerLog;
use stores::{ConfigStore, StateTopics, StatusWriter, StoredConnector};

/// A task's state, as `GET /connectors/{name}/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Opening.
    Unassigned,
    /// Working.
    Running,
    /// Paused by request.
    Paused,
    /// Stopped by an error, with the message.
    Failed(String),
    /// Stopped (connector deleted or worker shutting down).
    Stopped,
}

impl TaskState {
    /// Kafka Connect's state name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Unassigned => "UNASSIGNED",
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Failed(_) => "FAILED",
            Self::Stopped => "STOPPED",
        }
    }
}

/// A connector's status and its tasks'.
#[derive(Debug, Clone)]
pub struct ConnectorStatus {
    /// Name.
    pub name: String,
    /// Source or sink.
    pub kind: ConnectorKind,
    /// The connector's own state (RUNNING, PAUSED, or FAILED when it could not start tasks).
    pub state: TaskState,
    /// Each task's state.
    pub tasks: Vec<TaskState>,
    /// The worker (its REST address) each task runs on; empty when unknown.
    pub task_workers: Vec<String>,
}

/// What a task needs from its connector and worker.
pub(crate) struct TaskScope {
    pub(crate) worker: Arc<WorkerShared>,
    pub(crate) config: Arc<ConnectorConfig>,
    pub(crate) task: usize,
    pub(crate) token: CancellationToken,
    pub(crate) metrics: Arc<TaskMetrics>,
    paused: watch::Receiver<bool>,
    state: Arc<Mutex<TaskState>>,
}

impl TaskScope {
    pub(crate) fn set_state(&self, state: TaskState) {
        if let Some(status) = &self.worker.status {
            status.task(&self.config.name, self.task, &state);
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    pub(crate) fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Waits while the connector is paused. Returns false when the task should stop.
    pub(crate) async fn wait_while_paused(&self) -> bool {
        let mut paused = self.paused.clone();
        if *paused.borrow_and_update() {
            self.set_state(TaskState::Paused);
            tracing::info!(connector = %self.config.name, task = self.task, "paused");
            loop {
                tokio::select! {
                    () = self.token.cancelled() => return false,
                    changed = paused.changed() => {
                        if changed.is_err() {
                            return false;
                        }
                        if !*paused.borrow_and_update() {
                            break;
                        }
                    }
                }
            }
            self.set_state(TaskState::Running);
            tracing::info!(connector = %self.config.name, task = self.task, "resumed");
        }
        !self.token.is_cancelled()
    }

    fn finish(&self, outcome: Result<()>) {
        match outcome {
            Ok(()) => {
                self.set_state(TaskState::Stopped);
                tracing::info!(connector = %self.config.name, task = self.task, "task stopped");
            }
            Err(e) => {
                let message = self.config.secrets.redact(&e.to_string());
                tracing::error!(connector = %self.config.name, task = self.task, error = %message, "task failed");
                self.set_state(TaskState::Failed(message));
            }
        }
    }
}

/// State shared by the worker and its tasks.
pub(crate) struct WorkerShared {
    pub(crate) log: WorkerLog,
    pub(crate) config: WorkerConfig,
    pub(crate) offsets: OffsetStore,
    /// On a cluster: where connector and task states are published.
    status: Option<StatusWriter>,
    topic_lock: tokio::sync::Mutex<()>,
}

impl WorkerShared {
    /// Creates a topic the worker writes to if it is missing; returns its partition count.
    pub(crate) async fn ensure_topic(&self, topic: &str) -> Result<u32> {
        self.ensure_partitions(topic, 1).await
    }

    /// Creates a topic the worker writes to if it is missing, with at least `needed`
    /// partitions; an existing topic with fewer is an error that says how many are needed.
    /// Returns its partition count.
    pub(crate) async fn ensure_partitions(&self, topic: &str, needed: u32) -> Result<u32> {
        let _guard = self.topic_lock.lock().await;
        if let Some(count) = self.log.partition_count(topic).await? {
            if count < needed {
                return Err(Error::fatal(format!(
                    "topic {topic:?} has {count} partition(s) and this connector writes records for partition {}: \
                     create the topic with at least {needed} partitions (or write into a new topic, which is created with them)",
                    needed - 1
                )));
            }
            return Ok(count);
        }
        let partitions = self.config.topic_partitions.max(needed);
        self.log.create_topic(topic, partitions, false).await?;
        tracing::info!(topic, partitions, "created topic");
        Ok(self.log.partition_count(topic).await?.unwrap_or(partitions))
    }
}

/// A running (or paused, or failed) connector.
struct ConnectorRuntime {
    /// The config as given, before interpolation: what the REST API returns.
    raw: Map<String, Value>,
    config: Arc<ConnectorConfig>,
    /// Whether it lives in `__connect_configs` (created over REST) rather than in a file.
    persisted: bool,
    paused: watch::Sender<bool>,
    token: CancellationToken,
    tasks: Vec<TaskSlot>,
    /// Why no task could start, if so.
    failure: Option<String>,
}

/// One of a connector's tasks: its work, and whether it runs on this worker (on a cluster,
/// each task runs on the worker that owns its slot).
struct TaskSlot {
    work: TaskWork,
    local: Option<LocalTask>,
}

/// What a task does: a source task's config, or a sink task's partitions.
#[derive(Clone)]
enum TaskWork {
    Source(Value),
    Sink(Vec<TopicPartition>),
}

/// A task running on this worker.
struct LocalTask {
    state: Arc<Mutex<TaskState>>,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl LocalTask {
    /// Stops the task and waits for it; a task that does not stop in time is abandoned (its
    /// offsets are safe either way).
    async fn stop(self, connector: &str) {
        self.token.cancel();
        if tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .is_err()
        {
            tracing::warn!(connector, "a task did not stop within 30 s");
        }
    }
}

/// Runs connectors.
pub struct Worker {
    shared: Arc<WorkerShared>,
    registry: Registry,
    configs: ConfigStore,
    connectors: tokio::sync::Mutex<BTreeMap<String, ConnectorRuntime>>,
    metrics: Arc<Metrics>,
    root: CancellationToken,
    tracker: TaskTracker,
    /// On a cluster: the task slots this worker owns and the other workers' task states.
    cluster: Option<Arc<distributed::ClusterView>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts a worker on a log (an open [`logbrook_core::Broker`], or a [`logbrook_client::Cluster`])
    /// and restarts the connectors stored there (created over REST; on a cluster, files too).
    ///
    /// # Errors
    /// Reading the internal topics failed.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, stored connectors it already restarted run on with no
    /// worker to stop them. Await it to completion.
    pub async fn start(
        log: impl Into<Client>,
        registry: Registry,
        config: WorkerConfig,
    ) -> Result<Arc<Self>> {
        let log = WorkerLog(log.into());
        let on_cluster = log.embedded().is_none();
        let topics = StateTopics::new(&config, on_cluster);
        let offsets = OffsetStore::load(&log, &topics.offsets).await?;
        let (configs, stored) = ConfigStore::load(&log, &topics.configs).await?;
        let status = if on_cluster {
            let worker_id = config.rest_listen.to_string();
            Some(StatusWriter::start(&log, &topics.status, worker_id).await?)
        } else {
            None
        };
        let worker = Arc::new(Self {
            shared: Arc::new(WorkerShared {
                log,
                config,
                offsets,
                status,
                topic_lock: tokio::sync::Mutex::new(()),
            }),
            registry,
            configs,
            connectors: tokio::sync::Mutex::new(BTreeMap::new()),
            metrics: Arc::new(Metrics::default()),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
            cluster: on_cluster.then(Arc::default),
        });
        for (name, connector) in stored {
            let origin = ConfigOrigin::Rest(name.clone());
            let outcome = match worker.validate(&connector.config, &origin) {
                Ok(config) => {
                    worker
                        .put_inner(
                            &name,
                            connector.config,
                            config,
                            true,
                            Some(connector.paused),
                        )
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                tracing::error!(connector = %name, error = %e, "stored connector does not start");
            }
        }
        if let Client::Cluster(cluster) = &worker.shared.log.0 {
            distributed::join(&worker, cluster).await?;
        }
        Ok(worker)
    }

    /// The worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
    }

    /// The plugins it can run.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Per-task counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// On a cluster, how many of the [`TASK_SLOTS`] task slots this worker owns now (the
    /// group's assignment, which comes a moment after start); `None` on the embedded log.
    pub fn task_slots(&self) -> Option<usize> {
        self.cluster.as_ref().map(|cluster| cluster.slot_count())
    }

    /// The log it runs on.
    pub fn log(&self) -> &Client {
        &self.shared.log.0
    }

    /// Validates a raw config without running it.
    ///
    /// # Errors
    /// The first bad key.
    pub fn validate(
        &self,
        raw: &Map<String, Value>,
        origin: &ConfigOrigin,
    ) -> Result<ConnectorConfig> {
        Ok(ConnectorConfig::resolve(raw, origin, &self.registry)?)
    }

    /// Runs a connector from a file. Replaces a connector of the same name. On the embedded
    /// log the file is the source of truth (nothing is stored); on a cluster the config is
    /// submitted to the configs topic, as over REST, where every worker of the cluster reads it.
    ///
    /// # Errors
    /// Config errors naming the file and key.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, a connector it was replacing may be stopped and not started
    /// again. Await it to completion (the REST layer runs it on a task of its own, so a client
    /// hanging up does not drop it).
    pub async fn run_file(&self, raw: Map<String, Value>, origin: &ConfigOrigin) -> Result<String> {
        let config = self.validate(&raw, origin)?;
        let name = config.name.clone();
        if self.shared.log.embedded().is_none() {
            self.put_inner(&name, raw, config, true, None).await?;
        } else {
            self.put_inner(&name, raw, config, false, Some(false))
                .await?;
        }
        Ok(name)
    }

    /// Creates or replaces a connector from REST; it is stored and survives restarts. Returns
    /// whether it was created (not replaced).
    ///
    /// # Errors
    /// Config errors naming the connector and key.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, the stored config may be ahead of what runs until the next
    /// restart. Await it to completion (the REST layer runs it on a task of its own, so a client
    /// hanging up does not drop it).
    pub async fn put_connector(&self, name: &str, mut raw: Map<String, Value>) -> Result<bool> {
        raw.insert("name".into(), Value::String(name.to_string()));
        let origin = ConfigOrigin::Rest(name.to_string());
        let config = self.validate(&raw, &origin)?;
        self.put_inner(name, raw, config, true, None).await
    }

    /// Starts (or replaces) a connector. With `paused` `None` its config is stored first,
    /// keeping whether it was paused; under the connector table's lock, so a worker following
    /// the configs topic finds it running when it reads the record back.
    async fn put_inner(
        &self,
        name: &str,
        raw: Map<String, Value>,
        config: ConnectorConfig,
        persisted: bool,
        paused: Option<bool>,
    ) -> Result<bool> {
        if self.root.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let config = Arc::new(config);
        let mut connectors = self.connectors.lock().await;
        let paused = match paused {
            Some(paused) => paused,
            None => {
                let paused = connectors.get(name).is_some_and(|c| *c.paused.borrow());
                let stored = StoredConnector {
                    config: raw.clone(),
                    paused,
                };
                self.configs.put(name, Some(&stored)).await?;
                paused
            }
        };
        let created = match connectors.remove(name) {
            Some(old) => {
                stop(old).await;
                false
            }
            None => true,
        };
        let runtime = self.launch(raw, config, persisted, paused).await;
        connectors.insert(name.to_string(), runtime);
        tracing::info!(connector = name, created, "connector started");
        Ok(created)
    }

    async fn launch(
        &self,
        raw: Map<String, Value>,
        config: Arc<ConnectorConfig>,
        persisted: bool,
        paused: bool,
    ) -> ConnectorRuntime {
        let mut runtime = ConnectorRuntime {
            raw,
            config: config.clone(),
            persisted,
            paused: watch::Sender::new(paused),
            token: self.root.child_token(),
            tasks: Vec::new(),
            failure: None,
        };
        let plan = self.plan_tasks(&config).await;
        let status = self.shared.status.as_ref();
        match plan {
            Err(e) => {
                let message = config.secrets.redact(&e.to_string());
                tracing::error!(connector = %config.name, error = %message, "connector failed to start");
                if let Some(status) = status {
                    status.connector(&config.name, &TaskState::Failed(message.clone()));
                }
                runtime.failure = Some(message);
            }
            Ok(work) => {
                if let Some(status) = status {
                    let state = if paused {
                        TaskState::Paused
                    } else {
                        TaskState::Running
                    };
                    status.connector(&config.name, &state);
                }
                runtime.tasks = work
                    .into_iter()
                    .map(|work| TaskSlot { work, local: None })
                    .collect();
                self.start_owned_tasks(&mut runtime);
            }
        }
        runtime
    }

    /// Whether task `task` of `connector` runs here: always on the embedded log; on a cluster
    /// when this worker owns its slot.
    fn owns(&self, connector: &str, task: usize) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|cluster| cluster.owns(connector, task))
    }

    /// Starts the tasks of `runtime` that run here and are not running.
    fn start_owned_tasks(&self, runtime: &mut ConnectorRuntime) {
        let config = &runtime.config;
        for (task, slot) in runtime.tasks.iter_mut().enumerate() {
            if slot.local.is_some() || !self.owns(&config.name, task) {
                continue;
            }
            let scope = TaskScope {
                worker: self.shared.clone(),
                config: config.clone(),
                task,
                token: runtime.token.child_token(),
                metrics: self.metrics.task(&config.name, task),
                paused: runtime.paused.subscribe(),
                state: Arc::new(Mutex::new(TaskState::Unassigned)),
            };
            let (state, token) = (scope.state.clone(), scope.token.clone());
            let handle = match slot.work.clone() {
                TaskWork::Source(task_config) => {
                    self.tracker.spawn(source_task::run(scope, task_config))
                }
                TaskWork::Sink(partitions) => self.tracker.spawn(sink_task::run(scope, partitions)),
            };
            slot.local = Some(LocalTask {
                state,
                token,
                handle,
            });
        }
    }

    /// Stops the tasks of `runtime` that no longer run here.
    async fn stop_unowned_tasks(&self, runtime: &mut ConnectorRuntime) {
        for (task, slot) in runtime.tasks.iter_mut().enumerate() {
            if !self.owns(&runtime.config.name, task)
                && let Some(local) = slot.local.take()
            {
                local.stop(&runtime.config.name).await;
                tracing::info!(connector = %runtime.config.name, task, "task moved to another worker");
            }
        }
    }

    async fn plan_tasks(&self, config: &ConnectorConfig) -> Result<Vec<TaskWork>> {
        if let Some(topic) = &config.errors.dead_letter_topic {
            self.shared.ensure_topic(topic).await?;
        }
        match config.plugin.kind() {
            ConnectorKind::Source => {
                // Before any task (or a sink of the same worker) can create them with fewer.
                let topic = config.topic.as_deref().unwrap_or_default();
                let needed = config
                    .plugin
                    .partitions_needed(&config.own, topic)
                    .await
                    .map_err(|e| {
                        Error::fatal(format!("finding the partitions the source needs: {e}"))
                    })?;
                for (name, partitions) in needed {
                    self.shared.ensure_partitions(&name, partitions).await?;
                }
                if !topic.is_empty() {
                    self.shared.ensure_topic(topic).await?;
                }
                let task_configs = config.plugin.source_tasks(&config.own, config.tasks)?;
                Ok(task_configs.into_iter().map(TaskWork::Source).collect())
            }
            ConnectorKind::Sink => {
                let mut partitions = Vec::new();
                for topic in &config.topics {
                    let count = self.shared.ensure_topic(topic).await?;
                    partitions.extend((0..count).map(|p| TopicPartition::new(topic.as_str(), p)));
                }
                let tasks = config.tasks.min(partitions.len()).max(1);
                let mut assignments = vec![Vec::new(); tasks];
                for (i, tp) in partitions.into_iter().enumerate() {
                    assignments[i % tasks].push(tp);
                }
                Ok(assignments.into_iter().map(TaskWork::Sink).collect())
            }
        }
    }

    /// Names of all connectors.
    ///
    /// # Cancel safety
    /// Safe: it only reads.
    pub async fn connector_names(&self) -> Vec<String> {
        self.connectors.lock().await.keys().cloned().collect()
    }

    /// A connector's raw config (secrets stay as `${...}` references).
    ///
    /// # Errors
    /// [`Error::UnknownConnector`].
    ///
    /// # Cancel safety
    /// Safe: it only reads.
    pub async fn connector_config(
        &self,
        name: &str,
    ) -> Result<(Map<String, Value>, ConnectorKind, usize)> {
        let connectors = self.connectors.lock().await;
        let c = connectors
            .get(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        Ok((c.raw.clone(), c.config.plugin.kind(), c.tasks.len()))
    }

    /// A connector's status.
    ///
    /// # Errors
    /// [`Error::UnknownConnector`].
    ///
    /// # Cancel safety
    /// Safe: it only reads.
    pub async fn status(&self, name: &str) -> Result<ConnectorStatus> {
        let connectors = self.connectors.lock().await;
        let c = connectors
            .get(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        let state = match (&c.failure, *c.paused.borrow()) {
            (Some(message), _) => TaskState::Failed(message.clone()),
            (None, true) => TaskState::Paused,
            (None, false) => TaskState::Running,
        };
        let (tasks, task_workers) = c
            .tasks
            .iter()
            .enumerate()
            .map(|(task, slot)| match (&slot.local, &self.cluster) {
                (Some(local), _) => (
                    local
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                    self.shared.config.rest_listen.to_string(),
                ),
                (None, Some(cluster)) => cluster.remote_state(name, task),
                (None, None) => (TaskState::Unassigned, String::new()),
            })
            .unzip();
        Ok(ConnectorStatus {
            name: name.to_string(),
            kind: c.config.plugin.kind(),
            state,
            tasks,
            task_workers,
        })
    }

    /// Pauses or resumes a connector's tasks. Stored connectors remember it.
    ///
    /// # Errors
    /// [`Error::UnknownConnector`]; storing failed.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, the stored state may differ from the running one until the
    /// next restart. Await it to completion (the REST layer runs it on a task of its own, so a
    /// client hanging up does not drop it).
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<()> {
        let connectors = self.connectors.lock().await;
        let c = connectors
            .get(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        if c.persisted {
            self.configs
                .put(
                    name,
                    Some(&StoredConnector {
                        config: c.raw.clone(),
                        paused,
                    }),
                )
                .await?;
        }
        c.paused.send_replace(paused);
        if let Some(status) = &self.shared.status {
            let state = if paused {
                TaskState::Paused
            } else {
                TaskState::Running
            };
            status.connector(name, &state);
        }
        tracing::info!(connector = name, paused, "connector target state changed");
        Ok(())
    }

    /// Stops and starts a connector's tasks (clearing failures), keeping its config. On a
    /// cluster every worker restarts its tasks of the connector: the request goes through the
    /// configs topic, which every worker follows.
    ///
    /// # Errors
    /// [`Error::UnknownConnector`]; on a cluster, writing the request failed.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, the connector may be stopped and not started again. Await
    /// it to completion (the REST layer runs it on a task of its own, so a client hanging up does
    /// not drop it).
    pub async fn restart(&self, name: &str) -> Result<()> {
        if self.cluster.is_some() {
            if !self.connectors.lock().await.contains_key(name) {
                return Err(Error::UnknownConnector(name.to_string()));
            }
            return self.configs.request_restart(name).await;
        }
        self.restart_here(name).await
    }

    /// Stops and starts the connector's tasks that run on this worker.
    pub(crate) async fn restart_here(&self, name: &str) -> Result<()> {
        let mut connectors = self.connectors.lock().await;
        let old = connectors
            .remove(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        let (raw, config, persisted, paused) = (
            old.raw.clone(),
            old.config.clone(),
            old.persisted,
            *old.paused.borrow(),
        );
        stop(old).await;
        connectors.insert(
            name.to_string(),
            self.launch(raw, config, persisted, paused).await,
        );
        tracing::info!(connector = name, "connector restarted");
        Ok(())
    }

    /// Stops and removes a connector; its offsets are kept (a new connector of the same name
    /// resumes from them).
    ///
    /// # Errors
    /// [`Error::UnknownConnector`]; storing failed.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropped midway, the connector may be stopped but still listed, or removed
    /// without its cleanup. Await it to completion (the REST layer runs it on a task of its own, so
    /// a client hanging up does not drop it).
    pub async fn delete(&self, name: &str) -> Result<()> {
        let mut connectors = self.connectors.lock().await;
        let old = connectors
            .remove(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        if old.persisted {
            self.configs.put(name, None).await?;
        }
        let config = old.config.clone();
        stop(old).await;
        if let Err(e) = config.plugin.deleted(&config.own, name).await {
            tracing::warn!(connector = name, error = %e, "cleaning up after the connector failed");
        }
        self.metrics.remove_connector(name);
        tracing::info!(connector = name, "connector deleted");
        Ok(())
    }

    /// Stops every connector (sources stop, sinks flush and commit) and waits for the tasks.
    ///
    /// # Cancel safety
    /// Dropping it stops only the waiting: the tasks were told to stop and go on stopping
    /// (sinks commit what they flushed), but nothing waits for them any more.
    pub async fn shutdown(&self) {
        // Not held while stopping: a rebalance during shutdown stops tasks through the table.
        let running = {
            let mut connectors = self.connectors.lock().await;
            self.root.cancel();
            std::mem::take(&mut *connectors)
        };
        for (_, runtime) in running {
            stop(runtime).await;
        }
        self.tracker.close();
        self.tracker.wait().await;
        if let Some(status) = &self.shared.status {
            status.flush().await;
        }
        // Only now: the slots go to other workers once what ran here has stopped.
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
    }

    /// The worker's token; cancelled at shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.root.clone()
    }
}

async fn stop(runtime: ConnectorRuntime) {
    runtime.token.cancel();
    for slot in runtime.tasks {
        if let Some(local) = slot.local {
            local.stop(&runtime.config.name).await;
        }
    }
}
