//! Per-session budgets: which MCP session created which agent (both paths), each agent's
//! usage totals (from the feed's `usage` events, `data.totals`), the sums per session, and
//! the per-session limits of `[agents]` (`max_cost_usd_per_session`,
//! `max_tokens_per_session`; tokens = input + output + cache read + cache creation, as the
//! per-agent limits count them).
//!
//! Part of the daemon's agent layer (`src/agents.rs`). The [`Ledger`] observes every feed
//! item; per-agent limits are the session manager's and the fallback's own (their agents stop
//! themselves). When a session's sums pass a limit, the ledger marks the session exceeded,
//! returns the `{"source":"revka","kind":"budget","session",…}` item to the agent layer, which
//! publishes it and interrupts that session's running agents; from then
//! on the tools refuse the session's `create_agent` and `send_agent_prompt` with
//! [`Ledger::check`]'s message. Bounded: at most [`MAX_AGENTS`] agents are remembered (the
//! oldest forgotten first).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

/// Agents remembered at most.
pub const MAX_AGENTS: usize = 10_000;

/// The per-session limits (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// USD.
    pub max_cost_usd: Option<f64>,
    /// Tokens: input + output + cache read + cache creation.
    pub max_tokens: Option<u64>,
}

/// One agent's usage.
#[derive(Debug, Clone, Default)]
struct AgentUsage {
    path: &'static str,
    session: Option<String>,
    name: Option<String>,
    backend: Option<String>,
    totals: Value,
}

impl AgentUsage {
    fn tokens(&self) -> u64 {
        let n = |k: &str| self.totals.get(k).and_then(Value::as_u64).unwrap_or(0);
        // The same count as the per-agent limits of the session manager and the fallback:
        // every token the model read or wrote, cached input included.
        [
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ]
        .into_iter()
        .fold(0u64, |sum, k| sum.saturating_add(n(k)))
    }

    fn cost(&self) -> f64 {
        self.totals
            .get("cost_usd")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    }
}

#[derive(Debug, Default)]
struct State {
    agents: HashMap<String, AgentUsage>,
    order: VecDeque<String>,
    /// The MCP session an agent's own session (its injected Revka endpoint) was made for:
    /// the session it counts against, so sub-agents spend their creator's budget.
    parents: HashMap<String, String>,
    parents_order: VecDeque<String>,
    exceeded: BTreeMap<String, String>,
    limits: Limits,
}

/// The ledger.
#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<State>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the per-session limits (from the live `[agents]`).
    pub fn set_limits(&self, limits: Limits) {
        self.state().limits = limits;
    }

    /// Records that `session` created the agent `id` on `path` (`sidecar` or `fallback`). An
    /// agent's own session counts as the session that created that agent.
    pub fn owned(&self, id: &str, path: &'static str, session: Option<&str>) {
        let mut state = self.state();
        let session = session.map(|s| root_of(&state, s));
        let entry = entry(&mut state, id);
        entry.path = path;
        if session.is_some() {
            entry.session = session;
        }
    }

    /// Records that `child` is the MCP session made for an agent that `parent` created.
    pub fn session_for_agent(&self, child: &str, parent: &str) {
        let mut state = self.state();
        let root = root_of(&state, parent);
        while state.parents_order.len() >= MAX_AGENTS {
            if let Some(old) = state.parents_order.pop_front() {
                state.parents.remove(&old);
            }
        }
        state.parents_order.push_back(child.to_owned());
        state.parents.insert(child.to_owned(), root);
    }

    /// The session that created agent `id`, if known.
    pub fn owner(&self, id: &str) -> Option<String> {
        self.state().agents.get(id)?.session.clone()
    }

    /// The agents `session` created.
    pub fn agents_of(&self, session: &str) -> Vec<(String, &'static str)> {
        self.state()
            .agents
            .iter()
            .filter(|(_, a)| a.session.as_deref() == Some(session))
            .map(|(id, a)| (id.clone(), a.path))
            .collect()
    }

    /// `Err(message)` when `session` is past its budget: its new agents and prompts are
    /// refused.
    pub fn check(&self, session: &str) -> Result<(), String> {
        let state = self.state();
        match state.exceeded.get(&root_of(&state, session)) {
            Some(why) => Err(format!(
                "budget exceeded for this MCP session: {why}; its agents were stopped and new \
                 agents or prompts are refused ([agents] max_cost_usd_per_session / \
                 max_tokens_per_session)"
            )),
            None => Ok(()),
        }
    }

    /// Observes one feed item: `usage` events update the agent's totals, and may pass its
    /// session's limit. Returns the `budget` item to publish when they did.
    pub fn observe(&self, item: &Value) -> Option<Value> {
        if item["kind"] != "agent_event" || item["event"]["type"] != "usage" {
            return None;
        }
        let id = item["agent"]["id"].as_str()?;
        let totals = item["event"]["data"]["totals"].clone();
        if !totals.is_object() {
            return None;
        }
        let path = if item["source"] == "fallback" {
            "fallback"
        } else {
            "sidecar"
        };
        let mut state = self.state();
        let agent = entry(&mut state, id);
        agent.path = path;
        agent.totals = totals;
        agent.name = item["agent"]["name"].as_str().map(str::to_owned);
        agent.backend = item["agent"]["backend"].as_str().map(str::to_owned);
        let session = agent.session.clone()?;
        if state.exceeded.contains_key(&session) {
            return None;
        }
        let limits = state.limits;
        let (cost, tokens) = sums(&state, &session);
        let over_cost = limits.max_cost_usd.filter(|max| cost > *max);
        let over_tokens = limits.max_tokens.filter(|max| tokens > *max);
        if over_cost.is_none() && over_tokens.is_none() {
            return None;
        }
        let why = match (over_cost, over_tokens) {
            (Some(max), _) => format!("the session's agents cost ${cost:.4} (limit ${max})"),
            (None, Some(max)) => format!("the session's agents used {tokens} tokens (limit {max})"),
            (None, None) => unreachable!("checked above"),
        };
        state.exceeded.insert(session.clone(), why.clone());
        drop(state);
        let mut limit = json!({});
        if let Some(max) = limits.max_cost_usd {
            limit["max_cost_usd"] = json!(max);
        }
        if let Some(max) = limits.max_tokens {
            limit["max_tokens"] = json!(max);
        }
        Some(json!({
            "source": "revka", "kind": "budget", "session": session,
            "text": format!("budget exceeded: {why}"),
            "limit": limit, "used": { "cost_usd": cost, "tokens": tokens },
        }))
    }

    /// The cost section of `system_dashboard`: totals per agent and per session, with the
    /// limits and what is left.
    pub fn report(&self) -> Value {
        let state = self.state();
        let agents: Vec<Value> = state
            .order
            .iter()
            .filter_map(|id| Some((id, state.agents.get(id)?)))
            .map(|(id, a)| {
                json!({
                    "id": id, "path": a.path, "session": a.session, "name": a.name,
                    "backend": a.backend, "tokens": a.tokens(), "cost_usd": a.cost(),
                    "totals": a.totals,
                })
            })
            .collect();
        let mut sessions: BTreeMap<&str, ()> = BTreeMap::new();
        for a in state.agents.values() {
            if let Some(s) = a.session.as_deref() {
                sessions.insert(s, ());
            }
        }
        let limits = state.limits;
        let sessions: Vec<Value> = sessions
            .keys()
            .map(|s| {
                let (cost, tokens) = sums(&state, s);
                let agents = state
                    .agents
                    .values()
                    .filter(|a| a.session.as_deref() == Some(*s))
                    .count();
                json!({
                    "session": s, "agents": agents, "cost_usd": cost, "tokens": tokens,
                    "cost_usd_left": limits.max_cost_usd.map(|m| (m - cost).max(0.0)),
                    "tokens_left": limits.max_tokens.map(|m| m.saturating_sub(tokens)),
                    "exceeded": state.exceeded.get(*s),
                })
            })
            .collect();
        let (cost, tokens) = state.agents.values().fold((0.0, 0u64), |(c, t), a| {
            (c + a.cost(), t.saturating_add(a.tokens()))
        });
        json!({
            "tracked": true,
            "total": { "cost_usd": cost, "tokens": tokens, "agents": state.agents.len() },
            "limits": {
                "max_cost_usd_per_session": limits.max_cost_usd,
                "max_tokens_per_session": limits.max_tokens,
            },
            "per_agent": agents,
            "per_session": sessions,
        })
    }
}

/// The agent's entry, created (and the oldest forgotten past [`MAX_AGENTS`]) if new.
fn entry<'a>(state: &'a mut State, id: &str) -> &'a mut AgentUsage {
    if !state.agents.contains_key(id) {
        while state.order.len() >= MAX_AGENTS {
            if let Some(old) = state.order.pop_front() {
                state.agents.remove(&old);
            }
        }
        state.order.push_back(id.to_owned());
        state.agents.insert(
            id.to_owned(),
            AgentUsage {
                path: "sidecar",
                ..AgentUsage::default()
            },
        );
    }
    state.agents.get_mut(id).expect("inserted above")
}

/// The session `session` counts against: itself, or the session that created the agent it
/// was made for (transitively; agents' sessions are recorded with their root already).
fn root_of(state: &State, session: &str) -> String {
    state
        .parents
        .get(session)
        .cloned()
        .unwrap_or_else(|| session.to_owned())
}

/// `(cost, tokens)` of `session`'s agents.
fn sums(state: &State, session: &str) -> (f64, u64) {
    state
        .agents
        .values()
        .filter(|a| a.session.as_deref() == Some(session))
        .fold((0.0, 0), |(c, t), a| (c + a.cost(), t + a.tokens()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(source: &str, id: &str, input: u64, output: u64, cost: f64) -> Value {
        json!({
            "source": source, "kind": "agent_event",
            "agent": { "id": id, "name": id, "backend": "claude", "status": "running" },
            "event": { "seq": 3, "ts": "t", "type": "usage", "data": { "run": 1, "totals": {
                "input_tokens": input, "output_tokens": output, "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0, "cost_usd": cost } } },
        })
    }

    #[test]
    fn a_session_past_its_limit_is_stopped_once_and_refused() {
        let ledger = Ledger::new();
        ledger.set_limits(Limits {
            max_cost_usd: None,
            max_tokens: Some(100),
        });
        ledger.owned("a1", "sidecar", Some("s1"));
        ledger.owned("fb_2", "fallback", Some("s1"));
        ledger.owned("a3", "sidecar", Some("s2"));
        assert!(
            ledger
                .observe(&usage("sidecar", "a1", 30, 20, 0.01))
                .is_none()
        );
        let other = ledger
            .observe(&usage("sidecar", "a3", 300, 20, 0.5))
            .unwrap();
        assert_eq!(other["session"], "s2");
        // Totals replace (a replayed event counts once).
        assert!(
            ledger
                .observe(&usage("sidecar", "a1", 30, 20, 0.01))
                .is_none()
        );
        assert!(ledger.check("s1").is_ok());
        let budget = ledger
            .observe(&usage("fallback", "fb_2", 40, 20, 0.02))
            .unwrap();
        assert_eq!(budget["session"], "s1");
        assert_eq!(budget["used"]["tokens"], 110);
        assert_eq!(budget["limit"], json!({ "max_tokens": 100 }));
        assert!(
            ledger
                .observe(&usage("fallback", "fb_2", 50, 20, 0.02))
                .is_none()
        );
        let refused = ledger.check("s1").unwrap_err();
        assert!(refused.starts_with("budget exceeded for this MCP session: the session's agents used 110 tokens (limit 100)"), "{refused}");
        // An agent of s1's agent counts against s1, and s1's agents' sessions are refused.
        ledger.session_for_agent("s1-agent", "s1");
        ledger.session_for_agent("s1-grandchild", "s1-agent");
        assert!(ledger.check("s1-grandchild").is_err());
        ledger.owned("a4", "sidecar", Some("s1-grandchild"));
        assert_eq!(ledger.owner("a4").as_deref(), Some("s1"));
        let report = ledger.report();
        let s1 = &report["per_session"][0];
        assert_eq!(s1["session"], "s1");
        assert_eq!(s1["tokens"], 120);
        assert_eq!(s1["tokens_left"], 0);
        assert_eq!(report["per_agent"].as_array().unwrap().len(), 4);
        assert_eq!(report["per_agent"][1]["path"], "fallback");
    }
}
