//! The checks of `revka doctor` that talk to processes: the operator's MCP handshake, the
//! session manager's socket, the daemon's gateway and breaker, the configured MCP servers,
//! and the discovery files' pids.

use std::path::Path;
use std::time::Duration;

use revka_actors::mcp::connection::probe;
use revka_actors::sidecar::SidecarClient;
use revka_mcp::spec::{ServerSpec, TransportSpec};
use serde_json::Value;

use super::{Check, OPERATOR_HANDSHAKE_TIMEOUT};
use crate::cli::remote::{GATEWAY_FILE, Gateway, RemoteError, pid_alive, read_gateway_file};
use crate::config::Config;
use crate::http::discovery::{DISCOVERY_FILE, read_discovery_file};
use crate::mcp_servers::{http_client, probe_server};

/// The actor path of the session manager's circuit breaker.
pub const BREAKER_PATH: &str = "root/sidecars/breaker:session_manager";

const START_HINT: &str = "start it with `revka daemon` (or your service manager)";

/// The daemon as the doctor found it.
#[derive(Debug)]
pub struct Daemon {
    /// A connection to its gateway, when it answered.
    pub gateway: Option<Gateway>,
    /// The `daemon` check.
    pub check: Check,
}

impl Daemon {
    /// Whether the daemon answered.
    pub fn running(&self) -> bool {
        self.gateway.is_some()
    }
}

/// `gateway.json` present and `GET /api/health` answering: `healthy` ok, `degraded` warn
/// (naming what is unwell), `unhealthy` FAIL; not running is a warning.
pub async fn daemon(home: &Path) -> Daemon {
    let down = |check| Daemon {
        gateway: None,
        check,
    };
    match read_gateway_file(home) {
        Ok(_) => {}
        Err(e @ RemoteError::NotRunning { .. }) => {
            return down(Check::warn("daemon", e.to_string(), START_HINT));
        }
        Err(e @ RemoteError::Stale { .. }) => {
            return down(Check::warn(
                "daemon",
                format!("not running: {e}"),
                START_HINT,
            ));
        }
        Err(e) => return down(Check::fail("daemon", e.to_string(), START_HINT)),
    }
    let gateway = match Gateway::connect(home) {
        Ok(g) => g,
        Err(e) => return down(Check::fail("daemon", e.to_string(), "restart the daemon")),
    };
    let health = match gateway.health().await {
        Ok(h) => h,
        Err(e) => {
            let hint = "is it wedged? see its logs, or restart it";
            return down(Check::fail("daemon", e.to_string(), hint));
        }
    };
    let url = gateway.url().to_owned();
    let unwell = unwell(&health);
    let check = match health["status"].as_str().unwrap_or("unknown") {
        "healthy" => Check::ok("daemon", format!("healthy at {url}")),
        "degraded" => Check::warn(
            "daemon",
            format!("degraded at {url}: {}", unwell.join(", ")),
            "`revka status` shows why; `revka restart <path>` restarts one actor",
        ),
        other => Check::fail(
            "daemon",
            format!("{other} at {url}: {}", unwell.join(", ")),
            "`revka status` shows why; see the daemon's logs",
        ),
    };
    Daemon {
        gateway: Some(gateway),
        check,
    }
}

/// `name (state)` of every server, sidecar and core component that is not running well.
fn unwell(health: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for group in ["mcp_servers", "sidecars"] {
        for child in health[group].as_array().into_iter().flatten() {
            let state = child["state"].as_str().unwrap_or("unknown");
            if matches!(state, "failed" | "backing_off" | "starting" | "stopping") {
                let name = child["name"].as_str().unwrap_or("?");
                let why = child["last_failure"]
                    .as_str()
                    .map(|f| format!(": {f}"))
                    .unwrap_or_default();
                out.push(format!("{name} ({state}{why})"));
            }
        }
    }
    for (name, state) in health["components"].as_object().into_iter().flatten() {
        if state.as_str() != Some("running") {
            out.push(format!("{name} ({})", state.as_str().unwrap_or("?")));
        }
    }
    out
}

/// The session manager's breaker (`open` warns with the next probe time); skipped when the
/// daemon is down or has no breaker.
pub async fn breaker(daemon: &Daemon) -> Check {
    let Some(gateway) = &daemon.gateway else {
        return Check::skip("breaker", "the daemon is not running");
    };
    let snapshot = match gateway.actors(Some(BREAKER_PATH)).await {
        Ok(s) => s,
        Err(RemoteError::Api { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {
            return Check::skip("breaker", "no session-manager breaker (not enabled)");
        }
        Err(e) => {
            return Check::warn(
                "breaker",
                e.to_string(),
                "`revka status --path root/sidecars`",
            );
        }
    };
    let details = &snapshot["details"];
    let next = details["next_probe_in_ms"]
        .as_u64()
        .map(|ms| {
            format!(
                "; next probe in {}",
                humantime::format_duration(Duration::from_secs(ms.div_ceil(1000)))
            )
        })
        .unwrap_or_default();
    let failures = details["consecutive_failures"].as_u64().unwrap_or(0);
    match details["state"].as_str() {
        Some("closed") => Check::ok("breaker", "session manager breaker closed"),
        Some(state @ ("open" | "half_open")) => Check::warn(
            "breaker",
            format!("session manager breaker {state} after {failures} failure(s){next}"),
            "the session manager is failing; `revka status --path root/sidecars` shows why",
        ),
        _ => Check::skip("breaker", "the breaker reports no state"),
    }
}

/// The operator answers an MCP handshake when started as the daemon starts it.
pub async fn operator_handshake(config: &Config, home: &Path) -> Check {
    let op = &config.operator;
    let spec = ServerSpec {
        name: "operator".to_owned(),
        transport: TransportSpec::Stdio {
            command: op.python.clone(),
            args: vec![op.mcp_path.display().to_string()],
            env: vec![("REVKA_HOME".to_owned(), home.display().to_string())],
            cwd: op.mcp_path.parent().map(Path::to_path_buf),
        },
        tool_timeout: op.tool_timeout(),
        ping: revka_mcp::spec::PingPolicy::OFF,
        handshake_timeout: OPERATOR_HANDSHAKE_TIMEOUT,
        roots: Vec::new(),
        reset_timeout_on_progress: false,
        shown: None,
        oauth: None,
    };
    let report = probe(&spec, &http_client()).await;
    if report.ok {
        let tools = report.tools.unwrap_or_default();
        Check::ok(
            "operator handshake",
            format!(
                "answers in {} ms with {} tools: {}",
                report.latency_ms,
                tools.len(),
                tools.join(", ")
            ),
        )
    } else {
        Check::fail(
            "operator handshake",
            report.error.unwrap_or_else(|| "no answer".to_owned()),
            format!(
                "run `{} {}` by hand to see its errors, or reinstall: revka install --sidecars-only",
                op.python,
                op.mcp_path.display()
            ),
        )
    }
}

/// The session manager (when enabled): its script is installed and its socket answers
/// `GET /health` (a warning while the daemon, which starts it, is not running).
pub async fn session_manager(config: &Config, daemon_running: bool) -> Vec<Check> {
    let sm = &config.session_manager;
    if !sm.enabled {
        return vec![Check::skip(
            "session manager",
            "not enabled ([session_manager] enabled = false)",
        )];
    }
    let mut checks = Vec::new();
    let install = "run: revka install --sidecars-only --with-session-manager";
    if let Some(script) = sm.command.get(1).filter(|s| s.ends_with(".js")) {
        checks.push(if Path::new(script).is_file() {
            Check::ok("session manager script", script.clone())
        } else {
            Check::fail(
                "session manager script",
                format!("no script at {script}"),
                install,
            )
        });
        if let Some(dir) = Path::new(script).parent() {
            checks.push(claude_sdk(dir, install));
        }
    }
    let client = SidecarClient::new(&sm.socket_path, Duration::from_secs(5));
    checks.push(match client.get("/health").await {
        Ok(v) if v["status"] == "ok" => Check::ok(
            "session manager",
            format!("answers /health on {}", sm.socket_path.display()),
        ),
        Ok(v) => Check::fail(
            "session manager",
            format!("/health answered {v}"),
            "`revka restart root/sidecars/session_manager`",
        ),
        Err(e) if !daemon_running => Check::warn(
            "session manager",
            format!("{e}; the daemon, which starts it, is not running"),
            START_HINT,
        ),
        Err(e) => Check::fail(
            "session manager",
            e.to_string(),
            "`revka status --path root/sidecars` shows why",
        ),
    });
    checks
}

/// The Claude Agent SDK in the session manager's `node_modules` (what its `claude` backend
/// runs); a warning without it: the other backends work, `claude` agents fail `sdk_missing`.
fn claude_sdk(dir: &Path, install: &str) -> Check {
    const NAME: &str = "claude agent sdk";
    if !dir.join("package.json").is_file() {
        return Check::skip(
            NAME,
            "the session manager has no package.json (an older install)",
        );
    }
    let manifest = dir.join("node_modules/@anthropic-ai/claude-agent-sdk/package.json");
    let version = std::fs::read(&manifest).ok().and_then(|bytes| {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()?
            .get("version")?
            .as_str()
            .map(str::to_owned)
    });
    match version {
        Some(version) => Check::ok(NAME, format!("{version} in {}", dir.display())),
        None => Check::warn(
            NAME,
            format!(
                "not installed in {}: agents with backend claude fail (sdk_missing)",
                dir.display()
            ),
            install,
        ),
    }
}

/// Every configured server answers a handshake (concurrently); `auto_connect = false` ones
/// are not started and only warned about.
pub async fn servers(config: &Config) -> Vec<Check> {
    let servers = &config.mcp.servers;
    if servers.is_empty() {
        let detail = if config.mcp.invalid_servers.is_empty() {
            "none configured"
        } else {
            "no valid server configured"
        };
        return vec![Check::ok("mcp servers", detail)];
    }
    let http = http_client();
    let probes = servers.iter().map(|server| {
        let http = http.clone();
        async move {
            let name = format!("server {}", server.name);
            if !server.auto_connect {
                return Check::warn(
                    name,
                    "auto_connect = false: not checked",
                    format!("`revka mcp test {}` checks it", server.name),
                );
            }
            let report = probe_server(server, &config.mcp, &http).await;
            if report.ok {
                let disabled = if config.mcp.enabled {
                    ""
                } else {
                    " ([mcp] enabled = false: the daemon does not connect)"
                };
                Check::ok(
                    name,
                    format!(
                        "{} tools in {} ms{disabled}",
                        report.tool_count.unwrap_or(0),
                        report.latency_ms
                    ),
                )
            } else {
                Check::fail(
                    name,
                    report.error.unwrap_or_else(|| "no answer".to_owned()),
                    format!("`revka mcp test {}` shows the details", server.name),
                )
            }
        }
    });
    futures::future::join_all(probes).await
}

/// `mcp.json` and `gateway.json` name a live pid (a stale one is a warning).
pub fn discovery_files(home: &Path) -> Vec<Check> {
    [DISCOVERY_FILE, GATEWAY_FILE]
        .into_iter()
        .map(|name| {
            let path = home.join(name);
            let check = format!("discovery {name}");
            if !path.exists() {
                return Check::skip(check, "absent (the daemon is not running)");
            }
            match read_discovery_file(&path) {
                None => Check::warn(
                    check,
                    format!("{} is not a discovery document", path.display()),
                    format!("remove it if no daemon is running: rm {}", path.display()),
                ),
                Some(doc) => match doc.pid {
                    Some(pid) if !pid_alive(pid) => Check::warn(
                        check,
                        format!("stale: pid {pid} is not running"),
                        format!("remove it: rm {}", path.display()),
                    ),
                    Some(pid) => Check::ok(check, format!("pid {pid} is running ({})", doc.url)),
                    None => Check::ok(check, format!("{} (no pid recorded)", doc.url)),
                },
            }
        })
        .collect()
}
