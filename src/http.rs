//! Shared HTTP plumbing of the daemon's two listeners, the MCP server (`root/mcp_http`) and the
//! gateway (`root/gateway`): one serve loop on hyper's HTTP/1.1 server, which the listener
//! actor (`revka_actors::listener`) runs as its serve function.
//!
//! Neither listener needs HTTP/2 (their clients speak HTTP/1.1, and the gateway's WebSocket
//! relay is an HTTP/1.1 upgrade), so connections are HTTP/1.1 only, with upgrades. What the
//! loop guarantees, against a client that connects and stalls:
//!
//! - **Request heads** must arrive in full within `[http] header_read_timeout_secs`: counted
//!   from the accept for a connection's first request, from the first byte of each later one.
//!   A connection that sends nothing, or part of a head, is closed.
//! - **Kept-alive connections** are closed after `keepalive_idle_secs` without a next request.
//! - **Request bodies** must arrive in full within `body_read_timeout_secs` of the first time
//!   the handler waits for them; past it, the handler's read fails, the answer is 408 and the
//!   connection is closed (`body`).
//! - **One source** (an IPv4 address, an IPv6 /64, or all of loopback) holds at most
//!   `max_connections_per_source` connections to one listener; past it, a new connection is
//!   answered 503 and closed ([`source`]).
//! - These bound reading the client, never writing to it: while a request is being answered
//!   (an SSE stream of a tool call, a session's event stream, a proxied stream) no read
//!   timeout runs, and an upgraded connection (a WebSocket) leaves the loop's timeouts behind.
//! - **Stopping** (the listener's token) closes idle connections at once and lets requests in
//!   progress finish; the listener's grace period bounds that, and when it cuts the serve
//!   future short, every connection goes with it.
//!
//! The loop serves a TCP listener or a Unix socket ([`Accept`]); the MCP server also listens on
//! an owner-only Unix socket for local clients ([`unix`]), whose peers count as
//! loopback ([`UNIX_PEER`]).
//!
//! Every accepted TCP socket gets `TCP_NODELAY`: answers are written in several small pieces
//! (headers, then each SSE event), and with Nagle's algorithm on each piece after the first
//! waits for the client's delayed ACK (up to 40 ms on Linux), which turns a sub-millisecond
//! call into a 40 ms one.
//!
//! Layout: `conn` drives one connection (its timeouts and graceful stop), `body` wraps the
//! request and response bodies and the service, [`source`] counts connections per source,
//! [`rate`] is the per-source token bucket behind `POST /session`'s rate limit.

pub mod bearer;
mod body;
mod conn;
pub mod discovery;
pub(crate) mod loopback;
pub mod rate;
pub(crate) mod response;
pub mod source;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
pub mod unix;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::config::HttpConfig;

pub use source::Source;

/// What a listener allows one client: `[http]` as durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head must arrive in full within this.
    pub header_read: Duration,
    /// A request body must arrive in full within this of the first wait for it.
    pub body_read: Duration,
    /// A kept-alive connection is closed after this long without a next request.
    pub keepalive_idle: Duration,
    /// Open connections from one source at most.
    pub max_connections_per_source: u32,
}

impl From<&HttpConfig> for Limits {
    fn from(http: &HttpConfig) -> Self {
        Self {
            header_read: Duration::from_secs(http.header_read_timeout_secs),
            body_read: Duration::from_secs(http.body_read_timeout_secs),
            keepalive_idle: Duration::from_secs(http.keepalive_idle_secs),
            max_connections_per_source: http.max_connections_per_source,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from(&HttpConfig::default())
    }
}

/// A bound socket the serve loop takes connections from: a TCP listener, or the MCP server's
/// owner-only Unix socket.
pub trait Accept: Send + 'static {
    /// An accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection, ready to serve, and its client's address.
    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<(Self::Stream, SocketAddr)>>;

    /// Writes what the socket takes of `bytes` at once, without waiting.
    fn try_write(stream: &Self::Stream, bytes: &[u8]);
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;

    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<(Self::Stream, SocketAddr)>> {
        let (stream, peer) = ready!(TcpListener::poll_accept(self, cx))?;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        Poll::Ready(Ok((stream, peer)))
    }

    fn try_write(stream: &Self::Stream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
}

/// The address a Unix socket's peer is given: it is on this machine, so it is a loopback
/// client (one source with every other, [`Source::Loopback`]). Port 0: it has none.
pub const UNIX_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

impl Accept for UnixListener {
    type Stream = unix::ReadWoken;

    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<(Self::Stream, SocketAddr)>> {
        let (stream, _) = ready!(UnixListener::poll_accept(self, cx))?;
        let stream = unix::ReadWoken::new(stream.into_std()?)?;
        Poll::Ready(Ok((stream, UNIX_PEER)))
    }

    fn try_write(stream: &Self::Stream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
}

/// Serves `listener` until `stop` is cancelled, then until its open connections have finished.
///
/// `limits` is read for each accepted connection (a reload applies to new connections);
/// `make` builds the service of a connection from the client's address. The service must be
/// always ready (axum's routers are): it is called without `poll_ready`. Returns only after
/// `stop`, or with an error the listener cannot recover from.
pub async fn serve<L, M, S>(
    listener: L,
    limits: impl Fn() -> Limits,
    make: M,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    L: Accept,
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let sources = Arc::new(source::Sources::default());
    let closing = Arc::new(conn::Stop::default());
    // Dropping the set (a stop that outlasted the grace period) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done
                    && e.is_panic() {
                        tracing::error!(error = %e, "a connection's task panicked");
                    }
                continue;
            }
            accepted = std::future::poll_fn(|cx| listener.poll_accept(cx)) => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors or memory: wait for some to be freed, as a busy loop
                // of failed accepts would not free any.
                tracing::warn!(error = %e, "cannot accept a connection; retrying in 1 s");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let limits = limits();
        let slot = match sources.admit(peer.ip(), limits.max_connections_per_source) {
            Ok(slot) => slot,
            Err(refused) => {
                source::refuse::<L>(stream, peer, refused, limits.max_connections_per_source);
                continue;
            }
        };
        let service = make(peer);
        connections.spawn(conn::drive(stream, slot, service, limits, closing.clone()));
    }
    // Refuse new connections at once, and let the open ones finish.
    drop(listener);
    closing.stop();
    while let Some(done) = connections.join_next().await {
        if let Err(e) = done
            && e.is_panic()
        {
            tracing::error!(error = %e, "a connection's task panicked");
        }
    }
    Ok(())
}

/// Whether an accept error concerns that one connection only (it was reset before it was
/// accepted), rather than the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// A service that hands its handlers the client's address as axum's
/// [`ConnectInfo<SocketAddr>`](ConnectInfo), the way `into_make_service_with_connect_info`
/// does.
#[derive(Debug, Clone)]
pub struct WithPeer<S> {
    inner: S,
    peer: SocketAddr,
}

impl<S> WithPeer<S> {
    /// `inner`, for the connection from `peer`.
    pub fn new(inner: S, peer: SocketAddr) -> Self {
        Self { inner, peer }
    }
}

impl<S> Service<Request<Body>> for WithPeer<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> S::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.inner.call(request)
    }
}
