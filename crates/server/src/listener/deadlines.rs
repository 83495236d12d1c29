//! Deadlines on what a client sends: a connection's idle time and its
//! request heads (watched on the socket itself), and request bodies.
//!
//! hyper has a header read timeout, but it starts when the server begins
//! waiting for a head, so on a kept-alive connection it also cuts the idle
//! wait at the same length; and it has no body timeout. Here the two
//! waits have their own limits: the socket wrapper tells them apart by
//! what it sees go by (no byte read since the last write: idle; bytes
//! read but no blank line yet: a head), and the body wrapper times the
//! body from the end of its head.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use wisp_core::error::BodyTimeout;
use wisp_core::runtime::BoxError;

/// What a connection is waiting for when it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in progress: a new connection, or one that has answered.
    Idle,
    /// A request's first bytes have come; its head has not ended.
    Head,
    /// The head has ended: the body and the handler take their own time.
    Request,
}

/// How long each wait of a connection may last.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionTimeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// A socket that fails its pending read with `TimedOut` once the
/// connection has been idle, or in a request head, for too long.
pub(crate) struct Guarded<S> {
    io: S,
    timeouts: ConnectionTimeouts,
    phase: Phase,
    since: Instant,
    /// Line ends seen in a row (a `\r` neither counts nor breaks the run);
    /// two end the head.
    newlines: u8,
    /// Armed at some deadline not after the current one; when it fires
    /// early (the deadline moved on) it is armed again. Moving it only
    /// when a deadline comes closer keeps a busy connection from touching
    /// the timer on every request.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Guarded<S> {
    pub(crate) fn new(io: S, timeouts: ConnectionTimeouts) -> Guarded<S> {
        Guarded {
            io,
            timeouts,
            phase: Phase::Idle,
            since: Instant::now(),
            newlines: 0,
            timer: None,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle => Some(self.since + self.timeouts.idle),
            Phase::Head => Some(self.since + self.timeouts.header_read),
            Phase::Request => None,
        }
    }

    fn saw_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return; // the client closed its side
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.since = Instant::now();
            self.newlines = 0;
        }
        if self.phase != Phase::Head {
            return;
        }
        for &b in bytes {
            match b {
                b'\n' => {
                    self.newlines += 1;
                    if self.newlines == 2 {
                        self.phase = Phase::Request;
                        return;
                    }
                }
                b'\r' => {}
                _ => self.newlines = 0,
            }
        }
    }

    /// `first` is the start of what was written.
    fn saw_write(&mut self, first: &[u8], cx: &mut Context<'_>) {
        if self.phase == Phase::Request && first.starts_with(b"HTTP/1.1 1") {
            // An interim answer (`100 Continue`): the body comes next, and
            // the body's own deadline times it.
            return;
        }
        // An answer is going out: what is read next is the next request.
        self.phase = Phase::Idle;
        self.since = Instant::now();
        // hyper may not read again before it is woken (its last read is
        // still pending, from while the request ran): the idle deadline
        // must be able to wake it. It cannot have passed yet.
        let _ = self.poll_deadline(cx);
    }

    /// Ready with an error once the current deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(deadline) = self.deadline() else {
            return Poll::Pending;
        };
        loop {
            let timer = match &mut self.timer {
                Some(t) => {
                    if t.deadline() > deadline {
                        t.as_mut().reset(deadline);
                    }
                    t
                }
                slot => slot.insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                let what = match self.phase {
                    Phase::Head => "the request head did not arrive in time",
                    _ => "the connection was idle too long",
                };
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what));
            }
            timer.as_mut().reset(deadline);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                this.saw_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.poll_deadline(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.saw_write(buf, cx);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            self.saw_write(first, cx);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How long a request body may take: `base` after its head, plus a second
/// for every `min_rate` bytes that arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeouts {
    pub base: Duration,
    pub min_rate: u64,
}

/// A request body that fails with [`BodyTimeout`] once it is late.
pub(crate) struct TimedBody {
    inner: Incoming,
    timeouts: BodyTimeouts,
    started: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    pub(crate) fn new(inner: Incoming, timeouts: BodyTimeouts) -> TimedBody {
        TimedBody {
            inner,
            timeouts,
            started: Instant::now(),
            received: 0,
            timer: None,
        }
    }

    fn deadline(&self) -> Instant {
        let earned = Duration::from_secs(self.received / self.timeouts.min_rate.max(1));
        self.started + self.timeouts.base + earned
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received = self.received.saturating_add(data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = self.deadline();
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
