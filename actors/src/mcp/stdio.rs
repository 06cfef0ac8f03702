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
        let closer = Closer {
            inbound: inbound.clone(),
            exit,
            stderr,
            pid,
        };
        let writer_closer = closer.clone();
        let writer_stop = stop.clone();
        tokio::spawn(async move {
            if let Some(reason) = write_loop(stdin, rx, writer_stop).await {
                writer_closer.close(Some(reason)).await;
            }
        });
        let reply_tx = tx.clone();
        let reader_stop = stop.clone();
        tokio::spawn(async move {
            let reason = tokio::select! {
                reason = read_loop(stdout, &inbound, &reply_tx) => reason,
                () = reader_stop.cancelled() => return,
            };
            closer.close(reason).await;
        });
        Arc::new(Self { tx, stop })
    }
}

/// Ends the connection with the best available reason: a broken pipe or EOF is usually the
/// symptom of the process dying, so its exit status (and last stderr line) is awaited briefly
/// and preferred.
#[derive(Clone)]
struct Closer {
    inbound: Inbound,
    exit: tokio::sync::watch::Receiver<Option<crate::process::ExitInfo>>,
    stderr: Arc<std::sync::Mutex<crate::process::StderrRing>>,
    pid: u32,
}

impl Closer {
    async fn close(mut self, symptom: Option<String>) {
        let _ = tokio::time::timeout(EXIT_GRACE, self.exit.wait_for(Option::is_some)).await;
        let reason = match (ChildIo::describe_exit(&self.exit, &self.stderr), symptom) {
            (Some(exit), _) => format!("process {exit}"),
            (None, Some(symptom)) => symptom,
            (None, None) => format!("process {} closed its stdout", self.pid),
        };
        self.inbound.close(&reason);
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

/// Drains the queue into stdin. Returns the failure, if writing failed.
async fn write_loop(
    stdin: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
) -> Option<String> {
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
                return Some(format!("writing to the server's stdin failed: {e}"));
            }
            match rx.try_recv() {
                Ok(next) => line = next,
                Err(_) => break,
            }
        }
        if let Err(e) = stdin.flush().await {
            return Some(format!("writing to the server's stdin failed: {e}"));
        }
    }
    // Closing stdin is the polite way to ask a stdio server to exit.
    let _ = stdin.shutdown().await;
    None
}
