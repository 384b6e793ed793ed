//! A client connection as the HTTP layer sees it: the socket (plain or
//! TLS) with the two things h2 cannot be told to do, done around it.
//!
//! - **Reading**: an `:authority` that is a whole URI, as etcdctl 3.4 sends
//!   for `http://host:port` endpoints, is rewritten before h2 parses it
//!   (`authority`); every other byte passes unchanged, and the payloads of
//!   frames other than headers go straight into h2's buffer.
//! - **Writing**: on an HTTP/2 connection, the first write after each
//!   flush yields to the scheduler once. A Raft batch answers many
//!   requests at the same moment; each answering task wakes the
//!   connection, which would otherwise run at once (tokio's LIFO slot) and
//!   write that one response. After the yield, the responses of the same
//!   moment are queued and one `writev` carries them all, as grpc-go's
//!   writer does before a small flush.
//!
//! Both used to be patches to a vendored h2; doing them here keeps the
//! published h2 in every application's dependency graph (`vendor/README.md`
//! has the measurements).

mod authority;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use authority::InboundFilter;

/// How much is read from the socket at once when the bytes must be looked
/// at (frame headers, header blocks).
const READ_CHUNK: usize = 8 * 1024;

/// A client connection: `IO` (a `TcpStream` or a TLS stream over one) as h2
/// should see it. See the module documentation.
pub struct ClientConnection<IO> {
    io: IO,
    inbound: InboundFilter,
    chunk: Box<[u8]>,
    /// The current flush cycle has yielded once already.
    yielded: bool,
}

impl<IO> ClientConnection<IO> {
    /// Wraps a connection that has sent nothing yet.
    pub fn new(io: IO) -> Self {
        ClientConnection { io, inbound: InboundFilter::new(), chunk: vec![0; READ_CHUNK].into(), yielded: false }
    }
}

impl<IO: Connected> Connected for ClientConnection<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ClientConnection<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let out = this.inbound.output();
            if !out.is_empty() {
                let n = out.len().min(buf.remaining());
                buf.put_slice(&out[..n]);
                out.advance(n);
                return Poll::Ready(Ok(()));
            }
            let passthrough = this.inbound.passthrough();
            if passthrough > 0 {
                // Straight into the caller's buffer: nothing to look at.
                let limit = passthrough.min(buf.remaining());
                let mut direct = ReadBuf::new(buf.initialize_unfilled_to(limit));
                ready!(Pin::new(&mut this.io).poll_read(cx, &mut direct))?;
                let n = direct.filled().len();
                buf.advance(n);
                this.inbound.passed(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                this.inbound.finish();
                if this.inbound.output().is_empty() {
                    return Poll::Ready(Ok(())); // end of stream
                }
                continue;
            }
            let filled = chunk.filled().len();
            this.inbound.push(&this.chunk[..filled]);
        }
    }
}

impl<IO> ClientConnection<IO> {
    /// Whether this write should wait for one turn of the scheduler first
    /// (and if so, the task is already woken).
    fn defer_write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.yielded || !self.inbound.is_http2() {
            return false;
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        true
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ClientConnection<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.defer_write(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.defer_write(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = ready!(Pin::new(&mut this.io).poll_flush(cx));
        this.yielded = false;
        Poll::Ready(flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
