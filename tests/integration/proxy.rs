//! A TCP proxy in front of the S3 server that injects faults: answer the next N requests with
//! `503 Service Unavailable`, or refuse every connection (the store is down). It counts what it
//! did, so tests can assert that retries really happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Faults {
    /// Requests still to be answered with 503.
    pub fail_next: AtomicUsize,
    /// Refuse (close at once) every connection.
    pub down: AtomicBool,
    pub served_503: AtomicUsize,
    pub forwarded: AtomicUsize,
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
        let faults = Arc::new(Faults::default());
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
        let _ = client
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        f.served_503.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    f.forwarded.fetch_add(1, Ordering::SeqCst);
    // Going down also cuts the connections already open (clients keep them alive in pools).
    let down = async {
        while !f.down.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = down => {}
    }
}
