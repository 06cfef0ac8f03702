//! The stdio transport: newline-delimited JSON-RPC over a child's stdin and stdout.
//!
//! A writer task drains a bounded queue into stdin and flushes only when the queue is empty,
//! so bursts of calls share one `write`. A reader task frames stdout with the 4 MiB line cap
//! enforced while reading (a flood without newlines costs bounded memory and fails the
//! connection), skips non-JSON lines, and hands every message to the client's [`Inbound`].
//! When stdout ends, the reader waits briefly for the process's exit status so that pending
//! calls fail with the real reason (`exited with status 1 (stderr: …)`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::{Inbound, Outgoing, Transport, TransportError};
use super::framing::{FramingError, LineReader};
use crate::process::ChildIo;

/// The stdout line cap (seed 002: "each response line is capped at 4 MB").
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// Messages queued for stdin before sends fail with backpressure.
pub const QUEUE: usize = 4096;
/// How long to wait for the exit status after stdout closes.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// A running stdio transport.
#[derive(Debug)]
pub struct StdioTransport {
    tx: mpsc::Sender<Vec<u8>>,
    stop: CancellationToken,
}

impl StdioTransport {
    /// Starts the reader and writer tasks over the child's pipes.
    pub fn start(io: ChildIo, inbound: Inbound) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let stop = CancellationToken::new();
        let ChildIo {
            stdin,
            stdout,
            exit,
            stderr,
            pid,
        } = io;
        tokio::spawn(write_loop(stdin, rx, stop.clone(), inbound.clone()));
        let reply_tx = tx.clone();
        let reader_stop = stop.clone();
        tokio::spawn(async move {
            let reason = tokio::select! {
                reason = read_loop(stdout, &inbound, &reply_tx) => reason,
                () = reader_stop.cancelled() => return,
            };
            // stdout ended: prefer the process's own account of why.
            let mut exit_rx = exit.clone();
            let _ = tokio::time::timeout(EXIT_GRACE, exit_rx.wait_for(Option::is_some)).await;
            let io_exit = ChildIo::describe_exit(&exit, &stderr);
            let reason = match io_exit {
                Some(exit) if reason.is_none() => format!("process {exit}"),
                Some(exit) => format!("{} (process {exit})", reason.unwrap_or_default()),
                None => reason.unwrap_or_else(|| format!("process {pid} closed its stdout")),
            };
            inbound.close(&reason);
        });
        Arc::new(Self { tx, stop })
    }
}

impl Transport for StdioTransport {
    fn send(&self, msg: Outgoing) -> Result<(), TransportError> {
        let line = match msg {
            Outgoing::Request { line, .. }
            | Outgoing::Notification { line }
            | Outgoing::Response { line } => line,
        };
        self.tx.try_send(line).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TransportError::Backpressure(QUEUE),
            mpsc::error::TrySendError::Closed(_) => TransportError::Closed("stdin closed".into()),
        })
    }

    fn close(&self) {
        self.stop.cancel();
    }
}

/// Reads stdout until it ends. Returns `Some(reason)` for a protocol failure, `None` for EOF.
async fn read_loop(
    stdout: impl tokio::io::AsyncRead + Unpin,
    inbound: &Inbound,
    replies: &mpsc::Sender<Vec<u8>>,
) -> Option<String> {
    let mut reader = LineReader::new(stdout, MAX_LINE);
    loop {
        match reader.next_line().await {
            Ok(Some(line)) => {
                if let Some(reply) = inbound.dispatch_line(line) {
                    let line = match reply {
                        Outgoing::Request { line, .. }
                        | Outgoing::Notification { line }
                        | Outgoing::Response { line } => line,
                    };
                    if replies.try_send(line).is_err() {
                        tracing::warn!(server = %inbound.server(), "reply to a server request dropped: stdin queue full");
                    }
                }
            }
            Ok(None) => return None,
            Err(FramingError::LineTooLong { limit }) => {
                return Some(format!(
                    "server wrote a stdout line longer than {limit} bytes"
                ));
            }
            Err(e) => return Some(format!("reading stdout failed: {e}")),
        }
    }
}

async fn write_loop(
    stdin: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
    inbound: Inbound,
) {
    let mut stdin = tokio::io::BufWriter::with_capacity(64 * 1024, stdin);
    loop {
        let first = tokio::select! {
            msg = rx.recv() => msg,
            () = stop.cancelled() => None,
        };
        let Some(mut line) = first else { break };
        // Write everything queued, then flush once.
        loop {
            line.push(b'\n');
            if let Err(e) = stdin.write_all(&line).await {
                inbound.close(&format!("writing to the server's stdin failed: {e}"));
                return;
            }
            match rx.try_recv() {
                Ok(next) => line = next,
                Err(_) => break,
            }
        }
        if let Err(e) = stdin.flush().await {
            inbound.close(&format!("writing to the server's stdin failed: {e}"));
            return;
        }
    }
    // Closing stdin is the polite way to ask a stdio server to exit.
    let _ = stdin.shutdown().await;
}
