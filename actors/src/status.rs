//! The introspection model: every supervised actor's live status.
//!
//! Each node of the supervision tree owns a [`StatusNode`]: a small, shared record that the
//! supervisor (state, restarts, failures) and the actor itself (kind-specific details such as a
//! pid or a stderr tail) write into, and that anyone can read **without sending a message to the
//! actor**. A stuck actor therefore stays visible as stuck: its node keeps saying
//! `starting since 14:02:11` while its mailbox is blocked.
//!
//! The tree of nodes mirrors the supervision tree: a supervisor creates the node of each child
//! when it adds the child spec, and removes it when the child is removed for good. Paths are
//! `parent/child`, e.g. `root/mcp_servers/mcp:fs`. [`StatusNode::snapshot`] returns the whole
//! subtree as serde data, which the gateway serves and `revka status` prints.
//!
//! The nodes of one tree share its supervision event log ([`crate::events`]): a node records
//! its own events as it changes (added, removed, and each state change), so every actor kind
//! is covered whoever moves its state, and the supervisor adds the why
//! ([`StatusNode::set_state_with`], [`StatusNode::record_event`]).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::events::{EventKind, EventLog, Note, millis};
use crate::supervisor::RestartType;

/// Lifecycle state of a supervised actor, as its supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorState {
    /// Spawned; `post_start` (handshake, readiness probe) has not finished yet.
    Starting,
    /// Started and serving.
    Running,
    /// Exited; waiting out its restart delay.
    BackingOff,
    /// A stop was requested and is in progress.
    Stopping,
    /// Down and not scheduled for restart (normal exit, or stopped on request).
    Stopped,
    /// Past its restart limit; left down until restarted on request.
    Failed,
}

impl ActorState {
    /// Every state, for one-hot state metrics.
    pub const ALL: [Self; 6] = [
        Self::Starting,
        Self::Running,
        Self::BackingOff,
        Self::Stopping,
        Self::Stopped,
        Self::Failed,
    ];

    /// The lowercase name used in snapshots, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::BackingOff => "backing_off",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for ActorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Produces the kind-specific `details` of a snapshot from shared state, without a mailbox hop.
pub type DetailsFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// A shared, cheaply cloneable handle on one node of the status tree.
#[derive(Clone)]
pub struct StatusNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    path: String,
    kind: &'static str,
    restart_type: Option<RestartType>,
    data: Mutex<NodeData>,
    children: RwLock<Vec<StatusNode>>,
    details: RwLock<Option<DetailsFn>>,
    /// The supervisor running at this node, so a child can be restarted by path.
    supervisor: RwLock<Option<ractor::ActorRef<crate::supervisor::SupervisorMessage>>>,
    /// Told of every state change, for tasks that wait on the actor (a caller waiting for a
    /// server to connect fails at once when it starts backing off). Created by the first
    /// [`StatusNode::state_changes`], so a node nobody waits on costs no channel.
    changes: OnceLock<watch::Sender<ActorState>>,
    /// The tree's supervision event log, shared by all its nodes.
    events: Arc<EventLog>,
    /// A short-lived node: a temporary child (a session, a terminal) or below one. Its events
    /// take the log's short-lived share (see [`crate::events::CAPACITY`]).
    ephemeral: bool,
}

struct NodeData {
    state: ActorState,
    state_since: (SystemTime, Instant),
    restarts: u64,
    last_failure: Option<(String, SystemTime)>,
    started_at: Option<(SystemTime, Instant)>,
    next_restart_at: Option<Instant>,
    /// The bounded wait the actor's handler is inside, if it declared one.
    waiting: Option<Wait>,
    /// Since when the actor is down (its last exit or stop), for the `after_ms` of its next
    /// `started` event.
    down_since: Option<Instant>,
}

/// A bounded wait an actor's handler declared (see [`StatusNode::begin_wait`]): while it
/// lasts the actor's mailbox is not served, and that is expected until `deadline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// What the handler waits for, for people (`stopping root/mcp_servers`).
    pub what: String,
    /// When the wait ends at the latest (its own timeouts run out by then).
    pub deadline: Instant,
}

/// Ends the wait declared by [`StatusNode::begin_wait`] when dropped, restoring the one that
/// was declared before it (waits nest: a group restart stops one sibling after another).
#[must_use = "the wait ends when the guard is dropped"]
#[derive(Debug)]
pub struct WaitGuard {
    node: StatusNode,
    previous: Option<Wait>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        lock(&self.node.inner.data).waiting = self.previous.take();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for StatusNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusNode")
            .field("path", &self.inner.path)
            .field("state", &self.state())
            .finish()
    }
}

impl StatusNode {
    /// Creates the root of a status tree, with the tree's event log (keeping
    /// [`crate::events::CAPACITY`] events).
    pub fn root(id: &str, kind: &'static str) -> Self {
        Self::new(
            id.to_owned(),
            id.to_owned(),
            kind,
            None,
            Arc::new(EventLog::default()),
            false,
        )
    }

    fn new(
        id: String,
        path: String,
        kind: &'static str,
        restart_type: Option<RestartType>,
        events: Arc<EventLog>,
        ephemeral: bool,
    ) -> Self {
        let now = (SystemTime::now(), Instant::now());
        Self {
            inner: Arc::new(Inner {
                id,
                path,
                kind,
                restart_type,
                data: Mutex::new(NodeData {
                    state: ActorState::Stopped,
                    state_since: now,
                    restarts: 0,
                    last_failure: None,
                    started_at: None,
                    next_restart_at: None,
                    waiting: None,
                    down_since: None,
                }),
                children: RwLock::new(Vec::new()),
                details: RwLock::new(None),
                supervisor: RwLock::new(None),
                changes: OnceLock::new(),
                events,
                ephemeral,
            }),
        }
    }

    /// Returns the child node `id`, creating it (appended after its siblings) if absent; a new
    /// node is recorded as `added`.
    pub fn child(&self, id: &str, kind: &'static str, restart_type: Option<RestartType>) -> Self {
        let mut children = self
            .inner
            .children
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = children.iter().find(|c| c.inner.id == id) {
            return existing.clone();
        }
        let node = Self::new(
            id.to_owned(),
            format!("{}/{}", self.inner.path, id),
            kind,
            restart_type,
            self.inner.events.clone(),
            self.inner.ephemeral || restart_type == Some(RestartType::Temporary),
        );
        children.push(node.clone());
        node.record_event(Note::new(EventKind::Added));
        node
    }

    /// Removes the child node `id` (a child removed from its supervisor for good), with its
    /// subtree; recorded as `removed`.
    pub fn remove_child(&self, id: &str) {
        let mut children = self
            .inner
            .children
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(at) = children.iter().position(|c| c.inner.id == id) else {
            return;
        };
        let removed = children.remove(at);
        removed.record_event(Note::new(EventKind::Removed));
    }

    /// The supervision event log of this node's tree.
    pub fn events(&self) -> &Arc<EventLog> {
        &self.inner.events
    }

    /// This node's id within its parent (`mcp:fs`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// This node's full path (`root/mcp_servers/mcp:fs`).
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The actor kind (`supervisor`, `process`, `mcp_connection`, ...).
    pub fn kind(&self) -> &'static str {
        self.inner.kind
    }

    /// The current lifecycle state.
    pub fn state(&self) -> ActorState {
        lock(&self.inner.data).state
    }

    /// Total restarts of this child since its supervisor created it.
    pub fn restarts(&self) -> u64 {
        lock(&self.inner.data).restarts
    }

    /// The last failure reason, if any.
    pub fn last_failure(&self) -> Option<String> {
        lock(&self.inner.data)
            .last_failure
            .as_ref()
            .map(|(r, _)| r.clone())
    }

    /// Moves the node to `state`. Entering `running` records the start time; leaving
    /// `backing_off` clears the scheduled restart.
    ///
    /// A change of state is recorded in the event log: entering `running` as `started` (with
    /// `after_ms` when the actor was down before), `stopped` as `stopped`, `backing_off` as
    /// `restart_scheduled`, `failed` as `gave_up`; `starting` and `stopping` are not recorded.
    /// The supervisor says more with [`StatusNode::set_state_with`].
    pub fn set_state(&self, state: ActorState) {
        self.set_state_with(state, Note::default());
    }

    /// [`StatusNode::set_state`], recording `note`: its kind (else the one the change
    /// implies, if any) with its reason, delay and attempt. A note of a kind is recorded even
    /// when the state does not change.
    pub fn set_state_with(&self, state: ActorState, mut note: Note) {
        let mut d = lock(&self.inner.data);
        let changed = d.state != state;
        if changed {
            d.state = state;
            d.state_since = (SystemTime::now(), Instant::now());
        }
        match state {
            ActorState::Running => d.started_at = Some(d.state_since),
            ActorState::Starting => {}
            _ => d.started_at = None,
        }
        if state != ActorState::BackingOff {
            d.next_restart_at = None;
        }
        let derived = match state {
            ActorState::Running => Some(EventKind::Started),
            ActorState::Stopped => Some(EventKind::Stopped),
            ActorState::BackingOff => Some(EventKind::RestartScheduled),
            ActorState::Failed => Some(EventKind::GaveUp),
            ActorState::Starting | ActorState::Stopping => None,
        };
        if let Some(kind) = note.kind.or(derived.filter(|_| changed)) {
            self.record_locked(&mut d, kind, &mut note);
        }
        drop(d);
        if let Some(changes) = self.inner.changes.get() {
            changes.send_replace(state);
        }
    }

    /// Records an event of `note`'s kind with the node's current state and restart count
    /// (a note without a kind records nothing).
    pub fn record_event(&self, mut note: Note) {
        let mut d = lock(&self.inner.data);
        if let Some(kind) = note.kind {
            self.record_locked(&mut d, kind, &mut note);
        }
    }

    /// Records an event while holding the node's data, so its events follow its changes.
    fn record_locked(&self, d: &mut NodeData, kind: EventKind, note: &mut Note) {
        match kind {
            EventKind::Exited | EventKind::Stopped => {
                d.down_since.get_or_insert_with(Instant::now);
            }
            EventKind::Started => {
                if let Some(down) = d.down_since.take() {
                    note.after_ms.get_or_insert(millis(down.elapsed()));
                }
            }
            _ => {}
        }
        self.inner.events.record(
            &self.inner.path,
            self.inner.ephemeral,
            kind,
            d.state,
            d.restarts,
            std::mem::take(note),
        );
    }

    /// Wakes on every [`StatusNode::set_state`] from now on (the value is the new state; the
    /// restart time and the failure reason are recorded before it, see the supervisor).
    pub fn state_changes(&self) -> watch::Receiver<ActorState> {
        self.inner
            .changes
            .get_or_init(|| watch::channel(self.state()).0)
            .subscribe()
    }

    /// Records an abnormal exit reason.
    pub fn record_failure(&self, reason: &str) {
        lock(&self.inner.data).last_failure = Some((reason.to_owned(), SystemTime::now()));
    }

    /// Counts one restart and records when it is due.
    pub fn record_restart(&self, due_in: Duration) {
        let mut d = lock(&self.inner.data);
        d.restarts += 1;
        d.next_restart_at = Some(Instant::now() + due_in);
    }

    /// How long until the scheduled restart, when backing off.
    pub fn next_restart_in(&self) -> Option<Duration> {
        lock(&self.inner.data)
            .next_restart_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Declares that this node's actor is about to wait, inside a handler, for something that
    /// ends by `deadline` (a supervisor stopping a child by its shutdown policy). Readers
    /// that probe the actor's mailbox (the systemd watchdog) use it to tell a busy actor from
    /// a wedged one: past the deadline, an unanswered mailbox is a wedged actor.
    pub fn begin_wait(&self, what: impl Into<String>, deadline: Instant) -> WaitGuard {
        let wait = Wait {
            what: what.into(),
            deadline,
        };
        let previous = lock(&self.inner.data).waiting.replace(wait);
        WaitGuard {
            node: self.clone(),
            previous,
        }
    }

    /// The bounded wait the actor is inside, if any (its deadline may have passed).
    pub fn waiting(&self) -> Option<Wait> {
        lock(&self.inner.data).waiting.clone()
    }

    /// Installs the provider of this node's kind-specific details.
    pub fn set_details(&self, details: DetailsFn) {
        *self
            .inner
            .details
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(details);
    }

    /// Removes the details provider (the actor that installed it is gone).
    pub fn clear_details(&self) {
        *self
            .inner
            .details
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Registers the supervisor running at this node (done by the supervisor itself).
    pub fn set_supervisor(&self, sup: ractor::ActorRef<crate::supervisor::SupervisorMessage>) {
        *self
            .inner
            .supervisor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(sup);
    }

    /// The supervisor running at this node, if it is a supervisor.
    pub fn supervisor(&self) -> Option<ractor::ActorRef<crate::supervisor::SupervisorMessage>> {
        self.inner
            .supervisor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The direct children, in start order.
    pub fn children(&self) -> Vec<StatusNode> {
        self.inner
            .children
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Finds a node by full path (`root/mcp_servers/mcp:fs`) or by a path relative to this node.
    pub fn find(&self, path: &str) -> Option<StatusNode> {
        let path = path.trim_matches('/');
        let rel = if path == self.inner.path {
            return Some(self.clone());
        } else if let Some(rest) = path
            .strip_prefix(self.inner.path.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            rest
        } else {
            path
        };
        let mut node = self.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            let next = node.children().into_iter().find(|c| c.inner.id == part)?;
            node = next;
        }
        Some(node)
    }

    /// Visits this node and every descendant, depth first, parents before children.
    pub fn walk(&self, f: &mut dyn FnMut(&StatusNode)) {
        f(self);
        for child in self.children() {
            child.walk(f);
        }
    }

    /// A serde snapshot of this node and its whole subtree.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = self.snapshot_shallow();
        snap.children = self.children().iter().map(StatusNode::snapshot).collect();
        snap
    }

    /// A serde snapshot of this node alone (children omitted).
    pub fn snapshot_shallow(&self) -> Snapshot {
        let (state, state_since, restarts, last_failure, started_at, next_restart_at) = {
            let d = lock(&self.inner.data);
            (
                d.state,
                d.state_since,
                d.restarts,
                d.last_failure.clone(),
                d.started_at,
                d.next_restart_at,
            )
        };
        // Details are computed outside the data lock: a provider may take its own locks.
        let details = self
            .inner
            .details
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map(|f| f());
        let now = Instant::now();
        Snapshot {
            path: self.inner.path.clone(),
            id: self.inner.id.clone(),
            kind: self.inner.kind.to_owned(),
            state,
            state_since: rfc3339(state_since.0),
            restart_type: self.inner.restart_type,
            restarts,
            last_failure: last_failure.map(|(reason, at)| Failure {
                reason,
                at: rfc3339(at),
            }),
            started_at: started_at.map(|(wall, _)| rfc3339(wall)),
            uptime_secs: started_at.map(|(_, mono)| now.saturating_duration_since(mono).as_secs()),
            next_restart_in_ms: next_restart_at
                .map(|at| at.saturating_duration_since(now).as_millis() as u64),
            details,
            children: Vec::new(),
        }
    }
}

/// Formats a wall-clock time as RFC 3339 UTC with second precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The last abnormal exit of an actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// What went wrong, e.g. `process exited with status 3`.
    pub reason: String,
    /// When it happened (RFC 3339).
    pub at: String,
}

/// One actor's status at a point in time, with its subtree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Full path in the supervision tree.
    pub path: String,
    /// Id within the parent supervisor.
    pub id: String,
    /// Actor kind.
    pub kind: String,
    /// Lifecycle state.
    pub state: ActorState,
    /// When the actor entered `state` (RFC 3339).
    pub state_since: String,
    /// Restart type from the child spec (absent for the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_type: Option<RestartType>,
    /// Restarts since the supervisor created the child.
    pub restarts: u64,
    /// The last abnormal exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// When the current run started (RFC 3339), while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Seconds since the current run started, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    /// Milliseconds until the scheduled restart, while backing off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_in_ms: Option<u64>,
    /// Kind-specific details (pid, exit status, stderr tail, pending calls, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// Children in start order.
    #[serde(default)]
    pub children: Vec<Snapshot>,
}

impl Snapshot {
    /// Finds a node of this snapshot by full path.
    pub fn find(&self, path: &str) -> Option<&Snapshot> {
        if self.path == path {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_actor_state_once() {
        // Exhaustive: a new state does not compile here until it is numbered, and then fails
        // until it is in `ALL` (one-hot metrics would no longer sum to 1 without it).
        let index = |s: ActorState| match s {
            ActorState::Starting => 0,
            ActorState::Running => 1,
            ActorState::BackingOff => 2,
            ActorState::Stopping => 3,
            ActorState::Stopped => 4,
            ActorState::Failed => 5,
        };
        let mut seen: Vec<usize> = ActorState::ALL.iter().map(|&s| index(s)).collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn waits_nest_and_end_with_their_guard() {
        let node = StatusNode::root("root", "supervisor");
        assert_eq!(node.waiting(), None);
        let deadline = Instant::now() + Duration::from_secs(65);
        let outer = node.begin_wait("stopping root/mcp_servers", deadline);
        let inner = node.begin_wait("stopping root/sidecars", deadline);
        assert_eq!(node.waiting().unwrap().what, "stopping root/sidecars");
        drop(inner);
        let wait = node.waiting().unwrap();
        assert_eq!(
            (wait.what.as_str(), wait.deadline),
            ("stopping root/mcp_servers", deadline)
        );
        drop(outer);
        assert_eq!(node.waiting(), None);
    }

    #[test]
    fn tree_paths_find_and_order() {
        let root = StatusNode::root("root", "supervisor");
        let servers = root.child("mcp_servers", "supervisor", Some(RestartType::Permanent));
        servers.child("mcp:b", "mcp_connection", Some(RestartType::Permanent));
        servers.child("mcp:a", "mcp_connection", Some(RestartType::Transient));
        assert_eq!(servers.path(), "root/mcp_servers");
        let a = root
            .find("root/mcp_servers/mcp:a")
            .expect("found by full path");
        assert_eq!(a.path(), "root/mcp_servers/mcp:a");
        assert!(root.find("mcp_servers/mcp:b").is_some(), "relative path");
        assert!(root.find("root/nope").is_none());
        let snap = root.snapshot();
        let ids: Vec<_> = snap.children[0]
            .children
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(ids, ["mcp:b", "mcp:a"], "start order, not sorted");
        servers.remove_child("mcp:b");
        assert_eq!(servers.children().len(), 1);
    }

    #[test]
    fn details_are_read_without_the_actor() {
        let node = StatusNode::root("p", "process");
        let pid = Arc::new(std::sync::atomic::AtomicU32::new(42));
        let p = pid.clone();
        node.set_details(Arc::new(
            move || serde_json::json!({ "pid": p.load(std::sync::atomic::Ordering::Relaxed) }),
        ));
        assert_eq!(node.snapshot().details.unwrap()["pid"], 42);
        pid.store(7, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(node.snapshot().details.unwrap()["pid"], 7);
        node.clear_details();
        assert!(node.snapshot().details.is_none());
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let root = StatusNode::root("root", "supervisor");
        root.set_state(ActorState::Running);
        root.record_failure("boom");
        let snap = root.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
        assert_eq!(back.state, ActorState::Running);
        assert_eq!(back.last_failure.unwrap().reason, "boom");
    }

    #[test]
    fn temporary_children_and_their_subtrees_take_the_short_lived_share_of_the_log() {
        let root = StatusNode::root("root", "supervisor");
        let fs = root
            .child("mcp_servers", "supervisor", Some(RestartType::Permanent))
            .child("mcp:fs", "mcp_connection", Some(RestartType::Permanent));
        fs.set_state(ActorState::Running);
        let sessions = root.child("sessions", "supervisor", Some(RestartType::Permanent));
        // Far more session events than the log keeps of a class.
        for i in 0..crate::events::CAPACITY {
            let session = sessions.child(&format!("s{i}"), "session", Some(RestartType::Temporary));
            session.child("operator", "mcp_connection", None);
            sessions.remove_child(&format!("s{i}"));
        }
        let page = root
            .events()
            .page(0, crate::events::CAPACITY, |e| e.path == fs.path());
        let kinds: Vec<_> = page.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Added, EventKind::Started]);
        assert!(page.gap.is_some(), "session events were overwritten");
    }
}
