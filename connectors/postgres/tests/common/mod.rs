//! A fresh database per test on the server `scripts/pg-server.sh` starts (the test script sets
//! `LOGBROOK_TEST_PG_URL`).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use logbrook_connect::{Source, SourceRecord};
use serde_json::Value;

use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The admin URL of the test server.
pub fn server_url() -> String {
    std::env::var("LOGBROOK_TEST_PG_URL").expect(
        "LOGBROOK_TEST_PG_URL is not set: run ./scripts/test.sh, or start a server with \
         scripts/pg-server.sh start and export LOGBROOK_TEST_PG_URL=$(scripts/pg-server.sh url)",
    )
}

/// A database of its own for one test.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// A URL that connects to it.
    pub url: String,
}

impl TestDb {
    /// Creates `lb_<label>_<pid>_<n>`, dropping a leftover of the same name first.
    pub async fn new(label: &str) -> Self {
        let admin = server_url();
        let name = format!(
            "lb_{label}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("connect to the test server");
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .expect("drop old test database");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("LOGBROOK_TEST_PG_URL has no database part: {admin}"),
        };
        Self { name, url }
    }

    /// A pool on this database.
    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Runs statements (several, separated by `;`).
    pub async fn exec(&self, sql: &str) {
        let mut conn = PgConnection::connect(&self.url).await.expect("connect");
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Polls until `n` records (or 20 s). `commit` says whether each batch "reached the log" (the
/// runtime calls `commit` after the log transaction).
pub async fn poll_n(source: &mut Box<dyn Source>, n: usize, commit: bool) -> Vec<SourceRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "got {} of {n} records: {:#?}",
            out.len(),
            values(&out)
        );
        let batch = source.poll().await.expect("poll");
        if commit && !batch.is_empty() {
            source.commit().await.expect("commit");
        }
        out.extend(batch);
    }
    out
}

/// The records' values (`null` for tombstones).
pub fn values(records: &[SourceRecord]) -> Vec<Value> {
    records
        .iter()
        .map(|r| r.record.value.clone().unwrap_or(Value::Null))
        .collect()
}
