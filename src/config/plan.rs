//! The config's second stage: the [`DaemonPlan`], what the daemon runs, built from a loaded
//! [`Config`] in one place ([`DaemonPlan::new`]).
//!
//! Part of the config layer, after the load pipeline (`loader` → `validate`). A [`Config`] is
//! the file as read: serde types with their defaults, expanded and validated, the server
//! entries that failed validation set aside. The plan holds the same settings in the types the
//! actors take: each server's [`ServerSpec`] with its restart policy and liveness probe, or the
//! [`InvalidServer`] that keeps it from starting; the session limits; the operator's spec; the
//! session manager with its breaker and retry queue; the listeners; and the supervision tree's
//! shape ([`DaemonPlan::tree`]), which `tree.rs` turns into actors node by node and a unit test
//! can assert for a given config. A live reload builds the new plan and diffs it with the
//! running one (`reload.rs`).
//!
//! Building a plan does no I/O and reads no clock: the same config and home give the same plan.
//! Whether the operator is installed (a file on disk) is checked where its template is made.

use std::path::{Path, PathBuf};
use std::time::Duration;

use revka_actors::breaker::BreakerConfig;
use revka_actors::mcp::hub::ToolFilter;
use revka_actors::retry_queue::{self, QueueConfig};
use revka_actors::session::{OPERATOR_SERVER, SessionLimits};
use revka_actors::sidecar::SessionManagerSpec;
use revka_actors::supervisor::{Intensity, RestartPolicy, RestartType, Shutdown};
use revka_mcp::oauth::{Grant, OAuthSpec, Secret};
use revka_mcp::protocol::Root;
use revka_mcp::spec::{PingPolicy, ServerSpec, TransportSpec};

use super::schema::{
    Config, GatewayConfig, HttpConfig, InvalidServer, McpConfig, McpServerConfig, RuntimeConfig,
    Transport, TransportSetting,
};
use super::{McpEndpointConfig, OnFull};

mod tree;

pub use tree::{NodeKind, NodePlan};

#[cfg(test)]
mod tests;

/// Shutdown budget of a nested supervisor: its children's timeouts run inside it.
pub const SUPERVISOR_SHUTDOWN: Duration = Duration::from_secs(60);

/// What the daemon runs under one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonPlan {
    /// `[supervisor]`: the tree's restart intensity and the default child policy.
    pub supervision: SupervisionPlan,
    /// `[mcp]` and its servers.
    pub mcp: McpPlan,
    /// `[sessions]`.
    pub sessions: SessionsPlan,
    /// `[operator]`: the per-session operator process.
    pub operator: OperatorPlan,
    /// `[session_manager]`: the `root/sidecars` subtree.
    pub sidecars: SidecarPlan,
    /// `root/mcp_http` and `root/gateway`, and what both allow a client.
    pub listeners: ListenersPlan,
    /// `[runtime]`, read before the async runtime starts.
    pub runtime: RuntimeConfig,
}

impl DaemonPlan {
    /// The plan of `config` for a daemon whose `$REVKA_HOME` is `home` (the operator's
    /// environment and the retry queue's journal live there).
    pub fn new(config: &Config, home: &Path) -> Self {
        Self {
            supervision: SupervisionPlan::new(config),
            mcp: McpPlan::new(config),
            sessions: SessionsPlan::new(config),
            operator: OperatorPlan::new(config, home),
            sidecars: SidecarPlan::new(config, home),
            listeners: ListenersPlan {
                mcp_http: config.mcp_server.clone(),
                gateway: config.gateway.clone(),
                http: config.http,
            },
            runtime: config.runtime,
        }
    }
}

/// `[supervisor]` as the supervisors take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisionPlan {
    /// Each supervisor's restart intensity.
    pub intensity: Intensity,
    /// The default child restart policy, which servers and sidecars override.
    pub policy: RestartPolicy,
    /// The whole-tree shutdown's grace period.
    pub shutdown_grace: Duration,
    /// The default liveness probe of MCP servers.
    pub ping: PingPolicy,
}

impl SupervisionPlan {
    fn new(config: &Config) -> Self {
        let sup = &config.supervisor;
        Self {
            intensity: sup.intensity(),
            policy: sup.policy(),
            shutdown_grace: sup.shutdown_grace(),
            ping: sup.ping(),
        }
    }

    /// The policy of a child that must always run (a listener, the breaker, the retry queue):
    /// the default with `permanent` restarts, whatever `[supervisor] restart` says.
    pub fn permanent(&self) -> RestartPolicy {
        self.policy.with_restart(RestartType::Permanent)
    }

    /// The policy of a nested supervisor: [`Self::permanent`] (one that escalated is restarted
    /// by root within the configured limits), with time for its children to stop.
    pub fn nested_supervisor(&self) -> RestartPolicy {
        self.permanent()
            .with_shutdown(Shutdown::Timeout(SUPERVISOR_SHUTDOWN))
    }
}

/// `[mcp]` and `[[mcp.servers]]` as the connection actors take them.
#[derive(Debug, Clone, PartialEq)]
pub struct McpPlan {
    /// Whether any server runs (`[mcp] enabled`).
    pub enabled: bool,
    /// Whether tool schemas are loaded on demand (`[mcp] deferred_loading`).
    pub deferred_loading: bool,
    /// Every configured server: the valid ones in config order, then the invalid ones (each
    /// shown as a failed child with its reason).
    pub servers: Vec<Result<ServerPlan, InvalidServer>>,
}

impl McpPlan {
    fn new(config: &Config) -> Self {
        let mcp = &config.mcp;
        let valid = mcp.servers.iter().map(|server| {
            let spec = server_spec(server, mcp)?;
            Ok(ServerPlan {
                spec: ServerSpec {
                    ping: server.ping(&config.supervisor),
                    ..spec
                },
                policy: server.policy(&config.supervisor),
                auto_connect: server.auto_connect,
                tool_filter: server.tool_filter(),
            })
        });
        let invalid = mcp.invalid_servers.iter().cloned().map(Err);
        Self {
            enabled: mcp.enabled,
            deferred_loading: mcp.deferred_loading,
            servers: valid.chain(invalid).collect(),
        }
    }

    /// The servers the daemon runs (none while `[mcp] enabled = false`).
    pub fn running(&self) -> impl Iterator<Item = &Result<ServerPlan, InvalidServer>> {
        self.servers.iter().filter(|_| self.enabled)
    }
}

/// The policy of an invalid server's child: it fails to start, and is never restarted.
pub fn invalid_server_policy() -> RestartPolicy {
    RestartPolicy {
        max_restarts: 0,
        ..RestartPolicy::standard()
    }
}

/// One valid server as its connection actor runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerPlan {
    /// Transport, timeouts, roots and liveness probe.
    pub spec: ServerSpec,
    /// `[supervisor]` with the server's `restart` table applied.
    pub policy: RestartPolicy,
    /// Started at boot; `false` leaves it down until asked.
    pub auto_connect: bool,
    /// Which of its tools the hub registers; set before the connection exists.
    pub tool_filter: ToolFilter,
}

impl ServerPlan {
    /// The server's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

/// The actor-side spec of one configured server, without the liveness probe (a one-off
/// handshake or call needs none; [`ServerPlan::spec`] has the daemon's). `Err` for an entry
/// validation would have set aside (no command for stdio, no URL otherwise, an unknown
/// transport).
pub fn server_spec(server: &McpServerConfig, mcp: &McpConfig) -> Result<ServerSpec, InvalidServer> {
    let invalid = |reason: String| InvalidServer {
        name: server.name.clone(),
        reason,
    };
    let transport = match &server.transport {
        TransportSetting::Known(transport) => *transport,
        TransportSetting::Other(name) => {
            return Err(invalid(format!("transport: unknown transport {name:?}")));
        }
    };
    let url = || {
        let required = format!("url: required for transport {:?}", transport.as_str());
        server.url.clone().ok_or_else(|| invalid(required))
    };
    let headers = || server.headers.clone().into_iter().collect();
    let kind = transport;
    let transport = match transport {
        Transport::Stdio => TransportSpec::Stdio {
            command: server
                .command
                .clone()
                .ok_or_else(|| invalid("command: required for transport \"stdio\"".into()))?,
            args: server.args.clone(),
            env: server.env.clone().into_iter().collect(),
            cwd: None,
        },
        Transport::Http => TransportSpec::Http {
            url: url()?,
            headers: headers(),
        },
        Transport::Sse => TransportSpec::Sse {
            url: url()?,
            headers: headers(),
        },
        Transport::Url => TransportSpec::Url {
            url: url()?,
            headers: headers(),
        },
    };
    Ok(ServerSpec {
        name: server.name.clone(),
        transport,
        tool_timeout: server.tool_timeout(),
        ping: PingPolicy::OFF,
        handshake_timeout: mcp.handshake_timeout(),
        roots: server
            .effective_roots(mcp)
            .iter()
            .map(|p| Root::from_path(p))
            .collect(),
        reset_timeout_on_progress: server.reset_timeout_on_progress,
        // Logs and introspection show the config's unexpanded form, masked.
        shown: Some(server.shown()),
        oauth: oauth_spec(server, kind, mcp).map_err(invalid)?,
    })
}

/// What is wrong with a server's `[mcp.servers.oauth]` table, as `(key, message)`; else its
/// grant. Shared by the load-time validation (which names `file:line:col`) and the plan.
pub(crate) fn check_oauth(server: &McpServerConfig) -> Result<Grant, (&'static str, String)> {
    let Some(table) = &server.oauth else {
        return Ok(Grant::AuthorizationCode);
    };
    if let TransportSetting::Known(t) = &server.transport
        && *t != Transport::Http
    {
        return Err((
            "oauth",
            format!(
                "only for the http transport (this server's is {:?})",
                t.as_str()
            ),
        ));
    }
    if table.enabled
        && server
            .headers
            .keys()
            .any(|h| h.trim().eq_ignore_ascii_case("authorization"))
    {
        return Err((
            "oauth",
            "a server with an Authorization header of its own does not use OAuth (remove one of them)"
                .into(),
        ));
    }
    let grant = match table.grant.as_str() {
        "authorization_code" => Grant::AuthorizationCode,
        "client_credentials" => Grant::ClientCredentials,
        other => {
            return Err((
                "grant",
                format!("{other:?} is not \"authorization_code\" or \"client_credentials\""),
            ));
        }
    };
    if table.client_secret.is_some() && table.client_id.is_none() {
        return Err(("client_secret", "needs oauth.client_id".into()));
    }
    if table.private_key_file.is_some() && grant != Grant::ClientCredentials {
        return Err((
            "private_key_file",
            "only with grant = \"client_credentials\"".into(),
        ));
    }
    if grant == Grant::ClientCredentials
        && (table.client_id.is_none()
            || (table.client_secret.is_none() && table.private_key_file.is_none()))
    {
        return Err((
            "grant",
            "\"client_credentials\" needs client_id and client_secret or private_key_file".into(),
        ));
    }
    if let Some(alg) = &table.signing_alg
        && !matches!(alg.as_str(), "ES256" | "RS256")
    {
        return Err((
            "signing_alg",
            format!("{alg:?} is not \"ES256\" or \"RS256\""),
        ));
    }
    if let Some(url) = &table.client_metadata_url {
        check_metadata_url(url).map_err(|m| ("client_metadata_url", m))?;
    }
    Ok(grant)
}

/// A Client ID Metadata Document URL must be `https` with a path (the spec's rule).
pub(crate) fn check_metadata_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" && u.path() != "/" && u.host_str().is_some() => Ok(()),
        _ => Err(format!(
            "{url:?} is not an https URL with a path (a Client ID Metadata Document URL)"
        )),
    }
}

/// OAuth for an `http` server without an `Authorization` header of its own (and without
/// `[mcp.servers.oauth] enabled = false`); `[mcp.servers.oauth]` over `[mcp.oauth]`.
fn oauth_spec(
    server: &McpServerConfig,
    transport: Transport,
    mcp: &McpConfig,
) -> Result<Option<OAuthSpec>, String> {
    let grant = check_oauth(server).map_err(|(key, m)| match key {
        "oauth" => format!("oauth: {m}"),
        key => format!("oauth.{key}: {m}"),
    })?;
    let table = server.oauth.clone().unwrap_or_default();
    let has_authorization = server
        .headers
        .keys()
        .any(|h| h.trim().eq_ignore_ascii_case("authorization"));
    if transport != Transport::Http || !table.enabled || has_authorization {
        return Ok(None);
    }
    let mut spec = OAuthSpec::new(server.name.clone(), mcp.oauth_dir.clone());
    spec.client_id = table.client_id;
    spec.client_secret = table.client_secret.map(Secret::new);
    spec.client_metadata_url = table
        .client_metadata_url
        .or_else(|| mcp.oauth.client_metadata_url.clone());
    spec.client_name = mcp.oauth.client_name.clone();
    spec.scopes = table.scopes;
    spec.grant = grant;
    spec.private_key_file = table.private_key_file;
    spec.signing_alg = table.signing_alg;
    spec.redirect_port = table.redirect_port;
    spec.login_timeout = Duration::from_secs(mcp.oauth.login_timeout_secs);
    Ok(Some(spec))
}

/// `[sessions]`: the session table's limits and the creation rate per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionsPlan {
    /// A session unused for this long is ended.
    pub idle_timeout: Duration,
    /// Live sessions at most.
    pub max_sessions: usize,
    /// At the cap, only a session idle this long may be evicted.
    pub evict_idle_floor: Duration,
    /// `POST /session` requests one source may make at once.
    pub create_burst: u32,
    /// `POST /session` requests per minute one source may sustain.
    pub create_per_minute: u32,
}

impl SessionsPlan {
    fn new(config: &Config) -> Self {
        let s = &config.sessions;
        Self {
            idle_timeout: s.idle_timeout(),
            max_sessions: s.max_sessions as usize,
            evict_idle_floor: s.evict_idle_floor(),
            create_burst: s.create_burst,
            create_per_minute: s.create_per_minute,
        }
    }

    /// The session table's limits.
    pub fn limits(&self) -> SessionLimits {
        SessionLimits {
            idle_timeout: self.idle_timeout,
            max_sessions: self.max_sessions,
            evict_idle_floor: self.evict_idle_floor,
        }
    }
}

/// `[operator]`: how sessions run their operator.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorPlan {
    /// Whether sessions get an operator (`[operator] enabled`).
    pub enabled: bool,
    /// The launcher the spec runs: the operator is installed when it exists.
    pub launcher: PathBuf,
    /// `[operator] python` running the launcher, with the session's id and cwd added per
    /// session.
    pub spec: ServerSpec,
    /// Restart policy of the operator's connection: `[supervisor]`'s.
    pub policy: RestartPolicy,
}

impl OperatorPlan {
    fn new(config: &Config, home: &Path) -> Self {
        let op = &config.operator;
        Self {
            enabled: op.enabled,
            launcher: op.mcp_path.clone(),
            spec: ServerSpec {
                name: OPERATOR_SERVER.to_owned(),
                transport: TransportSpec::Stdio {
                    command: op.python.clone(),
                    args: vec![op.mcp_path.display().to_string()],
                    env: op.process_env(home),
                    cwd: None,
                },
                tool_timeout: op.tool_timeout(),
                // Off: operator tools may run ~100 s without answering anything else.
                ping: PingPolicy::OFF,
                handshake_timeout: config.mcp.handshake_timeout(),
                roots: Vec::new(),
                reset_timeout_on_progress: false,
                shown: None,
                oauth: None,
            },
            policy: config.supervisor.policy(),
        }
    }
}

/// `[session_manager]`: the `root/sidecars` subtree.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarPlan {
    /// Whether the session manager runs (the subtree is empty otherwise, and calls to it are
    /// refused).
    pub enabled: bool,
    /// The session manager's process, readiness and liveness.
    pub process: SessionManagerSpec,
    /// The process's restart policy: `[supervisor]` with its `restart` table applied.
    pub policy: RestartPolicy,
    /// The breaker in front of it.
    pub breaker: BreakerConfig,
    /// The retry queue of its mutations, journalled under `$REVKA_HOME/operator_mcp`.
    pub queue: QueueConfig,
    /// Environment added to the process's from `[agents]` (the backends' CLIs, the codex
    /// approval policy, the per-agent budget defaults): [`crate::config::AgentsConfig::sidecar_env`].
    pub env: Vec<(String, String)>,
}

impl SidecarPlan {
    fn new(config: &Config, home: &Path) -> Self {
        let sm = &config.session_manager;
        let (b, q) = (&sm.breaker, &sm.retry_queue);
        Self {
            enabled: sm.enabled,
            process: SessionManagerSpec {
                command: sm.command.clone(),
                socket: sm.socket_path.clone(),
                home: home.to_owned(),
                startup_timeout: sm.startup_timeout(),
                liveness_interval: sm.liveness_interval(),
                liveness_failures: sm.liveness_failures,
            },
            policy: sm.policy(&config.supervisor),
            breaker: BreakerConfig {
                failure_threshold: b.failure_threshold,
                recovery_timeout: Duration::from_secs(b.recovery_timeout_secs),
                max_recovery_timeout: Duration::from_secs(b.max_recovery_timeout_secs),
                half_open_max_calls: b.half_open_max_calls,
                probe_timeout: Duration::from_secs(b.probe_timeout_secs),
            },
            queue: QueueConfig {
                capacity: q.capacity as usize,
                max_retries: q.max_retries,
                backoff_min: Duration::from_secs(q.backoff_min_secs),
                backoff_max: Duration::from_secs(q.backoff_max_secs),
                attempt_timeout: Duration::from_secs(q.attempt_timeout_secs),
                concurrency: q.concurrency as usize,
                on_full: match q.on_full {
                    OnFull::Reject => retry_queue::OnFull::Reject,
                    OnFull::DeadLetterOldest => retry_queue::OnFull::DeadLetterOldest,
                },
                dead_letter_capacity: q.dead_letter_capacity as usize,
                ..QueueConfig::new(home.join("operator_mcp").join("retry_queue.jsonl"))
            },
            env: config.agents.sidecar_env(),
        }
    }
}

/// The two HTTP faces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenersPlan {
    /// `root/mcp_http`, Revka's MCP endpoint (always runs): `[mcp_server]`.
    pub mcp_http: McpEndpointConfig,
    /// `root/gateway`, present when `enabled`: `[gateway]` (its timeouts and origins are read
    /// per request).
    pub gateway: GatewayConfig,
    /// `[http]`: what both allow one client, read per connection.
    pub http: HttpConfig,
}
