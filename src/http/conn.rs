//! One connection of the shared serve loop (`crate::http`): hyper's HTTP/1.1 connection, the
//! watchdog that holds it to the header-read and keep-alive timeouts, and its graceful stop.
//!
//! What the connection is doing is kept in a [`ConnState`] shared by the socket wrapper
//! ([`Io`]: bytes arrived), the service (a request's head is complete) and the answer's body
//! (hyper is done with the answer). After each poll of the connection, the watchdog derives
//! the deadline from it: the header timeout while a head is awaited (from the accept for the
//! first request, from the first byte of later ones), the keep-alive timeout while the
//! connection waits for a next request, none while a request is being answered. hyper's own
//! `header_read_timeout` is off: it starts when a kept-alive connection starts waiting, so it
//! cannot tell a slow head from an idle connection.

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::http::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::Limits;
use super::body::Adapter;
use super::source::Slot;

/// What a connection is doing, as its socket, service and answers see it. Only its own task
/// writes these (hyper calls the service and drops answers in the connection's task), except
/// [`ConnState::body_timed_out`], which a handler reading the body elsewhere may set.
#[derive(Debug, Default)]
pub(super) struct ConnState {
    /// A request's head is complete and its answer not finished: no read timeout runs.
    busy: AtomicBool,
    /// Answers finished on this connection. A change tells the watchdog a new wait began even
    /// if it never saw the connection busy (a request answered within one poll).
    answered: AtomicU64,
    /// Bytes arrived since the last answer finished: the next request's head has begun.
    head_begun: AtomicBool,
    /// A request body stalled past the body timeout: its answer is replaced by a 408.
    body_timed_out: AtomicBool,
}

impl ConnState {
    /// A request's head is complete; it goes to the handler.
    pub(super) fn begin_request(&self) {
        self.busy.store(true, Ordering::Relaxed);
    }

    /// hyper is done with a request's answer (written, or the connection closed).
    pub(super) fn end_request(&self) {
        self.busy.store(false, Ordering::Relaxed);
        self.head_begun.store(false, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// A request body did not arrive in time.
    pub(super) fn mark_body_timed_out(&self) {
        self.body_timed_out.store(true, Ordering::Relaxed);
    }

    /// Whether a request body did not arrive in time.
    pub(super) fn body_timed_out(&self) -> bool {
        self.body_timed_out.load(Ordering::Relaxed)
    }

    fn phase(&self) -> Phase {
        Phase {
            busy: self.busy.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            head_begun: self.head_begun.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of [`ConnState`], from which the watchdog's deadline follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Phase {
    busy: bool,
    answered: u64,
    head_begun: bool,
}

/// The socket as hyper reads and writes it: notes arriving bytes in the [`ConnState`], and
/// holds the connection's place in its source's count until the socket is closed (after an
/// upgrade too: the upgraded stream owns this).
pub(super) struct Io<T> {
    stream: T,
    state: Arc<ConnState>,
    _slot: Slot,
}

impl<T: AsyncRead + Unpin> AsyncRead for Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.head_begun.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// No complete request head in time.
    Head,
    /// No next request on a kept-alive connection in time.
    Idle,
}

/// Holds a connection to the deadline of what it is doing (module docs).
struct Watchdog {
    /// Set to the deadline, or earlier: a deadline that moves later is not re-armed until the
    /// timer fires (a connection goes idle after every request; re-arming each time would cost
    /// a timer-wheel update per request).
    timer: Pin<Box<Sleep>>,
    /// The deadline now, and what expires at it; `None` while a request is being answered.
    deadline: Option<(Instant, Expired)>,
    /// The phase the deadline was derived from.
    seen: Phase,
    accepted: Instant,
    limits: Limits,
}

impl Watchdog {
    fn new(accepted: Instant, limits: Limits) -> Self {
        let first_head = accepted + limits.header_read;
        Self {
            timer: Box::pin(tokio::time::sleep_until(first_head)),
            deadline: Some((first_head, Expired::Head)),
            seen: Phase {
                busy: false,
                answered: 0,
                head_begun: false,
            },
            accepted,
            limits,
        }
    }

    /// Ready when the connection's deadline has passed.
    fn poll(&mut self, state: &ConnState, cx: &mut Context<'_>) -> Poll<Expired> {
        let phase = state.phase();
        if phase != self.seen {
            self.seen = phase;
            self.deadline = match phase {
                Phase { busy: true, .. } => None,
                // The first request's head is due from the accept, whatever arrived so far.
                Phase { answered: 0, .. } => {
                    Some((self.accepted + self.limits.header_read, Expired::Head))
                }
                Phase {
                    head_begun: true, ..
                } => Some((Instant::now() + self.limits.header_read, Expired::Head)),
                Phase { .. } => Some((Instant::now() + self.limits.keepalive_idle, Expired::Idle)),
            };
        }
        let Some((deadline, expired)) = self.deadline else {
            return Poll::Pending;
        };
        loop {
            if self.timer.deadline() > deadline {
                self.timer.as_mut().reset(deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
            if self.timer.deadline() >= deadline {
                return Poll::Ready(expired);
            }
            // It fired for an earlier deadline that has since moved later.
            self.timer.as_mut().reset(deadline);
        }
    }
}

/// The serve loop's stop, as its connections see it: a flag they check on every poll, and a
/// notification that wakes them once. (Polling a `CancellationToken`'s future on every poll of
/// every connection takes two locks each time, on the path of every request.)
#[derive(Debug, Default)]
pub(super) struct Stop {
    stopping: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Tells every connection to close gracefully.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// How a connection ended.
enum End {
    /// hyper finished with it: closed by either side, or upgraded.
    Served(Result<(), hyper::Error>),
    /// The watchdog closed it.
    Expired(Expired),
}

/// Serves one accepted connection until it closes, is upgraded, or times out; `stop` starts a
/// graceful close (an idle connection closes at once, a busy one after its answer).
pub(super) async fn drive<T, S>(stream: T, slot: Slot, service: S, limits: Limits, stop: Arc<Stop>)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accepted = Instant::now();
    let state = Arc::new(ConnState::default());
    let io = TokioIo::new(Io {
        stream,
        state: state.clone(),
        _slot: slot,
    });
    let service = Adapter::new(service, state.clone(), limits.body_read);
    let mut conn = pin!(
        hyper::server::conn::http1::Builder::new()
            // The watchdog does this (module docs).
            .header_read_timeout(None)
            .serve_connection(io, service)
            .with_upgrades()
    );
    let mut watchdog = Watchdog::new(accepted, limits);
    // Polled once, to register this task for the stop's wake-up: a task's waker stays the
    // same, so the flag is all the later polls need to check.
    let mut woken = pin!(stop.notify.notified());
    let (mut registered, mut stopped) = (false, false);
    let end = poll_fn(|cx| {
        if !registered {
            registered = true;
            let _ = woken.as_mut().poll(cx);
        }
        if !stopped && stop.is_stopping() {
            stopped = true;
            conn.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(served) = conn.as_mut().poll(cx) {
            return Poll::Ready(End::Served(served));
        }
        watchdog.poll(&state, cx).map(End::Expired)
    })
    .await;
    match end {
        End::Served(Ok(())) => {}
        End::Served(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
        End::Expired(Expired::Head) => tracing::debug!(
            timeout_secs = limits.header_read.as_secs(),
            "closed a connection: no complete request head in time"
        ),
        End::Expired(Expired::Idle) => tracing::debug!(
            timeout_secs = limits.keepalive_idle.as_secs(),
            "closed an idle kept-alive connection"
        ),
    }
}
