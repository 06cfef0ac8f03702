//! The MCP sessions made for agents (their injected Revka endpoint, see
//! `Agents::revka_server`): kept from idling out while their agent lives, ended once it is
//! gone, so an agent that thinks for an hour keeps its tools and a closed agent does not hold
//! a place under `[sessions]`'s cap for `idle_timeout_secs`.
//!
//! Part of the daemon's agent layer (`src/agents.rs`). A session is made before its agent
//! exists; the create call then tells the [`Keeper`] how it went ([`Settle`]): the agent's id,
//! the retry queue's operation id (the agent comes, or not, with the operation's
//! `queued_outcome`, seen by [`Keeper::observe`]), or a failure (the session ends at once).
//! Every [`Keeper::sweep`] (a quarter of the idle timeout, 1–60 s) touches each kept
//! session whose agent lives or whose fate is not known yet (a create still running, a queued
//! operation, a session manager that does not answer) and ends the others: an agent no longer
//! listed by the session manager (closed, or lost with a restart of the session manager) or
//! by the fallback. Sessions ended by other means (`sessions_end`, a daemon reload) are
//! forgotten. A create that never settles (it cannot, short of a bug) is given up after
//! [`MAX_CREATING`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use revka_actors::session::{Session, Sessions};
use serde_json::Value;

/// How long a session may wait for its create call to settle.
pub const MAX_CREATING: Duration = Duration::from_secs(3600);

/// How a create call that made a session went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// The agent exists, with this id.
    Agent(String),
    /// The create was queued as this retry-queue operation.
    Queued(String),
    /// No agent: the session is ended.
    Failed,
}

/// What a kept session waits for or serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Creating(Instant),
    Queued(String),
    Agent(String),
}

#[derive(Debug)]
struct Kept {
    session: Arc<Session>,
    owner: Owner,
}

/// Whether an agent lives: `Some(false)` only when the path that runs it said it is gone.
pub type Liveness<'a> = &'a dyn Fn(&str) -> Option<bool>;

/// Outcomes of queued creates remembered for a settle that comes after them.
const EARLY: usize = 256;

/// The kept sessions, by session id.
#[derive(Debug, Default)]
pub struct Keeper {
    kept: Mutex<HashMap<String, Kept>>,
    /// Queued creates whose outcome came before their call settled (the queue ran the
    /// operation at once): operation id → the agent's id, or `None` for a dead letter.
    early: Mutex<Vec<(String, Option<String>)>>,
}

impl Keeper {
    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A session made for an agent being created.
    pub fn made(&self, session: Arc<Session>) {
        let owner = Owner::Creating(Instant::now());
        self.kept()
            .insert(session.id().to_owned(), Kept { session, owner });
    }

    /// How the create that made `session` went; `None` or an id this keeper did not make (the
    /// caller's own `revka` server) is ignored. Returns the session to end (a failure).
    pub fn settle(&self, session: Option<&str>, outcome: Settle) -> Option<Arc<Session>> {
        let mut kept = self.kept();
        let id = session?;
        match outcome {
            Settle::Failed => kept.remove(id).map(|k| k.session),
            Settle::Agent(agent) => {
                if let Some(k) = kept.get_mut(id) {
                    k.owner = Owner::Agent(agent);
                }
                None
            }
            Settle::Queued(op) => {
                let early = {
                    let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
                    early
                        .iter()
                        .position(|(o, _)| *o == op)
                        .map(|i| early.remove(i).1)
                };
                match early {
                    Some(None) => kept.remove(id).map(|k| k.session),
                    Some(Some(agent)) => {
                        if let Some(k) = kept.get_mut(id) {
                            k.owner = Owner::Agent(agent);
                        }
                        None
                    }
                    None => {
                        if let Some(k) = kept.get_mut(id) {
                            k.owner = Owner::Queued(op);
                        }
                        None
                    }
                }
            }
        }
    }

    /// A feed item: a queued create's outcome binds its session to the new agent, or (a dead
    /// letter) returns the session to end.
    pub fn observe(&self, item: &Value) -> Option<Arc<Session>> {
        if item["kind"] != "queued_outcome" || item["operation"] != "create_agent" {
            return None;
        }
        let op = item["operation_id"].as_str()?;
        let agent = item["result"]["id"]
            .as_str()
            .filter(|_| item["ok"] == true)
            .map(str::to_owned);
        let mut kept = self.kept();
        let Some(session) = kept
            .iter()
            .find(|(_, k)| matches!(&k.owner, Owner::Queued(o) if o == op))
            .map(|(id, _)| id.clone())
        else {
            let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
            if early.len() >= EARLY {
                early.remove(0);
            }
            early.push((op.to_owned(), agent));
            return None;
        };
        match agent {
            Some(agent) => {
                if let Some(k) = kept.get_mut(&session) {
                    k.owner = Owner::Agent(agent);
                }
                None
            }
            None => kept.remove(&session).map(|k| k.session),
        }
    }

    /// The agents of kept sessions (what a sweep needs to know about).
    pub fn agents(&self) -> HashSet<String> {
        self.kept()
            .values()
            .filter_map(|k| match &k.owner {
                Owner::Agent(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    /// Touches the sessions to keep and ends the others (see the module documentation).
    /// Returns how many were ended.
    pub fn sweep(&self, sessions: &Sessions, live: Liveness<'_>) -> usize {
        let mut ended = Vec::new();
        self.kept().retain(|id, k| {
            if k.session.ended().is_cancelled() {
                return false;
            }
            let keep = match &k.owner {
                Owner::Creating(since) => since.elapsed() < MAX_CREATING,
                Owner::Queued(_) => true,
                Owner::Agent(agent) => live(agent) != Some(false),
            };
            if keep {
                k.session.touch();
            } else {
                ended.push((id.clone(), k.owner.clone()));
            }
            keep
        });
        for (id, owner) in &ended {
            let reason = match owner {
                Owner::Agent(agent) => format!("its agent {agent} is gone"),
                _ => "its agent was never created".to_owned(),
            };
            sessions.end(id, &reason);
        }
        ended.len()
    }

    /// Sessions kept now.
    pub fn len(&self) -> usize {
        self.kept().len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.kept().is_empty()
    }
}

/// The injected session of a create body: `mcp_servers.revka`'s `X-Revka-Session` header.
pub fn injected_session(body: &Value) -> Option<&str> {
    body["mcp_servers"]["revka"]["headers"]["X-Revka-Session"].as_str()
}
