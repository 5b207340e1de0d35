//! A TCP proxy in front of the S3 server that injects failures into chosen connections: a 503
//! `SlowDown` answer (throttling), a 500 `InternalError`, or a connection reset in the middle of
//! the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Answer the first request with 503 SlowDown and close.
    SlowDown,
    /// Answer the first request with 500 InternalError and close.
    InternalError,
    /// Forward this many bytes of the request, then reset the connection.
    ResetAfter(usize),
}

/// A running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    faults: Arc<AtomicUsize>,
    requests_seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`); connection `i` gets `plan[i % len]`.
    pub async fn start(upstream: &str, plan: Vec<Fault>) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let faults = Arc::new(AtomicUsize::new(0));
        let requests_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (faults_in, seen_in) = (faults.clone(), requests_seen.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let fault = plan[n % plan.len()];
                n += 1;
                let (upstream, faults, seen) =
                    (upstream.clone(), faults_in.clone(), seen_in.clone());
                tokio::spawn(async move {
                    handle(client, &upstream, fault, &faults, &seen).await;
                });
            }
        });
        Self {
            endpoint,
            faults,
            requests_seen,
        }
    }

    /// How many faults were injected.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::Relaxed)
    }

    /// The first line of each request seen at the start of a connection.
    pub fn requests(&self) -> Vec<String> {
        self.requests_seen
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

async fn handle(
    mut client: TcpStream,
    upstream: &str,
    fault: Fault,
    faults: &AtomicUsize,
    seen: &std::sync::Mutex<Vec<String>>,
) {
    let mut head = vec![0u8; 4096];
    let Ok(n) = client.read(&mut head).await else {
        return;
    };
    if n == 0 {
        return;
    }
    head.truncate(n);
    if let Some(line) = head.split(|b| *b == b'\r').next()
        && let Ok(mut seen) = seen.lock()
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
    match fault {
        Fault::SlowDown | Fault::InternalError => {
            faults.fetch_add(1, Ordering::Relaxed);
            let text = if fault == Fault::SlowDown {
                answer("503 Slow Down", "SlowDown")
            } else {
                answer("500 Internal Server Error", "InternalError")
            };
            let _ = client.write_all(text.as_bytes()).await;
            let _ = client.shutdown().await;
        }
        Fault::Pass | Fault::ResetAfter(_) => {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            if server.write_all(&head).await.is_err() {
                return;
            }
            if let Fault::ResetAfter(limit) = fault {
                // Answers flow back meanwhile, so small requests on this connection complete and
                // the reset lands in the first request that carries `limit` bytes.
                let reached = {
                    let (mut client_in, mut client_out) = client.split();
                    let (mut server_in, mut server_out) = server.split();
                    let to_server = async {
                        let mut forwarded = head.len();
                        let mut buf = vec![0u8; 16 << 10];
                        while forwarded < limit {
                            match client_in.read(&mut buf).await {
                                Ok(0) | Err(_) => return false,
                                Ok(k) => {
                                    if server_out.write_all(&buf[..k]).await.is_err() {
                                        return false;
                                    }
                                    forwarded += k;
                                }
                            }
                        }
                        true
                    };
                    tokio::select! {
                        reached = to_server => reached,
                        _ = tokio::io::copy(&mut server_in, &mut client_out) => false,
                    }
                };
                if !reached {
                    return;
                }
                faults.fetch_add(1, Ordering::Relaxed);
                // Linger 0: close sends a reset, as a crashed peer or middlebox would.
                #[allow(deprecated)] // blocking on drop is what linger 0 avoids
                let _ = client.set_linger(Some(std::time::Duration::ZERO));
                drop(client);
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    }
}
