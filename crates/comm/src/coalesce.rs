//! Fewer, larger socket writes under TLS.
//!
//! tokio-rustls sends every write it is given to the socket at once, as a
//! TLS record in its own `writev`, and HTTP/2 writes frame by frame and
//! flushes each time its connection task runs. Under load many requests
//! and responses share a connection, yet a whole network made about 16.5
//! socket writes per committed transaction (and 8.8 reads on the other
//! ends). Each loopback write costs the kernel several microseconds on both
//! ends.
//!
//! [`Coalesced`] sits between the TLS stream and the TCP socket. It accepts
//! writes into a buffer, and the first flush after new data only yields:
//! it wakes its own task and returns `Pending`, so that the other tasks
//! already queued on the worker run first and add their frames to the same
//! connection. The next flush writes everything in one go. When nothing
//! else is waiting the cost is one extra poll of the connection task;
//! when the buffer passes 256 KiB it is written out before more is
//! accepted, so a large message (a block) does not pile up in memory.
//!
//! Reads go the other way: rustls asks the socket for 4 KiB at a time, so
//! a 100 KiB burst took 25 `recvfrom` calls. [`Coalesced`] reads up to
//! 64 KiB at once and hands it out in the sizes asked for.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Buffered bytes above which a write first drains the buffer.
const HIGH_WATER: usize = 256 * 1024;

/// Bytes read from the socket at once. TLS asks for 4 KiB at a time,
/// which made a read system call per 4 KiB of traffic.
const READ_AHEAD: usize = 64 * 1024;

/// Capacity kept after a drain; a buffer that grew past it for a large
/// message is released.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// A TCP socket whose writes are gathered until a flush, and whose first
/// flush after new data yields once to let other tasks add to it.
///
/// Bytes still buffered when it is dropped are written without waiting, as
/// far as the socket takes them: a TLS alert sent just before a refused
/// handshake is dropped, for one, still reaches the other side.
#[derive(Debug)]
pub struct Coalesced {
    io: TcpStream,
    buf: Vec<u8>,
    /// Prefix of `buf` already written to `io`.
    written: usize,
    /// The current flush has already yielded once.
    yielded: bool,
    /// Bytes read from the socket ahead of the caller: `inbox[unread..filled]`.
    inbox: Box<[u8]>,
    unread: usize,
    filled: usize,
}

impl Coalesced {
    /// Wraps `io`.
    pub fn new(io: TcpStream) -> Self {
        Coalesced {
            io,
            buf: Vec::new(),
            written: 0,
            yielded: false,
            inbox: Box::default(),
            unread: 0,
            filled: 0,
        }
    }

    /// Bytes accepted and not yet written to the socket.
    fn pending(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Writes the buffer out; `Ready(Ok)` once it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Makes room before accepting more: drains when past the high-water
    /// mark.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Coalesced {
    fn drop(&mut self) {
        while self.written < self.buf.len() {
            match self.io.try_write(&self.buf[self.written..]) {
                Ok(n) if n > 0 => self.written += n,
                _ => break,
            }
        }
    }
}

impl AsyncRead for Coalesced {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unread == this.filled {
            if buf.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            if this.inbox.is_empty() {
                this.inbox = vec![0; READ_AHEAD].into_boxed_slice();
            }
            let mut ahead = ReadBuf::new(&mut this.inbox);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut ahead))?;
            this.unread = 0;
            this.filled = ahead.filled().len();
        }
        let n = buf.remaining().min(this.filled - this.unread);
        buf.put_slice(&this.inbox[this.unread..this.unread + n]);
        this.unread += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Coalesced {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        let mut n = 0;
        for slice in data {
            this.buf.extend_from_slice(slice);
            n += slice.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending() > 0 {
            if !this.yielded {
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl Connected for Coalesced {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected loopback pair: the coalescing writer and the plain reader.
    async fn pair() -> (Coalesced, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Coalesced::new(dialed.unwrap()), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn writes_reach_the_socket_only_on_flush_and_in_order() {
        let (mut w, mut r) = pair().await;
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world").await.unwrap();
        assert_eq!(w.pending(), 11);
        let mut probe = [0u8; 1];
        let nothing =
            tokio::time::timeout(std::time::Duration::from_millis(20), r.read(&mut probe)).await;
        assert!(nothing.is_err(), "bytes arrived before the flush");
        w.flush().await.unwrap();
        assert_eq!(w.pending(), 0);
        let mut got = [0u8; 11];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
    }

    #[tokio::test]
    async fn large_writes_drain_past_the_high_water_mark() {
        let (mut w, mut r) = pair().await;
        let message: Vec<u8> = (0..8 * HIGH_WATER).map(|i| (i % 251) as u8).collect();
        let expected = message.clone();
        let writer = tokio::spawn(async move {
            for chunk in message.chunks(16 * 1024) {
                w.write_all(chunk).await.unwrap();
                assert!(w.pending() <= HIGH_WATER + chunk.len());
            }
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes reordered or corrupted");
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_buffered() {
        let (mut w, mut r) = pair().await;
        w.write_all(b"last words").await.unwrap();
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn dropping_unflushed_still_sends_what_the_socket_takes() {
        let (mut w, mut r) = pair().await;
        w.write_all(b"alert").await.unwrap();
        drop(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"alert");
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read() {
        let (mut w, r) = pair().await;
        let message: Vec<u8> = (0..3 * READ_AHEAD + 123).map(|i| (i % 253) as u8).collect();
        let expected = message.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&message).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut r = Coalesced::new(r);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        loop {
            let n = r.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
            assert!(r.filled - r.unread < READ_AHEAD);
        }
        writer.await.unwrap();
        assert!(got == expected, "bytes reordered or corrupted");
        // A caller asking for more than READ_AHEAD reads straight through.
        let mut large = vec![0u8; 2 * READ_AHEAD];
        assert_eq!(r.read(&mut large).await.unwrap(), 0);
    }
}
