//! The daemon's supervision tree: which actors sit under `root`, in which order, with which
//! strategy.
//!
//! `root` (`one_for_one`) gets, in this order: `progress` (the sessions' progress broadcaster),
//! `mcp_servers` (one child per `[[mcp.servers]]` entry), `sidecars` (`rest_for_one`),
//! `sessions` (temporary session children), `mcp_http` (the MCP server's listener and
//! `mcp.json`) and, when `[gateway] enabled`, `gateway`. The
//! whole tree, down to processes, is drawn once in `docs/architecture.md`.
//!
//! Children start in this order and stop in reverse: the MCP listener stops taking requests
//! first, then sessions end (cancelling their calls), then sidecars and servers stop, and the
//! broadcaster last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use revka_actors::StatusNode;
use revka_actors::listener::listener_spec;
use revka_actors::mcp::hub::McpHub;
use revka_actors::mcp::hub::{ServerSpec, TransportSpec};
use revka_actors::progress::progress_spec;
use revka_actors::session::{OperatorTemplate, SessionLimits, Sessions};
use revka_actors::supervisor::{
    ChildContext, ChildSpec, Intensity, RestartPolicy, RestartType, Shutdown, Strategy, Supervisor,
    SupervisorArgs, supervisor_spec,
};
use tokio::sync::watch;

use crate::config::Config;
use crate::gateway::auth::{PairingCodes, TokenStore};
use crate::sidecars::SidecarServices;
use crate::telemetry::Telemetry;
use crate::tools::ToolRegistry;
use crate::{mcp_server, servers};

/// The current configuration: swapped as a whole by a live reload, read at use time.
#[derive(Debug)]
pub struct ConfigCell {
    current: std::sync::RwLock<Arc<Config>>,
    /// The `--config` path the daemon was started with (reloads re-read the same file).
    path: Option<PathBuf>,
}

impl ConfigCell {
    /// A cell holding `config`, loaded from `path` (`None`: the default location).
    pub fn new(config: Config, path: Option<PathBuf>) -> Self {
        Self {
            current: std::sync::RwLock::new(Arc::new(config)),
            path,
        }
    }

    /// The current configuration.
    pub fn get(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the configuration (after a validated reload).
    pub fn set(&self, config: Config) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
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
    /// Every tool the MCP server serves.
    pub tools: Arc<ToolRegistry>,
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
        let hub = McpHub::new();
        let limits = SessionLimits {
            idle_timeout: config.sessions.idle_timeout(),
            max_sessions: config.sessions.max_sessions as usize,
            evict_idle_floor: config.sessions.evict_idle_floor(),
        };
        let mut tools = ToolRegistry::new(hub.clone(), config.mcp.deferred_loading);
        let http = servers::http_client();
        let operator = operator_template(&config, home, &http);
        if operator.is_none() && config.operator.enabled {
            let reason = format!(
                "the operator is not installed ({} missing: run `revka install --sidecars-only`)",
                config.operator.mcp_path.display()
            );
            tools.skip("revka-operator__*", &reason);
        }
        let sessions = Sessions::with_operator(limits, operator);
        let status_root = StatusNode::root("root", "supervisor");
        let sidecar = SidecarServices::new(&config);
        crate::tools::agents::register(&mut tools, &sidecar);
        crate::tools::health::register(&mut tools, &sidecar, &status_root);
        let telemetry = Telemetry::new(&status_root, &sessions)?;
        telemetry.register_sidecar(&sidecar)?;
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
        Ok(Self {
            config: Arc::new(ConfigCell::new(config, path)),
            home: home.to_owned(),
            hub,
            http,
            sessions,
            tools: Arc::new(tools),
            mcp_bound: watch::channel(None).0,
            status_root,
            telemetry,
            tokens,
            pairing,
            sidecar,
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

/// How sessions run their operator: `[operator] python` with the `mcp_path` launcher, when the
/// operator is enabled and installed.
pub fn operator_template(
    config: &Config,
    home: &Path,
    http: &reqwest::Client,
) -> Option<OperatorTemplate> {
    let op = &config.operator;
    if !op.enabled || !op.mcp_path.exists() {
        return None;
    }
    Some(OperatorTemplate {
        spec: ServerSpec {
            name: revka_actors::session::OPERATOR_SERVER.to_owned(),
            transport: TransportSpec::Stdio {
                command: op.python.clone(),
                args: vec![op.mcp_path.display().to_string()],
                env: op.process_env(home),
                cwd: None,
            },
            tool_timeout: op.tool_timeout(),
            // Off: operator tools may run ~100 s without answering anything else.
            ping: revka_actors::mcp::hub::PingPolicy::OFF,
            handshake_timeout: config.mcp.handshake_timeout(),
            roots: Vec::new(),
            reset_timeout_on_progress: false,
            shown: None,
        },
        policy: config.supervisor.policy(),
        http: http.clone(),
    })
}

/// Shutdown budget of a nested supervisor: its children's timeouts run inside it.
const SUPERVISOR_SHUTDOWN: Duration = Duration::from_secs(60);

/// The children of `root`, in start order.
pub fn root_children(services: &Services) -> anyhow::Result<Vec<ChildSpec>> {
    let config = services.config.get();
    let intensity = config.supervisor.intensity();
    // A supervisor that escalated is restarted by root within the configured limits.
    let supervisor_policy = config
        .supervisor
        .policy()
        .with_restart(RestartType::Permanent)
        .with_shutdown(Shutdown::Timeout(SUPERVISOR_SHUTDOWN));
    let mcp_servers = {
        let services = services.clone();
        move || servers::server_children(&services.config.get(), &services.hub, &services.http)
    };
    let mut children = vec![
        progress_spec(
            services.sessions.progress().clone(),
            config
                .supervisor
                .policy()
                .with_restart(RestartType::Permanent),
        ),
        supervisor_spec(
            "mcp_servers",
            supervisor_policy,
            Strategy::OneForOne,
            intensity,
            mcp_servers,
        ),
        supervisor_spec(
            "sidecars",
            supervisor_policy,
            Strategy::RestForOne,
            intensity,
            {
                let services = services.clone();
                move || {
                    services
                        .sidecar
                        .children(&services.config.get(), &services.home)
                }
            },
        ),
        sessions_spec(services.sessions.clone(), supervisor_policy),
        listener_spec(
            "mcp_http",
            mcp_server::listener(services)?,
            config
                .supervisor
                .policy()
                .with_restart(RestartType::Permanent),
        ),
    ];
    if config.gateway.enabled {
        let policy = config
            .supervisor
            .policy()
            .with_restart(RestartType::Permanent);
        children.push(listener_spec(
            "gateway",
            crate::gateway::listener(services)?,
            policy,
        ));
    }
    Ok(children)
}

/// The `sessions` supervisor: session actors are its temporary children. Each time it starts,
/// it is attached to the session table, which starts new sessions under it.
fn sessions_spec(sessions: Arc<Sessions>, policy: RestartPolicy) -> ChildSpec {
    ChildSpec::new(
        "sessions",
        "supervisor",
        policy,
        move |ctx: ChildContext| {
            let sessions = sessions.clone();
            async move {
                let args = SupervisorArgs {
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
                    Supervisor::spawn_linked(None, Supervisor, args, ctx.supervisor).await?;
                sessions.attach_supervisor(sup.clone());
                Ok(sup.get_cell())
            }
        },
    )
}
