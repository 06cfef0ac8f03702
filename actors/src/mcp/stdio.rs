//! The stdio transport: newline-delimited JSON-RPC over a child's stdin and stdout.
//!
//! A message is written to stdin by its sender, straight away, when nothing is queued ahead of
//! it and the pipe takes it whole (a non-blocking write: no task hand-off on the call path).
//! Otherwise it joins a bounded queue that a writer task drains, many lines to one `write`,
//! as the pipe accepts them. A reader task frames stdout with the 4 MiB line cap
//! enforced while reading (a flood without newlines costs bounded memory and fails the
//! connection), skips non-JSON lines, and hands every message to the client's [`Inbound`].
//! When stdout ends, the reader waits briefly for the process's exit status so that pending
//! calls fail with the real reason (`exited with status 1 (stderr: …)`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::{Inbound, Outgoing, Transport, TransportError};
use super::framing::{FramingError, LineReader};
use crate::process::ChildIo;

/// The stdout line cap (seed 002: "each response line is capped at 4 MB").
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// Messages queued for stdin before sends fail with backpressure.
pub const QUEUE: usize = 4096;
/// Queued bytes the writer task gathers into one write.
const GATHER: usize = 64 * 1024;
/// How long to wait for the exit status after stdout closes.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// A running stdio transport.
#[derive(Debug)]
pub struct StdioTransport {
    stdin: Arc<Stdin>,
    stop: CancellationToken,
}

/// The child's stdin, shared by senders (direct writes) and the writer task (the queue).
#[derive(Debug)]
struct Stdin {
    state: Mutex<StdinState>,
    /// Wakes the writer task when the queue gets its first message.
    queued: Notify,
}

#[derive(Debug)]
struct StdinState {
    /// `None` once closed or broken.
    pipe: Option<ChildStdin>,
    /// Bytes not yet written, in order: whole lines, the first maybe partly written already.
    queue: VecDeque<Vec<u8>>,
    /// How much of the first queued line is written.
    written: usize,
    /// Why the pipe is unusable, once it is.
    failed: Option<String>,
    /// The pipe broke on a write (not closed by us): the writer task is closing the connection
    /// through the [`Closer`], with the process's exit as the reason.
    broken: bool,
}

impl Stdin {
    fn lock(&self) -> MutexGuard<'_, StdinState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `line` now if nothing is queued ahead of it and the pipe takes all of it, else
    /// queues what is left for the writer task.
    fn send(&self, mut line: Vec<u8>) -> Result<(), TransportError> {
        line.push(b'\n');
        let mut state = self.lock();
        if let Some(reason) = &state.failed {
            // While the Closer is at work, a request sent now fails with what it finds (the
            // process's exit), like those before it, rather than with the broken pipe.
            return if state.broken {
                Ok(())
            } else {
                Err(TransportError::Closed(reason.clone()))
            };
        }
        if state.queue.len() >= QUEUE {
            return Err(TransportError::Backpressure(QUEUE));
        }
        let mut written = 0;
        if state.queue.is_empty() {
            let Some(pipe) = state.pipe.as_mut() else {
                return Err(TransportError::Closed("stdin closed".into()));
            };
            // A noop waker: if the pipe is full, the writer task polls again with its own.
            let mut cx = Context::from_waker(Waker::noop());
            while written < line.len() {
                match Pin::new(&mut *pipe).poll_write(&mut cx, &line[written..]) {
                    Poll::Ready(Ok(0)) | Poll::Pending => break,
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => {
                        // A broken pipe is the symptom of a dead process: the writer task
                        // closes the connection with the process's exit as the reason (what
                        // every pending request, this one included, then fails with).
                        state.failed = Some(format!("writing to the server's stdin failed: {e}"));
                        state.broken = true;
                        state.pipe = None;
                        drop(state);
                        self.queued.notify_one();
                        return Ok(());
                    }
                }
            }
            if written == line.len() {
                return Ok(());
            }
        }
        let first = state.queue.is_empty();
        if first {
            state.written = written;
        }
        state.queue.push_back(line);
        drop(state);
        if first {
            self.queued.notify_one();
        }
        Ok(())
    }

    /// Writes queued lines until the queue is empty or the pipe is full (then `Pending`, with
    /// `cx` registered for writability).
    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let mut state = self.lock();
        let state = &mut *state;
        loop {
            let Some(pipe) = state.pipe.as_mut() else {
                return Poll::Ready(Err(state
                    .failed
                    .clone()
                    .unwrap_or_else(|| "stdin closed".into())));
            };
            let Some(front) = state.queue.front() else {
                return Poll::Ready(Ok(()));
            };
            // Gather up to 64 KiB of queued lines into one write.
            let result = if state.queue.len() == 1 || front.len() - state.written >= GATHER {
                Pin::new(&mut *pipe).poll_write(cx, &front[state.written..])
            } else {
                let mut slices = Vec::with_capacity(state.queue.len().min(64));
                let mut total = 0;
                for (i, line) in state.queue.iter().enumerate() {
                    let part = if i == 0 {
                        &line[state.written..]
                    } else {
                        &line[..]
                    };
                    total += part.len();
                    slices.push(std::io::IoSlice::new(part));
                    if total >= GATHER || slices.len() == 64 {
                        break;
                    }
                }
                Pin::new(&mut *pipe).poll_write_vectored(cx, &slices)
            };
            match result {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    let reason = "writing to the server's stdin failed: pipe closed".to_owned();
                    state.failed = Some(reason.clone());
                    state.broken = true;
                    state.pipe = None;
                    return Poll::Ready(Err(reason));
                }
                Poll::Ready(Ok(mut n)) => {
                    // Retire the lines written in full; keep the offset into a partial one.
                    while n > 0 {
                        let left = state.queue[0].len() - state.written;
                        if n >= left {
                            n -= left;
                            state.queue.pop_front();
                            state.written = 0;
                        } else {
                            state.written += n;
                            n = 0;
                        }
                    }
                }
                Poll::Ready(Err(e)) => {
                    let reason = format!("writing to the server's stdin failed: {e}");
                    state.failed = Some(reason.clone());
                    state.broken = true;
                    state.pipe = None;
                    return Poll::Ready(Err(reason));
                }
            }
        }
    }

    /// Stops all writing; returns the pipe for a polite close, if it is still usable.
    fn take_pipe(&self, reason: &str) -> Option<ChildStdin> {
        let mut state = self.lock();
        state.failed.get_or_insert_with(|| reason.to_owned());
        state.queue.clear();
        state.pipe.take()
    }
}

impl StdioTransport {
    /// Starts the reader and writer tasks over the child's pipes.
    pub fn start(io: ChildIo, inbound: Inbound) -> Arc<Self> {
        let stop = CancellationToken::new();
        let ChildIo {
            stdin,
            stdout,
            exit,
            stderr,
            pid,
        } = io;
        let stdin = Arc::new(Stdin {
            state: Mutex::new(StdinState {
                pipe: Some(stdin),
                queue: VecDeque::new(),
                written: 0,
                failed: None,
                broken: false,
            }),
            queued: Notify::new(),
        });
        let closer = Closer {
            inbound: inbound.clone(),
            exit,
            stderr,
            pid,
        };
        let writer_closer = closer.clone();
        let writer_stop = stop.clone();
        let writer_stdin = stdin.clone();
        tokio::spawn(async move {
            if let Some(reason) = write_loop(&writer_stdin, writer_stop).await {
                writer_closer.close(Some(reason)).await;
            }
        });
        let reply_stdin = stdin.clone();
        let reader_stop = stop.clone();
        tokio::spawn(async move {
            let reason = tokio::select! {
                reason = read_loop(stdout, &inbound, &reply_stdin) => reason,
                () = reader_stop.cancelled() => return,
            };
            closer.close(reason).await;
        });
        Arc::new(Self { stdin, stop })
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
        self.stdin.send(line)
    }

    fn close(&self) {
        self.stop.cancel();
    }
}

/// Reads stdout until it ends. Returns `Some(reason)` for a protocol failure, `None` for EOF.
async fn read_loop(
    stdout: impl tokio::io::AsyncRead + Unpin,
    inbound: &Inbound,
    stdin: &Stdin,
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
                    if let Err(e) = stdin.send(line) {
                        tracing::warn!(server = %inbound.server(), error = %e, "reply to a server request dropped");
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

/// Writes what senders queue, whenever the pipe can take it, until stopped. Returns the
/// failure, if writing failed. On stop, closes stdin: the polite way to ask a stdio server to
/// exit.
async fn write_loop(stdin: &Stdin, stop: CancellationToken) -> Option<String> {
    loop {
        let queued = stdin.queued.notified();
        tokio::select! {
            () = stop.cancelled() => break,
            result = std::future::poll_fn(|cx| stdin.poll_drain(cx)) => {
                if let Err(reason) = result {
                    return (!stop.is_cancelled()).then_some(reason);
                }
            }
        }
        // Drained: wait for the next line that has to queue (a direct write needs no help).
        tokio::select! {
            () = stop.cancelled() => break,
            () = queued => {}
        }
    }
    if let Some(mut pipe) = stdin.take_pipe("stdin closed") {
        let _ = pipe.shutdown().await;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::StdioTransport;
    use crate::mcp::client::{CallOptions, Inbound, McpClient};
    use crate::process::{ChildIo, ExitInfo, StderrRing};

    /// A write that finds the pipe already broken (the server closed its stdin, as a dying
    /// process does) fails the request with the process's exit, once known, not with the
    /// broken pipe: so does a second request sent while the connection is closing.
    #[tokio::test]
    async fn a_broken_pipe_fails_requests_with_the_exit_not_the_pipe() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "exec 0<&-; exec sleep 5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Give sh the moment to close its stdin: from now on a write gets EPIPE.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (exit_tx, exit) = tokio::sync::watch::channel(None);
        let io = ChildIo {
            pid: child.id().unwrap(),
            stdin: child.stdin.take().unwrap(),
            stdout: child.stdout.take().unwrap(),
            exit,
            stderr: Arc::new(Mutex::new(StderrRing::default())),
        };
        let (inbound, _events) = Inbound::new("s", Vec::new());
        let client = McpClient::new(inbound.clone(), StdioTransport::start(io, inbound));
        let opts = CallOptions {
            timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let first = client.request("initialize", None, &opts);
        let second = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.request("ping", None, &opts).await
        };
        let exited = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            exit_tx.send_replace(Some(ExitInfo {
                code: Some(3),
                signal: None,
            }));
        };
        let (first, second, ()) = tokio::join!(first, second, exited);
        for error in [first.unwrap_err(), second.unwrap_err()] {
            let error = error.to_string();
            assert!(
                error.contains("process exited with status 3") && !error.contains("Broken pipe"),
                "{error}"
            );
        }
        let _ = child.kill().await;
    }
}
