//! Sessions of Revka's MCP server: `root/sessions/session:<id>`.
//!
//! A session is minted by `POST /session` and authenticates every `/mcp` request with its
//! token, or created by a standard `initialize` and bound to the client token that created it
//! (`binding`). Two halves:
//!
//! - [`Session`], shared state in the [`Sessions`] table: the auth check on the hot path is a
//!   concurrent-map lookup plus a constant-time token comparison, and never waits on a mailbox.
//!   It also holds the session's activated tools, its in-flight calls (so
//!   `notifications/cancelled` and session end can cancel them), its end of the progress
//!   broadcaster (`events`: publishers send into the session's channel, which the
//!   `root/progress` actor owns; see [`crate::progress`]), and,
//!   for a session opened with a client token, its [`ClientBinding`] and [`ToolScope`] (fixed
//!   at creation, [`NewSession`]), its server-to-client queue for `GET /mcp` (`outbound`), which the tool registry applies to everything it shows and
//!   resolves for the session.
//! - [`SessionActor`], a `temporary` child of the `sessions` supervisor: it owns the session's
//!   lifetime and supervises the children that belong to the session (its operator, started on
//!   first use; see `operator`). When it stops, for any reason (ended on request, evicted,
//!   expired), the session is removed from the table, its in-flight calls are cancelled and its
//!   event streams end.
//!
//! A session is *in use* while it has a call in flight or an open event stream, and *idle*
//! since its last authenticated request or the end of its last use, whichever is later. One
//! sweeper task for the whole table ends sessions idle for the idle timeout and not in use (a
//! timer per session would cost every idle session a task and a timer entry). The table is
//! capped: at the cap, creating a session evicts the longest-idle session that is not in use
//! and has been idle for at least the eviction floor; if there is none, the creation is
//! refused ([`SessionError::Full`], with how long until a session could become evictable), so
//! a flood of creations cannot push out a client that merely paused. A session is checked as
//! not in use under the lock that registers calls, so a call can never be in flight in a
//! session that is evicted or expired. A session's event channel is created on its first
//! subscription, so an idle session costs little memory.

mod binding;
mod client_side;
mod events;
pub mod operator;
mod outbound;
mod scope;
#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use binding::{ClientBinding, Credential};
pub use client_side::{
    ClientAnswer, ClientCapabilities, ClientSide, MAX_CLIENT_REQUESTS, RelayRefused, Waiting,
};
pub(crate) use events::{Channel, Feed};
pub use events::{EVENT_BUFFER, ProgressEvent, Published, SessionEvent};
pub use operator::{OPERATOR_SERVER, OPERATOR_WAIT, OperatorError, OperatorTemplate};
pub use outbound::{
    Batch, ClientStream, Gap, MessageTooLarge, OUTBOUND_BYTES, OUTBOUND_CHUNK, OUTBOUND_EVENTS,
    Resume, TOOLS_LIST_CHANGED,
};
pub use scope::{MAX_SCOPE_PATTERNS, ScopeError, ToolScope};

use crate::progress::{Progress, ProgressError, SUBSCRIBE_WAIT, Subscription};
use crate::status::rfc3339;
use crate::supervisor::{
    self, ChildContext, ChildSpec, RestartPolicy, RestartType, Shutdown, SupervisorMessage,
};

/// Limits of the session table.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// A session unused for this long is ended.
    pub idle_timeout: Duration,
    /// At most this many sessions; creating one more evicts the longest-idle session that may
    /// be evicted, or is refused.
    pub max_sessions: usize,
    /// At the cap, only a session idle for at least this long (and not in use) may be evicted.
    pub evict_idle_floor: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            max_sessions: 1024,
            evict_idle_floor: Duration::from_secs(5 * 60),
        }
    }
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The `sessions` supervisor is not running (the daemon is starting or stopping).
    #[error("sessions are not available: {0}")]
    Unavailable(String),
    /// The OS random source failed.
    #[error("cannot generate a session token: {0}")]
    Random(String),
    /// The table is at its cap and no session may be evicted: each is in use or was used within
    /// the eviction floor.
    #[error(
        "the session cap ({max}) is reached and every session is in use or was used in the last \
         {}s; retry in {}s", .floor.as_secs(), .retry_after.as_secs()
    )]
    Full {
        /// The cap.
        max: usize,
        /// The eviction floor.
        floor: Duration,
        /// How long until the first session could become evictable (at least a second): the
        /// earliest, were it left alone from now on. A session in use needs the whole floor
        /// once its use ends.
        retry_after: Duration,
    },
}

/// One session's shared state.
#[derive(Debug)]
pub struct Session {
    /// Shared with the table's key.
    id: Arc<str>,
    token: [u8; 32],
    /// Shared by the sessions created with the same directory (most use the default).
    cwd: Arc<Path>,
    label: Option<String>,
    created: SystemTime,
    /// The table's clock origin, shared by all its sessions so that their last-seen times compare.
    epoch: Instant,
    /// Microseconds after `epoch` of the last authenticated request (or of creation).
    last_seen_us: AtomicU64,
    calls_total: AtomicU64,
    activated: RwLock<BTreeSet<String>>,
    /// Bumped whenever `activated` grows.
    activation_gen: AtomicU64,
    /// The tool-list version the client last saw (`tools/list` or a list_changed), if any.
    listed: Mutex<Option<(u64, u64)>>,
    /// Keyed by the client's request ids, so SipHash stays; the key is shared with the call's
    /// guard.
    inflight: Mutex<HashMap<Arc<str>, CancellationToken>>,
    events: events::Feed,
    actor: Mutex<Option<ActorRef<SessionMessage>>>,
    /// Cancelled when the session ends: calls and event streams stop.
    ended: CancellationToken,
    /// The session's operator tools, once its operator was first asked for.
    operator_hub: std::sync::OnceLock<Arc<crate::mcp::hub::McpHub>>,
    /// The id of the gateway token that created the session through the gateway's proxy, if
    /// one did: that token alone may use the session through the gateway without presenting
    /// the session's own token. Set once, right after creation.
    proxy_owner: std::sync::OnceLock<Box<str>>,
    /// The tools this session may see and call, when its client token has a scope; `None`
    /// allows every tool. Fixed at creation: revoking the token ends its sessions, not its
    /// scope.
    scope: Option<Arc<ToolScope>>,
    /// The client that created the session on the standard Streamable HTTP path (`binding`);
    /// unset for sessions minted by `POST /session`. Set once, at creation.
    client: std::sync::OnceLock<ClientBinding>,
    /// Messages for the client's `GET /mcp` stream and their replay ring (`outbound`).
    outbound: outbound::Outbound,
    /// Set when the client is another Revka that declared federation in its `initialize`
    /// (`revka_mcp::protocol::declares_federation`): it defers tools on its own side,
    /// so this session is served every tool in its scope without deferral. Never unset.
    federated: AtomicBool,
    /// The client as servers' peer: its capabilities, log level, relayed requests.
    client_side: ClientSide,
}

/// What a session is created with ([`Sessions::create`]).
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The working directory (canonical; the caller resolved it).
    pub cwd: Arc<Path>,
    /// A label shown to the owner in introspection.
    pub label: Option<String>,
    /// The tools the session may use; `None` for all.
    pub scope: Option<Arc<ToolScope>>,
    /// The client that creates it on the standard path, and the credential its later requests
    /// must present; `None` for a session minted by `POST /session`.
    pub client: Option<ClientBinding>,
}

impl NewSession {
    /// A session in `cwd`, without a label, scope or client.
    pub fn new(cwd: Arc<Path>) -> Self {
        Self {
            cwd,
            label: None,
            scope: None,
            client: None,
        }
    }

    /// With the label `label`.
    pub fn with_label(mut self, label: Option<String>) -> Self {
        self.label = label;
        self
    }
}

impl Session {
    /// The session id (32 hex characters).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The working directory it was created with (canonical).
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// Its label, if any.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The tools it may see and call, if its client token limits them.
    pub fn scope(&self) -> Option<&ToolScope> {
        self.scope.as_deref()
    }

    /// Whether the tool the client sees as `name` is within the session's scope (always,
    /// without one).
    pub fn in_scope(&self, name: &str) -> bool {
        self.scope.as_ref().is_none_or(|scope| scope.allows(name))
    }

    /// Marks the session's client as a federating Revka (it declared federation in its
    /// `initialize`): from now on it is served every tool in its scope without deferral.
    pub fn set_federated(&self) {
        self.federated.store(true, Ordering::Relaxed);
    }

    /// Whether the session's client is a federating Revka ([`Session::set_federated`]).
    pub fn federated(&self) -> bool {
        self.federated.load(Ordering::Relaxed)
    }

    /// The session's client as the peer servers talk to: its capabilities, the log level it
    /// asked for, the requests relayed to it.
    pub fn client_side(&self) -> &ClientSide {
        &self.client_side
    }

    /// The id of the client token the session was opened with, if any.
    pub fn client(&self) -> Option<&str> {
        self.client.get().map(|b| &*b.owner)
    }

    /// Whether `presented` is this session's token (constant-time).
    pub fn token_matches(&self, presented: &str) -> bool {
        match decode_hex32(presented) {
            Some(bytes) => {
                // Word by word, with no branch on the token's bytes; then one constant-time
                // test of the folded difference.
                let word = |t: &[u8; 32], i: usize| {
                    u64::from_ne_bytes(t[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
                };
                let diff = (0..4).fold(0u64, |acc, i| {
                    acc | (word(&bytes, i) ^ word(&self.token, i))
                });
                bool::from(diff.ct_eq(&0))
            }
            None => false,
        }
    }

    /// The session's token, for the gateway's same-origin proxy only, which lends it to the
    /// gateway token that created the session (see [`Session::proxy_owner`]).
    pub fn proxy_token(&self) -> String {
        hex(&self.token)
    }

    /// Records the gateway token (by id) that created this session through the gateway's
    /// proxy. The first record wins; `false` if one was already made.
    pub fn set_proxy_owner(&self, token_id: &str) -> bool {
        self.proxy_owner.set(token_id.into()).is_ok()
    }

    /// The id of the gateway token that created this session through the gateway's proxy,
    /// if one did.
    pub fn proxy_owner(&self) -> Option<&str> {
        self.proxy_owner.get().map(|id| &**id)
    }

    /// Records activity: every authenticated request, and the end of a use (a call, an event
    /// stream), so that a session is idle only from then.
    pub fn touch(&self) {
        self.last_seen_us
            .fetch_max(micros_since(self.epoch), Ordering::Relaxed);
    }

    /// Time since the last authenticated request.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_micros(self.last_seen_us.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Tools activated in this session by `tool_search`.
    pub fn activated(&self) -> BTreeSet<String> {
        self.activated
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether `tool` is activated.
    pub fn is_activated(&self, tool: &str) -> bool {
        self.activated
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(tool)
    }

    /// Activates tools; returns whether any was new.
    pub fn activate<'a>(&self, tools: impl IntoIterator<Item = &'a str>) -> bool {
        let mut set = self
            .activated
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut changed = false;
        for t in tools {
            changed |= set.insert(t.to_owned());
        }
        if changed {
            self.activation_gen.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// Records that the client saw the tool list at `tools_version` (the hub's table version).
    pub fn note_listed(&self, tools_version: u64) {
        let view = (tools_version, self.activation_gen.load(Ordering::Relaxed));
        *self.listed.lock().unwrap_or_else(PoisonError::into_inner) = Some(view);
    }

    /// Whether the client's tool list is stale (a server's tools or this session's activations
    /// changed since it last listed). Returns true once per change: the caller then sends
    /// `notifications/tools/list_changed`. A client that never listed is not told.
    pub fn take_list_changed(&self, tools_version: u64) -> bool {
        let view = (tools_version, self.activation_gen.load(Ordering::Relaxed));
        let mut listed = self.listed.lock().unwrap_or_else(PoisonError::into_inner);
        match *listed {
            Some(seen) if seen != view => {
                *listed = Some(view);
                true
            }
            _ => false,
        }
    }

    /// Registers an in-flight call under its JSON-RPC id (as JSON text); the returned token is
    /// cancelled by `notifications/cancelled` for that id or when the session ends. An id
    /// already in flight in this session is refused (JSON-RPC ids must be unique among a
    /// client's pending requests; a second one would make cancellation ambiguous).
    pub fn begin_call(self: &Arc<Self>, request_id: &str) -> Result<CallGuard, DuplicateCall> {
        let token = self.ended.child_token();
        let request_id: Arc<str> = Arc::from(request_id);
        match self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(request_id.clone())
        {
            Entry::Occupied(_) => return Err(DuplicateCall(request_id.to_string())),
            Entry::Vacant(place) => {
                place.insert(token.clone());
            }
        }
        self.calls_total.fetch_add(1, Ordering::Relaxed);
        Ok(CallGuard {
            session: self.clone(),
            request_id,
            token,
        })
    }

    /// Cancels the in-flight call with this JSON-RPC id (as JSON text). Returns whether it
    /// existed.
    pub fn cancel_call(&self, request_id: &str) -> bool {
        match self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(request_id)
        {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Calls in flight.
    pub fn inflight_calls(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Publishes an event to the session's subscribers (if any; never blocks). A tool-list
    /// change is also queued for the client's `GET /mcp` stream.
    pub fn publish(&self, event: SessionEvent) {
        if event == SessionEvent::ToolsChanged {
            self.outbound.send_list_changed();
        }
        self.events.publish(event);
    }

    /// Delivers a JSON-RPC message from a server that no call of the session relates to (a log
    /// message, a resource update, a list change): queued for the client's `GET /mcp` stream
    /// and published to the session's event subscribers (`GET /session/{id}/events`, where a
    /// two-header client reads it, as event `message`). Never blocks; a message larger than the
    /// replay ring is dropped from the stream, with a debug line.
    pub fn deliver(&self, message: Arc<str>) {
        if let Err(e) = self.send_to_client(message.clone()) {
            tracing::debug!(session = %self.id(), error = %e, "message for the client dropped");
        }
        self.events.publish(SessionEvent::Message(message));
    }

    /// Subscribes to the session's events through the progress broadcaster, waiting up to
    /// [`SUBSCRIBE_WAIT`] for it (it may be restarting).
    pub async fn subscribe(self: &Arc<Self>) -> Result<Subscription, ProgressError> {
        Subscription::open(self.clone(), SUBSCRIBE_WAIT).await
    }

    /// The session id, shared.
    pub(crate) fn id_arc(&self) -> Arc<str> {
        self.id.clone()
    }

    /// The session's end of the progress broadcaster.
    pub(crate) fn feed(&self) -> &Feed {
        &self.events
    }

    /// Open event subscriptions (including one waiting for a restarted broadcaster).
    pub fn subscribers(&self) -> usize {
        self.events.subscribers()
    }

    /// Whether the session has a call in flight or an open event stream (its progress stream or
    /// its `GET /mcp` stream): it is then never evicted nor expired.
    pub fn in_use(&self) -> bool {
        self.inflight_calls() > 0 || self.subscribers() > 0 || self.client_streams() > 0
    }

    /// Ends the session if it is still not in use and has been idle for at least `idle`,
    /// deciding under the lock that registers calls: a call registered after this has a
    /// cancelled token. Returns whether it ended. The caller removes it from the table.
    fn end_if_unused(&self, idle: Duration) -> bool {
        let inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if !inflight.is_empty()
            || self.subscribers() > 0
            || self.client_streams() > 0
            || self.idle_for() < idle
        {
            return false;
        }
        self.ended.cancel();
        true
    }

    /// Cancelled when the session ends.
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }

    /// The session actor, once started.
    pub fn actor(&self) -> Option<ActorRef<SessionMessage>> {
        self.actor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "session_id": &*self.id,
            "label": self.label,
            "cwd": &*self.cwd,
            "created_at": rfc3339(self.created),
            "idle_secs": self.idle_for().as_secs(),
            "inflight_calls": self.inflight_calls(),
            "calls_total": self.calls_total.load(Ordering::Relaxed),
            "activated_tools": self.activated(),
            "client": self.client(),
            "tool_scope": self.scope.as_deref().map(ToolScope::patterns),
            "event_subscribers": self.subscribers(),
            "client_streams": self.client_streams(),
            // The client as servers' peer: what it declared, its log level, the requests of
            // servers waiting for its answer, and answers that matched none (wrong id, repeats,
            // late).
            "client_capabilities": {
                "sampling": self.client_side.capabilities().sampling,
                "elicitation": self.client_side.capabilities().elicitation,
                "roots": self.client_side.capabilities().roots,
            },
            "log_level": self.client_side.level().map(|l| l.as_str()),
            "relayed_requests_waiting": self.client_side.waiting(),
            "client_answers_ignored": self.client_side.ignored(),
        })
    }
}

/// A call whose JSON-RPC id is already in flight in its session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request id {0} is already in flight in this session; use a new id")]
pub struct DuplicateCall(pub String);

/// Keeps a call registered as in flight; deregisters it when dropped.
#[derive(Debug)]
pub struct CallGuard {
    session: Arc<Session>,
    request_id: Arc<str>,
    token: CancellationToken,
}

impl CallGuard {
    /// Cancelled when the client cancels the call or the session ends.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.session
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.request_id);
        // A session in use is not idle: its idle time starts when the call ends.
        self.session.touch();
    }
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    /// Keyed by ids drawn at random here, so FxHash (a lookup by a presented id only probes).
    map: DashMap<Arc<str>, Arc<Session>, rustc_hash::FxBuildHasher>,
    limits: SessionLimits,
    operator: Option<OperatorTemplate>,
    /// Told of the tools each session's operator publishes when it connects (the MCP server's
    /// catalog of operator tools); set once the server is up ([`Sessions::on_operator_tools`]).
    operator_tools: RwLock<Option<crate::mcp::hub::ToolsListener>>,
    supervisor: RwLock<Option<ActorRef<SupervisorMessage>>>,
    /// The progress broadcaster the sessions' subscriptions register with.
    progress: Arc<Progress>,
    created: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
    /// Whether the idle sweeper runs.
    sweeping: AtomicBool,
    /// Held from the cap check to the insert, so concurrent creates cannot overshoot the cap.
    admission: Mutex<()>,
    /// How many sessions the table holds: raised after an insert (under `admission`), lowered
    /// after a removal. `DashMap::len` sums its shards one after another, so beside an insert
    /// in one shard and a removal in another it can count one session too many; this count
    /// never exceeds the cap.
    live: AtomicUsize,
    /// The clock origin of its sessions' last-seen times.
    epoch: Instant,
}

/// Microseconds since `epoch` (a u64 of them lasts 584,000 years).
fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

impl Sessions {
    /// An empty table.
    pub fn new(limits: SessionLimits) -> Arc<Self> {
        Self::with_operator(limits, None)
    }

    /// An empty table whose sessions can start an operator from `operator`.
    pub fn with_operator(limits: SessionLimits, operator: Option<OperatorTemplate>) -> Arc<Self> {
        Arc::new(Self {
            map: DashMap::with_hasher(rustc_hash::FxBuildHasher),
            limits,
            operator,
            operator_tools: RwLock::new(None),
            supervisor: RwLock::new(None),
            progress: Progress::new(),
            created: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            sweeping: AtomicBool::new(false),
            admission: Mutex::new(()),
            live: AtomicUsize::new(0),
            epoch: Instant::now(),
        })
    }

    /// Called by the `sessions` supervisor when it starts: session actors go under it. Starts
    /// the idle sweeper (once).
    pub fn attach_supervisor(self: &Arc<Self>, sup: ActorRef<SupervisorMessage>) {
        *self
            .supervisor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(sup);
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep_idle(Arc::downgrade(self), self.limits.idle_timeout));
        }
    }

    /// Ends every session idle for the idle timeout and not in use.
    fn expire_idle(&self) {
        let limit = self.limits.idle_timeout;
        let idle: Vec<Arc<Session>> = self
            .map
            .iter()
            .filter(|e| e.value().idle_for() >= limit && !e.value().in_use())
            .map(|e| e.value().clone())
            .collect();
        for session in idle {
            let idle = session.idle_for();
            if session.end_if_unused(limit) {
                self.expired.fetch_add(1, Ordering::Relaxed);
                tracing::info!(session = %session.id, idle_secs = idle.as_secs(), "session expired");
                self.end(&session.id, &format!("idle for {}s", idle.as_secs()));
            }
        }
    }

    /// Makes room for one session at the cap: ends the longest-idle session that is not in
    /// use and has been idle for the eviction floor. `Err` is how long until one could be.
    fn evict_one(&self) -> Result<(), SessionError> {
        let floor = self.limits.evict_idle_floor;
        loop {
            let mut victim: Option<(Arc<Session>, Duration)> = None;
            // A session in use needs the whole floor once its use ends.
            let mut soonest = floor;
            for entry in self.map.iter() {
                let session = entry.value();
                let idle = session.idle_for();
                if session.in_use() {
                    continue;
                }
                if idle < floor {
                    soonest = soonest.min(floor - idle);
                } else if victim.as_ref().is_none_or(|(_, longest)| idle > *longest) {
                    victim = Some((session.clone(), idle));
                }
            }
            let Some((victim, idle)) = victim else {
                return Err(SessionError::Full {
                    max: self.limits.max_sessions,
                    floor,
                    retry_after: soonest.max(Duration::from_secs(1)),
                });
            };
            // Used since the scan: look again.
            if victim.end_if_unused(floor) {
                tracing::info!(session = %victim.id, idle_secs = idle.as_secs(), "session cap reached; evicting the longest-idle session");
                self.evicted.fetch_add(1, Ordering::Relaxed);
                self.end(&victim.id, "evicted: the session cap was reached");
                return Ok(());
            }
        }
    }

    /// The progress broadcaster of these sessions: start its actor with
    /// [`crate::progress::progress_spec`].
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// The limits.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions created, expired by idleness, and evicted at the cap, since start.
    pub fn counters(&self) -> (u64, u64, u64) {
        (
            self.created.load(Ordering::Relaxed),
            self.expired.load(Ordering::Relaxed),
            self.evicted.load(Ordering::Relaxed),
        )
    }

    /// The session with this id, if its token matches (constant-time) — the hot-path check.
    /// Touches it.
    pub fn authenticate(&self, id: &str, token: &str) -> Option<Arc<Session>> {
        let session = self.map.get(id).map(|s| s.clone())?;
        if session.token_matches(token) {
            session.touch();
            Some(session)
        } else {
            None
        }
    }

    /// A session by id (no auth).
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map.get(id).map(|s| s.clone())
    }

    /// Every session (unordered).
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }

    /// Creates a session and starts its actor. Returns the session and its token (shown once).
    pub async fn create(
        self: &Arc<Self>,
        new: NewSession,
    ) -> Result<(Arc<Session>, String), SessionError> {
        let NewSession {
            cwd,
            label,
            scope,
            client,
        } = new;
        let sup = self
            .supervisor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                SessionError::Unavailable("the sessions supervisor is not running".into())
            })?;
        let admission = self
            .admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while self.len() >= self.limits.max_sessions {
            if let Err(full) = self.evict_one() {
                tracing::warn!(
                    sessions = self.len(),
                    "session cap reached and no session may be evicted; refusing a new one"
                );
                return Err(full);
            }
        }
        let mut id_bytes = [0u8; 16];
        let mut token = [0u8; 32];
        getrandom::fill(&mut id_bytes).map_err(|e| SessionError::Random(e.to_string()))?;
        getrandom::fill(&mut token).map_err(|e| SessionError::Random(e.to_string()))?;
        let id: Arc<str> = hex(&id_bytes).into();
        let session = Arc::new(Session {
            id: id.clone(),
            token,
            cwd,
            label,
            created: SystemTime::now(),
            epoch: self.epoch,
            last_seen_us: AtomicU64::new(micros_since(self.epoch)),
            calls_total: AtomicU64::new(0),
            activated: RwLock::new(BTreeSet::new()),
            activation_gen: AtomicU64::new(0),
            listed: Mutex::new(None),
            inflight: Mutex::new(HashMap::new()),
            events: events::Feed::new(self.progress.clone()),
            actor: Mutex::new(None),
            ended: CancellationToken::new(),
            operator_hub: std::sync::OnceLock::new(),
            proxy_owner: std::sync::OnceLock::new(),
            scope,
            client: client.map(std::sync::OnceLock::from).unwrap_or_default(),
            outbound: outbound::Outbound::default(),
            federated: AtomicBool::new(false),
            client_side: ClientSide::default(),
        });
        self.map.insert(id, session.clone());
        self.live.fetch_add(1, Ordering::AcqRel);
        drop(admission);
        self.created.fetch_add(1, Ordering::Relaxed);
        let spec = session_spec(session.clone(), self.clone());
        if let Err(e) = supervisor::start_child(&sup, spec).await {
            self.remove(&session);
            return Err(SessionError::Unavailable(e.to_string()));
        }
        tracing::info!(session = %session.id, cwd = %session.cwd.display(), label = ?session.label, "session created");
        Ok((session, hex(&token)))
    }

    /// Ends a session (on request, at eviction). Returns whether it existed.
    pub fn end(&self, id: &str, reason: &str) -> bool {
        let Some(session) = self.get(id) else {
            return false;
        };
        match session.actor() {
            // The actor's exit removes it from the table and cancels everything.
            Some(actor) => actor.stop(Some(reason.to_owned())),
            None => self.remove(&session),
        }
        self.remove(&session); // unreachable for auth from now on, whatever the actor does
        true
    }

    fn remove(&self, session: &Arc<Session>) {
        if self
            .map
            .remove_if(&*session.id, |_, s| Arc::ptr_eq(s, session))
            .is_some()
        {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
        session.ended.cancel();
    }
}

/// Runs [`Sessions::expire_idle`] every tenth of the idle timeout (at least every 30 s, at most
/// every 10 ms) until the table is gone: a session expires at most a tenth late.
async fn sweep_idle(table: Weak<Sessions>, idle_timeout: Duration) {
    let period = (idle_timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(30));
    loop {
        tokio::time::sleep(period).await;
        let Some(sessions) = table.upgrade() else {
            return;
        };
        sessions.expire_idle();
    }
}

/// The session actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionActor;

/// Messages of [`SessionActor`].
#[derive(Debug)]
pub enum SessionMessage {
    /// Start the session's operator if it is not running; reply with its hub.
    EnsureOperator(ractor::RpcReplyPort<Result<Arc<crate::mcp::hub::McpHub>, OperatorError>>),
}

/// Arguments of [`SessionActor`].
#[derive(Debug)]
pub struct SessionArguments {
    /// The session.
    pub session: Arc<Session>,
    /// The table it is in (removed from it when the actor stops).
    pub sessions: Arc<Sessions>,
    /// The actor's status node.
    pub node: crate::status::StatusNode,
}

/// State of [`SessionActor`]; dropping it ends the session.
#[derive(Debug)]
pub struct SessionState {
    session: Arc<Session>,
    sessions: Arc<Sessions>,
    node: crate::status::StatusNode,
    operator: Option<ActorRef<SupervisorMessage>>,
}

impl Drop for SessionState {
    fn drop(&mut self) {
        // After a stop, an eviction, a failure or a kill alike.
        self.sessions.remove(&self.session);
        // The session (still held by open streams and calls for a moment) must not keep the
        // stopped actor's cell, and its channels, alive.
        self.session
            .actor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Actor for SessionActor {
    type Msg = SessionMessage;
    type State = SessionState;
    type Arguments = SessionArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMessage>,
        SessionArguments {
            session,
            sessions,
            node,
        }: SessionArguments,
    ) -> Result<SessionState, ActorProcessingErr> {
        *session.actor.lock().unwrap_or_else(PoisonError::into_inner) = Some(myself);
        Ok(SessionState {
            session,
            sessions,
            node,
            operator: None,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<SessionMessage>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        // Stop the operator gracefully (stdin closed, then SIGTERM, then SIGKILL) before ractor
        // would kill it with us.
        if let Some(operator) = state.operator.take() {
            // Boxed, like the operator start below: an actor's processing loop is as large as
            // its largest handler future, and every idle session holds one.
            let _ = Box::pin(
                operator.stop_and_wait(Some("session ended".into()), Some(Duration::from_secs(10))),
            )
            .await;
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<SessionMessage>,
        event: ractor::SupervisionEvent,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        // The operator supervisor gave up: the session carries on; the next operator call
        // starts a fresh one.
        if let ractor::SupervisionEvent::ActorFailed(cell, _)
        | ractor::SupervisionEvent::ActorTerminated(cell, _, _) = &event
            && state
                .operator
                .as_ref()
                .is_some_and(|o| o.get_id() == cell.get_id())
        {
            tracing::warn!(session = %state.session.id, "the session's operator stopped; it restarts on the next operator call");
            state.operator = None;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMessage>,
        msg: SessionMessage,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMessage::EnsureOperator(reply) => {
                let result = match &state.sessions.operator {
                    None => Err(OperatorError::Disabled),
                    Some(template) => {
                        let hub = state
                            .session
                            .operator_hub
                            .get_or_init(|| state.sessions.operator_hub())
                            .clone();
                        if state.operator.is_none() {
                            match Box::pin(operator::start(
                                myself.get_cell(),
                                &state.node,
                                template,
                                &state.session,
                                hub.clone(),
                            ))
                            .await
                            {
                                Ok(sup) => state.operator = Some(sup),
                                Err(e) => {
                                    let _ = reply.send(Err(OperatorError::Start(e)));
                                    return Ok(());
                                }
                            }
                        }
                        Ok(hub)
                    }
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

/// The child spec of a session actor: `temporary` (never restarted; removed when it exits).
fn session_spec(session: Arc<Session>, sessions: Arc<Sessions>) -> ChildSpec {
    let policy = RestartPolicy::standard()
        .with_restart(RestartType::Temporary)
        .with_shutdown(Shutdown::Timeout(Duration::from_secs(10)));
    let id = format!("session:{}", session.id);
    ChildSpec::new(id, "session", policy, move |ctx: ChildContext| {
        let session = session.clone();
        let sessions = sessions.clone();
        async move {
            let details = session.clone();
            ctx.node.set_details(Arc::new(move || details.details()));
            let args = SessionArguments {
                session,
                sessions,
                node: ctx.node,
            };
            let (actor, _) =
                SessionActor::spawn_linked(None, SessionActor, args, ctx.supervisor).await?;
            Ok(actor.get_cell())
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    /// A hex digit's value, or 0x10 for any other byte.
    const NIBBLE: [u8; 256] = {
        let mut t = [0x10u8; 256];
        let mut c = 0;
        while c < 10 {
            t[b'0' as usize + c] = c as u8;
            c += 1;
        }
        let mut c = 0;
        while c < 6 {
            t[b'a' as usize + c] = 10 + c as u8;
            t[b'A' as usize + c] = 10 + c as u8;
            c += 1;
        }
        t
    };
    let s: &[u8; 64] = s.as_bytes().try_into().ok()?;
    let mut out = [0u8; 32];
    let mut invalid = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        invalid |= hi | lo;
        *o = hi << 4 | lo;
    }
    (invalid & 0x10 == 0).then_some(out)
}
