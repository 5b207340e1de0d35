//! [`StreamsApp`]: runs a topology against the log, one task per input partition, live
//! ([`StreamsApp::run`]) or bounded ([`StreamsApp::run_to_end`], [`StreamsApp::run_bounded`]).
//! The loop of one task (poll, process, commit, restore) is in `task_loop`; its inputs in
//! `input`; what it counts in `metrics`.
//!
//! Each task is a tokio task with its own consumer (group = the application id, assigned
//! partition `p` of every source topic, internal repartition topics included) and its own operator
//! instances and state stores. On start-up a task restores each store from its changelog, from
//! the store's checkpoint on.
//!
//! Exactly-once (the default): a task collects its outputs, changelog records included, in a
//! [`Transaction`] with its input offsets, and every `commit_interval` commits them atomically
//! through the log's transaction log; then it commits its stores at the changelog offsets
//! reached. After a crash, the work since the last commit is done again and its outputs, never
//! written, appear once. At-least-once: outputs go through a shared producer; at each commit a
//! task waits for them, commits its stores, then its offsets; after a crash outputs may repeat.

mod input;
mod log;
mod metrics;
mod queries;
mod standby;
mod task_loop;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use logbrook_client::{Cluster, GroupChange};
use logbrook_core::{Broker, Producer, ProducerConfig, TopicPartition};
use tokio_util::sync::CancellationToken;

pub use metrics::{StreamsMetrics, TaskMetrics};
pub use queries::{KeyLookup, KeyQueryMetadata, LocalStores};

use crate::error::{Error, Result};
use crate::task::OnError;
use crate::topology::Topology;
use input::InputRange;
use log::{AppLog, PartitionCounts};
use queries::{GroupView, member_client_id};
use standby::{Standby, standby_placement};
use task_loop::Task;

/// How often a task on a cluster may fail within [`RESTART_WINDOW`] and be started again
/// before its error stops the instance.
const MAX_TASK_RESTARTS: u32 = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How often an instance with standby replicas checks where the group placed them.
const STANDBY_PLACEMENT_INTERVAL: Duration = Duration::from_secs(2);

/// A task running as this group member's: the token that stops it, and its outcome.
type RunningTask = (CancellationToken, tokio::task::JoinHandle<Result<()>>);

/// Delivery guarantee of a [`StreamsApp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Outputs, store changelogs and input offsets are committed atomically: after a crash the
    /// output topics hold exactly what a clean run writes.
    #[default]
    ExactlyOnce,
    /// Outputs are acknowledged before input offsets are committed; after a crash, records since
    /// the last commit are processed again, so outputs may repeat. Faster: no transaction log.
    AtLeastOnce,
}

/// Settings of a streams application.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// Names the consumer group, the internal topics and the state directory.
    pub application_id: String,
    /// How often tasks commit.
    pub commit_interval: Duration,
    /// Delivery guarantee.
    pub processing_guarantee: ProcessingGuarantee,
    /// What to do with records that do not deserialize.
    pub on_deserialization_error: OnError,
    /// What to do with records on which user code panics.
    pub on_processing_error: OnError,
    /// Where task state stores live; default `{data_dir}/streams-state/{application_id}`.
    pub state_dir: Option<PathBuf>,
    /// Worker threads running the tasks (Kafka's `num.stream.threads`); `None` runs them on the
    /// caller's tokio runtime.
    pub worker_threads: Option<usize>,
    /// How long an input partition that has been read to its end may hold event time back
    /// (Kafka's `max.task.idle.ms`, Flink's idleness): after this it is idle, and event time
    /// follows the other inputs until it has records again.
    pub max_task_idle: Duration,
    /// A Kafka-protocol cluster to run on (`HOST:PORT,...`: `logbrook serve`, Apache Kafka,
    /// Redpanda) instead of the embedded log; used by [`StreamsApp::connect`].
    pub bootstrap_servers: Option<String>,
    /// librdkafka properties for the cluster's clients (e.g. `security.protocol`).
    pub client_properties: Vec<(String, String)>,
    /// The embedded log's data directory, for [`StreamsApp::connect`] without
    /// `bootstrap_servers`; default `./logbrook-data`.
    pub data_dir: Option<PathBuf>,
    /// `HOST:PORT` where this instance serves interactive queries (Kafka's
    /// `application.server`): what [`LocalStores::query_metadata_for_key`] answers for the
    /// tasks running here.
    pub application_server: Option<String>,
    /// On a cluster: how many other instances keep a warm copy of each task's stores (Kafka's
    /// `num.standby.replicas`), so a task that moves restores only what it missed.
    pub num_standby_replicas: u32,
}

impl StreamsConfig {
    /// Defaults for `application_id`: exactly-once, commit every 100 ms, fail on bad records,
    /// tasks on the caller's runtime.
    pub fn new(application_id: impl Into<String>) -> Self {
        Self {
            application_id: application_id.into(),
            commit_interval: Duration::from_millis(100),
            processing_guarantee: ProcessingGuarantee::ExactlyOnce,
            on_deserialization_error: OnError::Fail,
            on_processing_error: OnError::Fail,
            state_dir: None,
            worker_threads: None,
            max_task_idle: Duration::from_secs(1),
            bootstrap_servers: None,
            client_properties: Vec::new(),
            data_dir: None,
            application_server: None,
            num_standby_replicas: 0,
        }
    }

    /// Where task stores live: `state_dir`, or the log's default for the application.
    pub(crate) fn state_dir_on(&self, log: &AppLog) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| log.default_state_dir(&self.application_id))
    }
}

/// The state directory of an application: `{data_dir}/streams-state/{application_id}`.
pub fn default_state_dir(broker: &Broker, application_id: &str) -> PathBuf {
    broker.data_dir().join("streams-state").join(application_id)
}

/// What a bounded run reads: each user input partition up to the end it had when the run
/// started, keeping only records with timestamps in `[start_time, end_time)`. Internal topics
/// are read until every upstream task has finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputBounds {
    /// Records older than this (ms since the epoch) are skipped; reading starts at the first
    /// offset at or after it when the group has committed nothing further on.
    pub start_time: Option<i64>,
    /// Records at or after this are skipped.
    pub end_time: Option<i64>,
}

impl InputBounds {
    /// Whether a record at `timestamp` is inside the bounds.
    pub(crate) fn contains(&self, timestamp: i64) -> bool {
        self.start_time.is_none_or(|start| timestamp >= start)
            && self.end_time.is_none_or(|end| timestamp < end)
    }
}

/// A topology running against a log.
#[derive(Debug)]
pub struct StreamsApp {
    log: AppLog,
    topology: Arc<Topology>,
    config: StreamsConfig,
    partitions: u32,
    metrics: StreamsMetrics,
    stores: LocalStores,
    /// The client id this instance joins its group with, on a cluster.
    member_id: String,
    /// A bounded run's share of the tasks: `(index, of)` runs tasks `p % of == index`.
    task_share: Option<(u32, u32)>,
}

impl StreamsApp {
    /// Checks the topology against the embedded log: source and sink topics exist, and sources
    /// are co-partitioned (equal partition counts), as tasks read the same partition of each.
    /// Creates the internal topics.
    ///
    /// # Errors
    /// [`Error::Topology`] naming the missing topic or the mismatched partition counts.
    pub fn new(broker: Broker, topology: Topology, config: StreamsConfig) -> Result<Self> {
        // Nothing the embedded log answers waits on I/O readiness: no reactor is needed.
        futures::executor::block_on(Self::prepare(AppLog::Embedded(broker), topology, config))
    }

    /// As [`StreamsApp::new`], on the log `config` names: the cluster of
    /// [`StreamsConfig::bootstrap_servers`] when set, else the embedded log in
    /// [`StreamsConfig::data_dir`]. The same code runs on either.
    ///
    /// # Errors
    /// As [`StreamsApp::new`]; the cluster cannot be reached, or the data dir opened.
    pub async fn connect(topology: Topology, config: StreamsConfig) -> Result<Self> {
        let log = match &config.bootstrap_servers {
            Some(bootstrap) => AppLog::Cluster(
                Cluster::connect(bootstrap, config.client_properties.clone()).await?,
            ),
            None => {
                let dir = config
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("logbrook-data"));
                AppLog::Embedded(Broker::open(dir).await?)
            }
        };
        Self::prepare(log, topology, config).await
    }

    async fn prepare(log: AppLog, topology: Topology, config: StreamsConfig) -> Result<Self> {
        let mut counts = Vec::new();
        for topic in topology.source_topics() {
            let count = log
                .partition_count(topic)
                .await?
                .ok_or_else(|| Error::Topology(format!("source topic {topic:?} does not exist")))?;
            counts.push((topic.to_string(), count));
        }
        let partitions = counts.first().map_or(0, |(_, n)| *n);
        if counts.iter().any(|(_, n)| *n != partitions) {
            let listed: Vec<String> = counts.iter().map(|(t, n)| format!("{t} has {n}")).collect();
            return Err(Error::Topology(format!(
                "source topics are not co-partitioned: {}",
                listed.join(", ")
            )));
        }
        let mut outputs: Vec<&str> = topology.sink_topics();
        for policy in [
            &config.on_deserialization_error,
            &config.on_processing_error,
        ] {
            if let OnError::DeadLetter(topic) = policy {
                outputs.push(topic);
            }
        }
        for topic in outputs {
            if log.partition_count(topic).await?.is_none() {
                return Err(Error::Topology(format!(
                    "output topic {topic:?} does not exist"
                )));
            }
        }
        // Internal topics: as many partitions as the sources, so task p owns partition p.
        for (topic, compacted) in topology.internal_topics(&config.application_id) {
            match log.partition_count(&topic).await? {
                None => {
                    log.create_internal_topic(&topic, partitions, compacted)
                        .await?;
                    tracing::info!(topic, "created internal topic");
                }
                Some(count) if count != partitions => {
                    return Err(Error::Topology(format!(
                        "internal topic {topic:?} has {count} partitions, not {partitions} like the sources; reset the application"
                    )));
                }
                Some(_) => {}
            }
        }
        let group = match (&log, topology.source_topics().first()) {
            (AppLog::Cluster(cluster), Some(task_topic)) => Some(GroupView {
                cluster: cluster.clone(),
                group: config.application_id.clone(),
                task_topic: task_topic.to_string(),
                standby_replicas: config.num_standby_replicas,
            }),
            _ => None,
        };
        Ok(Self {
            member_id: member_client_id(
                &config.application_id,
                config.application_server.as_deref(),
            ),
            stores: LocalStores::new(partitions, config.application_server.clone(), group),
            task_share: None,
            log,
            topology: Arc::new(topology),
            metrics: StreamsMetrics::new(&config.application_id),
            config,
            partitions,
        })
    }

    /// Read-only lookups in the stores of the tasks this instance runs (interactive
    /// queries): a handle that stays valid after `run` consumed the app.
    pub fn local_stores(&self) -> LocalStores {
        self.stores.clone()
    }

    /// The app's metrics: a handle that stays valid after `run` consumed the app.
    pub fn metrics(&self) -> StreamsMetrics {
        self.metrics.clone()
    }

    /// Runs every task until `shutdown` is cancelled, then commits what was processed and
    /// returns. A task's error stops all tasks and is returned.
    ///
    /// # Errors
    /// The first task error (a record failing under `OnError::Fail`, a log error).
    ///
    /// # Cancel safety
    /// Cancel `shutdown` instead of dropping the future: dropping skips the final commit, so the
    /// records since the last commit are processed again on the next run.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        self.run_with(None, shutdown).await
    }

    /// Runs until every input is read to the end it had when the run started, then closes every
    /// open window and join buffer (event time reaches infinity, as at the end of Flink's
    /// bounded inputs), commits and returns. This is how history is reprocessed: reset the
    /// application (or choose a fresh application id) and run it to the end.
    ///
    /// # Errors
    /// As [`StreamsApp::run`].
    ///
    /// # Cancel safety
    /// As [`StreamsApp::run`]: cancelling `shutdown` stops early, after a commit, with windows
    /// still open; a later run goes on from there.
    pub async fn run_to_end(self, shutdown: CancellationToken) -> Result<()> {
        self.run_bounded(InputBounds::default(), shutdown).await
    }

    /// As [`StreamsApp::run_to_end`], keeping only records with timestamps in the bounds: a
    /// replay of `[start_time, end_time)`, e.g. into a fresh application id.
    ///
    /// # Errors
    /// As [`StreamsApp::run`].
    ///
    /// # Cancel safety
    /// As [`StreamsApp::run_to_end`].
    pub async fn run_bounded(self, bounds: InputBounds, shutdown: CancellationToken) -> Result<()> {
        self.run_with(Some(bounds), shutdown).await
    }

    /// Makes a bounded run ([`StreamsApp::run_to_end`], [`StreamsApp::run_bounded`]) run only
    /// share `index` of `of` of the tasks (tasks `p` with `p % of == index`), so `of`
    /// instances on a cluster split one reprocessing job. Repartitioned records reach the
    /// instance running their task through the cluster, and each task ends once every task
    /// writing to it, in any instance, has ended. Live runs share tasks through the group.
    ///
    /// # Errors
    /// `index` is not below `of`.
    pub fn with_task_share(mut self, index: u32, of: u32) -> Result<Self> {
        if index >= of {
            return Err(Error::Topology(format!(
                "task share {index} of {of}: the index must be below the number of shares"
            )));
        }
        self.task_share = Some((index, of));
        Ok(self)
    }

    /// The input ranges of task `partition`: every source partition, bounded by the end offsets
    /// of now for a bounded run (user topics only: internal ones end when their writers do).
    async fn input_ranges(
        &self,
        partition: u32,
        bounds: Option<InputBounds>,
    ) -> Result<Vec<InputRange>> {
        let internal = self
            .topology
            .internal_topic_names(&self.config.application_id);
        let mut ranges = Vec::new();
        for topic in self.topology.all_sources(&self.config.application_id) {
            let tp = TopicPartition::new(&topic, partition);
            let (mut start, mut end) = (None, None);
            if let Some(bounds) = bounds
                && !internal.contains(&topic)
            {
                let (from, to) = self.log.bounds(&tp, bounds.start_time).await?;
                (start, end) = (from, Some(to));
            }
            ranges.push(InputRange { tp, start, end });
        }
        Ok(ranges)
    }

    async fn run_with(
        self,
        bounds: Option<InputBounds>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        // At-least-once on the embedded log: one producer for every task.
        let producer = match &self.log {
            AppLog::Embedded(broker)
                if self.config.processing_guarantee == ProcessingGuarantee::AtLeastOnce =>
            {
                Some(Producer::new(
                    broker.clone(),
                    ProducerConfig {
                        linger: Duration::from_millis(1),
                        ..ProducerConfig::default()
                    },
                ))
            }
            _ => None,
        };
        // With worker_threads, tasks run on a runtime of their own; the log is runtime-agnostic.
        let own_runtime = match self.config.worker_threads {
            Some(threads) => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name(format!("{}-worker", self.config.application_id))
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Topology(format!("cannot start worker threads: {e}")))?,
            ),
            None => None,
        };
        let stop = shutdown.child_token();
        let runtime = own_runtime.as_ref().map(tokio::runtime::Runtime::handle);
        let result = match &self.log {
            AppLog::Cluster(cluster) if bounds.is_none() => {
                self.run_as_member(cluster, producer.as_ref(), runtime, &stop)
                    .await
            }
            _ => {
                self.run_every_task(bounds, producer.as_ref(), runtime, &stop)
                    .await
            }
        };
        if let Some(runtime) = own_runtime {
            runtime.shutdown_background();
        }
        result
    }

    /// Starts task `partition`; it stops when `stop` is cancelled (after a final commit), or
    /// on an error, which cancels `fail` (the application) too.
    #[allow(clippy::too_many_arguments)]
    async fn spawn_task(
        &self,
        partition: u32,
        bounds: Option<InputBounds>,
        producer: Option<&Producer>,
        member: Option<logbrook_client::GroupMember>,
        runtime: Option<&tokio::runtime::Handle>,
        stop: CancellationToken,
        fail: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let task = Task {
            partition,
            tasks: self.partitions,
            log: self.log.clone(),
            topology: self.topology.clone(),
            config: self.config.clone(),
            producer: producer.cloned(),
            member,
            partition_counts: PartitionCounts::default(),
            metrics: self.metrics.task(partition),
            stores: self.stores.clone(),
            inputs: self.input_ranges(partition, bounds).await?,
            bounds,
        };
        let metrics = self.metrics.clone();
        metrics.set_running(partition, true);
        let work = async move {
            let result = task.run(stop).await;
            metrics.set_running(partition, false);
            if result.is_err() {
                fail.cancel(); // one failed task stops the application
            }
            result
        };
        Ok(match runtime {
            Some(runtime) => runtime.spawn(work),
            None => tokio::spawn(work),
        })
    }

    /// Starts task `partition` as this group member's: stopped by the returned token (or the
    /// application's `stop`); its error is the caller's to judge, not the application's.
    async fn spawn_member_task(
        &self,
        partition: u32,
        producer: Option<&Producer>,
        membership: &logbrook_client::Membership,
        runtime: Option<&tokio::runtime::Handle>,
        stop: &CancellationToken,
    ) -> Result<(CancellationToken, tokio::task::JoinHandle<Result<()>>)> {
        let token = stop.child_token();
        let handle = self
            .spawn_task(
                partition,
                None,
                producer,
                Some(membership.member()),
                runtime,
                token.clone(),
                CancellationToken::new(),
            )
            .await?;
        Ok((token, handle))
    }

    /// Runs every task in this process (the embedded log, or a bounded run).
    async fn run_every_task(
        &self,
        bounds: Option<InputBounds>,
        producer: Option<&Producer>,
        runtime: Option<&tokio::runtime::Handle>,
        stop: &CancellationToken,
    ) -> Result<()> {
        let mut tasks = Vec::new();
        let mine = |p: &u32| self.task_share.is_none_or(|(index, of)| p % of == index);
        for partition in (0..self.partitions).filter(mine) {
            let task = self
                .spawn_task(
                    partition,
                    bounds,
                    producer,
                    None,
                    runtime,
                    stop.clone(),
                    stop.clone(),
                )
                .await?;
            tasks.push(task);
        }
        tracing::info!(
            application = %self.config.application_id,
            tasks = tasks.len(),
            guarantee = ?self.config.processing_guarantee,
            bounded = bounds.is_some(),
            "streams application running"
        );
        let mut first_error = None;
        for joined in futures::future::join_all(tasks).await {
            if let Err(e) = joined_result(joined) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs the tasks the application's consumer group assigns this instance, as they come
    /// and go: instances of one application id share the tasks, and a rebalance stops (after
    /// a final commit) only the tasks that move.
    async fn run_as_member(
        &self,
        cluster: &Cluster,
        producer: Option<&Producer>,
        runtime: Option<&tokio::runtime::Handle>,
        stop: &CancellationToken,
    ) -> Result<()> {
        let application = self.config.application_id.clone();
        // Task p reads partition p of every source (co-partitioned): the partitions of one
        // source stand for the tasks.
        let Some(task_topic) = self.topology.source_topics().first().map(|t| t.to_string()) else {
            return Ok(());
        };
        let mut membership = cluster.join_group(&application, &task_topic, &self.member_id)?;
        tracing::info!(application = %application, guarantee = ?self.config.processing_guarantee, "streams application joined its group");
        let mut running: BTreeMap<u32, RunningTask> = BTreeMap::new();
        let mut failure = None;
        let mut restarts: HashMap<u32, (u32, std::time::Instant)> = HashMap::new();
        let mut check = tokio::time::interval(Duration::from_millis(200));
        let mut standbys: BTreeMap<u32, Standby> = BTreeMap::new();
        let mut place_standbys = tokio::time::interval(STANDBY_PLACEMENT_INTERVAL);
        while failure.is_none() {
            tokio::select! {
                () = stop.cancelled() => break,
                change = membership.next() => match change {
                    None => break,
                    Some(GroupChange::Assigned(tasks)) => {
                        tracing::info!(application = %application, ?tasks, "tasks assigned");
                        for partition in tasks {
                            if running.contains_key(&partition) {
                                continue;
                            }
                            // The active copy opens the stores the standby holds open.
                            if let Some(standby) = standbys.remove(&partition) {
                                standby.stop(partition).await;
                            }
                            let task = self
                                .spawn_member_task(partition, producer, &membership, runtime, stop)
                                .await?;
                            running.insert(partition, task);
                        }
                    }
                    Some(GroupChange::Revoked { partitions, done }) => {
                        tracing::info!(application = %application, tasks = ?partitions, "tasks revoked; committing them");
                        for partition in partitions {
                            if let Some((token, handle)) = running.remove(&partition) {
                                token.cancel();
                                // The task moves anyway: its error is not the instance's.
                                if let Err(e) = joined_result(handle.await) {
                                    tracing::warn!(application = %application, partition, error = %e, "a revoked task failed");
                                }
                            }
                        }
                        let _ = done.send(());
                    }
                },
                _ = place_standbys.tick(), if self.config.num_standby_replicas > 0 => {
                    self.place_standbys(cluster, &task_topic, &running, &mut standbys).await;
                }
                _ = check.tick() => {
                    let ended: Vec<u32> = running
                        .iter()
                        .filter(|(_, (_, handle))| handle.is_finished())
                        .map(|(partition, _)| *partition)
                        .collect();
                    for partition in ended {
                        let Some((_, handle)) = running.remove(&partition) else {
                            continue;
                        };
                        let Err(e) = joined_result(handle.await) else {
                            continue;
                        };
                        // A commit refused in a rebalance (the group moved on, the producer
                        // was fenced) aborts the task's transaction: start it again from its
                        // last commit. An error that repeats is the instance's.
                        let (count, since) = restarts
                            .entry(partition)
                            .or_insert((0, std::time::Instant::now()));
                        if since.elapsed() > RESTART_WINDOW {
                            (*count, *since) = (0, std::time::Instant::now());
                        }
                        *count += 1;
                        if *count > MAX_TASK_RESTARTS {
                            failure.get_or_insert(e);
                            break;
                        }
                        tracing::warn!(application = %application, partition, error = %e, "task failed; starting it again from its last commit");
                        let task = self
                            .spawn_member_task(partition, producer, &membership, runtime, stop)
                            .await?;
                        running.insert(partition, task);
                    }
                }
            }
        }
        for (partition, standby) in standbys {
            standby.stop(partition).await;
        }
        // Every task commits, then the group hears that this instance left.
        for (token, _) in running.values() {
            token.cancel();
        }
        for (_, (_, handle)) in running {
            if let Err(e) = joined_result(handle.await) {
                failure.get_or_insert(e);
            }
        }
        tokio::task::spawn_blocking(move || membership.leave())
            .await
            .map_err(|e| Error::Topology(format!("leaving the group panicked: {e}")))?;
        failure.map_or(Ok(()), Err)
    }

    /// Starts the standbys the group's current assignment places here and stops the others.
    /// A failed lookup keeps what runs: standbys are an optimisation.
    async fn place_standbys(
        &self,
        cluster: &Cluster,
        task_topic: &str,
        running: &BTreeMap<u32, RunningTask>,
        standbys: &mut BTreeMap<u32, Standby>,
    ) {
        let application = &self.config.application_id;
        let members = match cluster.group_assignments(application, task_topic).await {
            Ok(members) => members,
            Err(e) => {
                tracing::debug!(application = %application, error = %e, "no group view for standbys");
                return;
            }
        };
        let wanted: Vec<u32> = standby_placement(&members, self.config.num_standby_replicas)
            .into_iter()
            .filter(|(task, hosts)| {
                hosts.contains(&self.member_id.as_str()) && !running.contains_key(task)
            })
            .map(|(task, _)| task)
            .collect();
        let unwanted: Vec<u32> = standbys
            .keys()
            .filter(|t| !wanted.contains(t))
            .copied()
            .collect();
        for partition in unwanted {
            if let Some(standby) = standbys.remove(&partition) {
                standby.stop(partition).await;
            }
        }
        let state_dir = self.config.state_dir_on(&self.log);
        let store_names: Vec<String> = self
            .topology
            .store_names()
            .into_iter()
            .map(String::from)
            .collect();
        if store_names.is_empty() {
            return;
        }
        for partition in wanted {
            standbys.entry(partition).or_insert_with(|| {
                Standby::spawn(
                    cluster,
                    application,
                    store_names.clone(),
                    &state_dir,
                    partition,
                    self.metrics.task(partition),
                )
            });
        }
    }

    /// Runs until SIGINT (Ctrl-C) or SIGTERM, then stops gracefully: every task finishes its
    /// current records, closes its processors and commits.
    ///
    /// # Errors
    /// As [`StreamsApp::run`].
    pub async fn run_until_signal(self) -> Result<()> {
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received; committing and stopping");
            trigger.cancel();
        });
        self.run(shutdown).await
    }
}

/// A task's outcome; a panic is an error.
fn joined_result(joined: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    joined.map_err(|e| Error::Topology(format!("a task panicked: {e}")))?
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
