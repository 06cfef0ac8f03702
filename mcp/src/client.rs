//! The MCP client core, shared by every transport.
//!
//! An [`McpClient`] sends requests through a [`Transport`] and matches answers to callers by
//! JSON-RPC id through a concurrent pending map: any number of calls run at once on one
//! connection, no lock is held across a call, and no actor mailbox is on the call path.
//!
//! The transport feeds everything the server sends to an [`Inbound`], which resolves pending
//! calls, routes `notifications/progress` to the caller's sink, and reports the
//! `*/list_changed` notifications (tools, resources, prompts; coalesced) and the end of the
//! connection as [`ClientEvent`]s to the owning connection actor.
//!
//! The server's own requests and its other notifications are relayed: `ping` is answered at
//! once; a request or `notifications/message` that relates to one of our calls ([`Relation`])
//! goes to that call's [`CallRelay`] (the session that made it), anything else to the
//! connection's [`Peer`]. Answers that take time (a person answering an elicitation) are sent
//! through the transport when ready, at most [`MAX_SERVER_REQUESTS`] at once; the server's
//! `notifications/cancelled` abandons one, and the connection closing abandons them all.
//!
//! A call ends in exactly one way: its answer, a timeout, the connection closing (every pending
//! call fails at once with the reason), or the caller dropping the future. Timeouts and drops
//! send `notifications/cancelled` upstream (pings excepted) and forget the pending entry.
//!
//! Every response, and every progress notification of a pending call, also marks the server
//! as heard from: the connection's liveness probe pings only a server it has not heard from
//! for a whole interval.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::jsonrpc::{ErrorObject, Id, Incoming, Notification, Request, Response, parse_message};
use crate::protocol::{ProgressUpdate, Root, to_raw};

/// Receives a call's progress, already re-keyed to the caller's token by whoever built it.
pub type ProgressSink = Arc<dyn Fn(ProgressUpdate) + Send + Sync>;

/// A message for the transport to deliver.
#[derive(Debug)]
pub enum Outgoing {
    /// A request; its answer comes back through [`Inbound::dispatch`].
    Request {
        /// Our id (to fail the call if delivery fails).
        id: u64,
        /// The serialised message, one line, no newline.
        line: Vec<u8>,
    },
    /// A notification.
    Notification {
        /// The serialised message.
        line: Vec<u8>,
    },
    /// A reply to a request from the server.
    Response {
        /// The serialised message.
        line: Vec<u8>,
    },
}

impl Outgoing {
    /// The serialised message.
    pub fn line(&self) -> &[u8] {
        match self {
            Self::Request { line, .. } | Self::Notification { line } | Self::Response { line } => {
                line
            }
        }
    }
}

/// Why a transport could not take a message.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection is gone.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The server is not reading its input fast enough.
    #[error("server is not accepting input (queue of {0} messages full)")]
    Backpressure(usize),
    /// The server answered with an HTTP error status.
    #[error("HTTP {status} from {url}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The URL requested.
        url: String,
        /// The start of the response body (at most about 500 bytes), or `(empty body)`.
        body: String,
    },
    /// The network failed: connection refused, reset, timed out. The message names the URL.
    #[error("{0}")]
    Io(String),
    /// The server's answer broke the transport's rules: an unexpected content type, a body over
    /// the size cap, a stream that ended before the answer. The message names the URL.
    #[error("{0}")]
    Protocol(String),
    /// The server demands authorization that could not be had (OAuth): the message says why
    /// and what to do (``run `revka mcp login NAME` ``). A restart does not help.
    #[error("{0}")]
    Unauthorized(String),
    /// The server does not speak Streamable HTTP: it answered a POST with a legacy SSE stream.
    #[error("server does not speak Streamable HTTP: {0}")]
    NotStreamable(String),
}

/// Delivers messages to a server. `send` only enqueues: it never waits on the network.
pub trait Transport: Send + Sync + 'static {
    /// Enqueues a message for delivery.
    fn send(&self, msg: Outgoing) -> Result<(), TransportError>;
    /// Shuts the transport down (no more sends; background tasks stop).
    fn close(&self);
    /// Called by the connection once `initialize` has answered, with the negotiated protocol
    /// version (HTTP transports send it on every later request and open their server stream).
    fn negotiated(&self, _protocol_version: &str) {}
}

/// What a connection actor hears from its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server announced `notifications/tools/list_changed`.
    ToolsChanged,
    /// The server announced `notifications/resources/list_changed`.
    ResourcesChanged,
    /// The server announced `notifications/prompts/list_changed`.
    PromptsChanged,
    /// The connection ended.
    Closed(String),
}

/// The answer to a request a server sent us: its `result`, or the error to send back.
pub type PeerAnswer = BoxFuture<'static, Result<Box<RawValue>, ErrorObject>>;

/// Where the server-to-client traffic of one call goes: the session that made the call. Set
/// per call in [`CallOptions::relay`]; a request or a `notifications/message` the server sends
/// while serving that call goes here (see [`Relation`] for how "while serving" is told).
pub trait CallRelay: Send + Sync + 'static {
    /// Who made the call (a session id). Calls of the same owner may share a relayed request
    /// when the transport cannot tell them apart.
    fn owner(&self) -> &str;
    /// A request the server sent while serving the call (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`, ...). The answer goes back under the server's id.
    fn request(&self, method: &str, params: Option<Box<RawValue>>) -> PeerAnswer;
    /// A `notifications/message` the server sent while serving the call (the only
    /// notification relayed per call). Called on the transport's task: must not block.
    fn notification(&self, method: &str, params: Option<&RawValue>);
}

/// Where a connection's server-to-client traffic goes when no call relates to it
/// ([`Inbound::set_peer`]). Without one, `roots/list` is answered from the client's roots,
/// `sampling/createMessage` and `elicitation/create` are refused, and notifications are logged.
pub trait Peer: Send + Sync + 'static {
    /// A request the server sent that no call relates to (`ping` is answered by the client
    /// itself).
    fn request(&self, server: &str, method: &str, params: Option<Box<RawValue>>) -> PeerAnswer;
    /// A notification the client does not handle itself (anything but progress,
    /// `*/list_changed` and `notifications/cancelled`), when no call relates to it. Called on
    /// the transport's task: must not block.
    fn notification(&self, server: &str, method: &str, params: Option<&RawValue>);
    /// A server request was answered (by a call's relay or by this peer): its method, whether
    /// the answer was a result, and how long it took. For metrics; the default does nothing.
    fn answered(&self, _server: &str, _method: &str, _outcome: Outcome, _took: Duration) {}
    /// A log message of the server was dropped by the flood limit ([`LOG_PER_SEC`]). For
    /// metrics; the default does nothing.
    fn log_dropped(&self, _server: &str) {}
    /// What the connection may offer the server in `initialize`: only what this peer (or the
    /// calls' relays) can answer. The default offers nothing.
    fn offers(&self) -> crate::protocol::Offers {
        crate::protocol::Offers::NONE
    }
}

/// How a server request ended ([`Peer::answered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with a result.
    Result,
    /// Answered with an error (refused, declined by the transport, timed out downstream).
    Error,
    /// The server cancelled it (`notifications/cancelled`) or the connection ended first.
    Cancelled,
}

/// Which of our requests a message from the server relates to. Streamable HTTP knows: a
/// message on a POST's event stream relates to that POST's request. Over stdio and legacy SSE
/// every message shares one stream, so the relation is inferred: the calls pending with a
/// relay, if they all belong to one owner (the most recent of them is taken); none when calls
/// of several owners are pending (a request is then refused rather than shown to the wrong
/// session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// It came on the stream of our request with this id.
    Call(u64),
    /// The transport cannot tell: infer it from the pending calls.
    Infer,
    /// It relates to no request (Streamable HTTP's GET stream).
    None,
}

/// Server requests answered at once: past this many in flight on a connection, more are
/// refused with an error.
pub const MAX_SERVER_REQUESTS: usize = 64;

/// Log messages (`notifications/message`) a server may send at once before it is limited.
pub const LOG_BURST: f64 = 200.0;
/// Log messages a server may send per second, past the burst. The rest are dropped before
/// they are routed (to a call's client or to the peer), counted ([`McpClient::dropped_logs`])
/// and reported to the peer ([`Peer::log_dropped`]).
pub const LOG_PER_SEC: f64 = 100.0;

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No answer within the timeout (`notifications/cancelled` was sent).
    #[error("server `{server}` did not answer {method} within {}s", after.as_secs_f64())]
    Timeout {
        /// The server.
        server: String,
        /// The method called.
        method: String,
        /// The timeout.
        after: Duration,
    },
    /// The connection closed before the answer.
    #[error("server `{server}` failed: {reason}")]
    Closed {
        /// The server.
        server: String,
        /// Why it closed.
        reason: String,
    },
    /// The server answered with a JSON-RPC error.
    #[error("server `{server}` returned error {}: {}", error.code, error.message)]
    Rpc {
        /// The server.
        server: String,
        /// The error it sent.
        error: ErrorObject,
    },
    /// The message could not be sent.
    #[error("server `{server}`: {source}")]
    Transport {
        /// The server.
        server: String,
        /// The transport's reason.
        source: TransportError,
    },
}

struct Pending {
    tx: oneshot::Sender<Result<Box<RawValue>, CallError>>,
    progress: Option<ProgressSink>,
    /// Signalled on each progress notification (timeout reset), when enabled.
    on_progress: Option<Arc<Notify>>,
    /// Where the server's requests and log messages about this call go.
    relay: Option<Arc<dyn CallRelay>>,
}

struct Shared {
    server: Arc<str>,
    /// The supervision path of the connection (`root/mcp_servers/mcp:<name>`), on every log line.
    path: Arc<str>,
    /// Keyed by our own request ids: FxHash, not SipHash (no key comes from outside).
    pending: DashMap<u64, Pending, rustc_hash::FxBuildHasher>,
    closed: Mutex<Option<String>>,
    is_closed: AtomicBool,
    roots: Vec<Root>,
    events: mpsc::UnboundedSender<ClientEvent>,
    /// Coalesce list_changed storms into one pending event each.
    tools_changed_queued: AtomicBool,
    resources_changed_queued: AtomicBool,
    prompts_changed_queued: AtomicBool,
    /// Where requests and notifications no call relates to go.
    peer: OnceLock<Arc<dyn Peer>>,
    /// The transport, to answer server requests that take time (set by [`McpClient::new`]).
    responder: OnceLock<Weak<dyn Transport>>,
    /// Server requests being answered, by the key of their id: `notifications/cancelled` from
    /// the server aborts one.
    server_requests: DashMap<String, (String, tokio::task::AbortHandle)>,
    /// What became of the server's requests on this connection.
    relayed: RelayCounters,
    /// The log-message bucket: tokens, and when it was last filled.
    log_bucket: Mutex<(f64, Instant)>,
    dropped_logs: AtomicU64,
    invalid_lines: AtomicU64,
    /// The start of the last line that was not JSON-RPC (for introspection and errors).
    last_invalid: Mutex<Option<String>>,
    /// Set by every response and by every progress notification of a pending call: the
    /// server's request path is alive. The liveness probe takes it once per interval and pings
    /// only when it was not set. Costs an answer one load (and a store once per interval),
    /// no timer and no allocation.
    heard: AtomicBool,
}

impl Shared {
    /// Marks the server as heard from. Read first: on a busy server the flag is set nearly
    /// always (the probe clears it once per interval), so the cache line it shares with the
    /// fields every call reads is not written, and not bounced between cores, per answer.
    fn heard(&self) {
        if !self.heard.load(Ordering::Relaxed) {
            self.heard.store(true, Ordering::Relaxed);
        }
    }
}

/// The receiving half of a client: transports hand it every message the server sends.
#[derive(Clone)]
pub struct Inbound {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("server", &self.shared.server)
            .finish_non_exhaustive()
    }
}

impl Inbound {
    /// A new inbound half for `server`, and the stream of its events. Its log lines carry the
    /// server's name as `path`; supervised connections use [`Inbound::at`].
    pub fn new(server: &str, roots: Vec<Root>) -> (Self, mpsc::UnboundedReceiver<ClientEvent>) {
        Self::at(server, server, roots)
    }

    /// A new inbound half for `server`, whose connection actor lives at the supervision `path`
    /// (carried by every log line about the server), and the stream of its events.
    pub fn at(
        server: &str,
        path: &str,
        roots: Vec<Root>,
    ) -> (Self, mpsc::UnboundedReceiver<ClientEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            server: server.into(),
            path: path.into(),
            pending: DashMap::with_hasher(rustc_hash::FxBuildHasher),
            closed: Mutex::new(None),
            is_closed: AtomicBool::new(false),
            roots,
            events,
            tools_changed_queued: AtomicBool::new(false),
            resources_changed_queued: AtomicBool::new(false),
            prompts_changed_queued: AtomicBool::new(false),
            peer: OnceLock::new(),
            responder: OnceLock::new(),
            server_requests: DashMap::new(),
            relayed: RelayCounters::default(),
            log_bucket: Mutex::new((LOG_BURST, Instant::now())),
            dropped_logs: AtomicU64::new(0),
            invalid_lines: AtomicU64::new(0),
            last_invalid: Mutex::new(None),
            heard: AtomicBool::new(false),
        });
        (Self { shared }, rx)
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        &self.shared.server
    }

    /// The supervision path of the server's connection.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// Sends what no call relates to (see [`Peer`]) to `peer`. Set once, before the handshake;
    /// later calls are ignored.
    pub fn set_peer(&self, peer: Arc<dyn Peer>) {
        let _ = self.shared.peer.set(peer);
    }

    /// Handles one line from a stream shared by every message (stdio): the relation of a
    /// server message to our calls is inferred ([`Relation::Infer`]). Returns a reply to send
    /// back, if any. Lines that are not JSON-RPC are logged and skipped.
    pub fn dispatch_line(&self, line: &[u8]) -> Option<Outgoing> {
        match parse_message(line) {
            Ok(msg) => self.dispatch(msg),
            Err(e) => {
                let n = self.shared.invalid_lines.fetch_add(1, Ordering::Relaxed);
                let preview: String = String::from_utf8_lossy(&line[..line.len().min(120)]).into();
                *self
                    .shared
                    .last_invalid
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(preview.clone());
                if n < 10 || n.is_power_of_two() {
                    tracing::warn!(server = %self.shared.server, path = %self.shared.path, error = %e, line = %preview, skipped = n + 1, "server wrote a non-JSON-RPC line; skipped");
                } else {
                    tracing::debug!(server = %self.shared.server, path = %self.shared.path, error = %e, "non-JSON-RPC line skipped");
                }
                None
            }
        }
    }

    /// Re-arms list_changed coalescing: call before re-reading the tool list, so a change that
    /// arrives during the re-read triggers another one.
    pub fn tools_changed_handled(&self) {
        self.shared
            .tools_changed_queued
            .store(false, Ordering::Release);
    }

    /// [`Inbound::tools_changed_handled`], for the resource list.
    pub fn resources_changed_handled(&self) {
        self.shared
            .resources_changed_queued
            .store(false, Ordering::Release);
    }

    /// [`Inbound::tools_changed_handled`], for the prompt list.
    pub fn prompts_changed_handled(&self) {
        self.shared
            .prompts_changed_queued
            .store(false, Ordering::Release);
    }

    /// Lines skipped because they were not JSON-RPC.
    pub fn invalid_lines(&self) -> u64 {
        self.shared.invalid_lines.load(Ordering::Relaxed)
    }

    /// Whether our request `id` still waits for its answer (a transport resuming a stream for
    /// it can stop once it does not).
    pub fn is_pending(&self, id: u64) -> bool {
        self.shared.pending.contains_key(&id)
    }

    /// The start (at most 120 bytes) of the last line skipped because it was not JSON-RPC.
    pub fn last_invalid_line(&self) -> Option<String> {
        self.shared
            .last_invalid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Handles one message from a stream shared by every message ([`Relation::Infer`]).
    /// Returns a reply to send back, if any.
    pub fn dispatch(&self, msg: Incoming) -> Option<Outgoing> {
        self.dispatch_on(msg, Relation::Infer)
    }

    /// Handles one message from the server, which relates to our requests as `relation` says.
    /// Returns a reply to send back at once, if any; an answer that takes time (a request
    /// relayed to a session's client) is sent through the transport when it is ready.
    pub fn dispatch_on(&self, msg: Incoming, relation: Relation) -> Option<Outgoing> {
        match msg {
            Incoming::Response(resp) => {
                self.resolve(resp);
                None
            }
            Incoming::Notification(n) => {
                self.notification(&n.method, n.params.as_deref(), relation);
                None
            }
            Incoming::Request(req) => self.server_request(req, relation),
        }
    }

    fn resolve(&self, resp: Response) {
        // Any response is a sign of life, an error or a late answer included.
        self.shared.heard();
        let Some(id) = resp.id.as_ref().and_then(Id::as_u64) else {
            tracing::warn!(server = %self.shared.server, path = %self.shared.path, id = ?resp.id, "response with an id we never sent; ignored");
            return;
        };
        match self.shared.pending.remove(&id) {
            Some((_, pending)) => {
                let result = resp.result.map_err(|error| CallError::Rpc {
                    server: self.shared.server.to_string(),
                    error,
                });
                let _ = pending.tx.send(result);
            }
            // A late answer to a call that timed out or was cancelled.
            None => {
                tracing::debug!(server = %self.shared.server, path = %self.shared.path, id, "late response ignored")
            }
        }
    }

    /// The relay of the call a server message relates to.
    fn related(&self, relation: Relation) -> Related {
        match relation {
            Relation::None => Related::None,
            Relation::Call(id) => match self.shared.pending.get(&id) {
                Some(p) => p.relay.clone().map_or(Related::None, Related::Call),
                None => Related::None,
            },
            Relation::Infer => {
                let mut newest: Option<(u64, Arc<dyn CallRelay>)> = None;
                let mut owners = 0usize;
                for entry in &self.shared.pending {
                    let Some(relay) = &entry.relay else { continue };
                    match &newest {
                        None => {
                            owners = 1;
                            newest = Some((*entry.key(), relay.clone()));
                        }
                        Some((id, current)) => {
                            if current.owner() != relay.owner() {
                                owners += 1;
                            }
                            if *entry.key() > *id {
                                newest = Some((*entry.key(), relay.clone()));
                            }
                        }
                    }
                }
                match newest {
                    None => Related::None,
                    Some(_) if owners > 1 => Related::Ambiguous,
                    Some((_, relay)) => Related::Call(relay),
                }
            }
        }
    }

    fn notification(&self, method: &str, params: Option<&RawValue>, relation: Relation) {
        let changed = |flag: &AtomicBool, event: ClientEvent| {
            if !flag.swap(true, Ordering::AcqRel) {
                let _ = self.shared.events.send(event);
            }
        };
        match method {
            "notifications/progress" => self.progress(params),
            "notifications/tools/list_changed" => {
                changed(&self.shared.tools_changed_queued, ClientEvent::ToolsChanged);
            }
            "notifications/resources/list_changed" => changed(
                &self.shared.resources_changed_queued,
                ClientEvent::ResourcesChanged,
            ),
            "notifications/prompts/list_changed" => {
                changed(
                    &self.shared.prompts_changed_queued,
                    ClientEvent::PromptsChanged,
                );
            }
            "notifications/cancelled" => self.server_cancelled(params),
            other => {
                // A log message while serving a call belongs to that call's client; anything
                // else (a resource update, an unrelated log message) to the peer.
                if other == "notifications/message" && !self.admit_log() {
                    return;
                }
                let related = if other == "notifications/message" {
                    // Revka's own log keeps a copy.
                    let text = params.map(RawValue::get).unwrap_or("");
                    tracing::debug!(server = %self.shared.server, path = %self.shared.path, message = %text.chars().take(1000).collect::<String>(), "server log");
                    self.related(relation)
                } else {
                    Related::None
                };
                match related {
                    Related::Call(relay) => relay.notification(other, params),
                    Related::None | Related::Ambiguous => match self.shared.peer.get() {
                        Some(peer) => peer.notification(&self.shared.server, other, params),
                        None => {
                            tracing::debug!(server = %self.shared.server, path = %self.shared.path, method = other, "notification ignored")
                        }
                    },
                }
            }
        }
    }

    /// Takes a token of the log-message bucket; `false` when the server floods (the message is
    /// dropped, counted, and reported to the peer).
    fn admit_log(&self) -> bool {
        {
            let mut bucket = self
                .shared
                .log_bucket
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let refill = now.duration_since(bucket.1).as_secs_f64() * LOG_PER_SEC;
            *bucket = ((bucket.0 + refill).min(LOG_BURST), now);
            if bucket.0 >= 1.0 {
                bucket.0 -= 1.0;
                return true;
            }
        }
        let n = self.shared.dropped_logs.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(server = %self.shared.server, path = %self.shared.path, dropped = n, "server floods log messages; dropping past {LOG_PER_SEC}/s");
        }
        if let Some(peer) = self.shared.peer.get() {
            peer.log_dropped(&self.shared.server);
        }
        false
    }

    /// `notifications/cancelled` from the server, for a request it sent us: its answer is
    /// abandoned (and, per the spec, not sent).
    fn server_cancelled(&self, params: Option<&RawValue>) {
        #[derive(Deserialize)]
        struct Cancelled<'a> {
            #[serde(borrow, default, rename = "requestId")]
            request_id: Option<&'a RawValue>,
        }
        let id = params
            .and_then(|p| serde_json::from_str::<Cancelled<'_>>(p.get()).ok())
            .and_then(|c| c.request_id)
            .and_then(Id::from_json);
        if let Some((_, (method, task))) =
            id.and_then(|id| self.shared.server_requests.remove(id.key().as_ref()))
        {
            task.abort();
            self.shared
                .relayed
                .cancelled
                .fetch_add(1, Ordering::Relaxed);
            if let Some(peer) = self.shared.peer.get() {
                peer.answered(
                    &self.shared.server,
                    &method,
                    Outcome::Cancelled,
                    Duration::ZERO,
                );
            }
            tracing::debug!(server = %self.shared.server, path = %self.shared.path, %method, "server cancelled its request");
        }
    }

    fn progress(&self, params: Option<&RawValue>) {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Params {
            progress_token: Value,
            progress: Value,
            #[serde(default)]
            total: Option<Value>,
            #[serde(default)]
            message: Option<String>,
        }
        let Some(p) = params.and_then(|p| serde_json::from_str::<Params>(p.get()).ok()) else {
            tracing::debug!(server = %self.shared.server, path = %self.shared.path, "malformed progress notification ignored");
            return;
        };
        let Some(token) = p.progress_token.as_u64() else {
            return;
        };
        if let Some(pending) = self.shared.pending.get(&token) {
            // A server working on a call it reports progress for is alive, even while it
            // reads nothing else.
            self.shared.heard();
            if let Some(notify) = &pending.on_progress {
                notify.notify_one();
            }
            if let Some(sink) = pending.progress.clone() {
                drop(pending); // never call out while holding a map shard
                sink(ProgressUpdate {
                    progress: p.progress,
                    total: p.total,
                    message: p.message,
                });
            }
        }
    }

    /// A request from the server: `ping` is answered at once; the rest go to the relay of the
    /// call they relate to, else to the peer, else get the default answer.
    fn server_request(&self, req: Request, relation: Relation) -> Option<Outgoing> {
        let reply = |result: Result<Box<RawValue>, ErrorObject>| {
            let resp = match result {
                Ok(v) => Response::success(req.id.clone(), v),
                Err(e) => Response::error(Some(req.id.clone()), e),
            };
            Some(Outgoing::Response {
                line: resp.to_line(),
            })
        };
        if req.method == "ping" {
            return reply(Ok(to_raw(&json!({}))));
        }
        let responder = self.shared.responder.get().and_then(Weak::upgrade);
        let method = req.method.to_string();
        let answer = match self.related(relation) {
            Related::Call(relay) => relay.request(&method, req.params),
            Related::Ambiguous if is_client_facing(&method) => {
                self.shared.relayed.errors.fetch_add(1, Ordering::Relaxed);
                return reply(Err(ErrorObject::new(
                    ErrorObject::INTERNAL_ERROR,
                    format!(
                        "Revka cannot tell which session's call this {method} belongs to: calls                          of several sessions are in flight on this server, whose transport does                          not say which one a request serves"
                    ),
                )));
            }
            Related::None | Related::Ambiguous => match self.shared.peer.get() {
                Some(peer) => peer.request(&self.shared.server, &method, req.params),
                None => return reply(self.default_answer(&method)),
            },
        };
        let Some(transport) = responder else {
            // No transport to answer through later (an inbound half used alone).
            return reply(Err(ErrorObject::new(
                ErrorObject::INTERNAL_ERROR,
                format!("Revka cannot answer {method} on this connection"),
            )));
        };
        if self.shared.server_requests.len() >= MAX_SERVER_REQUESTS {
            self.shared.relayed.errors.fetch_add(1, Ordering::Relaxed);
            return reply(Err(ErrorObject::new(
                ErrorObject::INTERNAL_ERROR,
                format!(
                    "too many requests from this server in flight ({MAX_SERVER_REQUESTS}); {method} refused"
                ),
            )));
        }
        let key = req.id.key().into_owned();
        let id = req.id;
        let shared = self.shared.clone();
        let done_key = key.clone();
        // The task starts once it is recorded, so that it always finds itself there.
        let (go, recorded) = oneshot::channel::<()>();
        let task_method = method.clone();
        let task = tokio::spawn(async move {
            let method = task_method;
            let _ = recorded.await;
            let start = Instant::now();
            let result = answer.await;
            let outcome = if result.is_ok() {
                Outcome::Result
            } else {
                Outcome::Error
            };
            if shared.server_requests.remove(done_key.as_str()).is_none() {
                return; // cancelled by the server meanwhile
            }
            let counter = match outcome {
                Outcome::Result => &shared.relayed.results,
                _ => &shared.relayed.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let took = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            shared.relayed.latency_us.fetch_add(took, Ordering::Relaxed);
            if let Some(peer) = shared.peer.get() {
                peer.answered(&shared.server, &method, outcome, start.elapsed());
            }
            let resp = match result {
                Ok(v) => Response::success(id, v),
                Err(e) => Response::error(Some(id), e),
            };
            if let Err(e) = transport.send(Outgoing::Response {
                line: resp.to_line(),
            }) {
                tracing::debug!(server = %shared.server, path = %shared.path, %method, error = %e, "answer to a server request not delivered");
            }
        });
        if let Some((_, earlier)) = self
            .shared
            .server_requests
            .insert(key, (method, task.abort_handle()))
        {
            // The server reused the id of a request still in flight: the earlier one is dropped.
            earlier.abort();
        }
        let _ = go.send(());
        None
    }

    /// The answer to a server request when nothing relays it.
    fn default_answer(&self, method: &str) -> Result<Box<RawValue>, ErrorObject> {
        match method {
            "roots/list" => Ok(to_raw(&json!({ "roots": self.shared.roots }))),
            m if is_client_facing(m) => Err(ErrorObject::new(
                ErrorObject::METHOD_NOT_FOUND,
                format!("{m} is not available: no client of Revka takes it here"),
            )),
            m => Err(ErrorObject::method_not_found(m)),
        }
    }

    /// Fails one pending request (the transport could not deliver it).
    pub fn fail(&self, id: u64, error: TransportError) {
        if let Some((_, pending)) = self.shared.pending.remove(&id) {
            let _ = pending.tx.send(Err(CallError::Transport {
                server: self.shared.server.to_string(),
                source: error,
            }));
        }
    }

    /// Ends the connection: every pending call fails at once with `reason`; later calls fail
    /// fast. Only the first reason is kept.
    pub fn close(&self, reason: &str) {
        {
            let mut closed = self
                .shared
                .closed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if closed.is_some() {
                return;
            }
            *closed = Some(reason.to_owned());
            self.shared.is_closed.store(true, Ordering::Release);
        }
        // Requests of the server's being answered have nobody to answer any more.
        self.shared.server_requests.retain(|_, (_, task)| {
            task.abort();
            self.shared
                .relayed
                .cancelled
                .fetch_add(1, Ordering::Relaxed);
            false
        });
        let ids: Vec<u64> = self.shared.pending.iter().map(|e| *e.key()).collect();
        for id in ids {
            if let Some((_, pending)) = self.shared.pending.remove(&id) {
                let _ = pending.tx.send(Err(self.closed_error(reason)));
            }
        }
        let _ = self
            .shared
            .events
            .send(ClientEvent::Closed(reason.to_owned()));
    }

    /// The close reason, once closed.
    pub fn closed_reason(&self) -> Option<String> {
        if !self.shared.is_closed.load(Ordering::Acquire) {
            return None;
        }
        self.shared
            .closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn closed_error(&self, reason: &str) -> CallError {
        CallError::Closed {
            server: self.shared.server.to_string(),
            reason: reason.to_owned(),
        }
    }
}

/// Counts of a connection's server requests (all but `ping`), kept per connection.
#[derive(Debug, Default)]
struct RelayCounters {
    results: AtomicU64,
    errors: AtomicU64,
    cancelled: AtomicU64,
    /// Summed over answered requests, in microseconds.
    latency_us: AtomicU64,
}

/// What became of the requests a server sent on one connection ([`McpClient::relayed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RelayedCounts {
    /// Answered with a result.
    pub results: u64,
    /// Answered with an error (refused at once included).
    pub errors: u64,
    /// Cancelled by the server, or abandoned when the connection ended.
    pub cancelled: u64,
    /// Being answered now.
    pub in_flight: u64,
    /// Mean time to an answer, in milliseconds (0 before any).
    pub mean_ms: u64,
}

/// The call a server message relates to ([`Inbound::related`]).
enum Related {
    Call(Arc<dyn CallRelay>),
    /// Calls of several owners are pending and the transport does not say which one.
    Ambiguous,
    None,
}

/// Requests only a person or a model on the client's side can answer.
fn is_client_facing(method: &str) -> bool {
    matches!(method, "sampling/createMessage" | "elicitation/create")
}

/// Options of one call.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Give up after this long without an answer.
    pub timeout: Duration,
    /// Where progress goes; when set, a progress token is sent upstream.
    pub progress: Option<ProgressSink>,
    /// Restart the timeout on each progress notification, up to `max_total`.
    pub reset_timeout_on_progress: bool,
    /// Hard cap on the whole call when the timeout is reset by progress.
    pub max_total: Option<Duration>,
    /// Where the server's requests and log messages about this call go (see [`CallRelay`]).
    pub relay: Option<Arc<dyn CallRelay>>,
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("timeout", &self.timeout)
            .field("progress", &self.progress.is_some())
            .field("reset_timeout_on_progress", &self.reset_timeout_on_progress)
            .field("relay", &self.relay.as_ref().map(|r| r.owner().to_owned()))
            .finish()
    }
}

/// The sending half of a client, cheap to share (`Arc<McpClient>`) between callers.
pub struct McpClient {
    inbound: Inbound,
    transport: Arc<dyn Transport>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("server", &self.inbound.shared.server)
            .field("pending", &self.inbound.shared.pending.len())
            .finish_non_exhaustive()
    }
}

impl McpClient {
    /// A client sending through `transport` and receiving through `inbound`.
    pub fn new(inbound: Inbound, transport: Arc<dyn Transport>) -> Self {
        let _ = inbound.shared.responder.set(Arc::downgrade(&transport));
        Self {
            inbound,
            transport,
            next_id: AtomicU64::new(1),
        }
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        self.inbound.server()
    }

    /// What became of the requests the server sent on this connection (for introspection).
    pub fn relayed(&self) -> RelayedCounts {
        let r = &self.inbound.shared.relayed;
        let (results, errors) = (
            r.results.load(Ordering::Relaxed),
            r.errors.load(Ordering::Relaxed),
        );
        let answered = results + errors;
        RelayedCounts {
            results,
            errors,
            cancelled: r.cancelled.load(Ordering::Relaxed),
            in_flight: self.inbound.shared.server_requests.len() as u64,
            mean_ms: (r.latency_us.load(Ordering::Relaxed) / answered.max(1)) / 1000,
        }
    }

    /// Log messages of the server dropped by the flood limit on this connection.
    pub fn dropped_logs(&self) -> u64 {
        self.inbound.shared.dropped_logs.load(Ordering::Relaxed)
    }

    /// Sends what no call relates to to `peer` (see [`Inbound::set_peer`]).
    pub fn set_peer(&self, peer: Arc<dyn Peer>) {
        self.inbound.set_peer(peer);
    }

    /// Calls currently waiting for an answer.
    pub fn pending_calls(&self) -> usize {
        self.inbound.shared.pending.len()
    }

    /// Lines the server wrote that were not JSON-RPC, skipped (see [`Inbound::invalid_lines`]).
    pub fn invalid_lines(&self) -> u64 {
        self.inbound.invalid_lines()
    }

    /// The start of the last skipped non-JSON-RPC line (see [`Inbound::last_invalid_line`]).
    pub fn last_invalid_line(&self) -> Option<String> {
        self.inbound.last_invalid_line()
    }

    /// The close reason, once the connection has ended.
    pub fn closed_reason(&self) -> Option<String> {
        self.inbound.closed_reason()
    }

    /// Re-arms list_changed coalescing (see [`Inbound::tools_changed_handled`]).
    pub fn tools_changed_handled(&self) {
        self.inbound.tools_changed_handled();
    }

    /// [`McpClient::tools_changed_handled`], for the resource list.
    pub fn resources_changed_handled(&self) {
        self.inbound.resources_changed_handled();
    }

    /// [`McpClient::tools_changed_handled`], for the prompt list.
    pub fn prompts_changed_handled(&self) {
        self.inbound.prompts_changed_handled();
    }

    /// Ends the connection: pending calls fail with `reason` and the transport shuts down.
    pub fn close(&self, reason: &str) {
        self.inbound.close(reason);
        self.transport.close();
    }

    /// Sends a notification.
    pub fn notify(&self, method: &'static str, params: Option<Value>) -> Result<(), CallError> {
        let line = Notification::new(method, params.as_ref().map(to_raw)).to_line();
        self.transport
            .send(Outgoing::Notification { line })
            .map_err(|source| CallError::Transport {
                server: self.server().to_owned(),
                source,
            })
    }

    /// Sends a request and waits for its result.
    pub async fn request(
        &self,
        method: &str,
        params: Option<Value>,
        opts: &CallOptions,
    ) -> Result<Box<RawValue>, CallError> {
        self.request_with(Cow::Owned(method.to_owned()), |_| params, opts, true)
            .await
    }

    /// Sends `ping` and waits up to `timeout` for an answer; returns how long it took. An
    /// error answer counts (a server without `ping` answers -32601, and that proves it reads
    /// and replies). A ping that times out is forgotten without `notifications/cancelled`:
    /// there is nothing to cancel, and a hung server would only have one more line to ignore.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, CallError> {
        let start = Instant::now();
        let opts = CallOptions {
            timeout,
            ..Default::default()
        };
        let no_params = |_| None::<()>;
        match self
            .request_with(Cow::Borrowed("ping"), no_params, &opts, false)
            .await
        {
            Ok(_) | Err(CallError::Rpc { .. }) => Ok(start.elapsed()),
            Err(e) => Err(e),
        }
    }

    /// Whether a response, or progress of a pending call, arrived since the last time this
    /// was asked (the liveness probe asks once per interval).
    pub fn take_heard(&self) -> bool {
        self.inbound.shared.heard.swap(false, Ordering::Relaxed)
    }

    /// Calls a tool: `tools/call {name, arguments}`, with a progress token (our request id)
    /// when `opts.progress` is set.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: impl Serialize,
        opts: &CallOptions,
    ) -> Result<Box<RawValue>, CallError> {
        #[derive(serde::Serialize)]
        struct Meta {
            #[serde(rename = "progressToken")]
            progress_token: u64,
        }
        #[derive(serde::Serialize)]
        struct Params<'a, A> {
            name: &'a str,
            arguments: &'a A,
            #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
            meta: Option<Meta>,
        }
        let with_progress = opts.progress.is_some();
        let arguments = &arguments;
        // Serialised straight into the request line, without building a JSON tree first.
        self.request_with(
            Cow::Borrowed("tools/call"),
            move |id| {
                Some(Params {
                    name,
                    arguments,
                    meta: with_progress.then_some(Meta { progress_token: id }),
                })
            },
            opts,
            true,
        )
        .await
    }

    /// Sends a request and waits for its answer. `cancel_upstream`: whether a timeout or a
    /// dropped future sends `notifications/cancelled` (always, but for pings).
    async fn request_with<P: Serialize>(
        &self,
        method: Cow<'static, str>,
        params: impl FnOnce(u64) -> Option<P>,
        opts: &CallOptions,
        cancel_upstream: bool,
    ) -> Result<Box<RawValue>, CallError> {
        let shared = &self.inbound.shared;
        if let Some(reason) = self.inbound.closed_reason() {
            return Err(self.inbound.closed_error(&reason));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        let on_progress = opts
            .reset_timeout_on_progress
            .then(|| Arc::new(Notify::new()));
        shared.pending.insert(
            id,
            Pending {
                tx,
                progress: opts.progress.clone(),
                on_progress: on_progress.clone(),
                relay: opts.relay.clone(),
            },
        );
        // The connection may have closed between the check and the insert.
        if let Some(reason) = self.inbound.closed_reason() {
            shared.pending.remove(&id);
            return Err(self.inbound.closed_error(&reason));
        }
        let mut guard = CancelOnDrop {
            client: self,
            id,
            reason: "the caller went away",
            armed: true,
            upstream: cancel_upstream,
        };
        let line = crate::jsonrpc::request_line(id, &method, params(id).as_ref());
        if let Err(source) = self.transport.send(Outgoing::Request { id, line }) {
            guard.armed = false;
            shared.pending.remove(&id);
            return Err(CallError::Transport {
                server: self.server().to_owned(),
                source,
            });
        }

        let start = Instant::now();
        let hard_deadline = opts.max_total.map(|m| start + m);
        let mut deadline = start + opts.timeout;
        loop {
            let progressed = async {
                match &on_progress {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                answer = &mut rx => {
                    guard.armed = false;
                    return match answer {
                        Ok(result) => result,
                        Err(_) => Err(self.inbound.closed_error(
                            &self.inbound.closed_reason().unwrap_or_else(|| "connection dropped".into()),
                        )),
                    };
                }
                () = tokio::time::sleep_until(deadline) => {
                    guard.reason = "timeout";
                    drop(guard); // sends notifications/cancelled
                    return Err(CallError::Timeout {
                        server: self.server().to_owned(),
                        method: method.into_owned(),
                        after: start.elapsed(),
                    });
                }
                () = progressed => {
                    deadline = Instant::now() + opts.timeout;
                    if let Some(hard) = hard_deadline {
                        deadline = deadline.min(hard);
                    }
                }
            }
        }
    }
}

/// Cancels a pending call upstream when its future is dropped before the answer.
struct CancelOnDrop<'a> {
    client: &'a McpClient,
    id: u64,
    reason: &'static str,
    armed: bool,
    /// Whether to tell the server (`false` only forgets the call).
    upstream: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let shared = &self.client.inbound.shared;
        if shared.pending.remove(&self.id).is_none()
            || !self.upstream
            || self.client.closed_reason().is_some()
        {
            return; // already answered, not to be told, or nobody to tell
        }
        let params = json!({ "requestId": self.id, "reason": self.reason });
        let line = Notification::new("notifications/cancelled", Some(to_raw(&params))).to_line();
        if let Err(e) = self.client.transport.send(Outgoing::Notification { line }) {
            tracing::debug!(server = %shared.server, path = %shared.path, id = self.id, error = %e, "could not send notifications/cancelled");
        }
    }
}

#[cfg(test)]
mod tests;
