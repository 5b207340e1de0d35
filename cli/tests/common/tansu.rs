//! A Tansu broker (an independent Kafka-compatible broker in Rust) on a free loopback port,
//! from the binary `scripts/kafka-clients.sh` installs (`LOGBROOK_TEST_TANSU`). Tansu's
//! transactions are incomplete, so tests use it for at-least-once paths only.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Tansu, storing in memory; killed on drop.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
}

impl Tansu {
    /// Starts Tansu; `None` (the test skips) without `LOGBROOK_TEST_TANSU`, except on CI.
    pub fn start() -> Option<Self> {
        let binary = match std::env::var_os("LOGBROOK_TEST_TANSU") {
            Some(path) if !path.is_empty() => path,
            _ if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) => panic!(
                "LOGBROOK_TEST_TANSU is not set, and CI must run the Tansu tests: run \
                 ./scripts/test.sh (scripts/kafka-clients.sh installs Tansu)"
            ),
            _ => {
                eprintln!("skipped: LOGBROOK_TEST_TANSU is not set (./scripts/test.sh sets it)");
                return None;
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting Tansu ({}): {e}", binary.to_string_lossy()));
        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "Tansu did not listen on {bootstrap}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, bootstrap })
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
