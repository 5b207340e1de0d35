//! The PostgreSQL server `scripts/test.sh` starts, reached with `psql`.

use std::process::Command;

/// The admin URL of the test server.
pub fn server_url() -> String {
    std::env::var("LOGBROOK_TEST_PG_URL").expect(
        "LOGBROOK_TEST_PG_URL is not set: run ./scripts/test.sh (it starts PostgreSQL on loopback)",
    )
}

/// Runs SQL (several statements allowed) and returns the unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A fresh database on the server at `admin`; returns its URL.
pub fn create_database(admin: &str, name: &str) -> String {
    psql(
        admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    psql(admin, &format!("CREATE DATABASE {name}"));
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}
