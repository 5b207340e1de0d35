//! One `s3-source` task: lists its directories, reads their objects in order, and resumes from
//! the stored offsets.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use logbrook_connect::{Error, Result, Source, SourceContext, SourceRecord};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::decode::ObjectReader;
use super::{Envelope, S3SourceConfig};
use crate::client::{classify, is_not_found};

/// A directory's progress: the object being read or last read, and whether it is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    key: String,
    position: u64,
    done: bool,
}

/// The object being read.
struct Reading {
    key: String,
    directory: String,
    reader: ObjectReader,
}

/// One running `s3-source` task.
pub(crate) struct S3Source {
    config: S3SourceConfig,
    connector: String,
    client: Client,
    context: SourceContext,
    /// The connector's `topic`, which replaces restored records' own topics.
    topic: Option<String>,
    /// Progress by directory, from the stored offsets and what was read since.
    cursors: HashMap<String, Option<Cursor>>,
    /// Objects to read, in order.
    queue: VecDeque<String>,
    /// The keys in `queue`.
    queued: HashSet<String>,
    reading: Option<Reading>,
    next_listing: Instant,
}

/// The keys under the prefix in the config's format, sorted.
pub(crate) async fn list_keys(client: &Client, config: &S3SourceConfig) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(&config.bucket)
            .prefix(config.prefix.trim_start_matches('/'))
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| classify(&format!("listing {:?}", config.prefix), e))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .filter(|k| config.format.matches(k))
                .map(str::to_string),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    Ok(keys)
}

/// A directory: the key up to and with its last `/` (empty at the bucket's root).
fn directory_of(key: &str) -> &str {
    key.rfind('/').map_or("", |at| &key[..=at])
}

impl S3Source {
    pub(crate) async fn open(config: S3SourceConfig, context: SourceContext) -> Result<Self> {
        let client = config.location().client().await;
        client
            .head_bucket()
            .bucket(&config.bucket)
            .send()
            .await
            .map_err(|e| classify(&format!("bucket {:?}", config.bucket), e))?;
        tracing::info!(
            connector = %context.connector,
            task = context.task,
            bucket = %config.bucket,
            prefix = %config.prefix,
            format = ?config.format,
            envelope = ?config.envelope,
            "s3 source task opened"
        );
        let topic = (!context.topic.is_empty()).then(|| context.topic.clone());
        Ok(Self {
            connector: context.connector.clone(),
            config,
            client,
            context,
            topic,
            cursors: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            reading: None,
            next_listing: Instant::now(),
        })
    }

    fn source_partition(&self, directory: &str) -> Value {
        json!({"bucket": self.config.bucket, "directory": directory})
    }

    /// The stored or current progress of a directory.
    fn cursor(&mut self, directory: &str) -> Option<Cursor> {
        if !self.cursors.contains_key(directory) {
            let partition = self.source_partition(directory);
            let stored = self.context.offset(&partition).and_then(|offset| {
                Some(Cursor {
                    key: offset.get("key")?.as_str()?.to_string(),
                    position: offset.get("position")?.as_u64()?,
                    done: offset.get("done")?.as_bool()?,
                })
            });
            self.cursors.insert(directory.to_string(), stored);
        }
        self.cursors.get(directory).cloned().flatten()
    }

    /// Lists the prefix and queues the objects this task has yet to read.
    async fn list(&mut self) -> Result<()> {
        let keys = list_keys(&self.client, &self.config).await?;
        for key in keys {
            let directory = directory_of(&key).to_string();
            if self
                .config
                .task_share
                .is_some_and(|share| !share.owns(&directory))
            {
                continue;
            }
            let wanted = match self.cursor(&directory) {
                None => true,
                Some(cursor) => key > cursor.key || (key == cursor.key && !cursor.done),
            };
            if wanted && self.queued.insert(key.clone()) {
                self.queue.push_back(key);
            }
        }
        Ok(())
    }

    /// Opens the next queued object, at its stored position.
    ///
    /// # Errors
    /// GET failures (retriable ones leave the object queued).
    async fn open_next(&mut self) -> Result<bool> {
        let Some(key) = self.queue.front().cloned() else {
            return Ok(false);
        };
        let directory = directory_of(&key).to_string();
        let start = match self.cursor(&directory) {
            Some(cursor) if cursor.key == key => cursor.position,
            _ => 0,
        };
        let object = match self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(object) => object,
            Err(e) if is_not_found(&e) => {
                tracing::warn!(key, "object listed but gone; skipped");
                self.queue.pop_front();
                self.queued.remove(&key);
                return Ok(true);
            }
            Err(e) => return Err(classify(&format!("reading {key}"), e)),
        };
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| {
                Error::retriable(format!("reading {key}: {}", crate::raw::error_chain(&e)))
            })?
            .into_bytes();
        self.queue.pop_front();
        self.queued.remove(&key);
        let reader = ObjectReader::open(
            self.config.format,
            self.config.envelope,
            bytes,
            start,
            self.config.batch_records,
        )
        .map_err(|why| Error::fatal(format!("{key}: {why}")))?;
        tracing::debug!(connector = %self.connector, key, start, "s3 source reads an object");
        self.reading = Some(Reading {
            key,
            directory,
            reader,
        });
        Ok(true)
    }
}

#[async_trait]
impl Source for S3Source {
    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        loop {
            if let Some(reading) = self.reading.as_mut() {
                let batch = reading
                    .reader
                    .next_batch(self.config.batch_records)
                    .map_err(|why| Error::fatal(format!("{}: {why}", reading.key)))?;
                let (key, directory) = (reading.key.clone(), reading.directory.clone());
                if batch.is_empty() {
                    self.reading = None;
                    let position = self
                        .cursor(&directory)
                        .filter(|c| c.key == key)
                        .map_or(0, |c| c.position);
                    self.cursors.insert(
                        directory,
                        Some(Cursor {
                            key,
                            position,
                            done: true,
                        }),
                    );
                    continue;
                }
                let partition = self.source_partition(&directory);
                let mut out = Vec::with_capacity(batch.len());
                let mut last = None;
                for decoded in batch {
                    let offset =
                        json!({"key": key, "position": decoded.position, "done": decoded.done});
                    last = Some(Cursor {
                        key: key.clone(),
                        position: decoded.position,
                        done: decoded.done,
                    });
                    let source_record = match decoded.record {
                        Ok(mut record) => {
                            if let Some(topic) = &self.topic {
                                record.topic.clone_from(topic);
                            } else if self.config.envelope == Envelope::Value {
                                record.topic.clear();
                            }
                            SourceRecord::new(record, partition.clone(), offset)
                        }
                        Err((raw, why)) => {
                            let mut record = SourceRecord::new(
                                logbrook_connect::Record::new(
                                    self.topic.clone().unwrap_or_default(),
                                    Value::String(raw),
                                ),
                                partition.clone(),
                                offset,
                            );
                            record.error = Some(format!("{key} at {}: {why}", decoded.position));
                            record
                        }
                    };
                    out.push(source_record);
                }
                if let Some(last) = last {
                    self.cursors.insert(directory, Some(last));
                }
                return Ok(out);
            }
            if self.queue.is_empty() {
                let now = Instant::now();
                if now < self.next_listing {
                    let wait = (self.next_listing - now).min(Duration::from_secs(1));
                    tokio::time::sleep(wait).await;
                    return Ok(Vec::new());
                }
                self.list().await?;
                self.next_listing =
                    Instant::now() + Duration::from_millis(self.config.poll_interval_ms);
                if self.queue.is_empty() {
                    return Ok(Vec::new());
                }
            }
            self.open_next().await?;
        }
    }
}
