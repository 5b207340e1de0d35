//! Plain S3 operations with the connectors' client, for tools and benchmarks that look at a
//! bucket or measure the server without a connector (`logbrook perf s3`, the CLI's tests), so
//! the SDK stays inside this crate.

use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use logbrook_connect::{Error, Result};
use tokio::sync::Semaphore;

use crate::client::{S3Location, classify};

/// A bucket, reached with the connectors' client.
#[derive(Clone)]
pub struct RawBucket {
    client: Client,
    bucket: String,
}

impl std::fmt::Debug for RawBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBucket")
            .field("bucket", &self.bucket)
            .finish()
    }
}

impl RawBucket {
    /// A bucket on an S3-compatible server at `endpoint` with static credentials (region
    /// `us-east-1`, path-style). No request is sent.
    pub async fn new(
        endpoint: &str,
        access_key_id: &str,
        secret_access_key: &str,
        bucket: &str,
    ) -> Self {
        let location = S3Location {
            bucket: bucket.to_string(),
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint.to_string()),
            force_path_style: Some(true),
            access_key_id: Some(access_key_id.to_string()),
            secret_access_key: Some(secret_access_key.to_string()),
        };
        Self {
            client: location.client().await,
            bucket: bucket.to_string(),
        }
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket unless it exists.
    ///
    /// # Errors
    /// S3 errors.
    pub async fn create(&self) -> Result<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| classify(&format!("creating bucket {}", self.bucket), e))?;
        Ok(())
    }

    /// The keys under `prefix` with their sizes, in key order.
    ///
    /// # Errors
    /// S3 errors.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| classify(&format!("listing {prefix:?}"), e))?;
            out.extend(page.contents().iter().filter_map(|o| {
                Some((
                    o.key()?.to_string(),
                    u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                ))
            }));
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// An object's bytes.
    ///
    /// # Errors
    /// S3 errors.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&format!("reading {key}"), e))?;
        Ok(object
            .body
            .collect()
            .await
            .map_err(|e| Error::retriable(format!("reading {key}: {}", error_chain(&e))))?
            .into_bytes())
    }

    /// Writes an object with one PUT.
    ///
    /// # Errors
    /// S3 errors.
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes.into()))
            .send()
            .await
            .map_err(|e| classify(&format!("writing {key}"), e))?;
        Ok(())
    }

    /// Deletes every object under `prefix`.
    ///
    /// # Errors
    /// S3 errors.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for (key, _) in self.list(prefix).await? {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| classify(&format!("deleting {key}"), e))?;
        }
        Ok(())
    }

    /// Uploads objects as the plain SDK calls would: one PUT up to `part_bytes`, a multipart
    /// upload in parts of `part_bytes` above, with at most `concurrency` requests in flight
    /// across all objects.
    ///
    /// # Errors
    /// S3 errors.
    pub async fn upload_all(
        &self,
        objects: Vec<(String, Bytes)>,
        part_bytes: usize,
        concurrency: usize,
    ) -> Result<()> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let part_bytes = part_bytes.max(1);
        futures::future::try_join_all(
            objects
                .into_iter()
                .map(|(key, bytes)| self.upload(key, bytes, part_bytes, permits.clone())),
        )
        .await?;
        Ok(())
    }

    async fn upload(
        &self,
        key: String,
        bytes: Bytes,
        part_bytes: usize,
        permits: Arc<Semaphore>,
    ) -> Result<()> {
        let closed = |_| Error::fatal("upload permits closed");
        if bytes.len() <= part_bytes {
            let _permit = permits.acquire().await.map_err(closed)?;
            return self.put(&key, bytes).await;
        }
        let what = format!("uploading {key}");
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| classify(&what, e))?;
        let id = created
            .upload_id()
            .ok_or_else(|| Error::fatal(format!("{what}: no upload id")))?
            .to_string();
        let parts =
            futures::future::try_join_all((0..bytes.len()).step_by(part_bytes).enumerate().map(
                |(n, at)| {
                    let chunk = bytes.slice(at..(at + part_bytes).min(bytes.len()));
                    let (permits, key, id, what) = (permits.clone(), &key, &id, &what);
                    async move {
                        let _permit = permits.acquire().await.map_err(closed)?;
                        let number =
                            i32::try_from(n + 1).map_err(|_| Error::fatal("too many parts"))?;
                        let out = self
                            .client
                            .upload_part()
                            .bucket(&self.bucket)
                            .key(key)
                            .upload_id(id)
                            .part_number(number)
                            .body(ByteStream::from(chunk))
                            .send()
                            .await
                            .map_err(|e| classify(what, e))?;
                        Ok::<_, Error>(
                            CompletedPart::builder()
                                .set_e_tag(out.e_tag)
                                .part_number(number)
                                .build(),
                        )
                    }
                },
            ))
            .await?;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(&what, e))?;
        Ok(())
    }
}

/// An error with its sources, `a: b: c`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
