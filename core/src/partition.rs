//! A partition: its log, its append thread, and the high-watermark signal consumers wait on.
//!
//! Appends go to one thread per partition, which takes every request queued while it was busy,
//! writes them all, fsyncs once if the topic's flush policy is `always` (group commit), publishes
//! the new high watermark and then acknowledges each request. File I/O never runs on the async
//! runtime's threads, and N concurrent appends cost one fsync.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, watch};

use crate::batch::EncodedBatch;
use crate::config::FlushPolicy;
use crate::error::{Error, Result};
use crate::log::{AppendInfo, Log};
use crate::record::now_ms;

/// Called once with the outcome of an append.
pub(crate) type AppendCallback = Box<dyn FnOnce(Result<AppendInfo, Arc<Error>>) + Send>;

struct AppendRequest {
    batch: EncodedBatch,
    done: AppendCallback,
}

/// Most bytes one group commit takes before it fsyncs and acknowledges.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// One partition of a topic.
#[derive(Debug)]
pub struct Partition {
    log: Arc<Log>,
    high_watermark: watch::Sender<u64>,
    writable: bool,
    appends: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AppendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendRequest")
            .field("bytes", &self.batch.len())
            .finish()
    }
}

impl Partition {
    pub(crate) fn new(log: Log, writable: bool) -> Result<Self> {
        let log = Arc::new(log);
        let (high_watermark, _) = watch::channel(log.high_watermark());
        let (appends, writer) = if writable {
            let (tx, rx) = mpsc::channel();
            let (log, hw) = (log.clone(), high_watermark.clone());
            let name = format!("append-{}-{}", log.topic(), log.partition());
            let handle = std::thread::Builder::new()
                .name(name.chars().take(15).collect())
                .spawn(move || run_appender(&log, &hw, &rx))
                .map_err(Error::io("append thread"))?;
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        Ok(Self {
            log,
            high_watermark,
            writable,
            appends: Mutex::new(appends),
            writer: Mutex::new(writer),
        })
    }

    /// The partition's log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    /// Appends a batch and resolves once the topic's flush policy is met.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Closed`], or the write/fsync error.
    ///
    /// # Cancel safety
    /// Dropping the future does not cancel the append: the batch is queued when this is called.
    pub fn append(&self, batch: EncodedBatch) -> impl Future<Output = Result<AppendInfo>> + use<> {
        let (tx, rx) = oneshot::channel();
        let queued = self.append_with(
            batch,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        let (topic, partition) = (self.log.topic().to_string(), self.log.partition());
        async move {
            queued?;
            match rx.await {
                Ok(Ok(info)) => Ok(info),
                Ok(Err(source)) => Err(Error::Append {
                    topic,
                    partition,
                    cause: source,
                }),
                Err(_) => Err(Error::Closed),
            }
        }
    }

    /// Queues a batch; `done` is called from the append thread with the outcome.
    pub(crate) fn append_with(&self, batch: EncodedBatch, done: AppendCallback) -> Result<()> {
        let guard = self.appends.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(if self.writable {
                Error::Closed
            } else {
                Error::ReadOnly {
                    operation: "append",
                }
            });
        };
        tx.send(AppendRequest { batch, done })
            .map_err(|_| Error::Closed)
    }

    /// Stops the append thread after it drains its queue, then flushes and checkpoints the log.
    pub(crate) fn close(&self) -> Result<()> {
        let sender = self
            .appends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let was_writable = sender.is_some();
        drop(sender);
        if let Some(handle) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
        if was_writable {
            self.log.close()
        } else {
            Ok(())
        }
    }

    /// Re-reads the log files (read-only views) and wakes readers if it grew.
    pub(crate) fn refresh(&self) -> Result<()> {
        self.log.refresh()?;
        self.high_watermark.send_if_modified(|hw| {
            let new = self.log.high_watermark();
            let changed = *hw != new;
            *hw = new;
            changed
        });
        Ok(())
    }
}

/// How long the append thread polls for the next request before it sleeps. A producer waiting
/// on an acknowledgement usually sends again within microseconds; catching that without a
/// futex sleep and wake-up saves tens of microseconds per group commit.
const SPIN_BEFORE_SLEEP: std::time::Duration = std::time::Duration::from_micros(100);

fn next_request(requests: &mpsc::Receiver<AppendRequest>) -> Option<AppendRequest> {
    let started = std::time::Instant::now();
    loop {
        match requests.try_recv() {
            Ok(request) => return Some(request),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if started.elapsed() < SPIN_BEFORE_SLEEP => {
                std::thread::yield_now()
            }
            Err(mpsc::TryRecvError::Empty) => return requests.recv().ok(),
        }
    }
}

fn run_appender(
    log: &Log,
    high_watermark: &watch::Sender<u64>,
    requests: &mpsc::Receiver<AppendRequest>,
) {
    let mut group: Vec<AppendRequest> = Vec::new();
    let mut results: Vec<Result<AppendInfo, Arc<Error>>> = Vec::new();
    while let Some(first) = next_request(requests) {
        let mut bytes = first.batch.len();
        group.push(first);
        while bytes < MAX_GROUP_BYTES {
            match requests.try_recv() {
                Ok(request) => {
                    bytes += request.batch.len();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        // Read per group: an altered topic config applies from the next group on.
        let flush_always = log.config().flush == FlushPolicy::Always;
        let now = now_ms();
        results.extend(
            group
                .iter_mut()
                .map(|r| log.append(&mut r.batch, now).map_err(Arc::new)),
        );
        let mut publish = true;
        if flush_always
            && results.iter().any(Result::is_ok)
            && let Err(e) = log.flush()
        {
            tracing::error!(topic = %log.topic(), partition = log.partition(), error = %e, "fsync failed; failing the group");
            let e = Arc::new(e);
            for r in &mut results {
                if r.is_ok() {
                    *r = Err(e.clone());
                }
            }
            publish = false;
        }
        if publish {
            high_watermark.send_replace(log.publish());
        }
        for (request, result) in group.drain(..).zip(results.drain(..)) {
            (request.done)(result);
        }
    }
}
