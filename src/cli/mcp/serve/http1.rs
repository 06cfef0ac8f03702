//! The bridge's HTTP/1.1 client for `POST /mcp`, the path of every message. Part of
//! [`super`].
//!
//! A pool of hyper client connections to one daemon (one [`Pool`] per link): a POST takes an
//! idle connection or opens one (2 s to connect), and the connection goes
//! back to the pool only once the answer's body has been read to its end. An answer dropped
//! before that (a cancelled call, the bridge stopping) takes its connection with it: the
//! connection is closed, which the daemon reads as the client hanging up, and it cancels the
//! call. A pooled connection that the daemon closed meanwhile is noticed before the request
//! is written (hyper hands the request back), and the request goes out on a new one.
//!
//! Connections go to the daemon's Unix socket when `mcp.json` names one: the same service as
//! its TCP port, for less CPU per message on both sides (no TCP stack on the way). A socket
//! that refuses a connection (removed, or a daemon that no longer listens there) is given up
//! for the link's life, and connections go to the TCP port (`TCP_NODELAY`) instead.
//!
//! reqwest does the same for the bridge's other requests (`POST /session`, `DELETE`, the
//! server stream); here, on the per-call path, its general machinery (a URL turned into a
//! URI per request, a shared pool behind locks, redirect and timeout layers) cost more CPU
//! than the rest of the bridge together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_LENGTH, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Idle connections kept; more are closed when their answer ends.
const MAX_IDLE: usize = 32;
/// Connecting to a loopback daemon either works at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How a POST failed.
#[derive(Debug)]
pub(super) enum PostError {
    /// No connection could be made: the request was not sent, so a retry is safe.
    Unreached(String),
    /// The connection broke after the request may have been sent.
    Broken(String),
}

/// Connections to one daemon; see the [module documentation](self).
#[derive(Debug)]
pub(super) struct Pool {
    addr: SocketAddr,
    /// The daemon's Unix socket, tried first while [`Pool::socket_works`].
    socket: Option<PathBuf>,
    /// Cleared when the socket refuses a connection: TCP from then on.
    socket_works: AtomicBool,
    /// `127.0.0.1:<port>`, the `Host` of every request.
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Pool {
    /// A pool of connections to the Unix socket `socket`, if given and while it answers, else
    /// to `addr`.
    pub(super) fn new(addr: SocketAddr, socket: Option<PathBuf>) -> Arc<Self> {
        let host = HeaderValue::try_from(addr.to_string())
            .unwrap_or(HeaderValue::from_static("localhost"));
        Arc::new(Self {
            addr,
            socket_works: AtomicBool::new(socket.is_some()),
            socket,
            host,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<SendRequest<Full<Bytes>>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `127.0.0.1:<port>`: the `Host` its requests must carry.
    pub(super) fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Sends `request` (whose headers include [`Pool::host`]) and returns the answer's head; its
    /// body is read from the [`Answer`].
    pub(super) async fn send(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Answer, PostError> {
        loop {
            let pooled = self.idle().pop();
            let fresh = pooled.is_none();
            let mut sender = match pooled {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            if sender.ready().await.is_err() {
                if fresh {
                    return Err(PostError::Unreached("the new connection closed".into()));
                }
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (head, body) = response.into_parts();
                    return Ok(Answer {
                        status: head.status,
                        headers: head.headers,
                        body,
                        conn: Some((sender, self.clone())),
                    });
                }
                Err(mut e) => match e.take_message() {
                    // Not written: a pooled connection the daemon had closed. Again, on a new one.
                    Some(unsent) if !fresh => request = unsent,
                    Some(_) => return Err(PostError::Unreached(e.into_error().to_string())),
                    None => return Err(PostError::Broken(e.into_error().to_string())),
                },
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, PostError> {
        let socket = self
            .socket
            .as_ref()
            .filter(|_| self.socket_works.load(Ordering::Relaxed));
        if let Some(path) = socket {
            let connected =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path)).await;
            match connected {
                Ok(Ok(stream)) => return self.handshake(stream).await,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, path = %path.display(), "the daemon's socket refused a connection; using TCP");
                }
                Err(_) => {
                    tracing::debug!(path = %path.display(), "the daemon's socket did not answer; using TCP")
                }
            }
            self.socket_works.store(false, Ordering::Relaxed);
        }
        let unreached =
            |e: &dyn std::fmt::Display| PostError::Unreached(format!("{}: {e}", self.addr));
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(self.addr))
                .await
                .map_err(|_| unreached(&"connection timed out"))?
                .map_err(|e| unreached(&e))?;
        stream.set_nodelay(true).map_err(|e| unreached(&e))?;
        self.handshake(stream).await
    }

    /// Starts HTTP/1.1 on a new connection.
    async fn handshake<T>(&self, stream: T) -> Result<SendRequest<Full<Bytes>>, PostError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| PostError::Unreached(format!("{}: {e}", self.addr)))?;
        // Ends when the connection closes, or once its sender is dropped and it is idle.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a connection to the daemon ended");
            }
        });
        Ok(sender)
    }

    /// Puts a connection whose answer was read in full back.
    fn release(&self, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE && !sender.is_closed() {
            idle.push(sender);
        }
    }
}

/// A POST's answer: its head, and its body to read.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    body: Incoming,
    /// The connection, back to its pool once the body is read to its end; dropped (closed)
    /// with the answer otherwise.
    conn: Option<(SendRequest<Full<Bytes>>, Arc<Pool>)>,
}

impl Answer {
    /// The next piece of the body, `None` at its end.
    pub(super) async fn chunk(&mut self) -> Result<Option<Bytes>, hyper::Error> {
        loop {
            match self.body.frame().await {
                None => {
                    if let Some((sender, pool)) = self.conn.take() {
                        pool.release(sender);
                    }
                    return Ok(None);
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
                Some(Err(e)) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
    }

    /// Reads the body to its end, so the connection can be used again.
    pub(super) async fn drain(mut self) {
        while let Ok(Some(_)) = self.chunk().await {}
    }

    /// The `Content-Length`, if given.
    pub(super) fn content_length(&self) -> Option<u64> {
        self.headers
            .get(CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }
}
