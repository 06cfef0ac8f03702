//! The stdio transport: newline-delimited JSON-RPC over a child's stdin and stdout.
//!
//! A message is written to stdin by its sender, straight away, when nothing is queued ahead of
//! it and nobody else is writing (a non-blocking write: no task hand-off on the call path).
//! The writer takes the pipe out of the shared state for the write, so no lock is held across
//! the system call; lines sent meanwhile queue, and the writer writes them too, many lines to
//! one `write`, before it puts the pipe back. What the pipe cannot take yet stays in a bounded
//! queue that a writer task drains as the pipe accepts it. A reader task frames stdout with the 4 MiB line cap
//! enforced while reading (a flood without newlines costs bounded memory and fails the
//! connection), skips non-JSON lines, and hands every message to the client's [`Inbound`].
//! When stdout ends, the reader waits briefly for the process's exit status so that pending
//! calls fail with the real reason (`exited with status 1 (stderr: …)`).
//!
//! The transport does not spawn or own the process: it takes its pipes as an async writer and
//! reader, and its exit as a future ([`StdioIo`]). In the daemon, `revka-actors`' connection
//! actor builds these from the process actor's `ChildIo`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::client::{Inbound, Outgoing, Transport, TransportError};
use crate::framing::{FramingError, LineReader};

/// The stdout line cap (seed 002: "each response line is capped at 4 MB").
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// Messages queued for stdin before sends fail with backpressure.
pub const QUEUE: usize = 4096;
/// Queued bytes the writer task gathers into one write.
const GATHER: usize = 64 * 1024;
/// How long to wait for the exit status after stdout closes.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// The child's stdin, as the transport writes it.
pub type StdinPipe = Box<dyn AsyncWrite + Send + Unpin>;

/// The child's stdout, as the transport reads it.
pub type StdoutPipe = Box<dyn AsyncRead + Send + Unpin>;

/// What a stdio transport runs over: a started child's pipes, and how to learn how it ended.
pub struct StdioIo {
    /// The child's pid (named when it closes its stdout without exiting).
    pub pid: u32,
    /// Its stdin.
    pub stdin: StdinPipe,
    /// Its stdout.
    pub stdout: StdoutPipe,
    /// Resolves once the child has exited, to how it ended as errors name it (`exited with
    /// status 1 (stderr: …)`); to `None` if that will never be known (its owner is gone). The
    /// transport awaits it briefly when stdout ends or stdin breaks, so that pending calls fail
    /// with the real reason.
    pub exit: BoxFuture<'static, Option<String>>,
}

impl std::fmt::Debug for StdioIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioIo")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// A running stdio transport.
#[derive(Debug)]
pub struct StdioTransport {
    stdin: Arc<Stdin>,
    stop: CancellationToken,
}

/// The child's stdin, shared by senders (direct writes) and the writer task (the queue).
///
/// Whoever writes takes the pipe out of the state for the write and puts it back after, so
/// the lock is never held across a `write` (two workers sending at once would otherwise
/// queue on it in the kernel). While the pipe is out, senders only queue: its holder writes
/// what they queued before putting it back, or hands it to the writer task.
#[derive(Debug)]
struct Stdin {
    state: Mutex<StdinState>,
    /// Wakes the writer task when lines are left for it.
    queued: Notify,
}

struct StdinState {
    /// The pipe, when nobody is writing to it; `None` while a write is under way, and for good
    /// once `failed` is set.
    pipe: Option<StdinPipe>,
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

impl std::fmt::Debug for StdinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinState")
            .field("pipe", &self.pipe.is_some())
            .field("queue", &self.queue.len())
            .field("written", &self.written)
            .field("failed", &self.failed)
            .field("broken", &self.broken)
            .finish()
    }
}

/// Batches a sender writes itself, after its own line, before it leaves the rest of the queue
/// to the writer task (its call should not pay for everybody else's).
const SENDER_ROUNDS: usize = 4;

impl Stdin {
    fn lock(&self) -> MutexGuard<'_, StdinState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `line`, and writes it now (with whatever queued behind it meanwhile) if nobody
    /// else is writing and nothing waits ahead of it.
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
        let first = state.queue.is_empty();
        state.queue.push_back(line);
        if !first {
            // Lines wait ahead: the writer task (or the pipe's holder) has them and this one.
            return Ok(());
        }
        let Some(pipe) = state.pipe.take() else {
            // Somebody is writing: it writes this line too before putting the pipe back.
            return Ok(());
        };
        // A no-op waker: if the pipe is full, the writer task polls again with its own.
        let mut cx = Context::from_waker(Waker::noop());
        let _ = self.write_out(state, pipe, &mut cx, SENDER_ROUNDS);
        Ok(())
    }

    /// The writer task's turn: writes queued lines until the queue is empty or the pipe is
    /// full (then `Pending`, with `cx` registered for writability). `Ready(Ok)` also when
    /// somebody else holds the pipe: it hands over what it leaves.
    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let mut state = self.lock();
        match state.pipe.take() {
            Some(pipe) => self.write_out(state, pipe, cx, usize::MAX),
            None => Poll::Ready(match &state.failed {
                Some(reason) => Err(reason.clone()),
                None => Ok(()),
            }),
        }
    }

    /// Writes queued lines with `pipe` taken out of `state`, the lock released around each
    /// write, at most `rounds` writes; then puts the pipe back. Up to 64 lines or 64 KiB go in
    /// one write. What is left when the rounds run out, or the pipe is full and `cx` is not the
    /// writer task's, is handed to the writer task.
    fn write_out<'a>(
        &'a self,
        mut state: MutexGuard<'a, StdinState>,
        mut pipe: StdinPipe,
        cx: &mut Context<'_>,
        mut rounds: usize,
    ) -> Poll<Result<(), String>> {
        let own_task = rounds == usize::MAX;
        loop {
            if let Some(reason) = &state.failed {
                // Closed while we wrote: dropping the pipe closes it.
                return Poll::Ready(Err(reason.clone()));
            }
            if state.queue.is_empty() {
                state.pipe = Some(pipe);
                return Poll::Ready(Ok(()));
            }
            if rounds == 0 {
                state.pipe = Some(pipe);
                drop(state);
                self.queued.notify_one();
                return Poll::Ready(Ok(()));
            }
            rounds = rounds.saturating_sub(1);
            // Take a batch out, so the lock is free while the kernel copies it.
            let mut total = state.queue[0].len() - state.written;
            let mut take = 1;
            while take < state.queue.len() && take < 64 && total < GATHER {
                total += state.queue[take].len();
                take += 1;
            }
            let mut batch: Vec<Vec<u8>> = state.queue.drain(..take).collect();
            let mut offset = std::mem::take(&mut state.written);
            drop(state);
            let result = if let [line] = &batch[..] {
                Pin::new(&mut pipe).poll_write(cx, &line[offset..])
            } else {
                let slices: Vec<std::io::IoSlice<'_>> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, line)| {
                        std::io::IoSlice::new(if i == 0 { &line[offset..] } else { line })
                    })
                    .collect();
                Pin::new(&mut pipe).poll_write_vectored(cx, &slices)
            };
            state = self.lock();
            let pending = result.is_pending();
            let written = match result {
                Poll::Ready(Ok(0)) => Err("pipe closed".to_owned()),
                Poll::Ready(Ok(n)) => Ok(n),
                Poll::Ready(Err(e)) => Err(e.to_string()),
                Poll::Pending => Ok(0),
            };
            let mut n = match written {
                Ok(n) => n,
                Err(e) => {
                    // A broken pipe is the symptom of a dead process: the writer task closes
                    // the connection with the process's exit as the reason (what every pending
                    // request then fails with).
                    let reason = format!("writing to the server's stdin failed: {e}");
                    if state.failed.is_none() {
                        state.failed = Some(reason.clone());
                        state.broken = true;
                    }
                    drop(state);
                    if !own_task {
                        self.queued.notify_one();
                    }
                    return Poll::Ready(Err(reason));
                }
            };
            // Retire the lines written in full; the rest goes back to the front, in order,
            // ahead of anything queued meanwhile.
            let mut done = 0;
            while done < batch.len() && n >= batch[done].len() - offset {
                n -= batch[done].len() - offset;
                offset = 0;
                done += 1;
            }
            if done < batch.len() {
                offset += n;
                for line in batch.drain(done..).rev() {
                    state.queue.push_front(line);
                }
                state.written = offset;
            }
            if pending {
                state.pipe = Some(pipe);
                drop(state);
                if !own_task {
                    self.queued.notify_one();
                }
                return Poll::Pending;
            }
        }
    }

    /// Stops all writing; returns the pipe for a polite close, if it is still usable. (A
    /// sender writing at this moment finds `failed` set and drops the pipe instead.)
    fn take_pipe(&self, reason: &str) -> Option<StdinPipe> {
        let mut state = self.lock();
        state.failed.get_or_insert_with(|| reason.to_owned());
        state.queue.clear();
        state.pipe.take()
    }
}

impl StdioTransport {
    /// Starts the reader and writer tasks over the child's pipes.
    pub fn start(io: StdioIo, inbound: Inbound) -> Arc<Self> {
        let stop = CancellationToken::new();
        let StdioIo {
            stdin,
            stdout,
            exit,
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
            exit: exit.shared(),
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
    exit: Shared<BoxFuture<'static, Option<String>>>,
    pid: u32,
}

impl Closer {
    async fn close(self, symptom: Option<String>) {
        let exit = tokio::time::timeout(EXIT_GRACE, self.exit)
            .await
            .ok()
            .flatten();
        let reason = match (exit, symptom) {
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
    stdout: impl AsyncRead + Unpin,
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
    use std::time::Duration;

    use super::{QUEUE, StdioIo, StdioTransport};
    use crate::client::{CallOptions, Inbound, McpClient, Outgoing, Transport, TransportError};

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
        let (io, exit_tx) = child_io(&mut child);
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
            exit_tx.send_replace(Some("exited with status 3".to_owned()));
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

    /// The pipes of `child` as the transport takes them, and the sender of how it exited (as
    /// the process actor reports it in the daemon).
    fn child_io(
        child: &mut tokio::process::Child,
    ) -> (StdioIo, tokio::sync::watch::Sender<Option<String>>) {
        let (exit_tx, mut exit) = tokio::sync::watch::channel(None);
        let io = StdioIo {
            pid: child.id().unwrap(),
            stdin: Box::new(child.stdin.take().unwrap()),
            stdout: Box::new(child.stdout.take().unwrap()),
            exit: Box::pin(async move { exit.wait_for(Option::is_some).await.ok()?.clone() }),
        };
        (io, exit_tx)
    }

    /// Senders on both workers at once, with lines small and larger than the pipe's buffer
    /// (partial writes, a full pipe, the writer task taking over): every line reaches the
    /// server whole, each sender's lines in the order sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_never_interleave_or_reorder_lines() {
        const SENDERS: usize = 4;
        const LINES: usize = 300;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("stdin.log");
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cat > '{}'", out.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (io, _exit_tx) = child_io(&mut child);
        let (inbound, _events) = Inbound::new("s", Vec::new());
        let transport = StdioTransport::start(io, inbound);
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let transport = transport.clone();
                tokio::spawn(async move {
                    for i in 0..LINES {
                        // Every 50th line is 100 KiB: more than a pipe holds.
                        let pad = if i % 50 == 7 { 100 * 1024 } else { i % 200 };
                        let line = format!(r#"{{"s":{s},"i":{i},"pad":"{}"}}"#, "x".repeat(pad));
                        loop {
                            match transport.send(Outgoing::Notification {
                                line: line.clone().into_bytes(),
                            }) {
                                Ok(()) => break,
                                Err(TransportError::Backpressure(n)) => {
                                    assert_eq!(n, QUEUE);
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                }
                                Err(e) => panic!("send failed: {e}"),
                            }
                        }
                        if i % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.await.unwrap();
        }
        // Everything is written once the queue is empty and nobody holds the pipe.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            {
                let state = transport.stdin.lock();
                if state.queue.is_empty() && state.pipe.is_some() {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stdin never drained"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        transport.close();
        tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("cat saw the end of its stdin")
            .unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        let mut next = [0usize; SENDERS];
        for line in written.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a line was torn ({e}): {:.80}", line));
            let s = v["s"].as_u64().unwrap() as usize;
            assert_eq!(
                v["i"].as_u64().unwrap() as usize,
                next[s],
                "sender {s} out of order"
            );
            next[s] += 1;
        }
        assert_eq!(next, [LINES; SENDERS]);
    }
}
