//! One `s3-sink` task, and why it writes each record exactly once.
//!
//! **Cuts.** Records are buffered per topic partition. A *cut* is the run of a partition's
//! records written out together: one object per directory the partitioner chose for them (one
//! object with the default partitioner). A cut is sealed when it holds `flush_records` records
//! or `flush_bytes` bytes, when its first record has waited `rotate_interval_ms`, when the
//! partition has been idle for `flush_idle_ms`, when a record's schema does not fit its Parquet
//! object, or when the task's buffers pass `max_buffered_bytes`. Each object is named by its
//! topic, partition and the offset of its first record; the *anchor* of a cut is the object
//! holding the cut's first record, and it carries the cut's first and last offsets as object
//! metadata.
//!
//! **Order.** A cut's objects become visible (PUT, or the completion of a multipart upload)
//! only after the partition's previous cut is fully visible, and the anchor last. So an anchor
//! that exists proves its whole cut, and every earlier cut, is in S3.
//!
//! **Offsets.** The runtime commits a partition's consumer offset only up to the first record
//! not yet in S3 ([`Sink::pending_offsets`]): the first offset of the oldest cut still
//! buffered or uploading. After a crash, records are delivered again from the first record of
//! a cut that was not known to be visible.
//!
//! **Restart.** Before writing the first record of a partition after opening, the task looks
//! for the anchor that record would have (a HEAD of the key it would get as the first record
//! of a cut). If it exists, that cut was written before the crash: its records are skipped up
//! to the anchor's last offset, and the next record is checked the same way. The first record
//! without an anchor starts a new cut, whose objects overwrite any the crashed run had started
//! but not finished (same directory, same first record: same key). Cut boundaries may differ
//! between runs (they depend on time), yet no record lands in two objects: cuts already
//! visible are skipped whole, and cuts that were not are replaced object by object.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use futures::FutureExt;
use logbrook_connect::{Error, Record, Rejected, Result, Sink, SinkContext};
use tokio::task::JoinSet;
use tokio::time::Instant;

use serde_json::Value;

use super::encode::ObjectEncoder;
use super::parquet::Push;
use super::partitioner::Partitioner;
use super::upload::{Cut, CutDone, ObjectData, Uploader, shared};
use super::{Format, S3SinkConfig};
use crate::client::{classify, is_not_found};
use crate::columnar;
use crate::layout::{META_CUT_LAST, METADATA_COLUMNS};

/// How long `put` waits for uploads to make room before asking the runtime to retry.
const ROOM_WAIT: Duration = Duration::from_secs(20);
/// How long `close` waits for the last uploads.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

type PartitionKey = (String, u32);

/// One running `s3-sink` task.
pub(crate) struct S3Sink {
    config: S3SinkConfig,
    connector: String,
    client: Client,
    partitioner: Partitioner,
    uploader: Arc<Uploader>,
    partitions: HashMap<PartitionKey, PartitionState>,
    /// Cut uploads in flight: each yields its partition, first offset and size.
    uploads: JoinSet<(PartitionKey, u64, u64, Result<(), String>)>,
    /// Bytes of cuts being uploaded.
    uploading_bytes: u64,
}

/// A topic partition's state.
struct PartitionState {
    /// The offset after the last record taken (buffered, skipped or rejected): records below
    /// it are a retried `put`'s and are ignored.
    next_offset: u64,
    resume: Resume,
    open: Option<OpenCut>,
    /// First offsets of this partition's cuts being uploaded, oldest first.
    uploading: VecDeque<u64>,
    /// The last cut's upload, which the next one waits for.
    last_cut: Option<CutDone>,
}

/// Where a partition stands in checking for cuts a previous run wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// The next record may begin a cut a previous run wrote: look for its anchor.
    Check,
    /// A previous run wrote records up to this offset: skip them.
    Skip(u64),
    /// Past what previous runs wrote.
    Live,
}

/// A cut being filled.
struct OpenCut {
    first: u64,
    last: u64,
    records: u64,
    opened_at: Instant,
    last_record_at: Instant,
    /// The cut's objects, by directory.
    objects: BTreeMap<String, OpenObject>,
}

/// An object of an open cut.
struct OpenObject {
    /// The offset of its first record, which names it.
    first: u64,
    records: u64,
    encoder: ObjectEncoder,
}

impl OpenCut {
    fn size(&self) -> u64 {
        self.objects.values().map(|o| o.encoder.size()).sum()
    }
}

impl S3Sink {
    pub(crate) async fn open(config: S3SinkConfig, context: SinkContext) -> Result<Self> {
        let partitioner =
            Partitioner::new(&config).map_err(|issue| Error::fatal(issue.to_string()))?;
        let client = config.location().client().await;
        // One cheap request, so a wrong bucket or credentials fail the task at once.
        client
            .head_bucket()
            .bucket(&config.bucket)
            .send()
            .await
            .map_err(|e| classify(&format!("bucket {:?}", config.bucket), e))?;
        let part_bytes = usize::try_from(config.part_bytes).unwrap_or(usize::MAX);
        let uploader = Arc::new(Uploader::new(
            client.clone(),
            config.bucket.clone(),
            part_bytes,
            config.max_concurrent_uploads,
        ));
        tracing::info!(
            connector = %context.connector,
            task = context.task,
            bucket = %config.bucket,
            prefix = %config.prefix,
            format = ?config.format,
            partitioner = ?config.partitioner,
            "s3 sink task opened"
        );
        Ok(Self {
            connector: context.connector,
            config,
            client,
            partitioner,
            uploader,
            partitions: HashMap::new(),
            uploads: JoinSet::new(),
            uploading_bytes: 0,
        })
    }

    /// Takes one record: skips what a previous run wrote, else adds it to its partition's cut.
    ///
    /// # Errors
    /// `Ok(Err(why))` rejects the record; `Err` fails the `put` (a failed HEAD).
    async fn take(&mut self, record: &Record) -> Result<Result<(), String>> {
        let (Some(partition), Some(offset)) = (record.partition, record.offset) else {
            return Ok(Err(
                "s3-sink needs the partition and offset of each record".into()
            ));
        };
        let key = (record.topic.clone(), partition);
        let state = self
            .partitions
            .entry(key.clone())
            .or_insert_with(|| PartitionState {
                next_offset: 0,
                resume: Resume::Check,
                open: None,
                uploading: VecDeque::new(),
                last_cut: None,
            });
        if offset < state.next_offset {
            return Ok(Ok(()));
        }
        // Rejections first: they depend on the record alone, so a rejected record never begins
        // a cut, in this run or another.
        let checked = self
            .partitioner
            .directory(record, partition)
            .and_then(|directory| check(self.config.format, record).map(|()| directory));
        let directory = match checked {
            Ok(directory) => directory,
            Err(why) => {
                state.next_offset = offset + 1;
                return Ok(Err(why));
            }
        };
        if let Resume::Skip(through) = state.resume
            && offset > through
        {
            state.resume = Resume::Check;
        }
        if state.resume == Resume::Check {
            let anchor = self
                .partitioner
                .key(&record.topic, partition, &directory, offset);
            let resume = match find_cut(&self.client, &self.config.bucket, &anchor).await? {
                Some(through) => {
                    tracing::info!(
                        connector = %self.connector,
                        topic = %record.topic,
                        partition,
                        first_offset = offset,
                        last_offset = through,
                        "s3 sink skips records a previous run already wrote"
                    );
                    Resume::Skip(through)
                }
                None => Resume::Live,
            };
            if let Some(state) = self.partitions.get_mut(&key) {
                state.resume = resume;
            }
        }
        let Some(state) = self.partitions.get_mut(&key) else {
            return Ok(Ok(()));
        };
        if let Resume::Skip(through) = state.resume
            && offset <= through
        {
            state.next_offset = offset + 1;
            return Ok(Ok(()));
        }
        let now = Instant::now();
        let cut = state.open.get_or_insert_with(|| OpenCut {
            first: offset,
            last: offset,
            records: 0,
            opened_at: now,
            last_record_at: now,
            objects: BTreeMap::new(),
        });
        let (format, compression) = (self.config.format, self.config.compression());
        let expected_bytes = self.config.flush_bytes;
        let object = cut.objects.entry(directory).or_insert_with(|| OpenObject {
            first: offset,
            records: 0,
            encoder: ObjectEncoder::new(format, compression, expected_bytes),
        });
        match object.encoder.push(record) {
            Ok(()) => object.records += 1,
            Err(Push::Incompatible) if cut.records > 0 => {
                // A new schema: this record starts the next cut.
                self.seal(&key)?;
                return Box::pin(self.take(record)).await;
            }
            Err(Push::Incompatible) => {
                return Err(Error::fatal(format!(
                    "{} partition {partition} offset {offset}: the parquet encoder refused the \
                     first record of an object",
                    record.topic
                )));
            }
            Err(Push::Failed(why)) => {
                return Err(Error::fatal(format!(
                    "{} partition {partition} offset {offset}: {why}",
                    record.topic
                )));
            }
            Err(Push::Reject(why)) => {
                // The encoder refused the record before taking any of it.
                state.next_offset = offset + 1;
                if object.records == 0 {
                    let first_of_object = object.first;
                    cut.objects.retain(|_, o| o.first != first_of_object);
                }
                if cut.records == 0 {
                    state.open = None;
                }
                return Ok(Err(why));
            }
        }
        state.next_offset = offset + 1;
        cut.last = offset;
        cut.records += 1;
        cut.last_record_at = now;
        let full = cut.records >= self.config.flush_records
            || cut.size() >= self.config.flush_bytes
            || now.duration_since(cut.opened_at)
                >= Duration::from_millis(self.config.rotate_interval_ms);
        if full {
            self.seal(&key)?;
        }
        Ok(Ok(()))
    }

    /// Seals a partition's open cut and starts its upload.
    ///
    /// # Errors
    /// An object that cannot be finished (fatal: its records come again after a restart).
    fn seal(&mut self, key: &PartitionKey) -> Result<()> {
        let Some(state) = self.partitions.get_mut(key) else {
            return Ok(());
        };
        let Some(cut) = state.open.take() else {
            return Ok(());
        };
        let (topic, partition) = key;
        let first = cut.first;
        let mut objects = Vec::with_capacity(cut.objects.len());
        let mut anchor = None;
        let mut size = 0;
        for (directory, object) in cut.objects {
            let bytes = object.encoder.finish().map_err(|why| {
                Error::fatal(format!(
                    "{topic} partition {partition}: cannot finish the object from offset {}: {why}",
                    object.first
                ))
            })?;
            size += bytes.len() as u64;
            let data = ObjectData {
                key: self
                    .partitioner
                    .key(topic, *partition, &directory, object.first),
                bytes,
                records: object.records,
            };
            if object.first == first {
                anchor = Some(data);
            } else {
                objects.push(data);
            }
        }
        objects.extend(anchor);
        tracing::debug!(
            topic = %topic,
            partition,
            first_offset = first,
            last_offset = cut.last,
            records = cut.records,
            bytes = size,
            "s3 sink uploads a cut"
        );
        let upload = shared(self.uploader.clone().upload(
            Cut {
                first,
                last: cut.last,
                objects,
            },
            state.last_cut.take(),
        ));
        state.last_cut = Some(upload.clone());
        state.uploading.push_back(first);
        self.uploading_bytes += size;
        let key = key.clone();
        self.uploads
            .spawn(upload.map(move |outcome| (key, first, size, outcome)));
        Ok(())
    }

    /// Takes note of finished uploads.
    ///
    /// # Errors
    /// An upload that failed for good.
    fn reap(&mut self) -> Result<()> {
        while let Some(joined) = self.uploads.try_join_next() {
            self.finished(joined)?;
        }
        Ok(())
    }

    fn finished(
        &mut self,
        joined: Result<(PartitionKey, u64, u64, Result<(), String>), tokio::task::JoinError>,
    ) -> Result<()> {
        let (key, first, size, outcome) =
            joined.map_err(|e| Error::fatal(format!("an s3 upload task failed: {e}")))?;
        self.uploading_bytes = self.uploading_bytes.saturating_sub(size);
        outcome.map_err(|why| {
            Error::fatal(format!(
                "upload of {} partition {} from offset {first} failed: {why}",
                key.0, key.1
            ))
        })?;
        if let Some(state) = self.partitions.get_mut(&key) {
            state.uploading.retain(|f| *f != first);
        }
        Ok(())
    }

    /// Bytes held in memory: open cuts and cuts being uploaded.
    fn buffered_bytes(&self) -> u64 {
        self.uploading_bytes
            + self
                .partitions
                .values()
                .filter_map(|s| s.open.as_ref())
                .map(OpenCut::size)
                .sum::<u64>()
    }

    /// Keeps memory under `max_buffered_bytes`: seals the largest open cut, then waits for
    /// uploads to finish.
    ///
    /// # Errors
    /// Uploads that do not finish within [`ROOM_WAIT`] (retriable: the runtime retries the
    /// `put`, which skips what it already took), or one that failed for good.
    async fn make_room(&mut self) -> Result<()> {
        let limit = self.config.max_buffered_bytes;
        if self.buffered_bytes() <= limit {
            return Ok(());
        }
        let largest = self
            .partitions
            .iter()
            .filter_map(|(k, s)| s.open.as_ref().map(|c| (c.size(), k.clone())))
            .max();
        if let Some((_, key)) = largest {
            self.seal(&key)?;
        }
        let deadline = Instant::now() + ROOM_WAIT;
        while self.uploading_bytes > limit {
            match tokio::time::timeout_at(deadline, self.uploads.join_next()).await {
                Ok(Some(joined)) => self.finished(joined)?,
                Ok(None) => break,
                Err(_) => {
                    let why = self
                        .uploader
                        .last_failure()
                        .unwrap_or_else(|| "uploads are slower than the records come".into());
                    return Err(Error::retriable(format!(
                        "s3 sink buffers are full ({} bytes): {why}",
                        self.uploading_bytes
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The last offset of the cut whose anchor is `key`, if a previous run wrote it.
async fn find_cut(client: &Client, bucket: &str, key: &str) -> Result<Option<u64>> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => {
            let last = head
                .metadata()
                .and_then(|m| m.get(META_CUT_LAST))
                .and_then(|v| v.parse().ok());
            if last.is_none() {
                tracing::warn!(key, "object without s3-sink metadata is overwritten");
            }
            Ok(last)
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(classify(&format!("looking for {key}"), e)),
    }
}

/// Whether a record can be written in `format` at all.
fn check(format: Format, record: &Record) -> Result<(), String> {
    if format != Format::Parquet {
        return Ok(());
    }
    if let Some(Value::Object(map)) = &record.value
        && let Some(name) = map.keys().find(|k| METADATA_COLUMNS.contains(&k.as_str()))
    {
        return Err(format!(
            "field {name:?} has the name of a metadata column of the parquet format"
        ));
    }
    if let (Some(declared), Some(value)) = (&record.value_schema, &record.value)
        && !columnar::fits(&columnar::nullable(declared), value)
    {
        return Err(format!("the value does not fit its schema {declared}"));
    }
    Ok(())
}

#[async_trait]
impl Sink for S3Sink {
    /// # Cancel safety
    /// Not cancel-safe while it looks for a previous run's objects; the runtime does not
    /// cancel `put`.
    async fn put(&mut self, records: &[Record]) -> Result<Vec<Rejected>> {
        self.reap()?;
        let mut rejected = Vec::new();
        for (index, record) in records.iter().enumerate() {
            if let Err(why) = self.take(record).await? {
                rejected.push(Rejected {
                    index,
                    error: Error::data(format!(
                        "{} partition {} offset {}: {why}",
                        record.topic,
                        record.partition.map_or("-".into(), |p| p.to_string()),
                        record.offset.map_or("-".into(), |o| o.to_string()),
                    )),
                });
            }
        }
        self.make_room().await?;
        Ok(rejected)
    }

    /// Seals the cuts that are due (by age or idleness); uploads go on in the background, and
    /// [`pending_offsets`](Self::pending_offsets) holds the offsets of their records back.
    async fn flush(&mut self) -> Result<()> {
        self.reap()?;
        let rotate = Duration::from_millis(self.config.rotate_interval_ms);
        let idle = Duration::from_millis(self.config.flush_idle_ms);
        let now = Instant::now();
        let due: Vec<PartitionKey> = self
            .partitions
            .iter()
            .filter(|(_, s)| {
                s.open.as_ref().is_some_and(|c| {
                    now.duration_since(c.opened_at) >= rotate
                        || now.duration_since(c.last_record_at) >= idle
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.seal(&key)?;
        }
        Ok(())
    }

    fn pending_offsets(&self) -> Vec<(String, u32, u64)> {
        self.partitions
            .iter()
            .filter_map(|((topic, partition), state)| {
                let open = state.open.as_ref().map(|c| c.first);
                let uploading = state.uploading.front().copied();
                let first = match (open, uploading) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b)?,
                };
                Some((topic.clone(), *partition, first))
            })
            .collect()
    }

    /// Writes out what is buffered and waits (up to 30 s) for the uploads. Their offsets are
    /// not committed (the runtime committed before closing); a restart finds their anchors.
    async fn close(&mut self) -> Result<()> {
        let keys: Vec<PartitionKey> = self.partitions.keys().cloned().collect();
        for key in keys {
            self.seal(&key)?;
        }
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.uploads.join_next()).await {
                Ok(Some(joined)) => {
                    if let Err(e) = self.finished(joined) {
                        tracing::warn!(error = %e, "s3 sink upload failed while closing");
                    }
                }
                Ok(None) => return Ok(()),
                Err(_) => {
                    return Err(Error::retriable(
                        "s3 sink uploads did not finish while closing; they are written again after a restart",
                    ));
                }
            }
        }
    }
}
