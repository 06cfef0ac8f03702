//! The bridge's main loop: stdin lines in, one task per message out to the daemon. Part of
//! [`super`].
//!
//! The loop reads a line, classifies it ([`parse_message`]) and hands it on without waiting
//! for the daemon: a request to its own task ([`super::answer`]), registered under its id
//! ([`Id::key`]) so that `notifications/cancelled` can abort it; a notification or the client's
//! answer to a server request to a short task that POSTs it. The loop also runs the keeper,
//! which reconnects when a link's own tasks report it lost.
//!
//! **Order.** A notification's POST is accepted before any later message is sent (a request
//! waits for the notifications before it, never for other requests), as on a stdio pipe;
//! `notifications/cancelled` is neither held back nor holds anything back.
//!
//! **Stopping.** Stdin closing, stdout closing, or the shutdown future all end the loop the
//! same way: every task is aborted and awaited (which drops each HTTP request in flight, so
//! the daemon cancels the calls), the session is ended, and what was queued for stdout is
//! written (1 s at most).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use revka_mcp::framing::{DEFAULT_MAX_LINE_LEN, FramingError, LineReader};
use revka_mcp::jsonrpc::{ErrorObject, Id, Incoming, ParseError, Response, parse_message};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::answer::{Capped, Reply, RequestTask, read_capped};
use super::http1::PostError;
use super::io::{self, Input, Output, OutputStream};
use super::upstream::{BridgeConfig, Purpose, Upstream};

/// How long what is queued for stdout may take to be written once the bridge stops.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// The stdio bridge; see the [module documentation](self) and [`super`].
#[derive(Debug)]
pub(crate) struct Bridge;

impl Bridge {
    /// Relays `input` (the client's stdin) to the daemon and the answers to `output` until
    /// `input` ends, `output` closes or `shutdown` resolves.
    pub(crate) async fn run(
        config: BridgeConfig,
        input: Input,
        output: OutputStream,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let (out, rx) = Output::new();
        // Stdout closing and the shutdown future both cancel `gone`: the loop below polls one
        // token, not the signal streams, each time it wakes.
        let gone = CancellationToken::new();
        let stop = gone.clone();
        let signals = tokio::spawn(async move {
            tokio::select! {
                () = shutdown => stop.cancel(),
                () = stop.cancelled() => {}
            }
        });
        let writer = tokio::spawn(io::write_lines(output, rx, gone.clone()));
        let (up, lost) = Upstream::new(config, out.clone());
        let up = Arc::new(up);
        let mut relay = Relay {
            up: up.clone(),
            out,
            inflight: Arc::default(),
            tasks: JoinSet::new(),
            gate: None,
            serial: 0,
        };
        let mut reader = LineReader::new(input, DEFAULT_MAX_LINE_LEN);
        // Boxed, not pinned on the stack: it holds the upstream (and with it a sender of the
        // output queue), so it must be dropped before the writer can finish.
        let mut keeper = Box::pin(keeper(up.clone(), lost));
        loop {
            tokio::select! {
                line = reader.next_line() => match line {
                    Ok(Some(line)) => relay.handle(line).await,
                    Ok(None) => break,
                    Err(FramingError::LineTooLong { limit }) => {
                        let message = format!("message longer than the limit of {limit} bytes");
                        relay.out.send(error_line(None, ErrorObject::INVALID_REQUEST, &message)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read stdin");
                        break;
                    }
                },
                Some(_) = relay.tasks.join_next(), if !relay.tasks.is_empty() => {}
                () = &mut keeper => {}
                () = gone.cancelled() => break,
            }
        }
        signals.abort();
        relay.tasks.abort_all();
        while relay.tasks.join_next().await.is_some() {}
        drop(relay);
        up.close().await;
        drop(up);
        drop(keeper);
        let mut writer = writer;
        if tokio::time::timeout(FINAL_FLUSH, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
}

/// Reconnects when a link's own tasks report it lost, if a look at the daemon confirms it.
async fn keeper(up: Arc<Upstream>, mut lost: mpsc::UnboundedReceiver<u64>) {
    while let Some(generation) = lost.recv().await {
        let Some(link) = up.current().filter(|l| l.generation == generation) else {
            continue;
        };
        if !up.check(&link).await {
            let _ = up.reconnect(generation).await;
        }
    }
    std::future::pending().await
}

/// A request in flight, by its id's key.
#[derive(Debug)]
struct Entry {
    /// Tells this request's entry from a later one with the same id.
    serial: u64,
    /// Its task; set right after it is spawned.
    abort: Option<AbortHandle>,
}

/// The requests in flight. (FxHash: the keys are the client's own ids, and a client that
/// chose colliding ids would only slow its own bridge.)
type InFlight = Arc<Mutex<IdMap>>;
type IdMap = HashMap<String, Entry, rustc_hash::FxBuildHasher>;

fn lock(map: &InFlight) -> std::sync::MutexGuard<'_, IdMap> {
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes a request's entry when its task ends, however it ends.
#[derive(Debug)]
pub(super) struct EntryGuard {
    map: InFlight,
    key: String,
    serial: u64,
}

impl Drop for EntryGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        if map.get(&self.key).is_some_and(|e| e.serial == self.serial) {
            map.remove(&self.key);
        }
    }
}

/// The main loop's state.
pub(super) struct Relay {
    pub(super) up: Arc<Upstream>,
    pub(super) out: Output,
    inflight: InFlight,
    /// Every task of a message; aborted when the bridge stops.
    tasks: JoinSet<()>,
    /// Released when the last notification's POST is accepted: later messages wait for it.
    gate: Option<CancellationToken>,
    /// Numbers the requests (see [`Entry::serial`]).
    serial: u64,
}

impl Relay {
    /// Handles one line from stdin.
    async fn handle(&mut self, line: &[u8]) {
        if let Some(light) = super::scan::light(line) {
            // An id the scan read but that makes no `Id` (a string with a lone surrogate
            // escape) is the full parse's to refuse.
            match (light.id, light.id()) {
                (Some(_), Some(id)) => {
                    let call = light.method == "tools/call";
                    let copy = Bytes::copy_from_slice(line);
                    return self
                        .request(copy, id, Purpose::Other, call, Reply::Direct)
                        .await;
                }
                (None, _) => {
                    let copy = Bytes::copy_from_slice(line);
                    return self.notification(copy, light.method, None);
                }
                (Some(_), None) => {}
            }
        }
        match parse_message(line) {
            Ok(message) => {
                self.dispatch(Bytes::copy_from_slice(line), message, Reply::Direct)
                    .await
            }
            Err(ParseError::NotAnObject { kind: "array" }) => {
                super::batch::handle(self, line).await;
            }
            Err(e) => {
                self.out
                    .send(error_line(None, e.code(), &e.to_string()))
                    .await;
            }
        }
    }

    /// Sends one parsed message on its way; a request's answer goes to `reply`.
    pub(super) async fn dispatch(&mut self, line: Bytes, message: Incoming, reply: Reply) {
        match message {
            Incoming::Request(request) => {
                let purpose = if request.method == "initialize" {
                    let name = client_name(request.params.as_deref());
                    self.up.remember_hello(&line, name.as_deref());
                    Purpose::Initialize
                } else {
                    Purpose::Other
                };
                let call = request.method == "tools/call";
                self.request(line, request.id, purpose, call, reply).await;
            }
            Incoming::Notification(note) => {
                self.notification(line, note.method.as_ref(), note.params.as_deref())
            }
            // The client's answer to a server request: the daemon routes it.
            Incoming::Response(_) => self.one_way(line, false, false),
        }
    }

    /// Starts a request's task, registered under its id.
    async fn request(&mut self, line: Bytes, id: Id, purpose: Purpose, call: bool, reply: Reply) {
        let key = id.key().into_owned();
        self.serial += 1;
        let serial = self.serial;
        let duplicate = {
            let mut map = lock(&self.inflight);
            let duplicate = map.contains_key(&key);
            if !duplicate {
                let entry = Entry {
                    serial,
                    abort: None,
                };
                map.insert(key.clone(), entry);
            }
            duplicate
        };
        if duplicate {
            let message = format!("request id {id} is already in use by a request in flight");
            let mut reply = reply;
            let line = error_line(Some(&id), ErrorObject::INVALID_REQUEST, &message);
            reply.answer(&self.out, line).await;
            return;
        }
        let task = RequestTask {
            up: self.up.clone(),
            out: self.out.clone(),
            id,
            line,
            purpose,
            call,
            reply,
            gate: self.pending_gate(),
            _entry: EntryGuard {
                map: self.inflight.clone(),
                key: key.clone(),
                serial,
            },
        };
        // Boxed: the task's future is large, and the spawn would copy it several times.
        let abort = self.tasks.spawn(Box::pin(task.run()));
        if let Some(entry) = lock(&self.inflight)
            .get_mut(&key)
            .filter(|e| e.serial == serial)
        {
            entry.abort = Some(abort);
        }
    }

    /// The gate of the last notification, if its POST is still pending.
    fn pending_gate(&self) -> Option<CancellationToken> {
        self.gate.clone().filter(|g| !g.is_cancelled())
    }

    /// Relays a notification (see the [module documentation](self) for its order).
    fn notification(&mut self, line: Bytes, method: &str, params: Option<&RawValue>) {
        match method {
            "notifications/cancelled" => {
                if let Some(id) = params.and_then(cancelled_request_id) {
                    self.cancel(&id);
                }
                self.one_way(line, false, false);
            }
            // A new session gets it from the handshake replay: not retried.
            "notifications/initialized" => self.one_way(line, true, false),
            _ => self.one_way(line, true, true),
        }
    }

    /// Aborts the request `id` still in flight: its HTTP request is dropped, and it is not
    /// answered (the client gave up on it).
    fn cancel(&mut self, id: &Id) {
        let entry = lock(&self.inflight).remove(&*id.key());
        if let Some(abort) = entry.and_then(|e| e.abort) {
            tracing::debug!(%id, "the client cancelled a request");
            abort.abort();
        }
    }

    /// POSTs a message that gets no answer. `gated`: later messages wait until it is
    /// accepted. `retry`: once more on a new session if the daemon restarted.
    pub(super) fn one_way(&mut self, line: Bytes, gated: bool, retry: bool) {
        let wait = if gated {
            let done = CancellationToken::new();
            let previous = self.gate.replace(done.clone());
            Some((previous.filter(|g| !g.is_cancelled()), done.drop_guard()))
        } else {
            None
        };
        let up = self.up.clone();
        self.tasks.spawn(async move {
            let (previous, _done): (Option<CancellationToken>, Option<DropGuard>) = match wait {
                Some((previous, done)) => (previous, Some(done)),
                None => (None, None),
            };
            if let Some(previous) = previous {
                previous.cancelled().await;
            }
            send_one_way(&up, line, retry).await;
        });
    }
}

/// POSTs a notification or response; on a lost daemon, once more after reconnecting if
/// `retry`. Failures are logged: nobody waits for an answer.
async fn send_one_way(up: &Arc<Upstream>, line: Bytes, retry: bool) {
    let mut link = match up.link(Purpose::Other).await {
        Ok(link) => link,
        Err(e) => {
            tracing::debug!(error = %e, "a notification was dropped: no daemon");
            return;
        }
    };
    for attempt in 0..2 {
        match up.post(&link, line.clone()).await {
            Ok(answer) if answer.status == reqwest::StatusCode::UNAUTHORIZED => {
                answer.drain().await
            }
            Ok(answer) if answer.status.is_success() => return answer.drain().await,
            Ok(answer) => {
                let status = answer.status;
                let body = match read_capped(answer, 64 * 1024).await {
                    Ok(body) => String::from_utf8_lossy(&body).chars().take(200).collect(),
                    Err(Capped::TooLarge | Capped::Broken(_)) => String::new(),
                };
                tracing::warn!(%status, answer = %body, "the daemon refused a notification");
                return;
            }
            Err(PostError::Unreached(_)) => {}
            Err(PostError::Broken(e)) => {
                tracing::debug!(error = %e, "a notification may not have reached the daemon");
                return;
            }
        }
        if !retry || attempt == 1 {
            return;
        }
        link = match up.reconnect(link.generation).await {
            Ok(link) => link,
            Err(_) => return,
        };
    }
}

/// A JSON-RPC error response as one line; `id` is `null` when `None`.
pub(super) fn error_line(id: Option<&Id>, code: i64, message: &str) -> Bytes {
    Bytes::from(Response::error(id.cloned(), ErrorObject::new(code, message)).to_line())
}

/// The `clientInfo.name` of `initialize` params.
fn client_name(params: Option<&RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct Hello {
        #[serde(rename = "clientInfo")]
        client_info: Option<Info>,
    }
    #[derive(Deserialize)]
    struct Info {
        name: Option<String>,
    }
    let hello: Hello = serde_json::from_str(params?.get()).ok()?;
    hello.client_info?.name
}

/// The `requestId` of `notifications/cancelled` params.
fn cancelled_request_id(params: &RawValue) -> Option<Id> {
    #[derive(Deserialize)]
    struct Cancelled<'a> {
        #[serde(borrow, default, rename = "requestId")]
        request_id: Option<&'a RawValue>,
    }
    let cancelled: Cancelled<'_> = serde_json::from_str(params.get()).ok()?;
    Id::from_json(cancelled.request_id?)
}
