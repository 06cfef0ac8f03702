//! The daemon's agent layer (issue 27): what connects the session manager's agents, the
//! daemon's own CLI fallback agents, the gateway and the tools.
//!
//! - [`feed`]: one hub of feed items, relayed by `GET /ws/agents/events`;
//! - [`follow`]: follows the session manager's `GET /events/stream` into the feed;
//! - [`fallback`]: agents run as CLI processes under `root/agents` when the session manager
//!   cannot take them (publishing into the feed);
//! - [`budget`]: who created which agent, usage sums per session, the per-session limits;
//! - [`keeper`]: the MCP sessions made for agents, kept while their agent lives.
//!
//! [`Agents`] holds them, in `Services::agents`; the agent tools (`src/tools/agents.rs`),
//! `system_dashboard` and the gateway's `/api/agents` and `/ws/agents/events` use it. The
//! daemon starts its tasks ([`Agents::start`]: the follower, the budget enforcer, the keeper's
//! sweep) after the tree and stops them (and the fallback's runs) before the tree stops.
//!
//! Feed items (one JSON object each): `{"source": "sidecar"|"fallback"|"revka", "kind": ...}`
//! with kind `agent_event` (`agent {id,name,backend,status}`, `event {seq,ts,type,text?,data?}`),
//! `chat_message` (`room {id,name}`, `message`), `queued_outcome` (`operation_id`,
//! `operation`, `ok`, `result`? / `error`?), `lag` (`missed`), `sidecar_status` (`status`
//! `up`|`down`, `reason`?) and `budget` (`session`, `text`, `limit`, `used`).

pub mod budget;
pub mod fallback;
pub mod feed;
pub mod follow;
pub mod keeper;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use revka_actors::session::{NewSession, Sessions};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use self::budget::{Ledger, Limits};
use self::fallback::{FallbackAgents, FallbackConfig};
use self::feed::Feed;
use self::keeper::{Keeper, Settle};
use crate::config::AgentsConfig;
use crate::sidecars::{Field, SidecarCallError, SidecarServices};
use crate::tree::ConfigCell;

/// The prefix of fallback agents' ids.
pub const FALLBACK_PREFIX: &str = "fb_";

/// The agent layer's shared state.
pub struct Agents {
    /// The feed.
    pub feed: Feed,
    /// The fallback agents.
    pub fallback: FallbackAgents,
    /// The per-session budget ledger.
    pub ledger: Arc<Ledger>,
    /// The agents' own MCP sessions.
    pub keeper: Arc<Keeper>,
    /// The session manager.
    pub sidecar: SidecarServices,
    config: Arc<ConfigCell>,
    sessions: Arc<Sessions>,
    mcp_bound: watch::Receiver<Option<SocketAddr>>,
    home: PathBuf,
    /// The `[agents]` last applied to the fallback and the ledger.
    applied: Mutex<Option<AgentsConfig>>,
    /// `budget` items for the enforcer (taken by [`Self::start`]).
    budget_rx: Mutex<Option<mpsc::UnboundedReceiver<Value>>>,
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("feed", &self.feed)
            .finish_non_exhaustive()
    }
}

impl Agents {
    /// The layer, its feed the sidecar's; the ledger observes the feed.
    pub fn new(
        config: Arc<ConfigCell>,
        sidecar: SidecarServices,
        sessions: Arc<Sessions>,
        mcp_bound: watch::Receiver<Option<SocketAddr>>,
        home: &Path,
    ) -> Arc<Self> {
        let feed = sidecar.feed.clone();
        let publish = feed.clone();
        let fallback = FallbackAgents::new(
            fallback_config(&config.get().agents, home),
            Arc::new(move |item| publish.publish(item)),
        );
        let ledger = Arc::new(Ledger::new());
        // Unbounded, yet bounded in practice: the ledger emits one item per session, the first
        // time it passes a limit; none may be lost (its agents would run on).
        let (budget_tx, budget_rx) = mpsc::unbounded_channel();
        let observer = ledger.clone();
        let keeper = Arc::new(Keeper::default());
        let (kept, ending) = (keeper.clone(), sessions.clone());
        feed.observe(Arc::new(move |item: &Value| {
            if let Some(session) = kept.observe(item) {
                ending.end(session.id(), "its agent's queued create failed");
            }
            // A queued create's outcome names the session that asked for it.
            if item["kind"] == "queued_outcome"
                && item["operation"] == "create_agent"
                && item["ok"] == true
                && let Some(id) = item["result"]["id"].as_str()
            {
                observer.owned(id, "sidecar", item["session"].as_str());
            }
            if let Some(budget) = observer.observe(item) {
                // Fails only once the daemon stops (the enforcer is gone).
                let _ = budget_tx.send(budget);
            }
        }));
        let agents = Arc::new(Self {
            feed,
            fallback,
            ledger,
            keeper,
            sidecar,
            config,
            sessions,
            mcp_bound,
            home: home.to_owned(),
            applied: Mutex::new(None),
            budget_rx: Mutex::new(Some(budget_rx)),
        });
        agents.settings();
        agents
    }

    /// The live `[agents]`, applied to the fallback and the ledger when it changed.
    pub fn settings(&self) -> AgentsConfig {
        let current = self.config.get().agents.clone();
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        if applied.as_ref() != Some(&current) {
            self.fallback
                .set_config(fallback_config(&current, &self.home));
            self.ledger.set_limits(Limits {
                max_cost_usd: current.session_cost_limit(),
                max_tokens: current.session_token_limit(),
            });
            *applied = Some(current.clone());
        }
        current
    }

    /// Starts the follower, the budget enforcer and the keeper's sweep; the handle aborts them
    /// when dropped.
    pub fn start(self: &Arc<Self>) -> Tasks {
        let follower = tokio::spawn(follow::run(self.sidecar.clone(), self.feed.clone()));
        let mut tasks = vec![follower];
        if let Some(mut rx) = self
            .budget_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                // Each session's stop on its own: one slow interrupt must not hold up another
                // session's.
                let mut stops = tokio::task::JoinSet::new();
                while let Some(budget) = rx.recv().await {
                    let me = me.clone();
                    stops.spawn(async move { me.enforce(budget).await });
                    while stops.try_join_next().is_some() {}
                }
            }));
        }
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let idle = me.config.get().sessions.idle_timeout();
                tokio::time::sleep(
                    (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
                )
                .await;
                me.sweep_sessions().await;
            }
        }));
        Tasks(tasks)
    }

    /// How a create call that made an agent's session (`session`: see
    /// [`keeper::injected_session`]) went.
    pub fn settle_session(&self, session: Option<&str>, outcome: Settle) {
        if let Some(session) = self.keeper.settle(session, outcome) {
            self.sessions
                .end(session.id(), "its agent could not be created");
        }
    }

    /// One [`Keeper::sweep`]: the session manager's agents are listed once (unknown while it
    /// does not answer), the fallback's looked up.
    pub async fn sweep_sessions(&self) -> usize {
        if self.keeper.is_empty() {
            return 0;
        }
        let wanted = self.keeper.agents();
        let listed: Option<std::collections::HashSet<String>> =
            if wanted.iter().all(|a| is_fallback_id(a)) || !self.sidecar.enabled {
                Some(Default::default())
            } else {
                self.sidecar_agents().await.ok().map(|list| {
                    list.iter()
                        .filter_map(|a| a["id"].as_str().map(str::to_owned))
                        .collect()
                })
            };
        let live = |agent: &str| {
            if is_fallback_id(agent) {
                Some(self.fallback.get(agent).is_some())
            } else {
                listed.as_ref().map(|ids| ids.contains(agent))
            }
        };
        self.keeper.sweep(&self.sessions, &live)
    }

    /// A session passed its budget: publishes the `budget` item and interrupts its agents.
    async fn enforce(&self, budget: Value) {
        let Some(session) = budget["session"].as_str().map(str::to_owned) else {
            return;
        };
        tracing::warn!(session, text = %budget["text"], "session budget exceeded; interrupting its agents");
        self.feed.publish(budget);
        let stops = self
            .ledger
            .agents_of(&session)
            .into_iter()
            .map(|(id, path)| async move {
                let result = if path == "fallback" {
                    self.fallback
                        .interrupt(&id)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                } else {
                    self.sidecar
                        .request(
                            "POST",
                            &format!("/agents/{id}/interrupt"),
                            Some(json!({})),
                            Some(Duration::from_secs(10)),
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                };
                if let Err(e) = result {
                    tracing::debug!(agent = id, error = e, "budget stop: interrupt failed");
                }
            });
        // All of the session's agents at once: each fallback interrupt waits for its run.
        futures::future::join_all(stops).await;
    }

    /// `mcp_servers.revka` for a new agent: Revka's MCP endpoint with a fresh MCP session of
    /// the agent's own (the Code tab's two-header session: `Authorization: Bearer <session
    /// token>` and `X-Revka-Session`). The session lives in the daemon, so it outlives a
    /// restart of the session manager; the [`Keeper`] keeps it alive while the agent lives and
    /// ends it once the agent is gone.
    /// The agents it creates count against `parent`'s budget (the session creating this one).
    pub async fn revka_server(
        &self,
        cwd: &Path,
        label: &str,
        parent: &str,
    ) -> Result<Value, String> {
        let addr = (*self.mcp_bound.borrow())
            .ok_or("Revka's MCP server is not bound yet; no endpoint for the agent")?;
        let new = NewSession::new(cwd.into()).with_label(Some(format!("agent:{label}")));
        let (session, token) = self
            .sessions
            .create(new)
            .await
            .map_err(|e| format!("cannot create the agent's MCP session: {e}"))?;
        self.ledger.session_for_agent(session.id(), parent);
        self.keeper.made(session.clone());
        Ok(json!({
            "type": "http",
            "url": format!("http://{addr}/mcp"),
            "headers": {
                "Authorization": format!("Bearer {token}"),
                "X-Revka-Session": session.id(),
            },
        }))
    }

    /// The session manager's agents (`GET /agents` through its breaker, 10 s at most).
    pub async fn sidecar_agents(&self) -> Result<Vec<Value>, SidecarCallError> {
        let listed = self
            .sidecar
            .request_shaped(
                "GET",
                "/agents",
                None,
                Some(Duration::from_secs(10)),
                &[Field::Array("agents")],
            )
            .await?;
        Ok(listed["agents"].as_array().cloned().unwrap_or_default())
    }

    /// Every agent across both paths (`GET /api/agents`): the session manager's (each with
    /// `"path": "sidecar"`) when it answers, the fallback's (`"path": "fallback"`), and
    /// `"sidecar": "ok"` or why its agents are missing.
    pub async fn list_all(&self) -> Value {
        self.list_both().await.0
    }

    /// [`Self::list_all`], and the session manager's error when it is enabled and did not
    /// answer.
    pub async fn list_both(&self) -> (Value, Option<SidecarCallError>) {
        let mut agents = Vec::new();
        let mut error = None;
        let sidecar = if !self.sidecar.enabled {
            json!(SidecarCallError::Disabled.to_string())
        } else {
            match self.sidecar_agents().await {
                Ok(listed) => {
                    for mut agent in listed {
                        agent["path"] = json!("sidecar");
                        if let Some(id) = agent["id"].as_str() {
                            agent["owner_session"] = json!(self.ledger.owner(id));
                        }
                        agents.push(agent);
                    }
                    json!("ok")
                }
                Err(e) => {
                    let why = json!(e.to_string());
                    error = Some(e);
                    why
                }
            }
        };
        for mut agent in self.fallback.list() {
            agent["path"] = json!("fallback");
            agents.push(agent);
        }
        (json!({ "agents": agents, "sidecar": sidecar }), error)
    }
}

/// The fallback's settings from `[agents]`.
pub fn fallback_config(agents: &AgentsConfig, home: &Path) -> FallbackConfig {
    FallbackConfig {
        claude_command: agents.claude_command.clone(),
        codex_command: agents.codex_command.clone(),
        max_agents: agents.max_fallback_agents as usize,
        max_cost_usd: agents.agent_cost_limit(),
        max_tokens: agents.agent_token_limit(),
        home: home.to_owned(),
        ..FallbackConfig::default()
    }
}

/// Whether `id` names a fallback agent.
pub fn is_fallback_id(id: &str) -> bool {
    id.starts_with(FALLBACK_PREFIX)
}

/// The agent layer's tasks; dropping this aborts them.
#[derive(Debug)]
pub struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
