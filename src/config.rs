//! The daemon's configuration: `$REVKA_HOME/config.toml` as one typed, validated [`Config`],
//! then as the [`DaemonPlan`] the daemon runs.
//!
//! Two stages: [`Config`] is the file as read (serde types with their defaults, expanded and
//! validated, the server entries that failed validation set aside); [`DaemonPlan::new`] turns
//! it, in one place, into the actors' own types and the supervision tree's shape.
//!
//! The daemon calls [`load`] once at boot, before it binds a port or spawns a child, and exits
//! 64 on a [`ConfigError`]; `revka config check` prints [`Config::display_toml`] and the
//! warnings. A missing file means the defaults ([`DEFAULT_TOML`] documents every key).
//!
//! What loading guarantees:
//! - every key has a documented default; unknown keys are warnings naming their full path
//!   (`unknown key mcp.servers[0].comand (ignored)`), never errors;
//! - errors name the file, `line:column` when known, the key path and what was expected;
//! - paths have `~` expanded and are absolute (relative ones are relative to the config file);
//!   `REVKA_HOME`-relative defaults follow `$REVKA_HOME`;
//! - `${VAR}` in servers' `args`, `url`, `env` and `headers` values is expanded (`$${` is a
//!   literal `${`); an unset variable is an error;
//! - servers from `[mcp] servers_file` (JSON) are appended and checked like the TOML ones;
//! - `REVKA_GATEWAY_TIMEOUT_SECS` overrides `gateway.request_timeout_secs`.
//!
//! The environment is always passed in as a lookup function ([`process_env`] in the daemon,
//! a map in tests), so nothing here depends on, or changes, the process environment.
//!
//! # Layout
//!
//! - `schema`: [`Config`] and the `[mcp]`, `[[mcp.servers]]`, `[sessions]`, `[gateway]`,
//!   `[operator]` sections.
//! - `mcp_server`: `[mcp_server]`, where Revka's own MCP endpoint listens and whether its
//!   standard path needs a client token.
//! - `sidecar`: `[session_manager]` with its breaker and retry queue.
//! - `supervision`: `[supervisor]`, per-child `restart` overrides, and their conversion into
//!   `revka_actors::supervisor` policies.
//! - `loader`: [`load`] / [`parse`], the pipeline.
//! - `plan`: the second stage, [`DaemonPlan`]: a loaded config in the types the actors take,
//!   and the supervision tree's shape.
//! - `import`: JSON servers files in the common shapes.
//! - `edit`: format-preserving edits of the file (`revka mcp add | remove | import`).
//! - `validate`: semantic checks, caps and warnings.
//! - `env`: `REVKA_HOME`, `~` and `${VAR}`.
//! - `error`, `keypath`: diagnostics.

mod agents;
pub mod edit;
mod env;
mod error;
mod import;
mod keypath;
mod loader;
mod mcp_server;
pub mod plan;
mod schema;
mod security;
mod sidecar;
mod supervision;
mod validate;

/// Checks an MCP server URL the way the config does (http/https, a host).
pub(crate) use env::{VarError, expand_vars, is_var_name};
pub(crate) use validate::origin::normalise_origin;
pub(crate) use validate::server::{check_url, tool_filter_problem};

#[cfg(test)]
mod tests;

use revka_mcp::redact::{self, MASK};

pub use agents::{AgentsConfig, CODEX_APPROVALS};
pub use env::{EnvLookup, default_config_path, process_env, revka_home, revka_home_with};
pub use error::{ConfigError, Location};
pub use import::import_servers_json;
pub use loader::{GATEWAY_TIMEOUT_ENV, Loaded, load, parse};
pub use mcp_server::McpEndpointConfig;
pub use plan::{DaemonPlan, server_spec};
pub use schema::{
    Config, GatewayConfig, HttpConfig, InvalidServer, LAUNCHER_PLACEHOLDERS, LauncherConfig,
    MAX_TOOL_ITERATIONS_ENV, MAX_TOOL_TIMEOUT_SECS, MAX_WORKER_THREADS, McpConfig, McpServerConfig,
    OperatorConfig, RuntimeConfig, SessionsConfig, TerminalConfig, Transport, TransportSetting,
    WrittenTarget,
};
pub use security::{
    Autonomy, DEFAULT_ALLOWED_COMMANDS, DEFAULT_FORBIDDEN_PATHS, ProviderConfig, SecurityConfig,
    ToolSwitch, ToolsConfig,
};
pub use sidecar::{BreakerConfig, OnFull, RetryQueueConfig, SessionManagerConfig};
pub use supervision::{RestartOverride, SupervisorConfig};

/// The config file's name inside `REVKA_HOME`.
pub const CONFIG_FILE_NAME: &str = "config.toml";

/// The example config shipped with Revka: every key, commented out, at its default.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

impl Config {
    /// The config as TOML, exactly (it parses back to the same config).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render the config: {e}\n"))
    }

    /// The config as TOML for people: every header value, and every server `env` value whose
    /// name looks secret (`revka_mcp::redact::is_secret_name`: `TOKEN`, `KEY`, `SECRET`,
    /// `PASSWORD`, ...), is shown as `"***"`; `args` and `url` are shown as written (`${VAR}`
    /// unexpanded) and masked by the rule logs and introspection use (`revka_mcp::redact`).
    /// The built-in tools' provider `api_key`s and OAuth `client_secret`s are masked too.
    pub fn display_toml(&self) -> String {
        let mut shown = self.clone();
        for server in &mut shown.mcp.servers {
            for value in server.headers.values_mut() {
                *value = MASK.to_owned();
            }
            if let Some(secret) = server.oauth.as_mut().and_then(|o| o.client_secret.as_mut()) {
                *secret = MASK.to_owned();
            }
            for (name, value) in &mut server.env {
                if redact::is_secret_name(name) {
                    *value = MASK.to_owned();
                }
            }
            let written = server.written.take().unwrap_or_else(|| WrittenTarget {
                args: server.args.clone(),
                url: server.url.clone(),
            });
            server.args = redact::args(&written.args);
            server.url = written.url.as_deref().map(redact::url);
        }
        for provider in [&mut shown.tools.weather, &mut shown.tools.web_search] {
            if provider.api_key.is_some() {
                provider.api_key = Some(MASK.to_owned());
            }
        }
        shown.to_toml()
    }
}
