//! Deadlines on what a client sends: a connection's idle time and its
//! request heads (watched on the socket itself), and request bodies.
//!
//! hyper has a header read timeout, but it starts when the server begins
//! waiting for a head, so on a kept-alive connection it also cuts the idle
//! wait at the same length; and it has no body timeout. Here the two
//! waits have their own limits: the listener counts the requests in
//! progress (from the head to the end of the response body); with none, a
//! connection is idle until a byte arrives, and then in a head until the
//! next request starts. A request in progress has no deadline here: its
//! body has its own ([`TimedBody`]) and the function its timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use wisp_core::error::BodyTimeout;
use wisp_core::runtime::BoxError;

/// How long each wait of a connection may last.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionTimeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// The requests in progress on one connection, shared by its socket and
/// its service.
#[derive(Debug, Clone, Default)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts a request in until the returned guard drops (with the
    /// response body).
    pub(crate) fn start(&self) -> RequestGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// A request in progress; dropped with its response body.
pub(crate) struct RequestGuard(Arc<AtomicUsize>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that holds its request's guard.
pub(crate) struct Tracked {
    pub body: wisp_core::runtime::Body,
    /// Dropped with the body: the request is over.
    pub _guard: RequestGuard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A socket that fails its pending read with `TimedOut` once the
/// connection has been idle, or in a request head, for too long.
pub(crate) struct Guarded<S> {
    io: S,
    timeouts: ConnectionTimeouts,
    in_flight: InFlight,
    /// Bytes came in while no request was in progress: a head is arriving.
    in_head: bool,
    /// When the connection last went idle (its last write), or when the
    /// current head's first byte came.
    since: Instant,
    /// Armed at some moment not after the current deadline; when it fires
    /// early (the deadline moved on, or a request was in progress) it is
    /// armed again. Moving it only when a deadline comes closer keeps a
    /// busy connection from touching the timer on every request.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Guarded<S> {
    pub(crate) fn new(io: S, timeouts: ConnectionTimeouts, in_flight: InFlight) -> Guarded<S> {
        Guarded {
            io,
            timeouts,
            in_flight,
            in_head: false,
            since: Instant::now(),
            timer: None,
        }
    }

    /// When the connection must have moved on; None while a request is in
    /// progress.
    fn deadline(&self) -> Option<Instant> {
        if self.in_flight.any() {
            None
        } else if self.in_head {
            Some(self.since + self.timeouts.header_read)
        } else {
            Some(self.since + self.timeouts.idle)
        }
    }

    fn saw_read(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() && !self.in_head && !self.in_flight.any() {
            self.in_head = true;
            self.since = Instant::now();
        }
    }

    fn saw_write(&mut self, cx: &mut Context<'_>) {
        // An answer is going out: once it is done, the connection is idle
        // from here, and what is read next is the next request.
        self.in_head = false;
        self.since = Instant::now();
        // hyper may not read again before it is woken (its last read is
        // still pending, from while the request ran): the timer must be
        // armed to wake it when the connection has idled too long.
        let _ = self.poll_deadline(cx);
    }

    /// Ready with an error once the current deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let now = Instant::now();
            // With a request in progress, look again an idle time later.
            let deadline = self.deadline();
            let wake_at = deadline.unwrap_or(now + self.timeouts.idle);
            let timer = match &mut self.timer {
                Some(t) => {
                    if t.deadline() > wake_at {
                        t.as_mut().reset(wake_at);
                    }
                    t
                }
                slot => slot.insert(Box::pin(tokio::time::sleep_until(wake_at))),
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if deadline.is_some_and(|d| now >= d) {
                let what = if self.in_head {
                    "the request head did not arrive in time"
                } else {
                    "the connection was idle too long"
                };
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what));
            }
            timer.as_mut().reset(wake_at);
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
            self.saw_write(cx);
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
            self.saw_write(cx);
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
