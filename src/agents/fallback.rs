//! The fallback agents: `create_agent` without the session manager.
//!
//! When the session manager is not enabled, or its breaker is open, an agent can still run:
//! the backend's CLI in its non-interactive mode (`claude -p … --output-format stream-json`,
//! `codex exec --json …`), one process per prompt, as a temporary child `agent:<id>` of the
//! supervisor `root/agents` ([`FallbackAgents::supervisor_spec`]). Its JSON stream is parsed
//! into the contract's timeline events ([`parse`]); the run itself is `run`.
//!
//! - **Agent.** `fb_<10 hex>`; statuses idle, running, error, exited (closed). One run at a
//!   time ([`FallbackError::Busy`]); a follow-up resumes the CLI's own session (claude
//!   `--resume <session_id>`, codex `exec … resume <thread_id>`). Its timeline is a ring of
//!   `max_events` events (`dropped` counts what fell out); every event is also published as a
//!   feed item `{"source":"fallback","kind":"agent_event","agent":{…},"event":{…}}`.
//! - **Limits.** `max_agents` live agents ([`FallbackError::TooMany`]); a per-agent budget
//!   (`max_cost_usd`, `max_tokens`, from the usage totals): once spent, the run is stopped, a
//!   `budget` event and status error `budget_exceeded`, later prompts
//!   [`FallbackError::BudgetExceeded`].
//! - **Files.** An MCP config for claude in `$REVKA_HOME/agents/<id>/mcp.json` (directory 0700,
//!   file 0600), removed when the agent closes (and when the table is dropped).
//! - **No orphans.** Each run's process is in its own group, killed as a group on every way out
//!   (the process actor's stop, its state's drop, the daemon's forced exit);
//!   [`FallbackAgents::shutdown`] stops every run.

pub mod parse;
pub(crate) mod run;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use ractor::ActorRef;
use revka_actors::status::rfc3339;
use revka_actors::supervisor::{ChildSpec, RestartPolicy, SupervisorMessage};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use parse::{Backend, Parser, Usage};
use run::{Control, RunPlan};

/// The id of the supervisor in `root`.
pub const SUPERVISOR_ID: &str = "agents";
/// How long close, interrupt and shutdown wait for a run to end, beyond `kill_grace`.
const END_WAIT: Duration = Duration::from_secs(15);
/// The most events one `events` call returns.
pub const MAX_PAGE: usize = 1000;

/// What the fallback agents run with (`[agents]` in the config, live reloaded).
#[derive(Clone, Debug)]
pub struct FallbackConfig {
    /// The argv prefix that runs Claude Code (default `["claude"]`).
    pub claude_command: Vec<String>,
    /// The argv prefix that runs Codex (default `["codex"]`).
    pub codex_command: Vec<String>,
    /// Live agents at most (default 16).
    pub max_agents: usize,
    /// Events kept per agent timeline (default 10,000; older ones are dropped).
    pub max_events: usize,
    /// The longest JSON line read from a CLI (default 1 MiB).
    pub line_cap: usize,
    /// SIGTERM → SIGKILL of a run's process group (default 3 s).
    pub kill_grace: Duration,
    /// Per-agent cost budget in USD (none by default).
    pub max_cost_usd: Option<f64>,
    /// Per-agent token budget (none by default).
    pub max_tokens: Option<u64>,
    /// `$REVKA_HOME`: the agents' files go under `agents/<id>/` (default: the environment's
    /// `$REVKA_HOME`, else `~/.revka`). Added to the agreed API: the MCP config files need it.
    pub home: PathBuf,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            claude_command: vec!["claude".into()],
            codex_command: vec!["codex".into()],
            max_agents: 16,
            max_events: 10_000,
            line_cap: 1024 * 1024,
            kill_grace: Duration::from_secs(3),
            max_cost_usd: None,
            max_tokens: None,
            home: crate::config::revka_home(),
        }
    }
}

/// A `create_agent` request for the fallback.
#[derive(Clone, Debug, Default)]
pub struct CreateAgent {
    /// `"claude"` or `"codex"`.
    pub backend: String,
    /// A display name (default: the id).
    pub name: Option<String>,
    /// The first prompt.
    pub prompt: String,
    /// The working directory (absolute, an existing directory; default: the daemon's).
    pub cwd: Option<PathBuf>,
    /// The model.
    pub model: Option<String>,
    /// Tools the agent may use without asking (claude's `--allowedTools`).
    pub allowed_tools: Vec<String>,
    /// Appended to the system prompt (claude's `--append-system-prompt`).
    pub system_prompt: Option<String>,
    /// The contract's `mcp_servers` object: `{name: {type: "http", url, headers?} | {type:
    /// "stdio", command, args?, env?}}`.
    pub mcp_servers: Option<Value>,
    /// The MCP session that created it (budgets).
    pub owner_session: Option<String>,
}

/// Publishes one feed item (`{"source":"fallback","kind":"agent_event",…}`).
pub type Publish = Arc<dyn Fn(Value) + Send + Sync>;

/// Why a fallback operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    /// The backend is not one the fallback runs.
    #[error("unknown backend {name:?} (one of: claude, codex)")]
    UnknownBackend {
        /// The name asked for.
        name: String,
    },
    /// No agent has that id.
    #[error("no agent {0:?}")]
    NotFound(String),
    /// The agent is running a prompt.
    #[error("{0}")]
    Busy(String),
    /// The agent's budget is spent.
    #[error("{0}")]
    BudgetExceeded(String),
    /// `max_agents` are live.
    #[error("too many agents: {0} are live (agents max); close one first")]
    TooMany(usize),
    /// A bad request.
    #[error("{0}")]
    Invalid(String),
    /// The CLI could not be started.
    #[error("{0}")]
    Spawn(String),
    /// The daemon is stopping.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// The fallback agents (cheap to clone).
#[derive(Clone)]
pub struct FallbackAgents {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FallbackAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackAgents")
            .field("agents", &self.inner.lock_agents().len())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    config: RwLock<FallbackConfig>,
    publish: Publish,
    supervisor: RwLock<Option<ActorRef<SupervisorMessage>>>,
    agents: Mutex<BTreeMap<String, Arc<Agent>>>,
    /// Serializes publishing, so feed items go out in `seq` order.
    publishing: Mutex<()>,
    shutting_down: AtomicBool,
    created: AtomicU64,
}

/// `$REVKA_HOME/agents/<id>/`: created 0700, removed when dropped.
#[derive(Debug)]
struct AgentDir(PathBuf);

impl AgentDir {
    fn create(home: &Path, id: &str) -> std::io::Result<Self> {
        revka_actors::fs::create_private_subdir(&home.join("agents"), id)
            .map(Self)
            .map_err(std::io::Error::other)
    }
}

impl Drop for AgentDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove the agent's directory");
        }
    }
}

/// One agent.
pub(crate) struct Agent {
    pub(crate) id: String,
    name: String,
    pub(crate) backend: Backend,
    created_at: String,
    order: u64,
    pub(crate) cwd: PathBuf,
    pub(crate) model: Option<String>,
    pub(crate) allowed_tools: Vec<String>,
    pub(crate) system_prompt: Option<String>,
    owner_session: Option<String>,
    /// claude: `--mcp-config` file.
    pub(crate) claude_mcp: Option<PathBuf>,
    /// codex: `-c` overrides, (real, shown).
    pub(crate) codex_overrides: Vec<(String, String)>,
    /// The variables `codex_overrides` name (header values, forwarded stdio environments).
    pub(crate) codex_env: Env,
    budget: (Option<f64>, Option<u64>),
    max_events: usize,
    dir: Mutex<Option<AgentDir>>,
    st: Mutex<State>,
}

struct RunCtl {
    run: u64,
    ctl: mpsc::Sender<Control>,
    pid: Option<u32>,
    done: watch::Receiver<bool>,
}

struct State {
    status: &'static str,
    model: Option<String>,
    session_id: Option<String>,
    thread_id: Option<String>,
    totals: Usage,
    runs: u64,
    last_error: Option<(String, String)>,
    budget_spent: Option<String>,
    ring: VecDeque<Value>,
    seq: u64,
    dropped: u64,
    last_event_at: Option<String>,
    last_pid: Option<u32>,
    argv: Vec<String>,
    run: Option<RunCtl>,
    closed: bool,
}

impl Default for State {
    /// A new agent's: idle, nothing run yet.
    fn default() -> Self {
        Self {
            status: "idle",
            model: None,
            session_id: None,
            thread_id: None,
            totals: Usage::default(),
            runs: 0,
            last_error: None,
            budget_spent: None,
            ring: VecDeque::new(),
            seq: 0,
            dropped: 0,
            last_event_at: None,
            last_pid: None,
            argv: Vec::new(),
            run: None,
            closed: false,
        }
    }
}

impl Agent {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes the agent's directory (its MCP config), if it has one.
    fn remove_dir(&self) {
        drop(
            self.dir
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    pub(crate) fn set_pid(&self, pid: Option<u32>) {
        let mut st = self.lock();
        if pid.is_some() {
            st.last_pid = pid;
        }
        if let Some(run) = &mut st.run {
            run.pid = pid;
        }
    }

    /// What the parser learnt: model, session and thread ids.
    pub(crate) fn learn(&self, parser: &Parser) {
        let mut st = self.lock();
        if parser.model.is_some() {
            st.model.clone_from(&parser.model);
        }
        if parser.session_id.is_some() {
            st.session_id.clone_from(&parser.session_id);
        }
        if parser.thread_id.is_some() {
            st.thread_id.clone_from(&parser.thread_id);
        }
    }

    fn head(&self, st: &State) -> Value {
        json!({"id": self.id, "name": self.name, "backend": self.backend.name(), "status": st.status})
    }

    fn object(&self, st: &State) -> Value {
        let t = &st.totals;
        let mut o = json!({
            "id": self.id,
            "name": self.name,
            "backend": self.backend.name(),
            "status": st.status,
            "path": "fallback",
            "created_at": self.created_at,
            "last_event_at": st.last_event_at,
            "event_count": st.seq,
            "dropped": st.dropped,
            "runs": st.runs,
            "queued": 0,
            "cwd": self.cwd,
            "argv": st.argv,
            "usage": {
                "input_tokens": t.input_tokens,
                "output_tokens": t.output_tokens,
                "cache_read_input_tokens": t.cache_read_input_tokens,
                "cache_creation_input_tokens": t.cache_creation_input_tokens,
                "cost_usd": t.cost_usd,
                "runs": st.runs,
            },
        });
        let m = o.as_object_mut().expect("an object");
        if let Some(model) = st.model.as_ref().or(self.model.as_ref()) {
            m.insert("model".into(), json!(model));
        }
        if let Some(s) = &st.session_id {
            m.insert("session_id".into(), json!(s));
        }
        if let Some(s) = &st.thread_id {
            m.insert("thread_id".into(), json!(s));
        }
        if self.budget.0.is_some() || self.budget.1.is_some() {
            let mut b = Map::new();
            if let Some(c) = self.budget.0 {
                b.insert("max_cost_usd".into(), json!(c));
            }
            if let Some(t) = self.budget.1 {
                b.insert("max_tokens".into(), json!(t));
            }
            m.insert("budget".into(), Value::Object(b));
        }
        if let Some((reason, message)) = &st.last_error {
            m.insert(
                "last_error".into(),
                json!({"reason": reason, "message": message}),
            );
        }
        if let Some(run) = &st.run {
            m.insert("run".into(), json!(run.run));
            if let Some(pid) = run.pid {
                m.insert("pid".into(), json!(pid));
            }
        }
        if let Some(pid) = st.last_pid {
            m.insert("last_pid".into(), json!(pid));
        }
        if let Some(o) = &self.owner_session {
            m.insert("owner_session".into(), json!(o));
        }
        if !self.allowed_tools.is_empty() {
            m.insert("allowed_tools".into(), json!(self.allowed_tools));
        }
        o
    }
}

impl Inner {
    fn lock_agents(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Agent>>> {
        self.agents.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn config(&self) -> FallbackConfig {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records an event on the agent's timeline and publishes it. An `error` event sets the
    /// agent's `last_error`.
    pub(crate) fn record(&self, agent: &Agent, kind: &str, text: Option<String>, data: Value) {
        self.record_with(agent, kind, text, data, |_| {});
    }

    fn record_with(
        &self,
        agent: &Agent,
        kind: &str,
        text: Option<String>,
        data: Value,
        change: impl FnOnce(&mut State),
    ) {
        let _order = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let item = {
            let mut st = agent.lock();
            change(&mut st);
            if kind == "error" {
                let reason = data
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("backend")
                    .to_owned();
                st.last_error = Some((reason, text.clone().unwrap_or_default()));
            }
            st.seq += 1;
            let ts = rfc3339(SystemTime::now());
            st.last_event_at = Some(ts.clone());
            let mut event = json!({"seq": st.seq, "ts": ts, "type": kind});
            if let Some(t) = text {
                event["text"] = json!(t);
            }
            if !data.is_null() {
                event["data"] = data;
            }
            st.ring.push_back(event.clone());
            while st.ring.len() > agent.max_events.max(1) {
                st.ring.pop_front();
                st.dropped += 1;
            }
            json!({"source": "fallback", "kind": "agent_event", "agent": agent.head(&st), "event": event})
        };
        (self.publish)(item);
    }

    /// The run `run` ended: the agent's status (with `reason`), its run slot freed.
    pub(crate) fn finish(
        &self,
        agent: &Agent,
        run: u64,
        status: &'static str,
        reason: Option<&str>,
    ) {
        let mut data = json!({"status": status, "run": run});
        if let Some(r) = reason {
            data["reason"] = json!(r);
        }
        self.record_with(agent, "status", Some(status.into()), data, |st| {
            if !st.closed {
                st.status = status;
            }
            if st.run.as_ref().is_some_and(|r| r.run == run) {
                st.run = None;
            }
        });
    }

    /// Adds a run's usage to the agent's totals and records the `usage` event; past the budget,
    /// records the `budget` event and answers true (the run is to stop).
    pub(crate) fn add_usage(&self, agent: &Agent, run: u64, u: Usage) -> bool {
        let mut spent = None;
        let data;
        {
            let mut st = agent.lock();
            let t = &mut st.totals;
            t.input_tokens = t.input_tokens.saturating_add(u.input_tokens);
            t.output_tokens = t.output_tokens.saturating_add(u.output_tokens);
            t.cache_read_input_tokens = t
                .cache_read_input_tokens
                .saturating_add(u.cache_read_input_tokens);
            t.cache_creation_input_tokens = t
                .cache_creation_input_tokens
                .saturating_add(u.cache_creation_input_tokens);
            if let Some(c) = u.cost_usd {
                t.cost_usd = Some(t.cost_usd.unwrap_or(0.0) + c);
            }
            let t = *t;
            data = json!({
                "run": run,
                "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                "cache_read_input_tokens": u.cache_read_input_tokens,
                "cache_creation_input_tokens": u.cache_creation_input_tokens,
                "cost_usd": u.cost_usd,
                "totals": {
                    "input_tokens": t.input_tokens, "output_tokens": t.output_tokens,
                    "cache_read_input_tokens": t.cache_read_input_tokens,
                    "cache_creation_input_tokens": t.cache_creation_input_tokens,
                    "cost_usd": t.cost_usd,
                },
            });
            let (max_cost, max_tokens) = agent.budget;
            let cost = t.cost_usd.unwrap_or(0.0);
            let over_cost = max_cost.filter(|m| cost >= *m);
            let over_tokens = max_tokens.filter(|m| t.tokens() >= *m);
            if over_cost.is_some() || over_tokens.is_some() {
                let what = match (over_cost, over_tokens) {
                    (Some(m), _) => format!("cost ${cost:.4} reached max_cost_usd ${m}"),
                    (None, Some(m)) => format!("{} tokens reached max_tokens {m}", t.tokens()),
                    _ => unreachable!(),
                };
                let message = format!("budget exceeded: {what}");
                st.budget_spent = Some(message.clone());
                let mut limit = Map::new();
                if let Some(c) = max_cost {
                    limit.insert("max_cost_usd".into(), json!(c));
                }
                if let Some(m) = max_tokens {
                    limit.insert("max_tokens".into(), json!(m));
                }
                spent = Some((
                    message,
                    json!({"run": run, "limit": limit, "used": {"cost_usd": t.cost_usd.unwrap_or(0.0), "tokens": t.tokens()}}),
                ));
            }
        }
        self.record(agent, "usage", None, data);
        if let Some((message, data)) = spent {
            self.record(agent, "budget", Some(message.clone()), data);
            self.record(
                agent,
                "error",
                Some(message),
                json!({"run": run, "reason": "budget_exceeded"}),
            );
            return true;
        }
        false
    }

    fn find(&self, id: &str) -> Result<Arc<Agent>, FallbackError> {
        self.lock_agents()
            .get(id)
            .cloned()
            .ok_or_else(|| FallbackError::NotFound(id.to_owned()))
    }
}

/// A fresh agent id: `fb_` and 10 hex digits.
fn new_id() -> Result<String, FallbackError> {
    let mut bytes = [0u8; 5];
    getrandom::fill(&mut bytes).map_err(|e| FallbackError::Spawn(format!("no randomness: {e}")))?;
    Ok(format!(
        "fb_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// A TOML bare key (an MCP server's name in codex's `-c mcp_servers.<name>…`).
fn bare_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A JSON string is a TOML basic string (serde_json escapes the same way TOML reads).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn toml_table(m: &Map<String, Value>) -> String {
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| {
            format!(
                "{} = {}",
                toml_str(k),
                toml_str(v.as_str().unwrap_or_default())
            )
        })
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

/// Checks the contract's `mcp_servers` object: `{name: {type: "http", url, headers?} |
/// {type: "stdio", command, args?, env?}}`, names TOML bare keys, strings where strings go.
pub fn validate_mcp_servers(servers: &Value) -> Result<&Map<String, Value>, String> {
    let map = servers
        .as_object()
        .ok_or("mcp_servers must be an object of servers by name")?;
    let strings = |v: Option<&Value>, what: &str| -> Result<(), String> {
        match v {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(()),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(()),
            _ => Err(format!("{what} must hold strings only")),
        }
    };
    for (name, server) in map {
        if !bare_key(name) {
            return Err(format!(
                "mcp_servers: bad server name {name:?} (letters, digits, '_' and '-', at most 64)"
            ));
        }
        let ty = server.get("type").and_then(Value::as_str);
        match ty {
            Some("http") => {
                if !server.get("url").is_some_and(Value::is_string) {
                    return Err(format!("mcp_servers.{name}: an http server needs a url"));
                }
                if server
                    .get("headers")
                    .is_some_and(|h| !h.is_object() && !h.is_null())
                {
                    return Err(format!("mcp_servers.{name}.headers must be an object"));
                }
                strings(
                    server.get("headers"),
                    &format!("mcp_servers.{name}.headers"),
                )?;
            }
            Some("stdio") => {
                if !server.get("command").is_some_and(Value::is_string) {
                    return Err(format!(
                        "mcp_servers.{name}: a stdio server needs a command"
                    ));
                }
                if server
                    .get("args")
                    .is_some_and(|a| !a.is_array() && !a.is_null())
                {
                    return Err(format!("mcp_servers.{name}.args must be an array"));
                }
                strings(server.get("args"), &format!("mcp_servers.{name}.args"))?;
                if server
                    .get("env")
                    .is_some_and(|e| !e.is_object() && !e.is_null())
                {
                    return Err(format!("mcp_servers.{name}.env must be an object"));
                }
                strings(server.get("env"), &format!("mcp_servers.{name}.env"))?;
            }
            _ => {
                return Err(format!(
                    "mcp_servers.{name}: type must be \"http\" or \"stdio\""
                ));
            }
        }
    }
    Ok(map)
}

/// Environment variables, `(name, value)`.
pub type Env = Vec<(String, String)>;

/// Codex's `-c` overrides for `servers` (validated), `(real, shown)`, and the environment
/// variables they name. Secrets stay off the command line (any local user can read a
/// process's `/proc/<pid>/cmdline`): a header's value goes in a variable named by the server's
/// `env_http_headers`, a stdio server's environment in variables codex forwards by `env_vars`.
/// A stdio variable whose name the daemon's environment already has, or another server
/// claimed with another value, stays inline, masked in what is shown.
pub fn codex_overrides(servers: &Map<String, Value>) -> (Vec<(String, String)>, Env) {
    let mut out = Vec::new();
    let mut env: Env = Vec::new();
    for (name, s) in servers {
        let key = format!("mcp_servers.{name}");
        let mut push = |field: &str, value: String, shown: Option<String>| {
            let real = format!("{key}.{field}={value}");
            let shown = shown.map_or_else(|| real.clone(), |v| format!("{key}.{field}={v}"));
            out.push((real, shown));
        };
        if s["type"] == "http" {
            push("url", toml_str(s["url"].as_str().unwrap_or_default()), None);
            if let Some(h) = s
                .get("headers")
                .and_then(Value::as_object)
                .filter(|h| !h.is_empty())
            {
                let mut named = Map::new();
                for (header, value) in h {
                    let var = format!("REVKA_MCP_HEADER_{}", env.len());
                    env.push((var.clone(), value.as_str().unwrap_or_default().to_owned()));
                    named.insert(header.clone(), Value::String(var));
                }
                push("env_http_headers", toml_table(&named), None);
            }
        } else {
            push(
                "command",
                toml_str(s["command"].as_str().unwrap_or_default()),
                None,
            );
            if let Some(a) = s.get("args").and_then(Value::as_array) {
                push("args", Value::Array(a.clone()).to_string(), None);
            }
            let mut inline = Map::new();
            let mut forwarded = Vec::new();
            for (k, v) in s
                .get("env")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let v = v.as_str().unwrap_or_default();
                let claimed = env.iter().find(|(name, _)| name == k);
                if std::env::var_os(k).is_some() || claimed.is_some_and(|(_, x)| x != v) {
                    inline.insert(k.clone(), Value::String(v.to_owned()));
                } else {
                    if claimed.is_none() {
                        env.push((k.clone(), v.to_owned()));
                    }
                    forwarded.push(Value::String(k.clone()));
                }
            }
            if !forwarded.is_empty() {
                push("env_vars", Value::Array(forwarded).to_string(), None);
            }
            if !inline.is_empty() {
                push("env", toml_table(&inline), Some("<redacted>".into()));
            }
        }
    }
    (out, env)
}

/// Removes `fb_<10 hex>` directories under `parent`, left by a daemon that was killed.
fn remove_stale_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.len() == 13
            && name.starts_with("fb_")
            && name[3..].bytes().all(|b| b.is_ascii_hexdigit());
        if ours && entry.file_type().is_ok_and(|t| t.is_dir()) {
            drop(AgentDir(entry.path()));
        }
    }
}

/// Writes `content` to a new file `path`, mode 0600.
fn write_private(path: &Path, content: &Value) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(serde_json::to_string_pretty(content)?.as_bytes())?;
    file.write_all(b"\n")
}

impl FallbackAgents {
    /// No agents yet. The directories that agents of an earlier run of the daemon left in
    /// `$REVKA_HOME/agents/` (it was killed) are removed.
    pub fn new(config: FallbackConfig, publish: Publish) -> Self {
        remove_stale_dirs(&config.home.join("agents"));
        Self {
            inner: Arc::new(Inner {
                config: RwLock::new(config),
                publish,
                supervisor: RwLock::new(None),
                agents: Mutex::new(BTreeMap::new()),
                publishing: Mutex::new(()),
                shutting_down: AtomicBool::new(false),
                created: AtomicU64::new(0),
            }),
        }
    }

    /// Live reload: applies to runs started from now on (limits of existing agents stay).
    pub fn set_config(&self, config: FallbackConfig) {
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// The supervisor `root/agents`: one_for_one, each run a temporary child `agent:<id>`.
    /// Each time it starts, the agents start their runs under it.
    pub fn supervisor_spec(&self, policy: RestartPolicy) -> ChildSpec {
        let inner = self.inner.clone();
        crate::tree::dynamic_supervisor_spec(SUPERVISOR_ID, policy, move |sup| {
            *inner
                .supervisor
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(sup);
        })
    }

    /// Live agents.
    pub fn live(&self) -> usize {
        self.inner.lock_agents().len()
    }

    /// Creates an agent and starts its first prompt: the agent object (`"path": "fallback"`),
    /// once the CLI runs.
    pub async fn create(&self, req: CreateAgent) -> Result<Value, FallbackError> {
        let inner = &self.inner;
        if inner.shutting_down.load(Ordering::Acquire) {
            return Err(FallbackError::ShuttingDown);
        }
        let backend =
            Backend::parse(&req.backend).ok_or_else(|| FallbackError::UnknownBackend {
                name: req.backend.clone(),
            })?;
        let config = inner.config();
        if req.prompt.trim().is_empty() {
            return Err(FallbackError::Invalid("prompt must not be empty".into()));
        }
        let cwd = match &req.cwd {
            Some(cwd) => {
                if !cwd.is_absolute() {
                    return Err(FallbackError::Invalid(format!(
                        "cwd must be an absolute path: {}",
                        cwd.display()
                    )));
                }
                match std::fs::metadata(cwd) {
                    Ok(m) if m.is_dir() => cwd.clone(),
                    Ok(_) => {
                        return Err(FallbackError::Invalid(format!(
                            "cwd is not a directory: {}",
                            cwd.display()
                        )));
                    }
                    Err(e) => {
                        return Err(FallbackError::Invalid(format!(
                            "cwd {}: {e}",
                            cwd.display()
                        )));
                    }
                }
            }
            None => std::env::current_dir()
                .map_err(|e| FallbackError::Invalid(format!("no cwd given and none known: {e}")))?,
        };
        let servers = match &req.mcp_servers {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                validate_mcp_servers(v)
                    .map_err(FallbackError::Invalid)?
                    .clone(),
            ),
        };
        if let Some(name) = &req.name
            && (name.is_empty() || name.len() > 200)
        {
            return Err(FallbackError::Invalid(
                "name must have 1 to 200 bytes".into(),
            ));
        }
        let command = match backend {
            Backend::Claude => &config.claude_command,
            Backend::Codex => &config.codex_command,
        };
        let program = command.first().map(String::as_str).unwrap_or_default();
        run::resolve_program(program).map_err(FallbackError::Spawn)?;
        let id = new_id()?;
        let mut dir = None;
        let mut claude_mcp = None;
        let (mut overrides, mut codex_env) = (Vec::new(), Vec::new());
        if let Some(servers) = servers.filter(|s| !s.is_empty()) {
            match backend {
                Backend::Claude => {
                    let d = AgentDir::create(&config.home, &id).map_err(|e| {
                        FallbackError::Spawn(format!("cannot create the agent's directory: {e}"))
                    })?;
                    let file = d.0.join("mcp.json");
                    write_private(&file, &json!({"mcpServers": servers})).map_err(|e| {
                        FallbackError::Spawn(format!("cannot write the agent's MCP config: {e}"))
                    })?;
                    claude_mcp = Some(file);
                    dir = Some(d);
                }
                Backend::Codex => (overrides, codex_env) = codex_overrides(&servers),
            }
        }
        let agent = Arc::new(Agent {
            id: id.clone(),
            name: req.name.clone().unwrap_or_else(|| id.clone()),
            backend,
            created_at: rfc3339(SystemTime::now()),
            order: inner.created.fetch_add(1, Ordering::Relaxed),
            cwd,
            model: req.model.clone(),
            allowed_tools: req.allowed_tools.clone(),
            system_prompt: req.system_prompt.clone(),
            owner_session: req.owner_session.clone(),
            claude_mcp,
            codex_overrides: overrides,
            codex_env,
            budget: (
                config.max_cost_usd.filter(|c| *c > 0.0),
                config.max_tokens.filter(|t| *t > 0),
            ),
            max_events: config.max_events,
            dir: Mutex::new(dir),
            st: Mutex::new(State::default()),
        });
        {
            let mut agents = inner.lock_agents();
            if agents.len() >= config.max_agents {
                return Err(FallbackError::TooMany(config.max_agents));
            }
            agents.insert(id.clone(), agent.clone());
        }
        tracing::info!(agent = %id, backend = backend.name(), "fallback agent created");
        inner.record(
            &agent,
            "status",
            Some("idle".into()),
            json!({"status": "idle", "reason": "created"}),
        );
        match self.prompt(&agent, &req.prompt, "create").await {
            Ok(()) => Ok(agent.object(&agent.lock())),
            Err(e) => {
                self.inner.record_with(
                    &agent,
                    "status",
                    Some("exited".into()),
                    json!({"status": "exited", "reason": "not_started"}),
                    |st| st.status = "exited",
                );
                self.remove(&agent);
                Err(e)
            }
        }
    }

    /// Starts a run of `agent` with `prompt`; returns once its process runs.
    async fn prompt(
        &self,
        agent: &Arc<Agent>,
        prompt: &str,
        source: &str,
    ) -> Result<(), FallbackError> {
        let inner = &self.inner;
        if inner.shutting_down.load(Ordering::Acquire) {
            return Err(FallbackError::ShuttingDown);
        }
        if prompt.trim().is_empty() {
            return Err(FallbackError::Invalid("prompt must not be empty".into()));
        }
        let config = inner.config();
        let supervisor = inner
            .supervisor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| FallbackError::Spawn("the agents supervisor is not running".into()))?;
        let command = match agent.backend {
            Backend::Claude => &config.claude_command,
            Backend::Codex => &config.codex_command,
        };
        let program = run::resolve_program(command.first().map(String::as_str).unwrap_or_default())
            .map_err(FallbackError::Spawn)?;
        let (ctl_tx, ctl_rx) = mpsc::channel(4);
        let (done_tx, done_rx) = watch::channel(false);
        let (run_no, real, shown) = {
            let mut st = agent.lock();
            if st.closed {
                return Err(FallbackError::NotFound(agent.id.clone()));
            }
            if let Some(spent) = &st.budget_spent {
                return Err(FallbackError::BudgetExceeded(format!(
                    "agent {} is over its budget ({spent}); close it",
                    agent.id
                )));
            }
            if st.run.is_some() {
                return Err(FallbackError::Busy(format!(
                    "agent {} is running a prompt; wait for its result or interrupt it",
                    agent.id
                )));
            }
            let resume = match agent.backend {
                Backend::Claude => st.session_id.clone(),
                Backend::Codex => st.thread_id.clone(),
            };
            let (real, shown) = run::argv(agent.backend, command, agent, resume.as_deref(), prompt);
            st.runs += 1;
            let run_no = st.runs;
            st.argv = shown.clone();
            st.run = Some(RunCtl {
                run: run_no,
                ctl: ctl_tx,
                pid: None,
                done: done_rx,
            });
            (run_no, real, shown)
        };
        inner.record(
            agent,
            "prompt",
            Some(prompt.to_owned()),
            json!({"run": run_no, "source": source}),
        );
        inner.record_with(
            agent,
            "status",
            Some("running".into()),
            json!({"status": "running", "run": run_no}),
            |st| st.status = "running",
        );
        let plan = RunPlan {
            run: run_no,
            program,
            args: real[1..].to_vec(),
            shown,
            cwd: agent.cwd.clone(),
            kill_grace: config.kill_grace,
            line_cap: config.line_cap.max(1024),
            supervisor,
        };
        run::start(inner.clone(), agent.clone(), plan, ctl_rx, done_tx)
            .await
            .map(|_| ())
    }

    fn remove(&self, agent: &Arc<Agent>) {
        self.inner.lock_agents().remove(&agent.id);
        agent.lock().closed = true;
        agent.remove_dir();
    }

    /// A follow-up prompt (claude `--resume <session_id>`, codex `exec … resume <thread_id>`):
    /// `{"queued": false, "agent": {…}}` once the CLI runs (the session manager's answer's
    /// shape; the fallback never queues).
    pub async fn query(&self, id: &str, prompt: &str) -> Result<Value, FallbackError> {
        let agent = self.inner.find(id)?;
        self.prompt(&agent, prompt, "query").await?;
        Ok(json!({"queued": false, "agent": agent.object(&agent.lock())}))
    }

    /// Waits (bounded) for the run behind `done` to end.
    async fn wait_done(mut done: watch::Receiver<bool>, grace: Duration) {
        let _ = tokio::time::timeout(grace + END_WAIT, done.wait_for(|d| *d)).await;
    }

    /// Interrupts the running prompt (SIGINT to its group; SIGTERM, then SIGKILL, after
    /// `kill_grace`) and waits for its end: `{"interrupted": bool}` (false when none ran).
    pub async fn interrupt(&self, id: &str) -> Result<Value, FallbackError> {
        let agent = self.inner.find(id)?;
        let run = {
            let st = agent.lock();
            st.run.as_ref().map(|r| (r.ctl.clone(), r.done.clone()))
        };
        let Some((ctl, done)) = run else {
            return Ok(json!({"interrupted": false}));
        };
        if ctl.send(Control::Interrupt).await.is_err() {
            return Ok(json!({"interrupted": false}));
        }
        Self::wait_done(done, self.inner.config().kill_grace).await;
        Ok(json!({"interrupted": true, "cleared_queue": 0, "agent": agent.object(&agent.lock())}))
    }

    /// Closes the agent: stops its run, removes its files: `{"deleted": true, "agent": {…}}`
    /// (status exited), once its process is gone (the session manager's DELETE answer).
    pub async fn close(&self, id: &str) -> Result<Value, FallbackError> {
        let agent = self.inner.find(id)?;
        // Closed first, under the state lock: a prompt racing this close is refused instead of
        // starting a run nobody could reach once the agent is removed.
        if std::mem::replace(&mut agent.lock().closed, true) {
            return Err(FallbackError::NotFound(id.to_owned()));
        }
        self.stop_run(&agent, "its agent was closed").await;
        self.inner.record_with(
            &agent,
            "status",
            Some("exited".into()),
            json!({"status": "exited", "reason": "closed"}),
            |st| {
                st.status = "exited";
            },
        );
        self.remove(&agent);
        tracing::info!(agent = %id, "fallback agent closed");
        Ok(json!({"deleted": true, "agent": agent.object(&agent.lock())}))
    }

    async fn stop_run(&self, agent: &Agent, why: &'static str) {
        let run = {
            let st = agent.lock();
            st.run.as_ref().map(|r| (r.ctl.clone(), r.done.clone()))
        };
        if let Some((ctl, done)) = run {
            let _ = ctl.send(Control::Stop(why)).await;
            Self::wait_done(done, self.inner.config().kill_grace).await;
        }
    }

    /// The agent object.
    pub fn get(&self, id: &str) -> Option<Value> {
        let agent = self.inner.lock_agents().get(id).cloned()?;
        let st = agent.lock();
        Some(agent.object(&st))
    }

    /// Every agent object, oldest first.
    pub fn list(&self) -> Vec<Value> {
        let mut agents: Vec<Arc<Agent>> = self.inner.lock_agents().values().cloned().collect();
        agents.sort_by_key(|a| a.order);
        agents.iter().map(|a| a.object(&a.lock())).collect()
    }

    /// `{"events": [...], "next": n, "dropped": d}`: the events with `seq > since`, at most
    /// `limit` (1 to [`MAX_PAGE`]); `next` is the `since` of the next call, `dropped` the
    /// events after `since` that fell out of the ring.
    pub fn events(&self, id: &str, since: u64, limit: usize) -> Option<Value> {
        let agent = self.inner.lock_agents().get(id).cloned()?;
        let st = agent.lock();
        let limit = limit.clamp(1, MAX_PAGE);
        let first = st
            .ring
            .front()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or(st.seq + 1);
        let dropped = first.saturating_sub(since.saturating_add(1));
        let events: Vec<Value> = st
            .ring
            .iter()
            .filter(|e| e["seq"].as_u64().unwrap_or(0) > since)
            .take(limit)
            .cloned()
            .collect();
        let next = events
            .last()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or_else(|| since.max(first.saturating_sub(1)));
        Some(json!({"events": events, "next": next, "dropped": dropped}))
    }

    /// Kills every run's process group (the tree stopping calls this too); new prompts are
    /// refused from now on.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let agents: Vec<Arc<Agent>> = self.inner.lock_agents().values().cloned().collect();
        let stops = agents
            .iter()
            .map(|a| self.stop_run(a, "the daemon is stopping"));
        futures::future::join_all(stops).await;
        for agent in agents {
            agent.remove_dir();
        }
    }
}
