//! The OTP-style supervisor actor.
//!
//! A [`SupervisorActor`] owns an ordered list of children ([`ChildSpec`]s), starts them in order,
//! restarts them by their [`RestartPolicy`] and its [`Strategy`], and stops them in reverse
//! order. It is itself a child of another supervisor (except the daemon's root), so the
//! supervision tree is built from this one actor type plus the leaves.
//!
//! Semantics (each is written down with its proving test in `docs/supervision.md`):
//! - exits are classified by [`classify_termination`]: a stop the supervisor requested is
//!   expected and not handled as an exit; a panic, an `Err` from a handler, a kill and a failed
//!   start are abnormal; an actor that stops by itself is normal (an OS process actor turns a
//!   non-zero exit or a signal into an `Err`, so that is abnormal too);
//! - a child past its own limit (`max_restarts` within `window`) is marked `failed` and left down;
//!   its siblings are untouched; `RestartChild` brings it back;
//! - more than [`Intensity::max_restarts`] restarts across all children within
//!   [`Intensity::period`] and the supervisor stops its children in reverse order and fails, so
//!   its own supervisor sees an abnormal exit (escalation);
//! - restart delays come from [`Backoff`]: immediate after a stable run, then exponential with
//!   jitter, reset after `reset_after` of uptime.
//!
//! Each of these steps is recorded in the tree's supervision event log ([`crate::events`]) as
//! it happens, on the child's node: `exited` (reason, abnormal), then `restart_scheduled`
//! (delay, attempt) or `gave_up`, `started` (after how long down), `stopped` (why),
//! `restart_requested`, `added`/`removed`; `escalated` on the supervisor's own node.
//!
//! ractor facts this relies on (0.16.5): the default `handle_supervisor_evt` stops the parent, so
//! it is overridden here; when an actor finishes, ractor *kills* every actor still linked below
//! it, so `post_stop` stops the children gracefully first; `post_stop` does not run after a kill
//! or a failure, which is why leaves release OS resources in `Drop`.

mod spec;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RactorErr, RpcReplyPort,
    SupervisionEvent,
};
use tokio::time::Instant;
use tracing::{error, info, warn};

pub use spec::{
    Backoff, ChildContext, ChildSpec, ExitKind, Intensity, NeedsOperator, RestartPolicy,
    RestartType, Shutdown, StartFn, Strategy,
};

use crate::events::{EventKind, Note};
use crate::status::{ActorState, StatusNode};

/// How long to wait for a killed actor to finish (a kill interrupts its handler at once).
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Errors of supervisor requests, and the escalation failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// No child with that id.
    #[error("no child `{0}`")]
    NoSuchChild(String),
    /// A child with that id already exists.
    #[error("child `{0}` already exists")]
    AlreadyExists(String),
    /// Temporary children are never restarted.
    #[error("child `{0}` is temporary: it is never restarted")]
    NotRestartable(String),
    /// The supervisor's restart intensity was exceeded; it stopped its children and failed.
    #[error(
        "supervisor `{path}` exceeded its restart intensity ({max_restarts} restarts in {period:?}); last exit: {last}"
    )]
    IntensityExceeded {
        /// The supervisor's path.
        path: String,
        /// Its intensity limit.
        max_restarts: u32,
        /// Its intensity window.
        period: Duration,
        /// The exit that tipped it over.
        last: String,
    },
    /// The supervisor could not be reached.
    #[error("supervisor unavailable: {0}")]
    Unavailable(String),
}

/// Classifies a `SupervisionEvent::ActorTerminated` reason: ractor reports a kill (and a
/// cancelled actor task) as termination, but for restart purposes it is abnormal.
pub fn classify_termination(reason: Option<&str>) -> ExitKind {
    match reason {
        Some("killed") | Some("actor_task_cancelled") => ExitKind::Abnormal("killed".to_owned()),
        other => ExitKind::Normal(other.map(str::to_owned)),
    }
}

/// The supervisor actor.
#[derive(Debug, Default, Clone, Copy)]
pub struct SupervisorActor;

/// Arguments of [`SupervisorActor`].
#[derive(Debug)]
pub struct SupervisorArguments {
    /// The supervisor's own status node (children's nodes are created below it).
    pub node: StatusNode,
    /// Restart strategy.
    pub strategy: Strategy,
    /// Restart intensity before escalation.
    pub intensity: Intensity,
    /// Initial children, started in this order.
    pub children: Vec<ChildSpec>,
}

/// A child as reported by [`SupervisorMessage::GetChildren`].
#[derive(Debug, Clone)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Its state.
    pub state: ActorState,
    /// Its cell while it is alive.
    pub cell: Option<ActorCell>,
}

/// Messages of [`SupervisorActor`].
pub enum SupervisorMessage {
    /// Add a child at the end and start it.
    StartChild(ChildSpec, RpcReplyPort<Result<(), SupervisorError>>),
    /// Stop a child (by its shutdown policy) and remove it.
    TerminateChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    /// Stop a child if running and start it again, clearing its restart limit (also brings
    /// back a `failed` child).
    RestartChild(String, RpcReplyPort<Result<(), SupervisorError>>),
    /// Replaces a child's spec (its start function and policy) without restarting it: the
    /// next (re)start uses the new spec. A live config reload uses this for settings that do
    /// not need a restart.
    UpdateChild(ChildSpec, RpcReplyPort<Result<(), SupervisorError>>),
    /// The children in start order.
    GetChildren(RpcReplyPort<Vec<ChildInfo>>),
    /// Internal: a backoff delay ran out.
    RestartDue {
        /// The child whose timer fired.
        id: String,
        /// The child's generation when the timer was set; stale timers are ignored.
        generation: u64,
    },
}

impl std::fmt::Debug for SupervisorMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StartChild(spec, _) => write!(f, "StartChild({})", spec.id),
            Self::TerminateChild(id, _) => write!(f, "TerminateChild({id})"),
            Self::RestartChild(id, _) => write!(f, "RestartChild({id})"),
            Self::UpdateChild(spec, _) => write!(f, "UpdateChild({})", spec.id),
            Self::GetChildren(_) => f.write_str("GetChildren"),
            Self::RestartDue { id, generation } => write!(f, "RestartDue({id}, {generation})"),
        }
    }
}

/// One child as the supervisor tracks it.
struct Child {
    spec: ChildSpec,
    node: StatusNode,
    cell: Option<ActorCell>,
    state: ActorState,
    /// Bumped on every start and stop, so a stale restart timer can be recognised.
    generation: u64,
    /// Restarts so far (the `attempt` handed to the start function).
    restarts: u64,
    /// Restart times within the policy window.
    window: VecDeque<Instant>,
    /// Consecutive restarts without a stable run (the backoff attempt).
    consecutive: u32,
    running_since: Option<Instant>,
}

/// State of [`SupervisorActor`].
pub struct SupervisorState {
    node: StatusNode,
    strategy: Strategy,
    intensity: Intensity,
    children: Vec<Child>,
    /// Restart times across all children within the intensity period.
    restart_log: VecDeque<Instant>,
}

impl std::fmt::Debug for SupervisorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorState")
            .field("path", &self.node.path())
            .field("children", &self.children.len())
            .finish()
    }
}

impl Actor for SupervisorActor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = SupervisorArguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        args.node.set_supervisor(myself);
        // Trivial on purpose: spawn_linked awaits pre_start inside our parent's handler.
        let mut state = SupervisorState {
            node: args.node,
            strategy: args.strategy,
            intensity: args.intensity,
            children: Vec::with_capacity(args.children.len()),
            restart_log: VecDeque::new(),
        };
        // A restarted supervisor reuses the status nodes of its previous run (restart counts
        // survive); nodes of children that are no longer specified are dropped.
        let ids: Vec<&str> = args.children.iter().map(|c| c.id.as_str()).collect();
        for stale in state.node.children() {
            if !ids.contains(&stale.id()) {
                state.node.remove_child(stale.id());
            }
        }
        for spec in args.children {
            state.push_child(spec)?;
        }
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for idx in 0..state.children.len() {
            if !state.children[idx].spec.autostart {
                continue;
            }
            // A child whose start fails is handled like any abnormal exit (backoff, limits);
            // only an escalation fails the supervisor itself.
            state.start_child(idx, &myself).await?;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_all("supervisor stopping").await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMessage::StartChild(spec, reply) => {
                let result = match state.push_child(spec) {
                    Ok(idx) => {
                        if state.children[idx].spec.autostart {
                            state.start_child(idx, &myself).await?;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            SupervisorMessage::TerminateChild(id, reply) => {
                let result = match state.index_of_id(&id) {
                    Some(idx) => {
                        state.stop_child(idx, "terminated on request").await;
                        let child = state.children.remove(idx);
                        state.node.remove_child(&child.spec.id);
                        info!(path = %child.node.path(), "child removed");
                        Ok(())
                    }
                    None => Err(SupervisorError::NoSuchChild(id)),
                };
                let _ = reply.send(result);
            }
            SupervisorMessage::RestartChild(id, reply) => {
                let result = state.restart_on_request(&id, &myself).await?;
                let _ = reply.send(result);
            }
            SupervisorMessage::UpdateChild(spec, reply) => {
                let result = match state.index_of_id(&spec.id) {
                    Some(idx) => {
                        let child = &mut state.children[idx];
                        info!(path = %child.node.path(), "child spec updated (takes effect at its next start)");
                        child.spec = spec;
                        Ok(())
                    }
                    None => Err(SupervisorError::NoSuchChild(spec.id)),
                };
                let _ = reply.send(result);
            }
            SupervisorMessage::GetChildren(reply) => {
                let list = state
                    .children
                    .iter()
                    .map(|c| ChildInfo {
                        id: c.spec.id.clone(),
                        state: c.state,
                        cell: c.cell.clone(),
                    })
                    .collect();
                let _ = reply.send(list);
            }
            SupervisorMessage::RestartDue { id, generation } => {
                state.restart_due(&id, generation, &myself).await?;
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorStarted(cell) => {
                if let Some(idx) = state.index_of_cell(cell.get_id()) {
                    let child = &mut state.children[idx];
                    child.state = ActorState::Running;
                    child.node.set_state(ActorState::Running);
                    child.running_since = Some(Instant::now());
                    info!(path = %child.node.path(), attempt = child.restarts, "child running");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _state, reason) => {
                if let Some(idx) = state.index_of_cell(cell.get_id()) {
                    let exit = classify_termination(reason.as_deref());
                    state.child_exited(idx, exit, &myself).await?;
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(idx) = state.index_of_cell(cell.get_id()) {
                    let exit = match err.downcast_ref::<NeedsOperator>() {
                        Some(n) => ExitKind::Fatal(n.0.clone()),
                        None => ExitKind::Abnormal(error_chain(err.as_ref())),
                    };
                    state.child_exited(idx, exit, &myself).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Formats an error with its `source()` chain: `outer: inner: root`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl SupervisorState {
    fn push_child(&mut self, spec: ChildSpec) -> Result<usize, SupervisorError> {
        if self.index_of_id(&spec.id).is_some() {
            return Err(SupervisorError::AlreadyExists(spec.id));
        }
        let node = self
            .node
            .child(&spec.id, spec.kind, Some(spec.policy.restart));
        self.children.push(Child {
            spec,
            node,
            cell: None,
            state: ActorState::Stopped,
            generation: 0,
            restarts: 0,
            window: VecDeque::new(),
            consecutive: 0,
            running_since: None,
        });
        Ok(self.children.len() - 1)
    }

    fn index_of_id(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.id == id)
    }

    fn index_of_cell(&self, id: ActorId) -> Option<usize> {
        self.children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|cell| cell.get_id() == id))
    }

    /// Starts child `idx`. A failed start is handled as an abnormal exit.
    async fn start_child(
        &mut self,
        idx: usize,
        myself: &ActorRef<SupervisorMessage>,
    ) -> Result<(), ActorProcessingErr> {
        let child = &mut self.children[idx];
        child.generation += 1;
        child.state = ActorState::Starting;
        child.node.set_state(ActorState::Starting);
        let ctx = ChildContext {
            supervisor: myself.get_cell(),
            node: child.node.clone(),
            attempt: child.restarts,
        };
        match (child.spec.start)(ctx).await {
            Ok(cell) => {
                info!(path = %child.node.path(), attempt = child.restarts, "child started");
                child.cell = Some(cell);
                Ok(())
            }
            Err(e) => {
                let reason = format!("start failed: {}", error_chain(&e));
                self.child_exited(idx, ExitKind::Abnormal(reason), myself)
                    .await
            }
        }
    }

    /// Stops child `idx` by its shutdown policy: graceful stop with a timeout, then kill.
    async fn stop_child(&mut self, idx: usize, reason: &str) {
        let child = &mut self.children[idx];
        child.generation += 1;
        child.running_since = None;
        let Some(cell) = child.cell.take() else {
            if child.state == ActorState::BackingOff {
                child.state = ActorState::Stopped;
                child.node.set_state_with(
                    ActorState::Stopped,
                    Note::new(EventKind::Stopped).reason(reason),
                );
            }
            return;
        };
        child.state = ActorState::Stopping;
        child.node.set_state(ActorState::Stopping);
        let path = child.node.path().to_owned();
        info!(%path, reason, "stopping child");
        // Our mailbox waits with us; say until when, so a probe of it can tell busy from
        // wedged (the systemd watchdog does).
        let bound = match child.spec.policy.shutdown {
            Shutdown::Timeout(timeout) => timeout + KILL_WAIT,
            Shutdown::BrutalKill => KILL_WAIT,
        };
        let _waiting = self
            .node
            .begin_wait(format!("stopping {path}"), Instant::now() + bound);
        match child.spec.policy.shutdown {
            Shutdown::Timeout(timeout) => {
                match cell
                    .stop_and_wait(Some(reason.to_owned()), Some(timeout))
                    .await
                {
                    Ok(()) => {}
                    Err(RactorErr::Timeout) => {
                        warn!(%path, timeout_ms = timeout.as_millis() as u64, "child did not stop in time; killing it");
                        if cell.kill_and_wait(Some(KILL_WAIT)).await.is_err() {
                            error!(%path, "child did not die after a kill");
                        }
                    }
                    // The channel is closed: the actor was already gone.
                    Err(_) => {}
                }
            }
            Shutdown::BrutalKill => {
                if cell.kill_and_wait(Some(KILL_WAIT)).await.is_err() {
                    error!(%path, "child did not die after a kill");
                }
            }
        }
        child.state = ActorState::Stopped;
        child.node.set_state_with(
            ActorState::Stopped,
            Note::new(EventKind::Stopped).reason(reason),
        );
        info!(%path, "child stopped");
    }

    /// Stops every child, in reverse start order.
    async fn stop_all(&mut self, reason: &str) {
        for idx in (0..self.children.len()).rev() {
            self.stop_child(idx, reason).await;
        }
    }

    /// Applies the restart policy and strategy to an exit of child `idx`. Returns `Err` only
    /// when the supervisor's own intensity is exceeded (after stopping every child).
    async fn child_exited(
        &mut self,
        idx: usize,
        exit: ExitKind,
        myself: &ActorRef<SupervisorMessage>,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let child = &mut self.children[idx];
        child.cell = None;
        let uptime = child
            .running_since
            .take()
            .map(|t| now.saturating_duration_since(t));
        let path = child.node.path().to_owned();
        let reason = exit.reason().to_owned();
        if exit.is_abnormal() {
            child.node.record_failure(&reason);
        }
        // The event of the exit, recorded with the state that follows it.
        let exited = Note::new(EventKind::Exited)
            .reason(reason.clone())
            .abnormal(exit.is_abnormal());
        let policy = child.spec.policy;

        if let ExitKind::Fatal(why) = &exit {
            child.state = ActorState::Failed;
            child.node.set_state_with(ActorState::Failed, exited);
            child
                .node
                .record_event(Note::new(EventKind::GaveUp).reason(why.clone()));
            error!(%path, reason = %why, "child needs an operator; marked failed, not restarted (restart it on request)");
            return Ok(());
        }

        if !policy.restart.restarts_after(&exit) {
            child.state = ActorState::Stopped;
            child.node.set_state_with(ActorState::Stopped, exited);
            if policy.restart == RestartType::Temporary {
                info!(%path, %reason, "temporary child exited; removed");
                let id = child.spec.id.clone();
                self.children.remove(idx);
                self.node.remove_child(&id);
            } else {
                info!(%path, %reason, restart = %policy.restart, "child exited; not restarted");
            }
            return Ok(());
        }

        // The child's own limit: past it, the child alone is given up.
        while child
            .window
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > policy.window)
        {
            child.window.pop_front();
        }
        if child.window.len() >= policy.max_restarts as usize {
            child.state = ActorState::Failed;
            child.node.set_state_with(ActorState::Failed, exited);
            child
                .node
                .record_event(Note::new(EventKind::GaveUp).reason(format!(
                    "more than {} restarts within {} s",
                    policy.max_restarts,
                    policy.window.as_secs()
                )));
            error!(
                %path, %reason,
                max_restarts = policy.max_restarts,
                window_secs = policy.window.as_secs(),
                "child exceeded its restart limit; marked failed (restart it on request)"
            );
            return Ok(());
        }
        child.window.push_back(now);

        // The supervisor's intensity: past it, everything stops and the failure escalates.
        let intensity = self.intensity;
        while self
            .restart_log
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > intensity.period)
        {
            self.restart_log.pop_front();
        }
        if self.restart_log.len() >= intensity.max_restarts as usize {
            let err = SupervisorError::IntensityExceeded {
                path: self.node.path().to_owned(),
                max_restarts: intensity.max_restarts,
                period: intensity.period,
                last: format!("{path}: {reason}"),
            };
            error!(path = %self.node.path(), error = %err, "escalating: stopping all children");
            self.children[idx].state = ActorState::Failed;
            self.children[idx]
                .node
                .set_state_with(ActorState::Failed, exited);
            self.node
                .record_event(Note::new(EventKind::Escalated).reason(err.to_string()));
            self.stop_all("supervisor escalating").await;
            return Err(err.into());
        }
        self.restart_log.push_back(now);

        let child = &mut self.children[idx];
        if uptime.is_some_and(|u| u >= policy.backoff.reset_after) {
            child.consecutive = 0;
        }
        child.consecutive = child.consecutive.saturating_add(1);
        child.restarts += 1;
        let delay = policy.backoff.delay(child.consecutive);
        child.state = ActorState::BackingOff;
        // The time first: the node is never seen backing off without one.
        child.node.record_restart(delay);
        child.node.set_state_with(ActorState::BackingOff, exited);
        child.node.record_event(
            Note::new(EventKind::RestartScheduled)
                .delay(delay)
                .attempt(u64::from(child.consecutive)),
        );
        let generation = child.generation;
        let id = child.spec.id.clone();
        warn!(
            %path, %reason,
            attempt = child.consecutive,
            restarts = child.restarts,
            delay_ms = delay.as_millis() as u64,
            "child exited; restart scheduled"
        );

        let siblings: Vec<usize> = match self.strategy {
            Strategy::OneForOne => Vec::new(),
            Strategy::OneForAll => (0..self.children.len()).filter(|&j| j != idx).collect(),
            Strategy::RestForOne => (idx + 1..self.children.len()).collect(),
        };
        // In reverse order; `j` only goes down, so removing a temporary sibling shifts no
        // index still to visit (only the failed child's, which is not used past here).
        for &j in siblings.iter().rev() {
            if self.children[j].cell.is_some() {
                self.stop_child(j, &format!("sibling `{id}` restarting"))
                    .await;
                if self.children[j].spec.policy.restart == RestartType::Temporary {
                    // As in OTP: a temporary child is never restarted, not even with its group.
                    let sibling = self.children.remove(j);
                    info!(path = %sibling.node.path(), sibling = %id, "temporary child stopped with its group; removed");
                    self.node.remove_child(&sibling.spec.id);
                    continue;
                }
                let sibling = &mut self.children[j];
                sibling.state = ActorState::BackingOff;
                sibling.node.set_state_with(
                    ActorState::BackingOff,
                    Note::new(EventKind::RestartScheduled)
                        .reason(format!("restarting with its group after `{id}` exited")),
                );
            }
        }

        if delay.is_zero() {
            myself.send_message(SupervisorMessage::RestartDue { id, generation })?;
        } else {
            myself.send_after(delay, move || SupervisorMessage::RestartDue {
                id,
                generation,
            });
        }
        Ok(())
    }

    /// A backoff delay ran out: start the child (and, for the group strategies, the siblings
    /// that were stopped with it).
    async fn restart_due(
        &mut self,
        id: &str,
        generation: u64,
        myself: &ActorRef<SupervisorMessage>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(idx) = self.index_of_id(id) else {
            return Ok(());
        };
        let child = &self.children[idx];
        if child.generation != generation || child.state != ActorState::BackingOff {
            return Ok(()); // stale timer: the child was restarted or stopped meanwhile
        }
        let group: Vec<usize> = match self.strategy {
            Strategy::OneForOne => vec![idx],
            Strategy::OneForAll => (0..self.children.len()).collect(),
            Strategy::RestForOne => {
                if self.children[..idx]
                    .iter()
                    .any(|c| c.state == ActorState::BackingOff)
                {
                    // An earlier child is still backing off; its timer restarts us too.
                    return Ok(());
                }
                (idx..self.children.len()).collect()
            }
        };
        // Start in order. The list may shrink if a temporary child fails to start.
        let ids: Vec<String> = group
            .into_iter()
            .filter(|&j| self.children[j].state == ActorState::BackingOff)
            .map(|j| self.children[j].spec.id.clone())
            .collect();
        for id in ids {
            if let Some(j) = self.index_of_id(&id)
                && self.children[j].state == ActorState::BackingOff
            {
                self.start_child(j, myself).await?;
            }
        }
        Ok(())
    }

    async fn restart_on_request(
        &mut self,
        id: &str,
        myself: &ActorRef<SupervisorMessage>,
    ) -> Result<Result<(), SupervisorError>, ActorProcessingErr> {
        let Some(idx) = self.index_of_id(id) else {
            return Ok(Err(SupervisorError::NoSuchChild(id.to_owned())));
        };
        if self.children[idx].spec.policy.restart == RestartType::Temporary {
            return Ok(Err(SupervisorError::NotRestartable(id.to_owned())));
        }
        self.children[idx]
            .node
            .record_event(Note::new(EventKind::RestartRequested));
        self.stop_child(idx, "restart requested").await;
        let child = &mut self.children[idx];
        child.window.clear();
        child.consecutive = 0;
        child.restarts += 1;
        child.node.record_restart(Duration::ZERO);
        info!(path = %child.node.path(), "restarting child on request");
        self.start_child(idx, myself).await?;
        Ok(Ok(()))
    }
}

// === Request helpers ===

/// How long a request to a supervisor may wait: a supervisor busy stopping a child answers
/// after that child's shutdown timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn request<T: Send + 'static>(
    sup: &ActorRef<SupervisorMessage>,
    msg: impl FnOnce(RpcReplyPort<T>) -> SupervisorMessage,
) -> Result<T, SupervisorError> {
    match sup.call(msg, Some(REQUEST_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
        Ok(ractor::rpc::CallResult::Timeout) => {
            Err(SupervisorError::Unavailable("timed out".into()))
        }
        Ok(ractor::rpc::CallResult::SenderError) => {
            Err(SupervisorError::Unavailable("supervisor stopped".into()))
        }
        Err(e) => Err(SupervisorError::Unavailable(e.to_string())),
    }
}

/// Adds a child to a running supervisor and starts it.
pub async fn start_child(
    sup: &ActorRef<SupervisorMessage>,
    spec: ChildSpec,
) -> Result<(), SupervisorError> {
    request(sup, |r| SupervisorMessage::StartChild(spec, r)).await?
}

/// Stops a child by its shutdown policy and removes it.
pub async fn terminate_child(
    sup: &ActorRef<SupervisorMessage>,
    id: &str,
) -> Result<(), SupervisorError> {
    let id = id.to_owned();
    request(sup, |r| SupervisorMessage::TerminateChild(id, r)).await?
}

/// Restarts a child (also one marked `failed`).
pub async fn restart_child(
    sup: &ActorRef<SupervisorMessage>,
    id: &str,
) -> Result<(), SupervisorError> {
    let id = id.to_owned();
    request(sup, |r| SupervisorMessage::RestartChild(id, r)).await?
}

/// Why a restart by path was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestartPathError {
    /// No actor at that path.
    #[error("no actor at `{0}`")]
    NotFound(String),
    /// The path names something that cannot be restarted (the root, a temporary child, an
    /// actor that is not a supervisor's child).
    #[error("cannot restart `{path}`: {reason}")]
    Refused {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The supervisor could not be asked.
    #[error("cannot restart `{path}`: {source}")]
    Supervisor {
        /// The path.
        path: String,
        /// The supervisor's answer.
        #[source]
        source: SupervisorError,
    },
}

/// Restarts the actor at `path` (e.g. `root/mcp_servers/mcp:fs`) through its supervisor; also
/// brings back a `failed` child.
pub async fn restart_path(root: &StatusNode, path: &str) -> Result<(), RestartPathError> {
    let path = path.trim_matches('/');
    let node = root
        .find(path)
        .ok_or_else(|| RestartPathError::NotFound(path.to_owned()))?;
    let refuse = |reason: &str| RestartPathError::Refused {
        path: node.path().to_owned(),
        reason: reason.to_owned(),
    };
    let Some((parent_path, _)) = node.path().rsplit_once('/') else {
        return Err(refuse("the root is restarted by restarting the daemon"));
    };
    let parent = root
        .find(parent_path)
        .ok_or_else(|| refuse("its parent is gone"))?;
    let sup = parent
        .supervisor()
        .ok_or_else(|| refuse("it is not a supervised child (restart its owner instead)"))?;
    match restart_child(&sup, node.id()).await {
        Ok(()) => Ok(()),
        Err(SupervisorError::NotRestartable(_)) => {
            Err(refuse("it is temporary: it is never restarted"))
        }
        Err(SupervisorError::NoSuchChild(id)) => {
            Err(RestartPathError::NotFound(format!("{parent_path}/{id}")))
        }
        Err(source) => Err(RestartPathError::Supervisor {
            path: node.path().to_owned(),
            source,
        }),
    }
}

/// Replaces a child's spec without restarting it.
pub async fn update_child(
    sup: &ActorRef<SupervisorMessage>,
    spec: ChildSpec,
) -> Result<(), SupervisorError> {
    request(sup, |r| SupervisorMessage::UpdateChild(spec, r)).await?
}

/// Lists the children in start order.
pub async fn get_children(
    sup: &ActorRef<SupervisorMessage>,
) -> Result<Vec<ChildInfo>, SupervisorError> {
    request(sup, SupervisorMessage::GetChildren).await
}

/// A child spec that runs a nested supervisor. Supervisors get a long shutdown timeout (their
/// own children's timeouts run inside it), like OTP's `infinity` for supervisor children.
pub fn supervisor_spec(
    id: impl Into<String>,
    policy: RestartPolicy,
    strategy: Strategy,
    intensity: Intensity,
    children: impl Fn() -> Vec<ChildSpec> + Send + Sync + 'static,
) -> ChildSpec {
    let children = std::sync::Arc::new(children);
    ChildSpec::new(id, "supervisor", policy, move |ctx: ChildContext| {
        let children = children.clone();
        async move {
            let args = SupervisorArguments {
                node: ctx.node,
                strategy,
                intensity,
                children: children(),
            };
            let (actor, _) =
                SupervisorActor::spawn_linked(None, SupervisorActor, args, ctx.supervisor).await?;
            Ok(actor.get_cell())
        }
    })
}
