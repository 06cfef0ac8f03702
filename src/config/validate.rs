//! Semantic validation: the checks types cannot express, and the warnings.
//!
//! Part of the config layer, the last step of the load pipeline. It rejects what would fail
//! later or behave dangerously (a missing command, a bad URL or header, `__` in a server name,
//! duplicate names, a public bind, zero windows), caps over-long timeouts, and warns about keys
//! that have no effect. Every message names its key path.

use std::collections::HashMap;
use std::net::IpAddr;

use revka_actors::supervisor::RestartPolicy;

use super::ConfigError;
use super::error::Site;
use super::import::ServerSource;
use super::keypath::KeyPath;
use super::loader::site_of;
use super::schema::{Config, InvalidServer, MAX_TOOL_TIMEOUT_SECS, MAX_WORKER_THREADS};
use super::supervision::{RestartOverride, ping_problem, policy_problems};

pub(crate) mod origin;
mod security;
pub(crate) mod server;
mod terminal;

use server::check_server;

/// Checks `config` (servers described by `sources`), capping and warning where allowed.
pub(crate) fn validate(
    config: &mut Config,
    site: Site<'_>,
    sources: &[ServerSource],
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let k = KeyPath::keys;

    // [supervisor] first: server and sidecar overrides are applied to its policy.
    let base_policy = config.supervisor.policy();
    if let Some((key, message)) = policy_problems(&base_policy).into_iter().next() {
        return Err(site.invalid(&k(&["supervisor", key]), message));
    }
    let sup = &config.supervisor;
    if let Some((key, message)) =
        ping_problem(Some(sup.ping_interval_secs), Some(sup.ping_failures))
    {
        return Err(site.invalid(&k(&["supervisor", key]), message));
    }
    check_positive(config, site)?;
    if let Some((key, message)) = super::agents::agents_problem(&config.agents) {
        return Err(site.invalid(&k(&["agents", key]), message));
    }
    check_oauth_defaults(config, site)?;
    check_client_limits(config, site)?;
    if config.runtime.worker_threads > MAX_WORKER_THREADS {
        return Err(site.invalid(
            &k(&["runtime", "worker_threads"]),
            format!("must be at most {MAX_WORKER_THREADS} (0 picks half the CPUs)"),
        ));
    }

    // [mcp]
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut valid = Vec::with_capacity(config.mcp.servers.len());
    for (mut server, source) in std::mem::take(&mut config.mcp.servers)
        .into_iter()
        .zip(sources)
    {
        let site = site_of(site, source);
        let name_path = source.path(&k(&["name"]));
        if let Some(first) = seen.get(&server.name) {
            let message = format!(
                "duplicate server name {:?} (first defined at {first})",
                server.name
            );
            return Err(site.invalid(&name_path, message));
        }
        seen.insert(server.name.clone(), describe(site, source, &name_path));
        match check_server(&mut server, site, source, base_policy, warnings) {
            Ok(()) => valid.push(server),
            // A bad name cannot be shown as a server of its own: the whole file is invalid.
            Err(e) if server::check_name(&server.name).is_err() => return Err(e),
            // Any other problem fails this server alone; the others carry on.
            Err(e) => {
                config.mcp.invalid_servers.push(InvalidServer {
                    name: server.name.clone(),
                    reason: e.to_string(),
                });
            }
        }
    }
    config.mcp.servers = valid;
    if !config.mcp.enabled && !config.mcp.servers.is_empty() {
        warnings.push(format!(
            "mcp.enabled is false: none of the {} configured MCP server(s) will connect",
            config.mcp.servers.len()
        ));
    }

    // [gateway]
    let gw = &config.gateway;
    let host = gw.host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(site.invalid(&k(&["gateway", "host"]), "must not be empty"));
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback && !gw.allow_public_bind {
        let message = format!(
            "{:?} is not a loopback address; set gateway.allow_public_bind = true to expose the \
             gateway to the network",
            gw.host
        );
        return Err(site.invalid(&k(&["gateway", "host"]), message));
    }
    if !loopback {
        warnings.push(format!(
            "gateway.host: binding the non-loopback address {:?} (allow_public_bind = true)",
            gw.host
        ));
    }
    let origins = &mut config.gateway.allowed_origins;
    for (i, origin) in origins.iter_mut().enumerate() {
        let path = k(&["gateway", "allowed_origins"]).index(i);
        *origin = origin::normalise_origin(origin)
            .map_err(|m| site.invalid(&path, format!("invalid origin {origin:?}: {m}")))?;
    }

    check_mcp_endpoint(config, site, warnings)?;
    terminal::check_terminal(config, site)?;
    security::check_security(config, site)?;

    // [operator]
    let op = &mut config.operator;
    if op.python.trim().is_empty() {
        return Err(site.invalid(&k(&["operator", "python"]), "must not be empty"));
    }
    let key = "operator.tool_timeout_secs";
    cap_tool_timeout(&mut op.tool_timeout_secs, key, warnings);

    // [session_manager]
    let sm = &config.session_manager;
    if sm.command.first().is_none_or(|c| c.trim().is_empty()) {
        return Err(site.invalid(
            &k(&["session_manager", "command"]),
            "must name a program (e.g. [\"node\", \"session-manager.js\"])",
        ));
    }
    if let Some((key, _)) = sm.restart.ping_keys().into_iter().find(|(_, set)| *set) {
        return Err(site.invalid(
            &k(&["session_manager", "restart", key]),
            "applies to MCP servers only; the session manager's probe is \
             session_manager.liveness_interval_secs and liveness_failures",
        ));
    }
    check_override(&sm.restart, base_policy, site, |key| {
        k(&["session_manager", "restart", key])
    })?;
    let b = &sm.breaker;
    if b.max_recovery_timeout_secs < b.recovery_timeout_secs {
        return Err(site.invalid(
            &k(&["session_manager", "breaker", "max_recovery_timeout_secs"]),
            format!(
                "must be at least recovery_timeout_secs ({})",
                b.recovery_timeout_secs
            ),
        ));
    }
    let q = &sm.retry_queue;
    if q.backoff_min_secs > q.backoff_max_secs {
        return Err(site.invalid(
            &k(&["session_manager", "retry_queue", "backoff_min_secs"]),
            format!("must not exceed backoff_max_secs ({})", q.backoff_max_secs),
        ));
    }
    Ok(())
}

/// `[mcp_server]`: a host that parses; a public bind only with `allow_public_bind`; no
/// `require_token = false` unless the bind is loopback (and then a warning, logged at start).
fn check_mcp_endpoint(
    config: &Config,
    site: Site<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let k = KeyPath::keys;
    let endpoint = &config.mcp_server;
    let addr = endpoint
        .bind_addr()
        .map_err(|m| site.invalid(&k(&["mcp_server", "host"]), m))?;
    let loopback = addr.ip().is_loopback();
    if !loopback && !endpoint.allow_public_bind {
        let message = format!(
            "{:?} is not a loopback address; set mcp_server.allow_public_bind = true to expose \
             every tool to the network",
            endpoint.host
        );
        return Err(site.invalid(&k(&["mcp_server", "host"]), message));
    }
    if !loopback && !endpoint.require_token {
        let message = format!(
            "must be true when mcp_server.host ({:?}) is not a loopback address: without a token \
             anyone on the network could call every tool",
            endpoint.host
        );
        return Err(site.invalid(&k(&["mcp_server", "require_token"]), message));
    }
    if !loopback {
        warnings.push(format!(
            "mcp_server.host: binding the non-loopback address {:?} (allow_public_bind = true)",
            endpoint.host
        ));
    }
    if !endpoint.require_token {
        warnings.push(
            "mcp_server.require_token = false: any local process can open a session on /mcp \
             without a token and call every tool, as with a stdio server"
                .to_owned(),
        );
    }
    Ok(())
}

/// `[mcp.oauth]`: the login wait and the Client ID Metadata Document URL.
fn check_oauth_defaults(config: &Config, site: Site<'_>) -> Result<(), ConfigError> {
    let oauth = &config.mcp.oauth;
    if !(1..=3600).contains(&oauth.login_timeout_secs) {
        return Err(site.invalid(
            &KeyPath::keys(&["mcp", "oauth", "login_timeout_secs"]),
            "must be between 1 and 3600",
        ));
    }
    if let Some(url) = &oauth.client_metadata_url {
        crate::config::plan::check_metadata_url(url).map_err(|m| {
            site.invalid(&KeyPath::keys(&["mcp", "oauth", "client_metadata_url"]), m)
        })?;
    }
    Ok(())
}

/// Rejects a zero where zero means "never" or "nothing" (a timer that never fires, a queue that
/// holds nothing).
fn check_positive(config: &Config, site: Site<'_>) -> Result<(), ConfigError> {
    let sup = &config.supervisor;
    let sm = &config.session_manager;
    let (b, q) = (&sm.breaker, &sm.retry_queue);
    let values: [(&[&str], u64); 20] = [
        (
            &["supervisor", "intensity_period_secs"],
            sup.intensity_period_secs,
        ),
        (
            &["supervisor", "shutdown_grace_secs"],
            sup.shutdown_grace_secs,
        ),
        (
            &["mcp", "handshake_timeout_secs"],
            config.mcp.handshake_timeout_secs,
        ),
        (
            &["sessions", "idle_timeout_secs"],
            config.sessions.idle_timeout_secs,
        ),
        (
            &["sessions", "max_sessions"],
            config.sessions.max_sessions.into(),
        ),
        (
            &["gateway", "request_timeout_secs"],
            config.gateway.request_timeout_secs,
        ),
        (
            &["gateway", "call_timeout_secs"],
            config.gateway.call_timeout_secs,
        ),
        (
            &["operator", "max_tool_iterations"],
            config.operator.max_tool_iterations.into(),
        ),
        (
            &["operator", "tool_timeout_secs"],
            config.operator.tool_timeout_secs,
        ),
        (
            &["session_manager", "startup_timeout_secs"],
            sm.startup_timeout_secs,
        ),
        (
            &["session_manager", "liveness_interval_secs"],
            sm.liveness_interval_secs,
        ),
        (
            &["session_manager", "liveness_failures"],
            sm.liveness_failures.into(),
        ),
        (
            &["session_manager", "breaker", "failure_threshold"],
            b.failure_threshold.into(),
        ),
        (
            &["session_manager", "breaker", "recovery_timeout_secs"],
            b.recovery_timeout_secs,
        ),
        (
            &["session_manager", "breaker", "half_open_max_calls"],
            b.half_open_max_calls.into(),
        ),
        (
            &["session_manager", "breaker", "probe_timeout_secs"],
            b.probe_timeout_secs,
        ),
        (
            &["session_manager", "retry_queue", "capacity"],
            q.capacity.into(),
        ),
        (
            &["session_manager", "retry_queue", "attempt_timeout_secs"],
            q.attempt_timeout_secs,
        ),
        (
            &["session_manager", "retry_queue", "concurrency"],
            q.concurrency.into(),
        ),
        (
            &["session_manager", "retry_queue", "backoff_max_secs"],
            q.backoff_max_secs,
        ),
    ];
    match values.iter().find(|(_, value)| *value == 0) {
        Some((keys, _)) => Err(site.invalid(&KeyPath::keys(keys), "must be greater than 0")),
        None => Ok(()),
    }
}

/// The longest `[http]` timeout: a day (a timer past that could overflow the clock, and no
/// client needs it).
const MAX_HTTP_TIMEOUT_SECS: u64 = 24 * 60 * 60;

/// `[http]` and the session creation rate of `[sessions]`: what one client may hold or ask for.
/// Zero would mean "never" (a timeout) or "nothing" (a cap or a rate), so it is refused.
fn check_client_limits(config: &Config, site: Site<'_>) -> Result<(), ConfigError> {
    let (http, sessions) = (&config.http, &config.sessions);
    let timeouts: [(&str, u64); 3] = [
        ("header_read_timeout_secs", http.header_read_timeout_secs),
        ("body_read_timeout_secs", http.body_read_timeout_secs),
        ("keepalive_idle_secs", http.keepalive_idle_secs),
    ];
    for (key, value) in timeouts {
        if value == 0 || value > MAX_HTTP_TIMEOUT_SECS {
            let message = format!("must be between 1 and {MAX_HTTP_TIMEOUT_SECS} (a day)");
            return Err(site.invalid(&KeyPath::keys(&["http", key]), message));
        }
    }
    let counts: [(&[&str], u32); 3] = [
        (
            &["http", "max_connections_per_source"],
            http.max_connections_per_source,
        ),
        (&["sessions", "create_burst"], sessions.create_burst),
        (
            &["sessions", "create_per_minute"],
            sessions.create_per_minute,
        ),
    ];
    match counts.iter().find(|(_, value)| *value == 0) {
        Some((keys, _)) => Err(site.invalid(&KeyPath::keys(keys), "must be greater than 0")),
        None => Ok(()),
    }
}

/// Rejects an override whose resulting policy is unusable; `path(key)` is the key path of a
/// key of the override table.
pub(super) fn check_override(
    ov: &RestartOverride,
    base: RestartPolicy,
    site: Site<'_>,
    path: impl Fn(&str) -> KeyPath,
) -> Result<(), ConfigError> {
    if let Some((key, message)) = ping_problem(ov.ping_interval_secs, ov.ping_failures) {
        return Err(site.invalid(&path(key), message));
    }
    let Some((key, message)) = policy_problems(&ov.apply(base)).into_iter().next() else {
        return Ok(());
    };
    // A backoff conflict caused by overriding only the max is reported at the max.
    let key = if key == "backoff_min_ms" && ov.backoff_min_ms.is_none() {
        "backoff_max_ms"
    } else {
        key
    };
    Err(site.invalid(&path(key), message))
}

/// Caps a tool timeout at [`MAX_TOOL_TIMEOUT_SECS`], with a warning.
pub(super) fn cap_tool_timeout(value: &mut u64, key: &str, warnings: &mut Vec<String>) {
    if *value > MAX_TOOL_TIMEOUT_SECS {
        warnings.push(format!(
            "{key}: {value} exceeds the maximum of {MAX_TOOL_TIMEOUT_SECS}; using \
             {MAX_TOOL_TIMEOUT_SECS}"
        ));
        *value = MAX_TOOL_TIMEOUT_SECS;
    }
}

/// A key path for a warning: bare for the TOML file, `file: path` for an imported one.
pub(super) fn describe(site: Site<'_>, source: &ServerSource, path: &KeyPath) -> String {
    if source.in_toml {
        path.to_string()
    } else {
        format!("{}: {path}", site.file.display())
    }
}
