//! A TCP proxy in front of the S3 server that injects faults: answer the next N requests with
//! `503 Service Unavailable`, or go down (refuse new connections and cut open ones). It counts what
//! it did, so tests can assert that retries really happened, and logs every request line it
//! forwards: the store's request log, for tests that check what was read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Faults {
    /// Requests still to be answered with 503.
    pub fail_next: AtomicUsize,
    pub served_503: AtomicUsize,
    pub forwarded: AtomicUsize,
    down: AtomicBool,
    requests: std::sync::Mutex<Vec<String>>,
    cut: tokio::sync::watch::Sender<bool>,
    open: AtomicUsize,
}

impl Faults {
    fn new() -> Self {
        Self {
            fail_next: AtomicUsize::new(0),
            served_503: AtomicUsize::new(0),
            forwarded: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            requests: Default::default(),
            cut: tokio::sync::watch::channel(false).0,
            open: AtomicUsize::new(0),
        }
    }

    /// The requests forwarded since the last call, as `METHOD /bucket/key?query`.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }

    /// Takes the store down, returning once no connection through the proxy is left open, or
    /// brings it back.
    pub async fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        self.cut.send_replace(down);
        while down && self.open.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

pub struct Proxy {
    pub endpoint: String,
    pub faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let faults = Arc::new(Faults::new());
        let f = faults.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    break;
                };
                let (f, upstream) = (f.clone(), upstream.clone());
                tokio::spawn(async move { serve(client, &upstream, &f).await });
            }
        });
        Self {
            endpoint,
            faults,
            task,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, upstream: &str, f: &Faults) {
    if f.down.load(Ordering::SeqCst) {
        return; // dropped: the client sees the connection closed
    }
    let take = f
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if take {
        let mut buf = [0u8; 8192];
        let _ = client.read(&mut buf).await;
        let _ = client.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        f.served_503.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    f.forwarded.fetch_add(1, Ordering::SeqCst);
    f.open.fetch_add(1, Ordering::SeqCst);
    // Going down also cuts the connections already open (clients keep them alive in pools).
    let mut cut = f.cut.subscribe();
    if !f.down.load(Ordering::SeqCst) {
        let (mut client_rd, mut client_wr) = client.split();
        let (mut server_rd, mut server_wr) = server.split();
        let upstream = async {
            // Requests Tarn sends carry no bodies worth keeping: every line that looks like a
            // request line is one.
            let mut buf = vec![0u8; 64 << 10];
            let mut line = Vec::new();
            loop {
                let n = match client_rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    if b == b'\n' {
                        log_request_line(f, &line);
                        line.clear();
                    } else if line.len() < 4096 {
                        line.push(b);
                    }
                }
                if server_wr.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = server_wr.shutdown().await;
        };
        let downstream = async {
            let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
            let _ = client_wr.shutdown().await;
        };
        tokio::select! {
            _ = async { tokio::join!(upstream, downstream) } => {}
            _ = cut.wait_for(|down| *down) => {}
        }
    }
    drop((client, server));
    f.open.fetch_sub(1, Ordering::SeqCst);
}

fn log_request_line(f: &Faults, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    if let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
        && matches!(method, "GET" | "HEAD" | "PUT" | "POST" | "DELETE")
        && version.starts_with("HTTP/")
    {
        f.requests
            .lock()
            .unwrap()
            .push(format!("{method} {target}"));
    }
}
