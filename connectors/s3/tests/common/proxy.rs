//! A TCP proxy in front of the S3 server that injects failures: a 503 `SlowDown` answer
//! (throttling) or a 500 `InternalError` on chosen connections, and connection resets in the
//! middle of a request once the request bytes forwarded through the whole proxy cross chosen
//! marks. Resets follow bytes, not connection numbers, because a pooling client may send every
//! large request over one connection: each mark is crossed whichever connection carries it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it (and reset it if it carries a reset mark).
    Pass,
    /// Answer the first request with 503 SlowDown and close.
    SlowDown,
    /// Answer the first request with 500 InternalError and close.
    InternalError,
}

/// A running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: String,
    /// Request bytes at which the connection carrying them is reset, ascending.
    reset_marks: Vec<usize>,
    forwarded: AtomicUsize,
    faults: AtomicUsize,
    requests_seen: std::sync::Mutex<Vec<String>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`); connection `i` gets `plan[i % len]`,
    /// and the connection whose request bytes cross each of `reset_marks` (counted over all
    /// connections) is reset there.
    pub async fn start(upstream: &str, plan: Vec<Fault>, mut reset_marks: Vec<usize>) -> Self {
        reset_marks.sort_unstable();
        let shared = Arc::new(Shared {
            upstream: upstream
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            reset_marks,
            forwarded: AtomicUsize::new(0),
            faults: AtomicUsize::new(0),
            requests_seen: std::sync::Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let accepting = shared.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let fault = plan[n % plan.len()];
                n += 1;
                let shared = accepting.clone();
                tokio::spawn(async move { handle(client, fault, &shared).await });
            }
        });
        Self { endpoint, shared }
    }

    /// How many faults were injected.
    pub fn faults(&self) -> usize {
        self.shared.faults.load(Ordering::Relaxed)
    }

    /// The first line of each request seen at the start of a connection.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests_seen
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Shared {
    /// Counts `n` more forwarded request bytes; true if they cross a reset mark.
    fn crosses_mark(&self, n: usize) -> bool {
        let before = self.forwarded.fetch_add(n, Ordering::SeqCst);
        self.reset_marks
            .iter()
            .any(|&mark| before < mark && mark <= before + n)
    }
}

async fn handle(mut client: TcpStream, fault: Fault, shared: &Shared) {
    let mut head = vec![0u8; 4096];
    let Ok(n) = client.read(&mut head).await else {
        return;
    };
    if n == 0 {
        return;
    }
    head.truncate(n);
    if let Some(line) = head.split(|b| *b == b'\r').next()
        && let Ok(mut seen) = shared.requests_seen.lock()
    {
        seen.push(String::from_utf8_lossy(line).into_owned());
    }
    let answer = |status: &str, code: &str| {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>injected by the test proxy</Message></Error>"
        );
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if fault != Fault::Pass {
        shared.faults.fetch_add(1, Ordering::Relaxed);
        let text = if fault == Fault::SlowDown {
            answer("503 Slow Down", "SlowDown")
        } else {
            answer("500 Internal Server Error", "InternalError")
        };
        let _ = client.write_all(text.as_bytes()).await;
        let _ = client.shutdown().await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&shared.upstream).await else {
        return;
    };
    let mut crossed = shared.crosses_mark(head.len());
    if !crossed && server.write_all(&head).await.is_err() {
        return;
    }
    if !crossed {
        let (mut client_in, mut client_out) = client.split();
        let (mut server_in, mut server_out) = server.split();
        // Answers flow back meanwhile, so the reset lands inside a request, not between them.
        let to_server = async {
            let mut buf = vec![0u8; 16 << 10];
            loop {
                match client_in.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(k) => {
                        if shared.crosses_mark(k) {
                            return true;
                        }
                        if server_out.write_all(&buf[..k]).await.is_err() {
                            return false;
                        }
                    }
                }
            }
        };
        crossed = tokio::select! {
            crossed = to_server => crossed,
            _ = tokio::io::copy(&mut server_in, &mut client_out) => false,
        };
    }
    if crossed {
        shared.faults.fetch_add(1, Ordering::Relaxed);
        // Linger 0: close sends a reset, as a crashed peer or middlebox would.
        #[allow(deprecated)] // blocking on drop is what linger 0 avoids
        let _ = client.set_linger(Some(std::time::Duration::ZERO));
    }
}
