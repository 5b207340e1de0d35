//! The S3 server `scripts/s3-server.sh` starts (the test script sets
//! `LOGBROOK_TEST_S3_ENDPOINT`, `LOGBROOK_TEST_S3_ACCESS_KEY`, `LOGBROOK_TEST_S3_SECRET_KEY`): a
//! bucket per test, and a blocking look at what is in it.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use serde_json::Value;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run ./scripts/test.sh, or start a server with \
             scripts/s3-server.sh start and export LOGBROOK_TEST_S3_ENDPOINT=$(scripts/s3-server.sh url) \
             LOGBROOK_TEST_S3_ACCESS_KEY=$(scripts/s3-server.sh access-key) \
             LOGBROOK_TEST_S3_SECRET_KEY=$(scripts/s3-server.sh secret-key)"
        )
    })
}

/// A bucket of its own on the test server.
pub struct Bucket {
    /// Its name.
    pub name: String,
    client: Client,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    /// Creates `lb-cli-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new("us-east-1"))
            .endpoint_url(env("LOGBROOK_TEST_S3_ENDPOINT"))
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                env("LOGBROOK_TEST_S3_ACCESS_KEY"),
                env("LOGBROOK_TEST_S3_SECRET_KEY"),
                None,
                None,
                "test",
            ))
            .build();
        let client = Client::from_conf(config);
        let name = format!(
            "lb-cli-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        runtime
            .block_on(client.create_bucket().bucket(&name).send())
            .unwrap();
        Self {
            name,
            client,
            runtime,
        }
    }

    /// The connector keys that reach this bucket; credentials come from the environment
    /// through `${env:...}`, so the config file holds no secret.
    pub fn connector_keys(&self) -> String {
        format!(
            "bucket = \"{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             access_key_id = \"${{env:LOGBROOK_TEST_S3_ACCESS_KEY}}\"\n\
             secret_access_key = \"${{env:LOGBROOK_TEST_S3_SECRET_KEY}}\"\n",
            self.name,
            env("LOGBROOK_TEST_S3_ENDPOINT"),
        )
    }

    /// The secret key, to check it never shows up in output.
    pub fn secret(&self) -> String {
        env("LOGBROOK_TEST_S3_SECRET_KEY")
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.runtime.block_on(async {
            let mut keys = Vec::new();
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.name)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .unwrap();
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_string)),
                );
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            keys.sort();
            keys
        })
    }

    /// An object's bytes.
    pub fn get(&self, key: &str) -> Vec<u8> {
        self.runtime.block_on(async {
            let object = self
                .client
                .get_object()
                .bucket(&self.name)
                .key(key)
                .send()
                .await
                .unwrap();
            object.body.collect().await.unwrap().to_vec()
        })
    }

    /// The JSON lines of every object, by key.
    pub fn json_objects(&self) -> Vec<(String, Vec<Value>)> {
        self.keys()
            .into_iter()
            .map(|key| {
                let bytes = self.get(&key);
                let lines = bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap())
                    .collect();
                (key, lines)
            })
            .collect()
    }
}
