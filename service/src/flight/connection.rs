//! A client's connection to the Flight SQL door, with its writes gathered.
//!
//! HTTP/2 sends a large answer as frames no larger than the client allows (16 KiB with the gRPC
//! clients), and the HTTP/2 server writes each frame to the socket with a call of its own: a
//! gigabyte answer made some 65,000 writes, and on the client as many wake-ups and reads, which
//! cost both sides more than the bytes did. [`Connection`] gathers the frames written in one
//! turn of the server into one buffer and sends it with one write once it is [`GATHER`] bytes,
//! or when the server has nothing more to add. A client that allows large frames gets them as
//! they are, uncopied.
//!
//! A flush with the buffer short of [`GATHER`] is put off once: the connection's task is woken
//! at once and the flush answers done, so the server may add the frames it has ready; the next
//! flush with nothing written since sends what is there. Nothing waits on a timer, and nothing
//! stays buffered once the server stops writing.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before they are sent without waiting for a flush.
pub const GATHER: usize = 256 * 1024;

/// A write at least this large is passed to the socket as it is (after what was gathered).
const PASS: usize = 64 * 1024;

pub struct Connection<T> {
    io: T,
    /// Written by the server, not yet sent.
    out: Vec<u8>,
    /// Sent of `out` so far.
    sent: usize,
    /// A flush was put off and nothing was written since.
    owed: bool,
}

impl<T> Connection<T> {
    pub fn new(io: T) -> Self {
        Self {
            io,
            out: Vec::new(),
            sent: 0,
            owed: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Connection<T> {
    /// Sends all of `out`.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `bufs` into `out`, first sending what is there if they would not fit.
    fn poll_gather(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if (self.out.len() + len > GATHER || len >= PASS) && !self.out.is_empty() {
            ready!(self.poll_send(cx))?;
        }
        if len >= PASS {
            // A large frame (a client that allows them) goes out as it is, uncopied.
            self.owed = false;
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        }
        if self.out.capacity() == 0 {
            self.out.reserve(GATHER);
        }
        for b in bufs {
            self.out.extend_from_slice(b);
        }
        self.owed = false;
        if self.out.len() >= GATHER {
            // Sent now if the socket takes it; otherwise at the next write or flush.
            if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(len))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Connection<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Connection<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_gather(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_gather(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.out.len() - this.sent < GATHER && this.sent < this.out.len() && !this.owed {
            // Put off once: the server is woken to add what it has ready.
            this.owed = true;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_send(cx))?;
        this.owed = false;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T> tonic::transport::server::Connected for Connection<T> {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;

    /// A socket that records each write it takes.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Recorder {
        fn writes(&self) -> Vec<Vec<u8>> {
            self.0.lock().unwrap().clone()
        }
    }

    /// Frames as the HTTP/2 server writes them: each written, then flushed.
    async fn write_frames(c: &mut Connection<Recorder>, frames: usize, size: usize) -> Vec<u8> {
        let mut all = Vec::new();
        for i in 0..frames {
            let frame = vec![(i % 251) as u8; size];
            c.write_all(&frame).await.unwrap();
            c.flush().await.unwrap();
            all.extend_from_slice(&frame);
        }
        all
    }

    #[tokio::test]
    async fn frames_written_one_by_one_go_out_in_writes_of_the_gathered_size() {
        let socket = Recorder::default();
        let mut c = Connection::new(socket.clone());
        let frame = 16 * 1024 + 9;
        let sent = write_frames(&mut c, 64, frame).await;
        // A flush with nothing written since sends the rest.
        c.flush().await.unwrap();
        let writes = socket.writes();
        assert_eq!(writes.concat(), sent, "every byte, in order");
        assert!(
            writes.len() <= 5,
            "64 frames went out in {} writes",
            writes.len()
        );
        // Each but the last as full as the frames let it be.
        assert!(
            writes[..writes.len() - 1]
                .iter()
                .all(|w| w.len() > GATHER - frame)
        );
    }

    #[tokio::test]
    async fn a_large_frame_goes_out_as_it_is_after_what_was_gathered() {
        let socket = Recorder::default();
        let mut c = Connection::new(socket.clone());
        c.write_all(b"header").await.unwrap();
        let big = vec![7u8; PASS * 2];
        c.write_all(&big).await.unwrap();
        let writes = socket.writes();
        assert_eq!(writes.len(), 2, "two writes");
        assert_eq!(writes[0], b"header", "what was gathered goes first");
        assert!(writes[1] == big, "then the frame, whole");
    }

    #[tokio::test]
    async fn a_short_answer_is_sent_at_the_second_flush_and_at_shutdown() {
        let socket = Recorder::default();
        let mut c = Connection::new(socket.clone());
        c.write_all(b"headers").await.unwrap();
        c.flush().await.unwrap();
        assert!(socket.writes().is_empty(), "the first flush is put off");
        c.flush().await.unwrap();
        assert_eq!(socket.writes().concat(), b"headers");

        let socket = Recorder::default();
        let mut c = Connection::new(socket.clone());
        c.write_all(b"trailers").await.unwrap();
        c.flush().await.unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(socket.writes().concat(), b"trailers");
    }

    #[tokio::test]
    async fn a_put_off_flush_wakes_the_writer() {
        let socket = Recorder::default();
        let mut c = Connection::new(socket);
        c.write_all(b"frame").await.unwrap();
        let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let waker = std::task::Waker::from(Arc::new(Flag(woken.clone())));
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            Pin::new(&mut c).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(
            woken.load(std::sync::atomic::Ordering::SeqCst),
            "woken to flush again"
        );
    }
}
