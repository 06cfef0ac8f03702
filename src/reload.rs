//! Live reload of the configuration (SIGHUP, `revka reload`, `POST /api/reload`).
//!
//! The file is re-read and validated first; if it is invalid, nothing changes and the reason is
//! returned. Otherwise the difference is applied:
//! - MCP servers: added ones are started, removed ones stopped, and only those whose connection
//!   settings changed (transport, command, args, env, url, headers, roots, handshake timeout,
//!   auto_connect) are restarted. A changed tool timeout, liveness probe (`ping_interval_secs`,
//!   `ping_failures`) or restart policy is applied in place: the server keeps running, and so
//!   do its in-flight calls; the probe takes its new policy at once.
//! - Gateway timeouts apply to the next request; `[http]` client limits to the next connection.
//! - What cannot change live (listen addresses, session limits, sidecar and operator settings,
//!   deferred loading, intensity, the built-in tools' `[security]` and `[tools]`) is reported
//!   as needing a restart. So is a new `[supervisor]` default restart policy for the children
//!   that are not MCP servers (sidecars, the operator, listeners, nested supervisors); MCP
//!   servers that inherit it get it in place.
//!
//! A server whose new entry is invalid (while the rest of the file is valid) keeps running on
//! its previous entry, and the reason is reported under `failed`.
//!
//! Every applied change is logged, and the report is kept in the root's introspection details.
//! Each reload is also a `reloaded` event on `root` in the supervision event log
//! ([`revka_actors::events`]), its `detail` saying what changed or why the file was rejected.
//!
//! # Who reloads, one at a time
//!
//! SIGHUP (from `kill`, or from systemd for a `Type=notify-reload` unit), `POST /api/reload`
//! and `revka reload` (which posts to the gateway) all end in [`reload`]. Reloads are
//! serialised: a request that arrives while one runs waits for it and then runs its own (the
//! file may have changed since the running one read it), and gets the report of its own
//! reload. Signals never wait in the signal loop: [`serve_signals`] runs the reloads they ask
//! for in a task of its own, so SIGTERM is handled at once even during a reload, and signals
//! that arrive while a reload runs are folded into one more reload after it (none is lost).
//!
//! Under systemd each reload is framed by `RELOADING=1` + `MONOTONIC_USEC=` and `READY=1`
//! with a `STATUS=` line saying how it went. A reload drives `root/mcp_servers` through that
//! supervisor's own mailbox, from the task that runs the reload; the root is not involved, so
//! the watchdog ([`crate::watchdog`]) keeps pinging through a reload however long its server
//! stops take.

use std::collections::BTreeMap;
use std::sync::Arc;

use revka_actors::mcp::connection::connection_spec;
use revka_actors::supervisor::{start_child, terminate_child, update_child};
use revka_mcp::spec::ServerSpec;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::plan::{McpPlan, ServerPlan, invalid_server_policy};
use crate::config::{self, Config, ConfigError, DaemonPlan};
use crate::mcp_servers::invalid_server_child;
use crate::tree::Services;

/// How long `POST /api/reload` (and so `revka reload`) waits for its reload. A reload stops
/// each removed or changed server by its shutdown timeout (plus a kill wait), one after
/// another, so a slow one takes minutes; past this the caller gets a 504 and the reload
/// carries on.
pub const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// Changes applied, one line each.
    pub applied: Vec<String>,
    /// Changed settings that need a daemon restart to take effect.
    pub restart_required: Vec<String>,
    /// Changes that could not be applied (the daemon carries on with the rest).
    pub failed: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The config file does not load or does not validate.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Re-reads the config and applies the difference, after any reload already running. `Err`
/// is the validation error: nothing changed.
pub async fn reload(services: &Services) -> Result<ReloadReport, ReloadError> {
    let _serial = services.reload_lock.lock().await;
    let notifier = services.notifier.get();
    if let Some(Err(e)) = notifier.map(|n| n.notify_reloading()) {
        tracing::warn!(error = %e, "cannot notify systemd of the reload");
    }
    let result = apply(services).await;
    if let Some(Err(e)) = notifier.map(|n| n.notify_reloaded(&status_line(&result))) {
        tracing::warn!(error = %e, "cannot notify systemd that the reload is done");
    }
    services.status_root.record_event(
        revka_actors::events::Note::new(revka_actors::EventKind::Reloaded)
            .detail(event_detail(&result)),
    );
    result
}

/// The `detail` of the `reloaded` supervision event: the counts and the changes, or why the
/// file was rejected, at most [`EVENT_DETAIL_MAX`] bytes.
fn event_detail(result: &Result<ReloadReport, ReloadError>) -> String {
    let mut detail = match result {
        Ok(r) => {
            let mut detail = format!(
                "{} applied, {} need a restart, {} failed",
                r.applied.len(),
                r.restart_required.len(),
                r.failed.len()
            );
            let changes: Vec<&str> = r
                .applied
                .iter()
                .chain(&r.restart_required)
                .chain(&r.failed)
                .map(String::as_str)
                .collect();
            if !changes.is_empty() {
                detail.push_str(": ");
                detail.push_str(&changes.join("; "));
            }
            detail
        }
        Err(e) => format!("rejected, running configuration unchanged: {e}"),
    };
    if detail.len() > EVENT_DETAIL_MAX {
        let mut end = EVENT_DETAIL_MAX;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
        detail.push('…');
    }
    detail
}

/// The longest `detail` of a `reloaded` event, in bytes.
const EVENT_DETAIL_MAX: usize = 400;

/// The unit's `STATUS=` after a reload.
fn status_line(result: &Result<ReloadReport, ReloadError>) -> String {
    match result {
        Ok(r) => format!(
            "reloaded: {} applied, {} need a restart, {} failed",
            r.applied.len(),
            r.restart_required.len(),
            r.failed.len()
        ),
        Err(e) => {
            let mut line = format!("reload rejected, running configuration unchanged: {e}");
            if line.len() > 400 {
                let mut end = 400;
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                line.truncate(end);
                line.push('…');
            }
            line
        }
    }
}

/// Runs one reload each time `requests` is notified (SIGHUP), until aborted. Requests made
/// while a reload runs are folded into one more reload after it.
pub fn serve_signals(services: Services, requests: Arc<Notify>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            requests.notified().await;
            tracing::info!("SIGHUP: reloading the configuration");
            if let Err(e) = reload(&services).await {
                tracing::error!(error = %e, "reload rejected; the running configuration is unchanged");
            }
        }
    })
}

/// Re-reads the config and applies the difference (the caller holds the reload lock).
async fn apply(services: &Services) -> Result<ReloadReport, ReloadError> {
    let loaded = config::load(services.config.path(), &config::process_env)?;
    for warning in &loaded.warnings {
        tracing::warn!("config: {warning}");
    }
    let old = services.config.get();
    let mut new = loaded.config;
    let mut report = ReloadReport::default();
    keep_running_entries(&old, &mut new, &mut report);
    let (old_plan, new_plan) = (
        services.config.plan(),
        DaemonPlan::new(&new, &services.home),
    );
    // Logs each change with its path.
    apply_servers(services, &old_plan.mcp, &new_plan.mcp, &mut report).await;
    let (applied, failed) = (report.applied.len(), report.failed.len());
    compare_rest(&old, &new, &mut report);
    let running = running_config(&old, new);
    let plan = DaemonPlan::new(&running, &services.home);
    services.config.set(running, plan);
    for line in &report.applied[applied..] {
        tracing::info!(change = %line, "reload: applied");
    }
    for line in &report.restart_required {
        tracing::warn!(setting = %line, "reload: needs a daemon restart to take effect");
    }
    for line in &report.failed[failed..] {
        tracing::error!(change = %line, "reload: could not apply");
    }
    services.record_reload(&report);
    Ok(report)
}

impl ReloadReport {
    /// A change applied to the actor at `path`, logged at once with its path.
    fn server_applied(&mut self, path: &str, line: String) {
        tracing::info!(%path, change = %line, "reload: applied");
        self.applied.push(line);
    }

    /// A change that could not be applied to the actor at `path`, logged at once.
    fn server_failed(&mut self, path: &str, line: String) {
        tracing::error!(%path, change = %line, "reload: could not apply");
        self.failed.push(line);
    }
}

/// A running server whose new entry is invalid keeps running on its previous entry (its
/// process and in-flight calls with it): the previous entry replaces the invalid one in `new`,
/// and the reason is reported as a failed change.
fn keep_running_entries(old: &Config, new: &mut Config, report: &mut ReloadReport) {
    let invalid = std::mem::take(&mut new.mcp.invalid_servers);
    for entry in invalid {
        match old.mcp.servers.iter().find(|s| s.name == entry.name) {
            Some(previous) if old.mcp.enabled && new.mcp.enabled => {
                report.server_failed(
                    &server_path(&entry.name),
                    format!(
                        "kept mcp:{} on its previous configuration: {}",
                        entry.name, entry.reason
                    ),
                );
                new.mcp.servers.push(previous.clone());
            }
            _ => new.mcp.invalid_servers.push(entry),
        }
    }
}

/// The supervision path of server `name`'s connection actor.
fn server_path(name: &str) -> String {
    format!("root/mcp_servers/mcp:{name}")
}

/// The servers the daemon runs under `plan`, by name (none while `[mcp] enabled = false`).
fn running_servers(plan: &McpPlan) -> BTreeMap<&str, &ServerPlan> {
    plan.running()
        .filter_map(|s| s.as_ref().ok())
        .map(|s| (s.name(), s))
        .collect()
}

/// The names of the entries that failed validation (shown as failed children while `[mcp]
/// enabled`).
fn invalid_names(plan: &McpPlan) -> Vec<&str> {
    plan.servers
        .iter()
        .filter_map(|s| s.as_ref().err())
        .map(|s| s.name.as_str())
        .collect()
}

/// Whether two specs differ only in what applies without a reconnect.
fn live_changeable(a: &ServerSpec, b: &ServerSpec) -> bool {
    let mut b = b.clone();
    b.tool_timeout = a.tool_timeout;
    b.reset_timeout_on_progress = a.reset_timeout_on_progress;
    b.ping = a.ping;
    *a == b
}

/// Applies the difference between the running servers (`old`) and the new plan's to
/// `root/mcp_servers`.
async fn apply_servers(
    services: &Services,
    old: &McpPlan,
    new: &McpPlan,
    report: &mut ReloadReport,
) {
    let Some(sup) = services
        .status_root
        .find("root/mcp_servers")
        .and_then(|n| n.supervisor())
    else {
        report.server_failed(
            "root/mcp_servers",
            "mcp_servers: the supervisor is not running".into(),
        );
        return;
    };
    let (before, after) = (running_servers(old), running_servers(new));
    let child = |server: &ServerPlan| {
        let spec = connection_spec(
            Arc::new(server.spec.clone()),
            server.policy,
            services.hub.clone(),
            services.http.clone(),
        );
        if server.auto_connect {
            spec
        } else {
            spec.manual()
        }
    };
    for name in before.keys().filter(|n| !after.contains_key(*n)) {
        match terminate_child(&sup, &format!("mcp:{name}")).await {
            Ok(()) => report.server_applied(
                &server_path(name),
                format!("stopped mcp:{name} (removed from the config)"),
            ),
            Err(e) => report.server_failed(&server_path(name), format!("stop mcp:{name}: {e}")),
        }
        services.hub.remove(name);
    }
    for (name, server) in &after {
        let (name, spec) = (*name, &server.spec);
        let id = format!("mcp:{name}");
        let path = server_path(name);
        // The tool filter applies to the published tools at once, with no reconnect.
        if services
            .hub
            .set_tool_filter(name, server.tool_filter.clone())
            && before.contains_key(name)
        {
            let table = services.hub.tools();
            let filtered = table.filtered.iter().filter(|t| t.server == *name).count();
            report.server_applied(
                &path,
                format!("tool filter of {id} changed (allowed_tools/denied_tools): {filtered} of its tools filtered out"),
            );
        }
        match before.get(name) {
            None => match start_child(&sup, child(server)).await {
                Ok(()) => {
                    report.server_applied(&path, format!("started {id} (added to the config)"))
                }
                Err(e) => report.server_failed(&path, format!("start {id}: {e}")),
            },
            Some(previous) => {
                let same_autostart = previous.auto_connect == server.auto_connect;
                if previous.spec == *spec && previous.policy == server.policy && same_autostart {
                    continue; // untouched: keeps its process and its in-flight calls
                }
                if live_changeable(&previous.spec, spec) && same_autostart {
                    // Same connection: update in place, no restart.
                    services.hub.update_spec(Arc::new(spec.clone()));
                    match update_child(&sup, child(server)).await {
                        Ok(()) => report.server_applied(
                            &path,
                            format!("updated {id} in place (tool timeout, liveness probe or restart policy)"),
                        ),
                        Err(e) => report.server_failed(&path, format!("update {id}: {e}")),
                    }
                    continue;
                }
                let restarted = async {
                    terminate_child(&sup, &id).await?;
                    start_child(&sup, child(server)).await
                };
                match restarted.await {
                    Ok(()) => report.server_applied(
                        &path,
                        format!("restarted {id} (connection settings changed)"),
                    ),
                    Err(e) => report.server_failed(&path, format!("restart {id}: {e}")),
                }
            }
        }
    }
    // Entries that failed validation are shown as failed children; refresh them.
    let invalid_before = invalid_names(old);
    for invalid in new.servers.iter().filter_map(|s| s.as_ref().err()) {
        let id = format!("mcp:{}", invalid.name);
        let path = server_path(&invalid.name);
        if !invalid_before.contains(&invalid.name.as_str())
            && before.contains_key(invalid.name.as_str())
        {
            let _ = terminate_child(&sup, &id).await;
        }
        if !invalid_before.contains(&invalid.name.as_str()) && new.enabled {
            match start_child(&sup, invalid_server_child(invalid, invalid_server_policy())).await {
                Ok(()) => report
                    .server_applied(&path, format!("marked {id} failed: invalid configuration")),
                Err(e) => report.server_failed(&path, format!("{id}: {e}")),
            }
        }
    }
    let invalid_after = invalid_names(new);
    for name in invalid_before.iter().filter(|n| !invalid_after.contains(n)) {
        if !after.contains_key(*name) {
            let _ = terminate_child(&sup, &format!("mcp:{name}")).await;
        }
    }
}

/// The configuration the daemon runs after a reload: `new`, except the settings reported as
/// needing a restart, which keep their running values until then. (Stored as they were,
/// a later restart of one subtree, say the sidecars after a crash, would pick up a new
/// `[session_manager]` while the breaker, queue and socket client still had the old one.)
fn running_config(old: &Config, mut new: Config) -> Config {
    let (og, ng) = (&old.gateway, &mut new.gateway);
    ng.enabled = og.enabled;
    ng.host.clone_from(&og.host);
    ng.port = og.port;
    ng.allow_public_bind = og.allow_public_bind;
    new.mcp_server = old.mcp_server.clone();
    new.sessions = old.sessions.clone();
    new.runtime = old.runtime;
    new.session_manager = old.session_manager.clone();
    new.operator = old.operator.clone();
    new.security = old.security.clone();
    new.tools = old.tools.clone();
    new.mcp.deferred_loading = old.mcp.deferred_loading;
    new.supervisor.intensity = old.supervisor.intensity;
    new.supervisor.intensity_period_secs = old.supervisor.intensity_period_secs;
    new
}

/// Everything outside the server list: live where it can be, reported otherwise.
fn compare_rest(old: &Config, new: &Config, report: &mut ReloadReport) {
    let mut needs_restart = |changed: bool, what: &str| {
        if changed {
            report.restart_required.push(what.to_owned());
        }
    };
    let (og, ng) = (&old.gateway, &new.gateway);
    needs_restart(
        og.enabled != ng.enabled
            || og.host != ng.host
            || og.port != ng.port
            || og.allow_public_bind != ng.allow_public_bind,
        "[gateway] enabled/host/port/allow_public_bind",
    );
    needs_restart(old.mcp_server != new.mcp_server, "[mcp_server]");
    needs_restart(old.sessions != new.sessions, "[sessions]");
    needs_restart(old.runtime != new.runtime, "[runtime]");
    needs_restart(
        old.session_manager != new.session_manager,
        "[session_manager]",
    );
    needs_restart(old.operator != new.operator, "[operator]");
    needs_restart(old.security != new.security, "[security]");
    needs_restart(old.tools != new.tools, "[tools]");
    needs_restart(
        old.mcp.deferred_loading != new.mcp.deferred_loading,
        "[mcp] deferred_loading",
    );
    needs_restart(
        old.supervisor.intensity() != new.supervisor.intensity(),
        "[supervisor] intensity, intensity_period_secs",
    );
    // MCP servers that inherit the default were updated in place by `apply_servers`; the rest
    // of the tree took its policies at boot.
    needs_restart(
        old.supervisor.policy() != new.supervisor.policy(),
        "[supervisor] default restart policy of sidecars, the operator, listeners and \
         supervisors (MCP servers that inherit it use it now)",
    );
    if og.request_timeout_secs != ng.request_timeout_secs
        || og.call_timeout_secs != ng.call_timeout_secs
    {
        report.applied.push("gateway timeouts updated".into());
    }
    if og.allowed_origins != ng.allowed_origins {
        report
            .applied
            .push("gateway allowed_origins updated".into());
    }
    if old.http != new.http {
        report
            .applied
            .push("[http] client limits updated (they apply to new connections)".into());
    }
    if old.supervisor.shutdown_grace_secs != new.supervisor.shutdown_grace_secs {
        report.applied.push("shutdown grace period updated".into());
    }
    if old.agents != new.agents {
        // Read by the agent tools at each call (`Agents::settings`); the session manager
        // took its part as environment variables when it started.
        report.applied.push(
            "[agents] updated (for new agents and budgets now; the session manager's part              (commands, codex_approvals, per-agent limits) at its next start)"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[agents]` is applied by a reload (and says what waits for the session manager).
    #[test]
    fn agents_apply_live() {
        let home = std::path::Path::new("/home/u/.revka");
        let old = Config::default_in(home);
        let mut new = old.clone();
        new.agents.max_fallback_agents = 3;
        let mut report = ReloadReport::default();
        compare_rest(&old, &new, &mut report);
        assert!(report.restart_required.is_empty(), "{report:?}");
        assert!(
            report
                .applied
                .iter()
                .any(|l| l.starts_with("[agents] updated")),
            "{report:?}"
        );
    }

    /// `[http]` is applied by a reload (the listeners read it for each new connection), never
    /// reported as needing a restart; `[sessions]` still is.
    #[test]
    fn http_limits_apply_live_and_sessions_need_a_restart() {
        let home = std::path::Path::new("/home/u/.revka");
        let old = Config::default_in(home);
        let mut new = old.clone();
        new.http.keepalive_idle_secs = 5;
        new.sessions.evict_idle_floor_secs = 60;
        let mut report = ReloadReport::default();
        compare_rest(&old, &new, &mut report);
        assert_eq!(
            report.applied,
            ["[http] client limits updated (they apply to new connections)"]
        );
        assert_eq!(report.restart_required, ["[sessions]"]);
        let running = running_config(&old, new);
        assert_eq!(running.http.keepalive_idle_secs, 5);
        assert_eq!(
            running.sessions.evict_idle_floor_secs, 300,
            "until a restart"
        );
    }

    /// `[mcp_server]` (the endpoint's address and whether its standard path needs a token) is
    /// read when the listener starts: a reload reports it and keeps the running values.
    #[test]
    fn mcp_server_settings_need_a_restart() {
        let home = std::path::Path::new("/home/u/.revka");
        let old = Config::default_in(home);
        let mut new = old.clone();
        new.mcp_server.port = 8765;
        new.mcp_server.require_token = false;
        let mut report = ReloadReport::default();
        compare_rest(&old, &new, &mut report);
        assert_eq!(report.restart_required, ["[mcp_server]"]);
        let running = running_config(&old, new);
        assert_eq!(running.mcp_server, old.mcp_server, "until a restart");
    }

    /// The `reloaded` event says what changed in one bounded line.
    #[test]
    fn the_reloaded_event_summarises_the_report_in_bounded_text() {
        let report = ReloadReport {
            applied: vec!["added mcp:a".into(), "restarted mcp:b".into()],
            restart_required: vec!["[sessions]".into()],
            failed: vec![],
        };
        assert_eq!(
            event_detail(&Ok(report)),
            "2 applied, 1 need a restart, 0 failed: added mcp:a; restarted mcp:b; [sessions]"
        );
        assert_eq!(
            event_detail(&Ok(ReloadReport::default())),
            "0 applied, 0 need a restart, 0 failed"
        );
        let long = ReloadReport {
            applied: vec!["é".repeat(400)],
            ..ReloadReport::default()
        };
        let detail = event_detail(&Ok(long));
        assert!(
            detail.len() <= EVENT_DETAIL_MAX + '…'.len_utf8(),
            "{}",
            detail.len()
        );
        assert!(detail.ends_with('…'));
    }
}
