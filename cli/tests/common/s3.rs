//! The S3 server `scripts/s3-server.sh` starts (the test script sets
//! `LOGBROOK_TEST_S3_ENDPOINT`, `LOGBROOK_TEST_S3_ACCESS_KEY`, `LOGBROOK_TEST_S3_SECRET_KEY`): a
//! bucket per test, and a blocking look at what is in it.

use std::sync::atomic::{AtomicUsize, Ordering};

use logbrook_connector_s3::raw::RawBucket;
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
    raw: RawBucket,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    /// Creates `lb-cli-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let name = format!(
            "lb-cli-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let raw = runtime.block_on(async {
            let raw = RawBucket::new(
                &env("LOGBROOK_TEST_S3_ENDPOINT"),
                &env("LOGBROOK_TEST_S3_ACCESS_KEY"),
                &env("LOGBROOK_TEST_S3_SECRET_KEY"),
                &name,
            )
            .await;
            raw.create().await.unwrap();
            raw
        });
        Self { name, raw, runtime }
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
        let listed = self.runtime.block_on(self.raw.list("")).unwrap();
        listed.into_iter().map(|(key, _)| key).collect()
    }

    /// The JSON lines of every object, by key.
    pub fn json_objects(&self) -> Vec<(String, Vec<Value>)> {
        self.keys()
            .into_iter()
            .map(|key| {
                let bytes = self.runtime.block_on(self.raw.get(&key)).unwrap();
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
