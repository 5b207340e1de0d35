//! Running `logbrook connect run` in the background and talking to its REST API.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Logbrook, Run, drain};

/// A worker file with a free REST port and a short flush interval, written into the test's
/// temporary directory.
pub fn worker_file(lb: &Logbrook) -> PathBuf {
    let path = lb.root().join("worker.toml");
    std::fs::write(
        &path,
        "rest_listen = \"127.0.0.1:0\"\noffset_flush_interval_ms = 100\n",
    )
    .unwrap();
    path
}

/// Writes a connector file into the test's temporary directory.
pub fn connector_file(lb: &Logbrook, name: &str, text: &str) -> PathBuf {
    let path = lb.root().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Connector files `source.toml` (file-source `in`: JSON lines of `input` into topic `data`,
/// 500-record batches) and `sink.toml` (file-sink `out`: `data` into `output`).
pub fn file_pipeline(lb: &Logbrook, input: &Path, output: &Path) -> (PathBuf, PathBuf) {
    let source = connector_file(
        lb,
        "source.toml",
        &format!(
            "name = \"in\"\nconnector = \"file-source\"\ntopic = \"data\"\npath = \"{}\"\nformat = \"json\"\nbatch_max_records = 500\n",
            input.display()
        ),
    );
    let sink = connector_file(
        lb,
        "sink.toml",
        &format!(
            "name = \"out\"\nconnector = \"file-sink\"\ntopics = [\"data\"]\npath = \"{}\"\n",
            output.display()
        ),
    );
    (source, sink)
}

/// A running `logbrook connect run`; killed when dropped.
pub struct Worker {
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Worker {
    /// Starts `logbrook connect run --worker WORKER CONNECTORS...` and waits for its REST URL.
    pub fn start(lb: &Logbrook, connectors: &[&Path]) -> Self {
        Self::start_with(lb, &[], connectors)
    }

    /// As [`Worker::start`], with more `connect run` arguments (`--bootstrap-server ...`).
    pub fn start_with(lb: &Logbrook, extra: &[&str], connectors: &[&Path]) -> Self {
        Self::start_configured(lb, "", extra, connectors)
    }

    /// As [`Worker::start_with`], with more lines for the worker file.
    pub fn start_configured(
        lb: &Logbrook,
        worker_lines: &str,
        extra: &[&str],
        connectors: &[&Path],
    ) -> Self {
        let worker = worker_file(lb);
        if !worker_lines.is_empty() {
            let mut text = std::fs::read_to_string(&worker).unwrap();
            text.push_str(worker_lines);
            std::fs::write(&worker, text).unwrap();
        }
        let mut args: Vec<String> = vec![
            "connect".into(),
            "run".into(),
            "--worker".into(),
            worker.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(connectors.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = lb
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start logbrook connect run");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        drain(child.stdout.take().unwrap(), stdout.clone());
        drain(child.stderr.take().unwrap(), stderr.clone());
        let mut worker = Self {
            child: Some(child),
            stdout,
            stderr,
            url: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = worker.stdout.lock().unwrap().clone();
            if let Some(at) = out.find("REST API on ") {
                let rest = &out[at + "REST API on ".len()..];
                worker.url = rest.lines().next().unwrap().trim().to_string();
                break;
            }
            if let Some(status) = worker.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "connect run exited early ({status}): {}",
                    worker.stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "connect run did not start: {}",
                worker.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        worker
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> Run {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "connect run did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // Give the reader threads a moment to collect the last lines.
        std::thread::sleep(Duration::from_millis(50));
        Run {
            code: status.code(),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }

    /// Kills the process with SIGKILL (no chance to flush or commit).
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `GET path`, returning the status and the JSON body (or the text as a JSON string).
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    /// Any method, with an optional JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}{path}", self.url);
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            ("POST", Some(body)) => agent.post(&url).send_json(body),
            ("POST", None) => agent.post(&url).send_empty(),
            ("PUT", Some(body)) => agent.put(&url).send_json(body),
            ("PUT", None) => agent.put(&url).send_empty(),
            ("PATCH", Some(body)) => agent.patch(&url).send_json(body),
            (other, _) => panic!("unsupported method {other}"),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// Waits until the connector's tasks all report `state`.
    pub fn wait_for_tasks(&self, name: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, status) = self.get(&format!("/connectors/{name}/status"));
            let tasks = status["tasks"].as_array().cloned().unwrap_or_default();
            if code == 200 && !tasks.is_empty() && tasks.iter().all(|t| t["state"] == state) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tasks of {name} never became {state}: {status}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` every 20 ms for up to `seconds`.
pub fn wait_for(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The complete lines of a file, or none if it does not exist yet.
pub fn lines_of(path: &Path) -> Vec<String> {
    // A sink may be writing the file: a last line with no newline yet is not complete.
    let text = std::fs::read(path).unwrap_or_default();
    let complete = text
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |end| end + 1);
    String::from_utf8_lossy(&text[..complete])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Appends `{"id": N, "pad": "xxx..."}` lines for `ids` to `path`.
pub fn append_ids(path: &Path, ids: std::ops::Range<usize>) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for id in ids {
        text.push_str(&format!("{{\"id\":{id},\"pad\":\"{}\"}}\n", "x".repeat(40)));
    }
    file.write_all(text.as_bytes()).unwrap();
}
