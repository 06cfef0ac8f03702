//! The fallback agents: `create_agent` without the session manager.
//!
//! When the session manager is not enabled, or its breaker is open, an agent can still run:
//! the backend's CLI in its non-interactive mode (`claude -p … --output-format stream-json`,
//! `codex exec --json …`), one process per prompt, as a temporary child `agent:<id>` of the
//! supervisor `root/agents` ([`FallbackAgents::supervisor_spec`]). Its JSON stream is parsed
//! into the contract's timeline events. (Skeleton: the runs come in the next commit.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use revka_actors::supervisor::{ChildSpec, RestartPolicy};
use serde_json::Value;

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

struct Inner {
    config: std::sync::RwLock<FallbackConfig>,
    publish: Publish,
}

impl FallbackAgents {
    /// No agents yet.
    pub fn new(config: FallbackConfig, publish: Publish) -> Self {
        Self {
            inner: Arc::new(Inner {
                config: std::sync::RwLock::new(config),
                publish,
            }),
        }
    }

    /// Live reload: applies to runs started from now on.
    pub fn set_config(&self, config: FallbackConfig) {
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// The supervisor `root/agents`: one_for_one, each run a temporary child `agent:<id>`.
    pub fn supervisor_spec(&self, policy: RestartPolicy) -> ChildSpec {
        crate::tree::dynamic_supervisor_spec("agents", policy, |_sup| {})
    }

    /// Creates an agent and starts its first prompt: the agent object (`"path": "fallback"`).
    pub async fn create(&self, req: CreateAgent) -> Result<Value, FallbackError> {
        let _ = (&self.inner.publish, req);
        Err(FallbackError::Spawn("not implemented yet".into()))
    }

    /// A follow-up prompt (claude `--resume <session_id>`, codex `exec resume <thread_id>`).
    pub async fn query(&self, id: &str, prompt: &str) -> Result<Value, FallbackError> {
        let _ = prompt;
        Err(FallbackError::NotFound(id.to_owned()))
    }

    /// Interrupts the running prompt: `{"interrupted": bool}` (false when none runs).
    pub async fn interrupt(&self, id: &str) -> Result<Value, FallbackError> {
        Err(FallbackError::NotFound(id.to_owned()))
    }

    /// Closes the agent: stops its run, removes its files.
    pub async fn close(&self, id: &str) -> Result<Value, FallbackError> {
        Err(FallbackError::NotFound(id.to_owned()))
    }

    /// The agent object.
    pub fn get(&self, _id: &str) -> Option<Value> {
        None
    }

    /// Every agent object.
    pub fn list(&self) -> Vec<Value> {
        Vec::new()
    }

    /// `{"events": [...], "next": n, "dropped": d}`: events after `since`, at most `limit`.
    pub fn events(&self, _id: &str, _since: u64, _limit: usize) -> Option<Value> {
        None
    }

    /// Kills every run's process group (the tree stopping calls this too).
    pub async fn shutdown(&self) {}
}
