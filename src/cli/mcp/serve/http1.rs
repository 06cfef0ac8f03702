//! The bridge's HTTP/1.1 client for `POST /mcp`, the path of every message. Part of
//! [`super`].
//!
//! A pool of kept-alive connections to one daemon (one [`Pool`] per link): a POST takes an
//! idle connection or opens one (2 s to connect), writes the request in one go, and reads the
//! answer on that connection itself, in the task that waits for it; the connection goes back
//! to the pool only once the answer's body has been read to its end. An answer dropped before
//! that (a cancelled call, the bridge stopping) takes its connection with it: the connection
//! is closed, which the daemon reads as the client hanging up, and it cancels the call.
//!
//! A pooled connection is looked at before it is used: one the daemon closed (or wrote to)
//! while it was idle, or idle for longer than [`REUSE_WITHIN`], is closed and another taken,
//! and a request whose write finds the connection closed goes out on a new one (nothing of it
//! reached the daemon). A write that fails because the daemon answered before it took the
//! whole request (a 401 for a session it no longer knows) and closed returns that answer.
//! Otherwise, once a request is written, a broken connection is the caller's to judge
//! ([`PostError::Broken`]): a `tools/call` may have run. Idle connections are at most
//! [`MAX_IDLE`], closed when too old to reuse, and keep no read buffer over [`KEEP_BUFFER`].
//!
//! Connections go to the daemon's Unix socket when `mcp.json` names one: the same service as
//! its TCP port, for less CPU per message on both sides (no TCP stack on the way; the socket is
//! a [`ReadWoken`] stream, so the daemon reading a request does not wake the bridge). A socket
//! that refuses a connection (removed, or a daemon that no longer listens there) is given up
//! for the link's life, and connections go to the TCP port (`TCP_NODELAY`) instead.
//!
//! **Why not hyper's client.** This is the hot path of the bridge, and its budget is a few
//! microseconds of CPU per message. hyper's client runs each connection in a task of its own,
//! with channels between it and the caller, a header map per answer and a general body type;
//! measured (callgrind), that machinery was a third of the bridge's instructions per call. The
//! daemon speaks a narrow HTTP/1.1 here (its own answers to its own client), so the client
//! reads exactly what RFC 9112 asks of one: a status line and headers (`httparse`, the parser
//! hyper uses), then a body framed by `Transfer-Encoding: chunked`, `Content-Length`, or the
//! connection's end. reqwest still makes the bridge's other requests (`POST /session`,
//! `DELETE`, the server stream).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::http::unix::ReadWoken;

/// Idle connections kept; more are closed when their answer ends.
const MAX_IDLE: usize = 32;
/// Connecting to a loopback daemon either works at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle connection older than this is closed, not reused: the daemon closes kept-alive
/// connections after `[http] keepalive_idle_secs` (120 s by default), and one it is closing
/// just as a request goes out would fail that request.
const REUSE_WITHIN: Duration = Duration::from_secs(30);
/// The largest answer head (status line and headers) read.
const MAX_HEAD: usize = 64 * 1024;
/// Headers of one answer at most (the daemon sends fewer than ten).
const MAX_HEADERS: usize = 24;
/// The longest chunk-size or trailer line of a chunked body.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Room made for each read of an answer.
const READ_SIZE: usize = 16 * 1024;
/// The most read at once into a body whose length is known.
const MAX_READ: usize = 1024 * 1024;
/// A pooled connection's read buffer larger than this is given back, not kept with it.
const KEEP_BUFFER: usize = 64 * 1024;
/// How long an answer the daemon sent before it took the whole request is waited for, once
/// the write failed.
const EARLY_ANSWER: Duration = Duration::from_secs(1);

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
    host: String,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<(Conn, Instant)>>,
}

impl Pool {
    /// A pool of connections to the Unix socket `socket`, if given and while it answers, else
    /// to `addr`.
    pub(super) fn new(addr: SocketAddr, socket: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            addr,
            socket_works: AtomicBool::new(socket.is_some()),
            socket,
            host: addr.to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(Conn, Instant)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `127.0.0.1:<port>`: the `Host` its requests must carry.
    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// An idle connection that can still be used, if there is one.
    fn pooled(&self) -> Option<Conn> {
        loop {
            let (mut conn, since) = self.idle().pop()?;
            if since.elapsed() < REUSE_WITHIN && conn.usable() {
                return Some(conn);
            }
        }
    }

    /// Sends a request made of `head` (its request line and headers, up to and without the
    /// `Content-Length` header) and `body`, and returns the answer's head; its body is read
    /// from the [`Answer`].
    pub(super) async fn send(
        self: &Arc<Self>,
        head: &[u8],
        body: &[u8],
    ) -> Result<Answer, PostError> {
        let mut length = [0u8; LENGTH_HEADER_MAX];
        let length = length_header(&mut length, body.len());
        loop {
            let (mut conn, fresh) = match self.pooled() {
                Some(conn) => (conn, false),
                None => (self.connect().await?, true),
            };
            let mut parts = [IoSlice::new(head), IoSlice::new(length), IoSlice::new(body)];
            if let Err(e) = conn.write_all(&mut parts).await {
                // Nothing of the request reached the daemon, which had closed the connection
                // while it was idle: again, on another one.
                if e.written == 0 && !fresh && is_closed(&e.error) {
                    continue;
                }
                // The daemon may have answered before it took the whole request (a 401 for a
                // session it no longer knows, a 503 for a connection over its limit) and
                // closed: that answer is what counts, not the failed write.
                let early = tokio::time::timeout(EARLY_ANSWER, conn.read_head()).await;
                if let Ok(Ok(mut head)) = early {
                    head.keep_alive = false;
                    return Ok(self.answer(head, conn));
                }
                let why = e.error.to_string();
                return Err(if e.written == 0 {
                    PostError::Unreached(why)
                } else {
                    PostError::Broken(why)
                });
            }
            let head = conn.read_head().await.map_err(PostError::Broken)?;
            return Ok(self.answer(head, conn));
        }
    }

    /// The [`Answer`] of `head`, its body to be read from `conn`.
    fn answer(self: &Arc<Self>, head: Head, conn: Conn) -> Answer {
        Answer {
            status: head.status,
            event_stream: head.event_stream,
            content_length: head.content_length,
            body: head.framing,
            keep_alive: head.keep_alive,
            conn: Some(conn),
            pool: self.clone(),
        }
    }

    async fn connect(&self) -> Result<Conn, PostError> {
        let socket = self
            .socket
            .as_ref()
            .filter(|_| self.socket_works.load(Ordering::Relaxed));
        if let Some(path) = socket {
            match tokio::time::timeout(CONNECT_TIMEOUT, ReadWoken::connect(path)).await {
                Ok(Ok(stream)) => return Ok(Conn::new(Socket::Unix(stream))),
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
        Ok(Conn::new(Socket::Tcp(stream)))
    }

    /// Puts a connection whose answer was read in full back (without a large read buffer),
    /// and closes the idle ones too old to be used again.
    fn release(&self, mut conn: Conn) {
        if conn.buf.capacity() > KEEP_BUFFER {
            conn.buf = BytesMut::new();
        }
        let now = Instant::now();
        let mut idle = self.idle();
        // Oldest first: the ones too old to reuse are at the front.
        let stale = idle
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) >= REUSE_WITHIN)
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE {
            idle.push((conn, now));
        }
    }
}

/// The longest `Content-Length` header line [`length_header`] writes.
const LENGTH_HEADER_MAX: usize = 40;

/// Writes `content-length: <n>\r\n\r\n` into `buf` (no allocation: this is per message).
fn length_header(buf: &mut [u8; LENGTH_HEADER_MAX], n: usize) -> &[u8] {
    const NAME: &[u8] = b"content-length: ";
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = &digits[at..];
    let end = NAME.len() + digits.len() + 4;
    buf[..NAME.len()].copy_from_slice(NAME);
    buf[NAME.len()..end - 4].copy_from_slice(digits);
    buf[end - 4..end].copy_from_slice(b"\r\n\r\n");
    &buf[..end]
}

/// Whether a write error means the daemon had closed the connection.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

/// A connection to the daemon: its Unix socket, or its TCP port.
#[derive(Debug)]
enum Socket {
    Unix(ReadWoken),
    Tcp(tokio::net::TcpStream),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A write that failed after `written` bytes.
struct WriteError {
    written: usize,
    error: io::Error,
}

/// One connection and what was read from it beyond the last answer's end.
#[derive(Debug)]
struct Conn {
    socket: Socket,
    buf: BytesMut,
}

/// An answer's head, as the client needs it.
struct Head {
    status: StatusCode,
    event_stream: bool,
    content_length: Option<u64>,
    framing: Framing,
    keep_alive: bool,
}

impl Conn {
    fn new(socket: Socket) -> Self {
        Self {
            socket,
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can carry a request: nothing came on it since its last
    /// answer (neither bytes nor its end). A read is tried only when the event loop saw the
    /// socket readable since the last one that drained it, so it usually costs no system
    /// call (and, unlike polling for readiness, it is not subject to tokio's task budget).
    fn usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let read = match &self.socket {
            Socket::Unix(s) => s.try_read(&mut probe),
            Socket::Tcp(s) => s.try_read(&mut probe),
        };
        matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes every byte of `parts`.
    async fn write_all(&mut self, mut parts: &mut [IoSlice<'_>]) -> Result<(), WriteError> {
        let mut written = 0;
        while !parts.is_empty() {
            match self.socket.write_vectored(parts).await {
                Ok(0) => {
                    let error =
                        io::Error::new(io::ErrorKind::WriteZero, "the daemon takes no more");
                    return Err(WriteError { written, error });
                }
                Ok(n) => {
                    written += n;
                    IoSlice::advance_slices(&mut parts, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(WriteError { written, error }),
            }
        }
        Ok(())
    }

    /// Reads more of the answer into `buf`: `Ok(0)` at the connection's end.
    async fn fill(&mut self, room: usize) -> io::Result<usize> {
        self.buf.reserve(room);
        self.socket.read_buf(&mut self.buf).await
    }

    /// Reads and parses the answer's head (informational `1xx` answers skipped).
    async fn read_head(&mut self) -> Result<Head, String> {
        loop {
            if !self.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = parse_head(&response)?;
                        self.buf.advance(len);
                        match head {
                            Some(head) => return Ok(head),
                            None => continue,
                        }
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(format!("the daemon's answer is not HTTP: {e}")),
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(format!("the daemon's answer head exceeds {MAX_HEAD} bytes"));
                }
            }
            match self.fill(READ_SIZE).await {
                Ok(0) if self.buf.is_empty() => {
                    return Err("the connection closed before an answer".into());
                }
                Ok(0) => return Err("the connection closed in an answer's head".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// The head of a parsed answer; `None` for an informational (`1xx`) one, which is followed by
/// the real one.
fn parse_head(response: &httparse::Response<'_, '_>) -> Result<Option<Head>, String> {
    let code = response.code.unwrap_or_default();
    let status =
        StatusCode::from_u16(code).map_err(|_| format!("the daemon answered status {code}"))?;
    if status.is_informational() {
        return Ok(None);
    }
    let mut event_stream = false;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-type") {
            event_stream = value.starts_with(b"text/event-stream");
        } else if name.eq_ignore_ascii_case("content-length") {
            // `1*DIGIT` (RFC 9112): no sign, no space inside.
            let digits = value.trim_ascii();
            let parsed = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok())
                .ok_or("the daemon's answer has an invalid Content-Length")?;
            if content_length.is_some_and(|n| n != parsed) {
                return Err("the daemon's answer has two Content-Lengths".into());
            }
            content_length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = last_token(value).eq_ignore_ascii_case(b"chunked");
            if !chunked {
                return Err(
                    "the daemon's answer has a Transfer-Encoding other than chunked".into(),
                );
            }
        } else if name.eq_ignore_ascii_case("connection") {
            close |= value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Length(0)
    } else if chunked {
        // RFC 9112 §6.3: chunked wins over a Content-Length, and such a connection is not
        // reused.
        close |= content_length.is_some();
        Framing::Chunked(ChunkState::Size)
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::ToClose
    };
    Ok(Some(Head {
        status,
        event_stream,
        content_length: if chunked { None } else { content_length },
        framing,
        keep_alive: !close,
    }))
}

/// The last comma-separated token of a header value.
fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

/// How an answer's body ends.
#[derive(Debug)]
enum Framing {
    /// After this many more bytes.
    Length(u64),
    /// With its last (empty) chunk.
    Chunked(ChunkState),
    /// With the connection.
    ToClose,
    /// It has ended.
    Done,
}

/// Where a chunked body's reader is.
#[derive(Debug, Clone, Copy)]
enum ChunkState {
    /// Before a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// What [`Answer::next_piece`] found in what was read so far.
enum Piece {
    /// Body bytes.
    Data(Bytes),
    /// The body's end.
    End,
    /// Nothing yet: read more.
    More,
}

/// A POST's answer: its head, and its body to read.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    /// Its `Content-Type` is `text/event-stream`.
    event_stream: bool,
    content_length: Option<u64>,
    body: Framing,
    /// The connection may carry another request once this body is read.
    keep_alive: bool,
    /// The connection, back to its pool once the body is read to its end; dropped (closed)
    /// with the answer otherwise.
    conn: Option<Conn>,
    pool: Arc<Pool>,
}

impl Answer {
    /// The next piece of the body, `None` at its end.
    pub(super) async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return match self.body {
                    Framing::Done => Ok(None),
                    _ => Err("the answer was broken off".into()),
                };
            };
            let piece = match next_piece(&mut self.body, &mut conn.buf) {
                Ok(piece) => piece,
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            };
            match piece {
                Piece::Data(data) => return Ok(Some(data)),
                Piece::End => {
                    self.body = Framing::Done;
                    if let Some(conn) = self.conn.take()
                        && self.keep_alive
                        && conn.buf.is_empty()
                    {
                        self.pool.release(conn);
                    }
                    return Ok(None);
                }
                Piece::More => {}
            }
            let room = match self.body {
                Framing::Length(n) => (n as usize).clamp(1, MAX_READ),
                _ => READ_SIZE,
            };
            match conn.fill(room).await {
                Ok(0) if matches!(self.body, Framing::ToClose) => {
                    self.body = Framing::Done;
                    self.conn = None;
                    return Ok(None);
                }
                Ok(0) => {
                    self.conn = None;
                    return Err("the connection closed before the answer's end".into());
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Err(e.to_string());
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
        self.content_length
    }

    /// Whether the body is an SSE stream (`Content-Type: text/event-stream`).
    pub(super) fn is_event_stream(&self) -> bool {
        self.event_stream
    }
}

/// Takes the next piece of a body framed by `framing` from `buf`.
fn next_piece(framing: &mut Framing, buf: &mut BytesMut) -> Result<Piece, String> {
    loop {
        match framing {
            Framing::Done | Framing::Length(0) => return Ok(Piece::End),
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Piece::More);
                }
                let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                return Ok(Piece::Data(buf.split_to(take).freeze()));
            }
            Framing::ToClose => {
                if buf.is_empty() {
                    return Ok(Piece::More);
                }
                return Ok(Piece::Data(buf.split().freeze()));
            }
            Framing::Chunked(state) => match *state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Piece::More);
                    };
                    let size = chunk_size(&line)?;
                    *state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Piece::More);
                    }
                    let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let left = left - take as u64;
                    *state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Piece::Data(buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Piece::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("the daemon's chunked answer is malformed".into());
                    }
                    buf.advance(2);
                    *state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Piece::More);
                    };
                    if line.is_empty() {
                        *framing = Framing::Done;
                    }
                }
            },
        }
    }
}

/// Takes a CRLF-ended line (without its CRLF) off the front of `buf`, if a whole one is there.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, String> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= MAX_CHUNK_LINE => {
            let line = buf.split_to(end);
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() <= MAX_CHUNK_LINE => Ok(None),
        _ => Err("a line of the daemon's chunked answer is too long".into()),
    }
}

/// The size of a chunk-size line (`1a3f`, maybe with `;extensions`).
fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    // `1*HEXDIG`: no sign; 15 digits at most, so it fits.
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err("the daemon's chunked answer has an invalid chunk size".into());
    }
    let text = std::str::from_utf8(digits).map_err(|_| "invalid chunk size".to_owned())?;
    u64::from_str_radix(text, 16)
        .map_err(|_| "the daemon's chunked answer has an invalid chunk size".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` to a body reader a few bytes at a time; returns the body.
    fn read_body(framing: Framing, wire: &[u8], step: usize) -> Result<Vec<u8>, String> {
        let mut framing = framing;
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match next_piece(&mut framing, &mut buf)? {
                Piece::Data(data) => body.extend_from_slice(&data),
                Piece::End => return Ok(body),
                Piece::More if fed >= wire.len() => return Err("ran out".into()),
                Piece::More => {
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Reads one request (head and `Content-Length` body) from `stream`; `None` at its end.
    async fn read_request(stream: &mut (impl AsyncRead + Unpin)) -> Option<String> {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            got.push(byte[0]);
        }
        let head = String::from_utf8(got).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.ok()?;
        Some(String::from_utf8(body).unwrap())
    }

    async fn body_of(mut answer: Answer) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        while let Some(piece) = answer.chunk().await? {
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }

    const HEAD: &[u8] = b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n";

    /// A kept-alive connection is reused; one the daemon closed while it was idle is noticed
    /// before the next request, which goes out on a new connection and is answered.
    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced_before_the_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut connections = 0;
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                connections += 1;
                // Two answers on the first connection, then it is closed while idle.
                let answers = if connections == 1 { 2 } else { usize::MAX };
                for _ in 0..answers {
                    let Some(body) = read_request(&mut stream).await else {
                        break;
                    };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len() + connections.to_string().len() + 1
                    );
                    stream.write_all(answer.as_bytes()).await.unwrap();
                    stream
                        .write_all(format!(" {connections}").as_bytes())
                        .await
                        .unwrap();
                }
            }
        });
        let pool = Pool::new(addr, None);
        for (message, expected) in [("a", "a 1"), ("b", "b 1"), ("c", "c 2"), ("d", "d 2")] {
            if message == "c" {
                // The server has closed the first connection by now.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let answer = pool.send(HEAD, message.as_bytes()).await.unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            assert!(!answer.is_event_stream());
            let body = body_of(answer).await.unwrap();
            assert_eq!(String::from_utf8(body).unwrap(), expected);
        }
        server.abort();
    }

    /// A chunked SSE answer written a few bytes at a time is read whole; an answer cut before
    /// its end is an error, and so is a connection closed with no answer.
    #[tokio::test]
    async fn answers_in_pieces_are_read_and_cut_ones_are_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let wire: &[&[u8]] = &[
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
                b"6\r\ndata: \r\n",
                b"3\r\nhi\n\r\n1\r\n\n\r\n0\r\n\r\n",
            ];
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            read_request(&mut stream).await.unwrap();
            for part in wire {
                for byte in part.iter() {
                    stream.write_all(&[*byte]).await.unwrap();
                    stream.flush().await.unwrap();
                }
            }
            // Next: half an answer, then the connection is cut.
            read_request(&mut stream).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
                .await
                .unwrap();
            drop(stream);
            // Next: no answer at all.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await.unwrap();
            drop(stream);
        });
        let pool = Pool::new(addr, None);
        let answer = pool.send(HEAD, b"{}").await.unwrap();
        assert!(answer.is_event_stream());
        assert_eq!(body_of(answer).await.unwrap(), b"data: hi\n\n");
        let answer = pool.send(HEAD, b"{}").await.unwrap();
        assert_eq!(answer.content_length(), Some(10));
        let cut = body_of(answer).await.unwrap_err();
        assert!(cut.contains("closed before the answer's end"), "{cut}");
        match pool.send(HEAD, b"{}").await {
            Err(PostError::Broken(why)) => assert!(why.contains("before an answer"), "{why}"),
            other => panic!("{other:?}"),
        }
        server.await.unwrap();
    }

    /// The daemon answers (401) after reading only the head of a request far larger than the
    /// socket's buffer, and closes: the write fails, and the answer is what the caller gets.
    #[tokio::test]
    async fn an_answer_sent_before_the_whole_request_was_read_is_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        // Nothing listens on the TCP address: the socket is the only way.
        let pool = Pool::new("127.0.0.1:9".parse().unwrap(), Some(path));
        let body = vec![b'x'; 8 << 20];
        let answer = match pool.send(HEAD, &body).await {
            Ok(answer) => answer,
            Err(e) => panic!("the early answer was lost: {e:?}"),
        };
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(
            !answer.keep_alive,
            "a connection with a request half-written is not reused"
        );
        server.await.unwrap();
    }

    /// An idle connection to the daemon's socket that the daemon wrote to (here, stray bytes
    /// while the connection stays open) is not reused: the next request goes on a new one.
    #[tokio::test]
    async fn an_idle_socket_connection_with_stray_bytes_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            for n in 1.. {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    while let Some(body) = read_request(&mut stream).await {
                        let answer = format!("{body} {n}");
                        let text = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        stream.write_all(text.as_bytes()).await.unwrap();
                        if n == 1 {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            stream
                                .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
                                .await
                                .unwrap();
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                    }
                });
            }
        });
        let pool = Pool::new("127.0.0.1:9".parse().unwrap(), Some(path));
        let answer = pool.send(HEAD, b"a").await.unwrap();
        assert_eq!(body_of(answer).await.unwrap(), b"a 1");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = pool.send(HEAD, b"b").await.unwrap();
        assert_eq!(
            body_of(answer).await.unwrap(),
            b"b 2",
            "the stale connection was reused"
        );
        server.abort();
    }

    /// A connection coming back closes the idle ones too old to reuse and keeps no large read
    /// buffer.
    #[tokio::test]
    async fn the_pool_drops_old_connections_and_large_buffers() {
        let mut peers = Vec::new();
        let mut conn = || {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            peers.push(theirs);
            Conn::new(Socket::Unix(ReadWoken::new(ours).unwrap()))
        };
        let pool = Pool::new("127.0.0.1:9".parse().unwrap(), None);
        let old = Instant::now() - REUSE_WITHIN - Duration::from_secs(1);
        pool.idle().extend([(conn(), old), (conn(), old)]);
        let mut back = conn();
        back.buf.reserve(MAX_READ);
        pool.release(back);
        let idle = pool.idle();
        assert_eq!(idle.len(), 1, "the old connections were kept");
        assert!(
            idle[0].0.buf.capacity() <= KEEP_BUFFER,
            "a large buffer was kept"
        );
    }

    #[test]
    fn the_length_header_is_written_for_any_size() {
        let mut buf = [0; LENGTH_HEADER_MAX];
        for n in [0, 7, 10, 110, 4 << 20, usize::MAX] {
            let text = String::from_utf8(length_header(&mut buf, n).to_vec()).unwrap();
            assert_eq!(text, format!("content-length: {n}\r\n\r\n"));
        }
    }

    #[test]
    fn chunked_bodies_are_read_whatever_the_pieces() {
        let wire = b"5\r\nhello\r\n7;name=value\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            let body = read_body(Framing::Chunked(ChunkState::Size), wire, step).unwrap();
            assert_eq!(body, b"hello, world", "step {step}");
        }
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let mut framing = Framing::Length(5);
        let mut buf = BytesMut::from(&b"helloHTTP/1.1"[..]);
        let Piece::Data(data) = next_piece(&mut framing, &mut buf).unwrap() else {
            panic!("no data");
        };
        assert_eq!(&data[..], b"hello");
        assert!(matches!(next_piece(&mut framing, &mut buf), Ok(Piece::End)));
        assert_eq!(
            &buf[..],
            b"HTTP/1.1",
            "what follows is left for the next answer"
        );
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for wire in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\n",
            b"10000000000000000\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                read_body(Framing::Chunked(ChunkState::Size), wire, 4).is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        let long = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert!(read_body(Framing::Chunked(ChunkState::Size), &long, 64).is_err());
    }

    fn head_of(text: &str) -> Result<Option<Head>, String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        assert!(response.parse(text.as_bytes()).unwrap().is_complete());
        parse_head(&response)
    }

    #[test]
    fn heads_give_the_framing_and_whether_to_keep_the_connection() {
        let head = head_of(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.event_stream && head.keep_alive);
        assert!(matches!(head.framing, Framing::Chunked(_)));

        let head = head_of("HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(head.framing, Framing::Length(0)) && head.keep_alive);

        let head = head_of(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 3\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(!head.keep_alive);

        let head = head_of("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(head.framing, Framing::ToClose) && !head.keep_alive);

        assert!(head_of("HTTP/1.1 100 Continue\r\n\r\n").unwrap().is_none());
        assert!(head_of("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
        assert!(head_of("HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n").is_err());
        assert!(
            head_of("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n").is_err()
        );
        assert!(head_of("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n").is_err());
    }
}
