//! The bridge's two ends towards the client: stdin and stdout, and the one task that writes
//! stdout. Part of [`super`].
//!
//! tokio's own `stdin()`/`stdout()` run every read and write on a blocking thread: a thread hop
//! (two wake-ups) per message. Clients give a stdio server pipes (or, libuv-based ones, Unix
//! socket pairs), which can be driven by the event loop directly: [`stdin`] and [`stdout`]
//! duplicate the descriptor and register it non-blocking, and fall back to tokio's blocking
//! versions for anything else (a terminal, a file).
//!
//! Every line for the client goes through [`Output`], a bounded queue drained by
//! [`write_lines`]: lines never interleave, and a client that stops reading stdout slows the
//! relays (and, through them, the daemon's streams) instead of growing a buffer.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Lines queued for stdout before senders wait.
const QUEUE: usize = 256;
/// The writer's buffer: small lines written together go out in one `write`.
const WRITE_BUFFER: usize = 64 * 1024;

/// The client's stdin.
pub(super) type Input = Box<dyn AsyncRead + Send + Unpin>;
/// The client's stdout.
pub(super) type OutputStream = Box<dyn AsyncWrite + Send + Unpin>;

/// Stdin, non-blocking if it is a pipe or a socket.
pub(super) fn stdin() -> std::io::Result<Input> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let kind = std::fs::File::from(fd.try_clone()?).metadata()?.file_type();
    if kind.is_fifo() {
        return Ok(Box::new(tokio::net::unix::pipe::Receiver::from_owned_fd(
            fd,
        )?));
    }
    if kind.is_socket() {
        return Ok(Box::new(socket(fd)?));
    }
    Ok(Box::new(tokio::io::stdin()))
}

/// Stdout, non-blocking if it is a pipe or a socket.
pub(super) fn stdout() -> std::io::Result<OutputStream> {
    let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
    let kind = std::fs::File::from(fd.try_clone()?).metadata()?.file_type();
    if kind.is_fifo() {
        return Ok(Box::new(tokio::net::unix::pipe::Sender::from_owned_fd(fd)?));
    }
    if kind.is_socket() {
        return Ok(Box::new(socket(fd)?));
    }
    Ok(Box::new(tokio::io::stdout()))
}

/// A stream socket (a Unix socket pair, as libuv gives its children) on the event loop.
fn socket(fd: OwnedFd) -> std::io::Result<tokio::net::UnixStream> {
    let socket = std::os::unix::net::UnixStream::from(fd);
    socket.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(socket)
}

/// Where lines for the client are queued (cheap to clone).
#[derive(Clone, Debug)]
pub(super) struct Output {
    tx: mpsc::Sender<Bytes>,
}

impl Output {
    /// A queue and its receiving end, for [`write_lines`].
    pub(super) fn new() -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, rx)
    }

    /// Queues one message (one line, without its newline), waiting while the queue is full.
    /// A message for a client that is gone is dropped.
    pub(super) async fn send(&self, line: Bytes) {
        let _ = self.tx.send(line).await;
    }

    /// Queues a message from code that cannot wait (a `Drop`): at once if there is room, else
    /// from a task of its own.
    pub(super) fn send_soon(&self, line: Bytes) {
        if let Err(mpsc::error::TrySendError::Full(line)) = self.tx.try_send(line) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(line).await;
            });
        }
    }
}

/// Writes every queued message to `out` as one line, flushing whenever the queue is empty,
/// until every [`Output`] is dropped. A write error (the client closed stdout) cancels `gone`.
pub(super) async fn write_lines(
    out: OutputStream,
    mut rx: mpsc::Receiver<Bytes>,
    gone: CancellationToken,
) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, out);
    while let Some(first) = rx.recv().await {
        let mut line = Some(first);
        let result: std::io::Result<()> = async {
            while let Some(message) = line.take() {
                out.write_all(&message).await?;
                out.write_all(b"\n").await?;
                line = rx.try_recv().ok();
            }
            out.flush().await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "stdout closed");
            gone.cancel();
            return;
        }
    }
    let _ = out.flush().await;
}

/// `message` as one line: any CR or LF becomes a space. In valid JSON they can only be
/// whitespace between tokens (a string holds them escaped), so the message is unchanged; an
/// SSE `data` field spanning lines comes out whole.
pub(super) fn one_line(message: Bytes) -> Bytes {
    if !message.iter().any(|&b| b == b'\n' || b == b'\r') {
        return message;
    }
    let mut owned = message.to_vec();
    for b in &mut owned {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    Bytes::from(owned)
}
