//! Shared helpers for the end-to-end tests: run the real `logbrook` binary against a temporary
//! data directory and look at its exit code, stdout and stderr.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A temporary data directory and a way to run `logbrook` on it.
pub struct Logbrook {
    root: tempfile::TempDir,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Logbrook {
    /// A fresh, not yet created, data directory inside a temporary directory.
    pub fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    /// The data directory the commands use.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The temporary directory holding the data directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A command for `logbrook ARGS --data-dir DIR`, with logging at its default level.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_logbrook"));
        command
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .env_remove("RUST_LOG")
            .env_remove("LOGBROOK_DATA_DIR")
            .env_remove("LOGBROOK_BOOTSTRAP_SERVER");
        command
    }

    /// Runs `logbrook ARGS` with empty stdin.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// Runs `logbrook ARGS` with `stdin` as its standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start logbrook");
        let mut input = child.stdin.take().expect("stdin is piped");
        let stdin = stdin.to_string();
        let writer = std::thread::spawn(move || input.write_all(stdin.as_bytes()));
        let output = child.wait_with_output().expect("wait for logbrook");
        writer
            .join()
            .expect("stdin writer thread")
            .expect("write stdin");
        output.into()
    }

    /// Runs `logbrook ARGS`, asserts it succeeded and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_stdin(args, "")
    }

    /// Runs `logbrook ARGS` with `stdin`, asserts it succeeded and returns its stdout.
    pub fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        let run = self.run_with_stdin(args, stdin);
        assert_eq!(run.code, Some(0), "logbrook {args:?} failed: {run:?}");
        run.stdout
    }

    /// Runs `logbrook ARGS`, asserts it failed with exit code 1 and an `error:` line, and
    /// returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        self.fails_with_stdin(args, "")
    }

    /// As [`Logbrook::fails`], with `stdin`.
    pub fn fails_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        let run = self.run_with_stdin(args, stdin);
        assert_eq!(run.code, Some(1), "logbrook {args:?} should fail: {run:?}");
        assert!(
            run.stderr.contains("error:"),
            "no error line in {:?}",
            run.stderr
        );
        run.stderr
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        self.ok(&[
            "topic",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
        ]);
    }

    /// Produces `lines` (one record each) with extra `args` for `logbrook produce TOPIC`.
    pub fn produce(&self, topic: &str, args: &[&str], lines: &[&str]) {
        let mut all = vec!["produce", topic];
        all.extend_from_slice(args);
        let mut stdin = lines.join("\n");
        stdin.push('\n');
        self.ok_with_stdin(&all, &stdin);
    }

    /// Runs `logbrook consume TOPIC ARGS --format json` and parses each line.
    pub fn consume_json(&self, topic: &str, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["consume", topic, "--format", "json"];
        all.extend_from_slice(args);
        self.ok(&all)
            .lines()
            .map(|line| serde_json::from_str(line).expect("consume prints JSON lines"))
            .collect()
    }

    /// Runs `logbrook consume TOPIC ARGS` and returns the printed values.
    pub fn consume_values(&self, topic: &str, args: &[&str]) -> Vec<String> {
        let mut all = vec!["consume", topic];
        all.extend_from_slice(args);
        self.ok(&all).lines().map(str::to_string).collect()
    }

    /// Starts `logbrook ARGS` in the background with stdout piped; killed when dropped.
    pub fn spawn(&self, args: &[&str]) -> Background {
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start logbrook in the background");
        Background { child: Some(child) }
    }

    /// Waits until the data dir's writer lock file names `pid`.
    pub fn wait_for_lock_holder(&self, pid: u32) {
        let lock = self.data_dir().join(".lock");
        wait_until("the writer lock to be taken", || {
            std::fs::read_to_string(&lock).is_ok_and(|text| text.trim() == pid.to_string())
        });
    }
}

/// A `logbrook` process running in the background; killed when dropped.
pub struct Background {
    child: Option<Child>,
}

impl Background {
    /// The process.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process is still owned")
    }

    /// The process id.
    pub fn id(&mut self) -> u32 {
        self.child().id()
    }

    /// Waits for the process to exit on its own and collects what it printed.
    pub fn wait(mut self) -> Run {
        let child = self.child.take().expect("the process is still owned");
        child.wait_with_output().expect("wait for logbrook").into()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` every 10 ms for up to 10 s.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Appends each line `stream` prints to `into`, on a thread of its own, until it closes; join
/// the thread to have every line.
pub fn drain(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

/// Formats milliseconds since the epoch as RFC 3339 with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a valid timestamp")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    logbrook_core::now_ms()
}

pub mod connect;
pub mod postgres;
pub mod s3;
pub mod serve;
pub mod tansu;
