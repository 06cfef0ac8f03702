//! `[agents]`: how agents run — the CLIs of the `claude` and `codex` backends (for the
//! session manager and for the daemon's own CLI fallback), whether the fallback may run,
//! per-agent and per-session budgets, and whether agents get Revka's own MCP endpoint.
//!
//! Part of the config layer: a plain serde type with documented defaults, checked in
//! `validate` (`check_agents`, every message at the offending key's `file:line:col`). The
//! daemon's agent layer (`src/agents.rs`: the feed, the fallback `root/agents`, the budgets)
//! reads it live; the parts handed to the session manager (its environment,
//! [`AgentsConfig::sidecar_env`]) apply at the sidecar's next start.

use serde::{Deserialize, Serialize};

/// The largest `max_fallback_agents`.
pub const MAX_FALLBACK_AGENTS: u32 = 1024;
/// The approval policies of the session manager's codex backend (`APPROVAL_POLICIES` in
/// `sidecars/session-manager/backends/codex.js`; any other value of
/// `REVKA_SM_CODEX_APPROVALS` stops the sidecar at start).
pub const CODEX_APPROVALS: &[&str] = &["deny", "sandboxed", "accept"];

/// `[agents]`: the agent backends, the CLI fallback and the budgets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, expecting = "an [agents] table")]
pub struct AgentsConfig {
    /// The `claude` CLI (program, then arguments). The session manager's SDK is handed the
    /// program when it is not the bare default; the fallback runs it with
    /// `-p --output-format stream-json`. Default `["claude"]`.
    pub claude_command: Vec<String>,
    /// The `codex` CLI (program, then arguments): the session manager runs `codex app-server`,
    /// the fallback `codex exec --json`. Default `["codex"]`.
    pub codex_command: Vec<String>,
    /// Allow the daemon's CLI fallback (when the session manager is not enabled, or a caller
    /// asks for `on_unavailable: "fallback"`). Default `true`.
    pub fallback: bool,
    /// Fallback agents alive at once (1–1024). Default `16`.
    pub max_fallback_agents: u32,
    /// Cost limit of one agent in USD; `0` = no limit. Default `0.0`.
    pub max_cost_usd_per_agent: f64,
    /// Token limit of one agent (input + output + cache read + cache creation); `0` = no
    /// limit. Default `0`.
    pub max_tokens_per_agent: u64,
    /// Cost limit of the agents one MCP session created, summed; `0` = no limit. Default `0.0`.
    pub max_cost_usd_per_session: f64,
    /// Token limit of the agents one MCP session created, summed; `0` = no limit. Default `0`.
    pub max_tokens_per_session: u64,
    /// The codex backend's approval policy (passed to the session manager as
    /// `REVKA_SM_CODEX_APPROVALS`): `deny` (refuse every request), `sandboxed` (allow what
    /// stays in the sandbox) or `accept` (allow everything). Default `"deny"`.
    pub codex_approvals: String,
    /// Give every agent Revka's own MCP endpoint (`mcp_servers.revka`, with a fresh MCP
    /// session of its own). Default `true`.
    pub inject_revka: bool,
}

impl Eq for AgentsConfig {}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            claude_command: vec!["claude".to_owned()],
            codex_command: vec!["codex".to_owned()],
            fallback: true,
            max_fallback_agents: 16,
            max_cost_usd_per_agent: 0.0,
            max_tokens_per_agent: 0,
            max_cost_usd_per_session: 0.0,
            max_tokens_per_session: 0,
            codex_approvals: "deny".to_owned(),
            inject_revka: true,
        }
    }
}

impl AgentsConfig {
    /// The per-agent cost limit, `None` when unlimited.
    pub fn agent_cost_limit(&self) -> Option<f64> {
        (self.max_cost_usd_per_agent > 0.0).then_some(self.max_cost_usd_per_agent)
    }

    /// The per-agent token limit, `None` when unlimited.
    pub fn agent_token_limit(&self) -> Option<u64> {
        (self.max_tokens_per_agent > 0).then_some(self.max_tokens_per_agent)
    }

    /// The per-session cost limit, `None` when unlimited.
    pub fn session_cost_limit(&self) -> Option<f64> {
        (self.max_cost_usd_per_session > 0.0).then_some(self.max_cost_usd_per_session)
    }

    /// The per-session token limit, `None` when unlimited.
    pub fn session_token_limit(&self) -> Option<u64> {
        (self.max_tokens_per_session > 0).then_some(self.max_tokens_per_session)
    }

    /// The session manager's environment from this section: `REVKA_SM_CLAUDE_PATH` (only when
    /// `claude_command` is not the bare default `claude`), `REVKA_SM_CODEX_PATH`,
    /// `REVKA_SM_CODEX_APPROVALS`, and `REVKA_SM_MAX_COST_USD` / `REVKA_SM_MAX_TOKENS` (the
    /// per-agent defaults; only when set).
    pub fn sidecar_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(program) = self.claude_command.first()
            && self.claude_command != ["claude"]
        {
            env.push(("REVKA_SM_CLAUDE_PATH".to_owned(), program.clone()));
        }
        if let Some(program) = self.codex_command.first() {
            env.push(("REVKA_SM_CODEX_PATH".to_owned(), program.clone()));
        }
        env.push((
            "REVKA_SM_CODEX_APPROVALS".to_owned(),
            self.codex_approvals.clone(),
        ));
        if let Some(cost) = self.agent_cost_limit() {
            env.push(("REVKA_SM_MAX_COST_USD".to_owned(), cost.to_string()));
        }
        if let Some(tokens) = self.agent_token_limit() {
            env.push(("REVKA_SM_MAX_TOKENS".to_owned(), tokens.to_string()));
        }
        env
    }
}

/// What is wrong with `[agents]`: the key (under `agents`) and the message.
pub(crate) fn agents_problem(a: &AgentsConfig) -> Option<(&'static str, String)> {
    for (key, command) in [
        ("claude_command", &a.claude_command),
        ("codex_command", &a.codex_command),
    ] {
        match command.first() {
            None => return Some((key, "must name a program (e.g. [\"claude\"])".into())),
            Some(p) if p.trim().is_empty() => {
                return Some((key, "its program must not be empty".into()));
            }
            Some(_) => {}
        }
        if command.iter().any(|arg| arg.contains('\0')) {
            return Some((key, "an argument contains a NUL byte".into()));
        }
    }
    if !(1..=MAX_FALLBACK_AGENTS).contains(&a.max_fallback_agents) {
        return Some((
            "max_fallback_agents",
            format!("must be between 1 and {MAX_FALLBACK_AGENTS}"),
        ));
    }
    for (key, value) in [
        ("max_cost_usd_per_agent", a.max_cost_usd_per_agent),
        ("max_cost_usd_per_session", a.max_cost_usd_per_session),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Some((
                key,
                format!("must be a finite number ≥ 0 (0 = no limit), not {value}"),
            ));
        }
    }
    if !CODEX_APPROVALS.contains(&a.codex_approvals.as_str()) {
        return Some((
            "codex_approvals",
            format!(
                "unknown policy {:?}; expected one of {}",
                a.codex_approvals,
                CODEX_APPROVALS
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_gets_the_backends_approvals_and_budget_defaults() {
        let mut a = AgentsConfig::default();
        assert_eq!(
            a.sidecar_env(),
            [
                ("REVKA_SM_CODEX_PATH".to_owned(), "codex".to_owned()),
                ("REVKA_SM_CODEX_APPROVALS".to_owned(), "deny".to_owned()),
            ]
        );
        a.claude_command = vec!["/opt/claude/bin/claude".into(), "--verbose".into()];
        a.codex_command = vec!["/usr/local/bin/codex".into()];
        a.codex_approvals = "sandboxed".into();
        a.max_cost_usd_per_agent = 1.5;
        a.max_tokens_per_agent = 20_000;
        let env = a.sidecar_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            env,
            [
                ("REVKA_SM_CLAUDE_PATH", "/opt/claude/bin/claude"),
                ("REVKA_SM_CODEX_PATH", "/usr/local/bin/codex"),
                ("REVKA_SM_CODEX_APPROVALS", "sandboxed"),
                ("REVKA_SM_MAX_COST_USD", "1.5"),
                ("REVKA_SM_MAX_TOKENS", "20000"),
            ]
        );
        assert_eq!(agents_problem(&a), None);
        a.max_cost_usd_per_agent = f64::NAN;
        assert_eq!(agents_problem(&a).unwrap().0, "max_cost_usd_per_agent");
    }

    #[test]
    fn the_session_managers_plan_carries_the_env() {
        let home = std::path::Path::new("/home/u/.revka");
        let mut config = crate::config::Config::default_in(home);
        config.agents.codex_approvals = "accept".into();
        config.agents.max_tokens_per_agent = 7;
        let plan = crate::config::DaemonPlan::new(&config, home);
        assert_eq!(plan.sidecars.env, config.agents.sidecar_env());
        assert!(
            plan.sidecars
                .env
                .contains(&("REVKA_SM_MAX_TOKENS".to_owned(), "7".to_owned()))
        );
    }
}
