//! Running `logbrook serve` in the background and real Kafka clients against it.
//!
//! The clients come from `scripts/kafka-clients.sh` (called by `scripts/test.sh`), which exports
//! `LOGBROOK_TEST_KCAT` and `LOGBROOK_TEST_PYTHON`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Logbrook, Run, drain};

/// The line `logbrook serve` prints once it is bound, before the address.
const LISTENING: &str = "logbrook serve: listening on ";
/// The line before it, with the metrics URL.
const METRICS: &str = "logbrook serve: metrics on ";

/// A running `logbrook serve --listen 127.0.0.1:0`; killed when dropped.
pub struct Server {
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub bootstrap: String,
    /// `http://127.0.0.1:PORT/metrics`.
    pub metrics_url: String,
}

impl Server {
    /// Starts `logbrook serve` on a free loopback port and waits for its listening line.
    pub fn start(lb: &Logbrook) -> Self {
        Self::start_with(lb, &[])
    }

    /// As [`Server::start`], with more `logbrook serve` arguments.
    pub fn start_with(lb: &Logbrook, args: &[&str]) -> Self {
        Self::start_at(lb, "127.0.0.1:0", args)
    }

    /// As [`Server::start_with`], listening on `listen`: a server restarted after
    /// [`Server::kill9`] on the old one's `bootstrap` is where its clients reconnect.
    pub fn start_at(lb: &Logbrook, listen: &str, args: &[&str]) -> Self {
        Self::start_with_env(lb, listen, args, &[])
    }

    /// As [`Server::start_at`], with environment variables set for the server.
    pub fn start_with_env(
        lb: &Logbrook,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut all = vec!["serve", "--listen", listen, "--http-listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = lb
            .command(&all)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start logbrook serve");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            drain(child.stdout.take().unwrap(), stdout.clone()),
            drain(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let mut server = Self {
            child: Some(child),
            stdout,
            stderr,
            readers,
            bootstrap: String::new(),
            metrics_url: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = server.stdout.lock().unwrap().clone();
            if let Some(at) = out.find(LISTENING) {
                let rest = &out[at + LISTENING.len()..];
                if let Some(line) = rest.lines().next().filter(|_| rest.contains('\n')) {
                    server.bootstrap = line.trim().to_string();
                    server.metrics_url = out
                        .lines()
                        .find_map(|l| l.strip_prefix(METRICS))
                        .expect("a metrics line before the listening line")
                        .trim()
                        .to_string();
                    return server;
                }
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "logbrook serve exited early ({status}): {}",
                    server.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "logbrook serve printed no listening line: {}",
                server.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Prometheus text of `GET /metrics`.
    pub fn metrics(&self) -> String {
        ureq::get(&self.metrics_url)
            .call()
            .unwrap_or_else(|e| panic!("GET {}: {e}", self.metrics_url))
            .body_mut()
            .read_to_string()
            .expect("metrics text")
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
    }

    /// Waits (up to `seconds`) for it to exit on its own; returns what it printed.
    pub fn wait_for_exit(mut self, seconds: u64) -> Run {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "logbrook serve did not exit within {seconds} s: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        Run {
            code: status.code(),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
        }
    }

    /// Sends SIGTERM and waits (up to 30 s) for it to exit.
    pub fn stop(self) -> Run {
        let pid = self.child.as_ref().unwrap().id();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.wait_for_exit(30)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The client program named by the environment variable `var` (`LOGBROOK_TEST_KCAT`,
/// `LOGBROOK_TEST_PYTHON`). When it is unset, CI fails (it must have every client) and a local
/// run prints a skip notice and gets `None`.
pub fn client(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) => panic!(
            "{var} is not set, and CI must run every client test: run ./scripts/test.sh \
             (scripts/kafka-clients.sh installs kcat and the Python clients)"
        ),
        _ => {
            eprintln!(
                "skipped: {var} is not set (./scripts/test.sh installs the Kafka clients and sets it)"
            );
            None
        }
    }
}

/// A Python client script in `cli/tests/clients/`.
pub fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs a client with `stdin`, killing it after `seconds`; asserts it exited 0 and returns
/// what it printed. `what` names it in failure messages, which carry its whole output.
pub fn run_client(command: &mut Command, stdin: &str, seconds: u64, what: &str) -> Run {
    let run = run_client_unchecked(command, stdin, seconds);
    assert_eq!(
        run.code,
        Some(0),
        "{what} failed (exit {:?})\n--- stdout\n{}\n--- stderr\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

/// As [`run_client`], without the exit-code check (`code` is `None` when it was killed).
pub fn run_client_unchecked(command: &mut Command, stdin: &str, seconds: u64) -> Run {
    let mut client = RunningClient::spawn(command);
    let mut input = client.stdin.take().unwrap();
    let stdin = stdin.to_string();
    // Dropping the handle at the end closes the client's stdin.
    std::thread::spawn(move || input.write_all(stdin.as_bytes()));
    client.wait(seconds)
}

/// A client running in the background with its stdin open, what it prints collected as it
/// prints it; killed when dropped.
pub struct RunningClient {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl RunningClient {
    /// Starts `command` with its stdin, stdout and stderr piped.
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            drain(child.stdout.take().unwrap(), stdout.clone()),
            drain(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Self {
            stdin: child.stdin.take(),
            child: Some(child),
            stdout,
            stderr,
            readers,
        }
    }

    /// The lines it printed so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Closes its stdin: it reads end of file.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits for it to exit, killing it after `seconds`, and returns what it printed (`code`
    /// is `None` when it was killed).
    pub fn wait(mut self, seconds: u64) -> Run {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let mut stderr = self.stderr();
        if status.is_none() {
            stderr.push_str(&format!("\n(killed after {seconds} s)"));
        }
        Run {
            code: status.and_then(|status| status.code()),
            stdout: self.stdout(),
            stderr,
        }
    }
}

impl Drop for RunningClient {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops the server, asserting a clean exit.
pub fn stop(server: Server) {
    let run = server.stop();
    assert_eq!(
        run.code,
        Some(0),
        "logbrook serve did not exit 0 on SIGTERM: {run:?}"
    );
}

/// The stored records of `topic` as the embedded `logbrook consume --format json` reads them,
/// keyed by (partition, offset).
pub fn stored(lb: &Logbrook, topic: &str) -> BTreeMap<(u64, u64), Value> {
    lb.consume_json(topic, &[])
        .into_iter()
        .map(|record| {
            let partition = record["partition"].as_u64().expect("partition");
            let offset = record["offset"].as_u64().expect("offset");
            ((partition, offset), record)
        })
        .collect()
}
