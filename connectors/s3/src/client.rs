//! The S3 client both connectors use, and the keys that say where S3 is.
//!
//! The client is lean: one TLS stack (rustls on ring), no aws-lc. When `region` and the access
//! keys are configured they are used as they are, and no provider chain runs; otherwise the
//! standard AWS environment/profile chains do. Region lookups never ask the EC2 instance
//! metadata service (a machine off EC2 would wait on it); for credentials it stays the chain's
//! last resort, as on EC2 it is how an instance role is found (set
//! `AWS_EC2_METADATA_DISABLED=true` to skip it).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use logbrook_connect::{ConfigIssue, Error};

/// The region used with a custom `endpoint` when none is configured or found: S3-compatible
/// stores accept any region, but requests must be signed for one.
const FALLBACK_REGION: &str = "us-east-1";

/// Where the bucket is and how to sign requests: the keys `s3-sink` and `s3-source` share
/// (each config holds them at its top level, as serde cannot flatten into a struct that denies
/// unknown fields).
#[derive(Clone, Default)]
pub(crate) struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The AWS region (`eu-west-1`). Without it: `AWS_REGION`, `AWS_DEFAULT_REGION`, the
    /// profile's region, or `us-east-1` with a custom `endpoint`.
    pub region: Option<String>,
    /// A custom endpoint URL for S3-compatible stores (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual hosts
    /// (`bucket.endpoint/key`). Default: true with a custom `endpoint`, false without.
    pub force_path_style: Option<bool>,
    /// The access key id. With `secret_access_key`, static credentials are used and no
    /// credential chain runs; without both, the standard AWS chain (environment, profile, web
    /// identity, container, instance role).
    pub access_key_id: Option<String>,
    /// The secret access key; a secret, never logged or shown.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Location")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<secret>"),
            )
            .finish()
    }
}

impl S3Location {
    /// Checks the keys without I/O.
    ///
    /// # Errors
    /// The first bad key.
    pub fn validate(&self) -> Result<(), ConfigIssue> {
        let bucket = &self.bucket;
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(ConfigIssue::new(
                "bucket",
                format!(
                    "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' or '.')"
                ),
            ));
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigIssue::new(
                "endpoint",
                format!("{endpoint:?} is not a URL: it starts with http:// or https://"),
            ));
        }
        if self.region.as_deref() == Some("") {
            return Err(ConfigIssue::new("region", "must not be empty"));
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => Err(ConfigIssue::new(
                "secret_access_key",
                "is required with access_key_id (or leave both out for the AWS credential chain)",
            )),
            (None, Some(_)) => Err(ConfigIssue::new(
                "access_key_id",
                "is required with secret_access_key (or leave both out for the AWS credential chain)",
            )),
            _ => Ok(()),
        }
    }

    /// Builds the client. No request is sent.
    pub async fn client(&self) -> Client {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        // The SDK retries throttling, 5xx answers, timeouts and broken connections with
        // exponential backoff and jitter; the sink retries further on top (see `sink::upload`).
        let retry = RetryConfig::standard()
            .with_max_attempts(6)
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(5));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(retry)
            .timeout_config(timeouts);
        let region = match &self.region {
            Some(region) => Some(Region::new(region.clone())),
            // The environment, then the profile; never instance metadata.
            None => {
                RegionProviderChain::first_try(
                    aws_config::environment::EnvironmentVariableRegionProvider::new(),
                )
                .or_else(aws_config::profile::ProfileFileRegionProvider::builder().build())
                .region()
                .await
            }
        };
        let region = region.or_else(|| {
            self.endpoint
                .is_some()
                .then(|| Region::new(FALLBACK_REGION))
        });
        if let Some(region) = region {
            loader = loader.region(region);
        }
        if let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "logbrook-config",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(self.force_path_style.unwrap_or(self.endpoint.is_some()));
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint_url(endpoint.trim_end_matches('/'));
        }
        Client::from_conf(builder.build())
    }
}

/// Turns an SDK error into a Connect error that says whether retrying can help: network
/// failures, timeouts, throttling and 5xx answers are retriable; the rest (access denied, no
/// such bucket) are fatal. `what` names the operation and object.
pub(crate) fn classify<E, R>(what: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    let message = format!("{what}: {}", DisplayErrorContext(&error));
    if is_retriable(&error) {
        Error::retriable(message)
    } else {
        Error::fatal(message)
    }
}

/// Whether retrying an SDK error can help.
pub(crate) fn is_retriable<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    match error {
        SdkError::ConstructionFailure(_) => false,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status_code();
            let code = service.err().code().unwrap_or_default();
            status >= 500
                || status == 429
                || status == 408
                || matches!(
                    code,
                    "SlowDown"
                        | "Throttling"
                        | "ThrottlingException"
                        | "RequestTimeout"
                        | "RequestTimeTooSkewed"
                        | "InternalError"
                        | "ServiceUnavailable"
                )
        }
        _ => true,
    }
}

/// The HTTP status of a raw response, whatever the SDK's response type.
pub(crate) trait HttpStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Whether an SDK error is a 404 (HEAD answers have no error code to match).
pub(crate) fn is_not_found<E, R: HttpStatus>(error: &SdkError<E, R>) -> bool {
    matches!(error, SdkError::ServiceError(service) if service.raw().status_code() == 404)
}

/// Joins a prefix and the rest of a key with one `/` (an empty prefix adds nothing).
pub(crate) fn join_key(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bucket_endpoint_and_key_pairs_are_checked() {
        let good = S3Location {
            bucket: "archive-1".into(),
            ..S3Location::default()
        };
        assert!(good.validate().is_ok());
        let bad = S3Location {
            bucket: "Archive".into(),
            ..S3Location::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "bucket");
        let bad = S3Location {
            endpoint: Some("127.0.0.1:9000".into()),
            ..good.clone()
        };
        assert_eq!(bad.validate().unwrap_err().key, "endpoint");
        let bad = S3Location {
            access_key_id: Some("id".into()),
            ..good.clone()
        };
        assert_eq!(bad.validate().unwrap_err().key, "secret_access_key");
    }

    #[test]
    fn the_secret_key_is_not_in_debug_output() {
        let location = S3Location {
            bucket: "b".into(),
            secret_access_key: Some("s3cr3t".into()),
            ..S3Location::default()
        };
        assert!(!format!("{location:?}").contains("s3cr3t"));
    }

    #[test]
    fn keys_join_with_one_slash() {
        assert_eq!(join_key("", "a/b"), "a/b");
        assert_eq!(join_key("/archive/", "a"), "archive/a");
        assert_eq!(join_key("x/y", "a"), "x/y/a");
    }
}
