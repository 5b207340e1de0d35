//! Uploading a sealed batch of objects (a cut, see [`super::task`]): single PUTs for small
//! objects, multipart uploads with parts in parallel for large ones, each request retried with
//! backoff until it succeeds or fails for good, and the objects made visible in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, TryFutureExt};
use logbrook_connect::Error;
use tokio::sync::Semaphore;

use crate::client::{classify, is_not_found, is_retriable};
use crate::layout::{META_CUT_FIRST, META_CUT_LAST, META_RECORDS};

/// The first wait before retrying a failed request; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The outcome of a cut's upload, shared with the next cut of its partition.
pub(crate) type CutDone = Shared<BoxFuture<'static, Result<(), String>>>;

/// One object of a cut.
pub(crate) struct ObjectData {
    /// Its key.
    pub key: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// How many records it holds.
    pub records: u64,
}

/// A sealed cut: objects whose records together cover offsets `first..=last` of one topic
/// partition. The anchor (the object holding `first`) is last.
pub(crate) struct Cut {
    pub first: u64,
    pub last: u64,
    pub objects: Vec<ObjectData>,
}

/// Uploads cuts for one sink task.
pub(crate) struct Uploader {
    client: Client,
    bucket: String,
    part_bytes: usize,
    /// Requests in flight at once.
    permits: Semaphore,
    /// The last failure of a retried request, for errors that explain why uploads are late.
    last_failure: Mutex<Option<String>>,
}

impl Uploader {
    pub(crate) fn new(
        client: Client,
        bucket: String,
        part_bytes: usize,
        concurrency: usize,
    ) -> Self {
        Self {
            client,
            bucket,
            part_bytes,
            permits: Semaphore::new(concurrency),
            last_failure: Mutex::new(None),
        }
    }

    /// The last retried failure, if uploads have failed since the last success.
    pub(crate) fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().ok().and_then(|f| f.clone())
    }

    /// Uploads a cut: the bytes of every object first (parts in parallel), then, once
    /// `previous` (the partition's earlier cut) is visible, the objects become visible: the
    /// others, then the anchor. Retriable failures are retried without end (the task stops this
    /// by dropping the future); others end the upload with an error.
    ///
    /// # Errors
    /// A failure retrying cannot help (access denied, no such bucket), or a failed `previous`.
    pub(crate) async fn upload(
        self: Arc<Self>,
        cut: Cut,
        previous: Option<CutDone>,
    ) -> Result<(), String> {
        let metadata = HashMap::from([
            (META_CUT_FIRST.to_string(), cut.first.to_string()),
            (META_CUT_LAST.to_string(), cut.last.to_string()),
        ]);
        let mut staged = Vec::with_capacity(cut.objects.len());
        let prepared = futures::future::try_join_all(cut.objects.into_iter().map(|object| {
            let mut metadata = metadata.clone();
            metadata.insert(META_RECORDS.to_string(), object.records.to_string());
            self.stage(object, metadata)
        }))
        .await
        .map_err(|e| e.to_string())?;
        staged.extend(prepared);
        if let Some(previous) = previous {
            previous
                .await
                .map_err(|e| format!("an earlier upload of this partition failed: {e}"))?;
        }
        let anchor = staged.pop();
        futures::future::try_join_all(staged.into_iter().map(|s| self.publish(s)))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(anchor) = anchor {
            self.publish(anchor).await.map_err(|e| e.to_string())?;
        }
        if let Ok(mut failure) = self.last_failure.lock() {
            *failure = None;
        }
        Ok(())
    }

    /// Uploads an object's parts (multipart) or keeps its bytes for one PUT.
    async fn stage(
        &self,
        object: ObjectData,
        metadata: HashMap<String, String>,
    ) -> Result<Staged, Error> {
        let ObjectData { key, bytes, .. } = object;
        let bytes = Bytes::from(bytes);
        if bytes.len() <= self.part_bytes {
            return Ok(Staged::Put {
                key,
                bytes,
                metadata,
            });
        }
        let upload_id = self
            .retry(&format!("starting the multipart upload of {key}"), || {
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .set_metadata(Some(metadata.clone()))
                    .send()
                    .map_ok(|out| out.upload_id)
            })
            .await?
            .ok_or_else(|| Error::fatal(format!("no upload id for {key}")))?;
        let chunks: Vec<Bytes> = (0..bytes.len())
            .step_by(self.part_bytes)
            .map(|at| bytes.slice(at..(at + self.part_bytes).min(bytes.len())))
            .collect();
        let parts =
            futures::future::try_join_all(chunks.into_iter().enumerate().map(|(i, chunk)| {
                let (key, upload_id) = (&key, &upload_id);
                async move {
                    let number = i32::try_from(i + 1)
                        .map_err(|_| Error::fatal(format!("{key}: too many parts")))?;
                    let _permit = self.permits.acquire().await;
                    let etag = self
                        .retry(&format!("uploading part {number} of {key}"), || {
                            self.client
                                .upload_part()
                                .bucket(&self.bucket)
                                .key(key)
                                .upload_id(upload_id)
                                .part_number(number)
                                .body(ByteStream::from(chunk.clone()))
                                .send()
                                .map_ok(|out| out.e_tag)
                        })
                        .await?;
                    Ok::<_, Error>(
                        CompletedPart::builder()
                            .set_e_tag(etag)
                            .part_number(number)
                            .build(),
                    )
                }
            }))
            .await?;
        Ok(Staged::Multipart {
            key,
            upload_id,
            parts,
        })
    }

    /// Makes a staged object visible.
    async fn publish(&self, staged: Staged) -> Result<(), Error> {
        match staged {
            Staged::Put {
                key,
                bytes,
                metadata,
            } => {
                let _permit = self.permits.acquire().await;
                self.retry(&format!("uploading {key}"), || {
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(&key)
                        .set_metadata(Some(metadata.clone()))
                        .body(ByteStream::from(bytes.clone()))
                        .send()
                        .map_ok(|_| ())
                })
                .await
            }
            Staged::Multipart {
                key,
                upload_id,
                parts,
            } => {
                let completed = CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build();
                let what = format!("completing the multipart upload of {key}");
                let outcome = self
                    .retry(&what, || {
                        self.client
                            .complete_multipart_upload()
                            .bucket(&self.bucket)
                            .key(&key)
                            .upload_id(&upload_id)
                            .multipart_upload(completed.clone())
                            .send()
                            .map_ok(|_| ())
                    })
                    .await;
                match outcome {
                    // A retried completion whose first attempt went through finds the upload
                    // gone: the object is there.
                    Err(error) if error.to_string().contains("NoSuchUpload") => {
                        match self
                            .client
                            .head_object()
                            .bucket(&self.bucket)
                            .key(&key)
                            .send()
                            .await
                        {
                            Ok(_) => Ok(()),
                            Err(_) => Err(error),
                        }
                    }
                    other => other,
                }
            }
        }
    }

    /// Runs a request until it succeeds or fails in a way retrying cannot fix, waiting between
    /// attempts (the SDK already retried each attempt a few times).
    async fn retry<T, E, R, F, Fut>(&self, what: &str, mut request: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, aws_sdk_s3::error::SdkError<E, R>>>,
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + crate::client::HttpStatus,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u32;
        loop {
            match request().await {
                Ok(out) => return Ok(out),
                Err(error) if is_retriable(&error) && !is_not_found(&error) => {
                    failures += 1;
                    let message = classify(what, error).to_string();
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(failures, error = %message, "s3 request failed; retrying");
                    }
                    if let Ok(mut failure) = self.last_failure.lock() {
                        *failure = Some(message);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(error) => return Err(classify(what, error)),
            }
        }
    }
}

/// An object whose bytes are uploaded but which is not visible yet.
enum Staged {
    /// Small enough for one PUT (which makes it visible at once).
    Put {
        key: String,
        bytes: Bytes,
        metadata: HashMap<String, String>,
    },
    /// Parts uploaded; visible after completion.
    Multipart {
        key: String,
        upload_id: String,
        parts: Vec<CompletedPart>,
    },
}

/// Wraps a cut's upload so the partition's next cut can wait for it.
pub(crate) fn shared(upload: impl Future<Output = Result<(), String>> + Send + 'static) -> CutDone {
    upload.boxed().shared()
}
