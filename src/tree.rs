//! The daemon's supervision tree: the shared [`Services`], and the actors the plan's tree
//! ([`DaemonPlan::tree`], which says which actors sit under `root`, in which order, with which
//! strategy) is made of.
//!
//! `root` (`one_for_one`) gets, in this order: `progress` (the sessions' progress
//! broadcaster), `mcp_servers` (one child per `[[mcp.servers]]`
//! entry), `sidecars` (`rest_for_one`), `sessions` (temporary session children), `scheduler` (the
//! `cron_*` tools' jobs, [`crate::scheduler`], persisted; not a node of the plan: added after
//! `sessions`), `terminals` (the Code tab's temporary terminal children, [`crate::terminal`]), `mcp_http` (the MCP
//! server's listener and `mcp.json`) and, when `[gateway] enabled`, `gateway`. This
//! module converts no config: each [`NodePlan`] becomes one child spec here, and a nested
//! supervisor takes its children from the current plan each time it starts. The whole tree,
//! down to processes, is drawn once in `docs/architecture.md`.
//!
//! Children start in this order and stop in reverse: the MCP listener stops taking requests
//! first, then terminals end (killing their processes), then sessions end (cancelling their
//! calls), then sidecars and servers stop, and the
//! broadcaster last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use revka_actors::StatusNode;
use revka_actors::listener::listener_spec;
use revka_actors::mcp::hub::McpHub;
use revka_actors::progress::progress_spec;
use revka_actors::session::{OperatorTemplate, Sessions};
use revka_actors::supervisor::{
    ChildContext, ChildSpec, Intensity, RestartPolicy, Strategy, SupervisorActor,
    SupervisorArguments, supervisor_spec,
};
use tokio::sync::watch;

use crate::auth::{PairingCodes, TokenStore};
use crate::config::plan::{NodeKind, NodePlan};
use crate::config::{Config, DaemonPlan};
use crate::scheduler::{Scheduler, scheduler_spec};
use crate::sidecars::SidecarServices;
use crate::telemetry::Telemetry;
use crate::tools::ToolRegistry;
use crate::{mcp_http, mcp_servers};

/// The current configuration and its plan: swapped together by a live reload, read at use
/// time.
#[derive(Debug)]
pub struct ConfigCell {
    current: std::sync::RwLock<Running>,
    /// The `--config` path the daemon was started with (reloads re-read the same file).
    path: Option<PathBuf>,
}

/// A configuration and the plan built from it.
#[derive(Debug, Clone)]
struct Running {
    config: Arc<Config>,
    plan: Arc<DaemonPlan>,
}

impl ConfigCell {
    /// A cell holding `config` and its `plan`, loaded from `path` (`None`: the default
    /// location).
    pub fn new(config: Config, plan: DaemonPlan, path: Option<PathBuf>) -> Self {
        Self {
            current: std::sync::RwLock::new(Running {
                config: Arc::new(config),
                plan: Arc::new(plan),
            }),
            path,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Running> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current configuration.
    pub fn get(&self) -> Arc<Config> {
        self.read().config.clone()
    }

    /// The plan of the current configuration.
    pub fn plan(&self) -> Arc<DaemonPlan> {
        self.read().plan.clone()
    }

    /// Replaces the configuration and its plan (after a validated reload).
    pub fn set(&self, config: Config, plan: DaemonPlan) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Running {
            config: Arc::new(config),
            plan: Arc::new(plan),
        };
    }

    /// The path given with `--config`, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// What the daemon's actors share.
#[derive(Debug, Clone)]
pub struct Services {
    /// The validated configuration (live: see [`ConfigCell`]).
    pub config: Arc<ConfigCell>,
    /// `$REVKA_HOME`.
    pub home: PathBuf,
    /// External MCP servers and their tools.
    pub hub: Arc<McpHub>,
    /// The shared HTTP client for MCP servers.
    pub http: reqwest::Client,
    /// The MCP server's sessions.
    pub sessions: Arc<Sessions>,
    /// The Code tab's terminals (`root/terminals`).
    pub terminals: Arc<crate::terminal::Terminals>,
    /// Every tool the MCP server serves.
    pub tools: Arc<ToolRegistry>,
    /// The scheduler of the `cron_*` tools (its actor is `root/scheduler`).
    pub scheduler: Scheduler,
    /// The MCP server's bound address (`None` while not bound).
    pub mcp_bound: watch::Sender<Option<SocketAddr>>,
    /// The root of the status tree (introspection).
    pub status_root: StatusNode,
    /// Metrics.
    pub telemetry: Telemetry,
    /// Gateway bearer tokens.
    pub tokens: Arc<TokenStore>,
    /// Gateway pairing codes.
    pub pairing: Arc<PairingCodes>,
    /// The session manager's client, breaker and retry queue.
    pub sidecar: SidecarServices,
    /// The agent layer: the feed, the fallback agents (`root/agents`), the budgets.
    pub agents: Arc<crate::agents::Agents>,
    /// Serialises live reloads (FIFO: a reload asked for during another runs after it).
    pub reload_lock: Arc<tokio::sync::Mutex<()>>,
    /// The service manager's notification socket, set by `daemon::run` once `READY=1` is out
    /// (a reload's `RELOADING=1` before readiness would confuse the manager).
    pub notifier: Arc<std::sync::OnceLock<Arc<crate::notify::Notifier>>>,
    /// The last reloads (newest last), shown in the root's introspection details.
    pub reloads: Arc<std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>>,
}

impl Services {
    /// Fresh services for `config` (loaded from `path`), rooted at `home`.
    pub fn new(config: Config, home: &Path, path: Option<PathBuf>) -> anyhow::Result<Self> {
        let plan = DaemonPlan::new(&config, home);
        let hub = McpHub::new();
        let mut tools = ToolRegistry::new(hub.clone(), plan.mcp.deferred_loading);
        let http = mcp_servers::http_client();
        let operator = operator_template(&plan, &http);
        if operator.is_none() && plan.operator.enabled {
            let reason = format!(
                "the operator is not installed ({} missing: run `revka install --sidecars-only`)",
                plan.operator.launcher.display()
            );
            tools.skip("revka-operator__*", &reason);
        }
        let sessions = Sessions::with_operator(plan.sessions.limits(), operator);
        let status_root = StatusNode::root("root", "supervisor");
        let sidecar = SidecarServices::new(&plan.sidecars);
        let config = Arc::new(ConfigCell::new(config, plan, path));
        let mcp_bound = watch::channel(None).0;
        let agents = crate::agents::Agents::new(
            config.clone(),
            sidecar.clone(),
            sessions.clone(),
            mcp_bound.subscribe(),
            home,
        );
        crate::tools::agents::register(&mut tools, &agents);
        crate::tools::health::register(&mut tools, &agents, &status_root);
        let config_now = config.get();
        let telemetry = Telemetry::new(&status_root, &sessions)?;
        telemetry.register_sidecar(&sidecar)?;
        let policy = Arc::new(
            crate::security::Policy::new(&config_now.security, home)
                .map_err(|e| anyhow::anyhow!("[security]: {e}"))?,
        );
        let scheduler = Scheduler::new(home, sessions.clone(), policy.clone());
        crate::tools::builtin::register(
            &mut tools,
            &crate::tools::builtin::Deps {
                policy,
                tools: config_now.tools.clone(),
                telemetry: telemetry.clone(),
                sessions: sessions.clone(),
                home: home.to_owned(),
                scheduler: scheduler.clone(),
            },
        );
        // What servers send that no call relates to reaches the sessions through this. Set
        // before any server starts: every connection takes it at its handshake.
        hub.set_peer(Arc::new(crate::mcp_http::upstream::UpstreamPeer::new(
            sessions.clone(),
            &hub,
            telemetry.clone(),
        )));
        let tokens = Arc::new(TokenStore::open(home)?);
        let pairing = Arc::new(PairingCodes::new(tokens.clone()));
        let reloads: Arc<std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>> =
            Arc::default();
        let shown = reloads.clone();
        status_root.set_details(Arc::new(move || {
            let reloads = shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            serde_json::json!({ "reloads": *reloads })
        }));
        let tools = Arc::new(tools);
        scheduler.attach_registry(&tools);
        Ok(Self {
            config,
            home: home.to_owned(),
            hub,
            http,
            sessions,
            terminals: crate::terminal::Terminals::new(),
            tools,
            scheduler,
            mcp_bound,
            status_root,
            telemetry,
            tokens,
            pairing,
            sidecar,
            agents,
            reload_lock: Arc::default(),
            notifier: Arc::default(),
            reloads,
        })
    }

    /// Keeps a reload's report (the last 20) for introspection.
    pub fn record_reload(&self, report: &crate::reload::ReloadReport) {
        let entry = serde_json::json!({
            "at": revka_actors::status::rfc3339(std::time::SystemTime::now()),
            "applied": report.applied,
            "restart_required": report.restart_required,
            "failed": report.failed,
        });
        let mut reloads = self
            .reloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reloads.push_back(entry);
        while reloads.len() > 20 {
            reloads.pop_front();
        }
    }
}

/// How sessions run their operator: the plan's, when the operator is enabled and installed
/// (its launcher exists).
pub fn operator_template(plan: &DaemonPlan, http: &reqwest::Client) -> Option<OperatorTemplate> {
    let op = &plan.operator;
    if !op.enabled || !op.launcher.exists() {
        return None;
    }
    Some(OperatorTemplate {
        spec: op.spec.clone(),
        policy: op.policy,
        http: http.clone(),
    })
}

/// The children of `root`, in start order: the plan's ([`DaemonPlan::tree`]), with
/// `scheduler` (the `cron_*` tools' jobs) right after `sessions`: it starts once sessions can
/// be opened for its runs, and stops before they end; then `agents` (the CLI fallback's
/// runs, temporary children), which stops before them too.
pub fn root_children(services: &Services) -> anyhow::Result<Vec<ChildSpec>> {
    let tree = services.config.plan().tree();
    let mut children = Vec::with_capacity(tree.children().len() + 1);
    for node in tree.children() {
        children.push(child_spec(services, node)?);
        if matches!(node.kind, NodeKind::Sessions) {
            children.push(scheduler_spec(
                services.scheduler.clone(),
                RestartPolicy::standard(),
            ));
            children.push(
                services
                    .agents
                    .fallback
                    .supervisor_spec(RestartPolicy::standard()),
            );
        }
    }
    Ok(children)
}

/// The child spec that runs `node`. A supervisor asks the current plan for its children each
/// time it starts, so a reload's plan is what a restarted subtree runs.
fn child_spec(services: &Services, node: &NodePlan) -> anyhow::Result<ChildSpec> {
    let spec = match &node.kind {
        NodeKind::Supervisor {
            strategy,
            intensity,
            ..
        } => {
            let (services, id) = (services.clone(), node.id.clone());
            supervisor_spec(&node.id, node.policy, *strategy, *intensity, move || {
                nested_children(&services, &id)
            })
        }
        NodeKind::Sessions => sessions_spec(services.sessions.clone(), node.policy),
        NodeKind::Terminals => {
            crate::terminal::supervisor_spec(services.terminals.clone(), node.policy)
        }
        NodeKind::Progress => progress_spec(services.sessions.progress().clone(), node.policy),
        NodeKind::Listener => {
            let listener = match node.id.as_str() {
                "mcp_http" => mcp_http::listener(services)?,
                "gateway" => crate::gateway::listener(services)?,
                other => anyhow::bail!("no listener is called {other}"),
            };
            listener_spec(&node.id, listener, node.policy)
        }
        NodeKind::McpConnection(server) => {
            mcp_servers::connection_child(server, node.policy, &services.hub, &services.http)
        }
        NodeKind::InvalidServer(invalid) => mcp_servers::invalid_server_child(invalid, node.policy),
        NodeKind::SessionManager(process) => {
            let env = services.config.plan().sidecars.env.clone();
            services
                .sidecar
                .process_child(&node.id, process, &env, node.policy)
        }
        NodeKind::Breaker => services.sidecar.breaker_child(&node.id, node.policy),
        NodeKind::RetryQueue(queue) => {
            services
                .sidecar
                .retry_queue_child(&node.id, queue.clone(), node.policy)
        }
    };
    Ok(if node.manual { spec.manual() } else { spec })
}

/// The children of the supervisor `root/<id>` in the current plan. (A node that cannot be
/// built is logged and left out; only listeners can fail to build, and they sit under root.)
fn nested_children(services: &Services, id: &str) -> Vec<ChildSpec> {
    let tree = services.config.plan().tree();
    let Some(node) = tree.child(id) else {
        tracing::error!(supervisor = %id, "the plan has no such supervisor; it runs no children");
        return Vec::new();
    };
    node.children()
        .iter()
        .filter_map(|child| match child_spec(services, child) {
            Ok(spec) => Some(spec),
            Err(e) => {
                tracing::error!(supervisor = %id, child = %child.id, error = %e, "cannot build the child");
                None
            }
        })
        .collect()
}

/// The `sessions` supervisor: session actors are its temporary children. Each time it starts,
/// it is attached to the session table, which starts new sessions under it.
fn sessions_spec(sessions: Arc<Sessions>, policy: RestartPolicy) -> ChildSpec {
    dynamic_supervisor_spec("sessions", policy, move |sup| {
        sessions.attach_supervisor(sup)
    })
}

/// A `one_for_one` supervisor `id` started with no children, whose children are added at run
/// time as temporary ones (sessions, terminals): `attach` gets each new incarnation of it, so
/// the table that starts those children always starts them under the live one.
pub(crate) fn dynamic_supervisor_spec(
    id: &str,
    policy: RestartPolicy,
    attach: impl Fn(ractor::ActorRef<revka_actors::supervisor::SupervisorMessage>)
    + Clone
    + Send
    + Sync
    + 'static,
) -> ChildSpec {
    ChildSpec::new(id, "supervisor", policy, move |ctx: ChildContext| {
        let attach = attach.clone();
        async move {
            let args = SupervisorArguments {
                node: ctx.node,
                strategy: Strategy::OneForOne,
                // Temporary children are never restarted, so they never count toward this.
                intensity: Intensity {
                    max_restarts: u32::MAX,
                    period: Duration::from_secs(60),
                },
                children: Vec::new(),
            };
            let (sup, _) =
                SupervisorActor::spawn_linked(None, SupervisorActor, args, ctx.supervisor).await?;
            attach(sup.clone());
            Ok(sup.get_cell())
        }
    })
}

#[cfg(test)]
mod tests {
    use revka_actors::supervisor::RestartType;

    use super::*;

    /// A child's id, kind, restart type, restart limit and autostart. (Not its shutdown: a
    /// listener's spec adds its drain time to the plan's.)
    type Summary = (String, &'static str, RestartType, u32, bool);

    fn summary(specs: &[ChildSpec]) -> Vec<Summary> {
        let of = |s: &ChildSpec| {
            let p = s.policy;
            (s.id.clone(), s.kind, p.restart, p.max_restarts, s.autostart)
        };
        specs.iter().map(of).collect()
    }

    fn planned(nodes: &[NodePlan]) -> Vec<Summary> {
        let of = |n: &NodePlan| {
            let p = n.policy;
            (
                n.id.clone(),
                n.kind.name(),
                p.restart,
                p.max_restarts,
                !n.manual,
            )
        };
        nodes.iter().map(of).collect()
    }

    /// The child specs the daemon starts are the plan's nodes, at root and in each nested
    /// supervisor: the plan's tree is the tree that runs.
    #[tokio::test]
    async fn the_children_built_are_the_plans_nodes() {
        let home = tempfile::tempdir().unwrap();
        let mut config = Config::default_in(home.path());
        config.mcp.enabled = true;
        config.session_manager.enabled = true;
        config.gateway.enabled = false;
        config.mcp.servers = vec![crate::config::McpServerConfig {
            name: "a".into(),
            command: Some("true".into()),
            auto_connect: false,
            ..Default::default()
        }];
        config.mcp.invalid_servers = vec![crate::config::InvalidServer {
            name: "b".into(),
            reason: "no".into(),
        }];
        let services = Services::new(config, home.path(), None).unwrap();
        let tree = services.config.plan().tree();
        let mut built = summary(&root_children(&services).unwrap());
        // The scheduler is not a node of the plan: it follows `sessions`.
        let at = built.iter().position(|c| c.0 == "scheduler").unwrap();
        assert_eq!(built[at - 1].0, "sessions");
        assert_eq!(built[at + 1].0, "agents");
        built.drain(at..=at + 1);
        assert_eq!(built, planned(tree.children()));
        for id in ["mcp_servers", "sidecars"] {
            let node = tree.child(id).unwrap();
            assert_eq!(
                node.children().len(),
                if id == "mcp_servers" { 2 } else { 3 }
            );
            assert_eq!(
                summary(&nested_children(&services, id)),
                planned(node.children()),
                "{id}"
            );
        }
    }
}
