//! `revka doctor`: checks the installation, the config and the running daemon, one line per
//! check (`ok`, `warn`, `FAIL`, `skip`), with a hint for each one that is not ok.
//!
//! What it checks, in order: the config loads (each invalid `[[mcp.servers]]` entry FAILs with
//! its reason); `REVKA_HOME` exists and is not group/world-writable, and its secrets
//! (`gateway.token`, `gateway_tokens.json`, `mcp.json`) are owner-only; the `[operator]`
//! Python is 3.11+; Node is 18+ (a FAIL only when the session manager is enabled); the
//! operator's venv, launcher and package are installed, and the operator answers an MCP
//! handshake; the session manager answers `GET /health` on its socket; the daemon's gateway
//! answers `GET /api/health`, with the session manager's breaker state; every program the
//! daemon spawns (stdio servers, the operator's Python, the session manager) is found on the
//! `PATH` the installed service runs with (read back from the unit or plist); every configured
//! MCP server answers a handshake; the discovery files name live processes.
//!
//! [`diagnose`] returns the checks (tested against temporary homes, the environment passed in
//! as a lookup); [`run`] is what the binary calls. Exit 1 if any check FAILs.

mod live;
mod local;
mod service_path;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::config::{self, Config, EnvLookup};

/// How long the operator gets to answer its MCP handshake.
pub const OPERATOR_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but something deserves attention (or the daemon is not running).
    Warn,
    /// Broken: `revka doctor` exits 1.
    Fail,
    /// Not applicable (a disabled feature, a missing prerequisite).
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok  ",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One check: `{name, status, detail, hint}` in `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, e.g. `operator handshake`, `server fs`.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it (for non-ok checks).
    pub hint: Option<String>,
}

impl Check {
    /// An `ok` check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, detail, None::<String>)
    }

    /// A `skip` check.
    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, detail, None::<String>)
    }

    /// A `warn` check with a hint.
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Warn, detail, Some(hint))
    }

    /// A `FAIL` check with a hint.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Fail, detail, Some(hint))
    }

    /// A check with a status chosen by the caller (a failure that is fatal only sometimes).
    pub fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        hint: Option<impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            hint: hint.map(Into::into),
        }
    }
}

/// What `revka doctor` looks at.
#[derive(Clone, Copy)]
pub struct DoctorOptions<'a> {
    /// `$REVKA_HOME`.
    pub home: &'a Path,
    /// The `--config` override, if any.
    pub config_path: Option<&'a Path>,
    /// The environment (for loading the config).
    pub env: EnvLookup<'a>,
}

/// Runs every check.
pub async fn diagnose(opts: DoctorOptions<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = load_config(opts, &mut checks);
    checks.extend(local::home(opts.home));
    let operator_ready = local::operator(&config, opts.home, &mut checks);
    let daemon = live::daemon(opts.home).await;
    if operator_ready {
        checks.push(live::operator_handshake(&config, opts.home).await);
    }
    checks.extend(live::session_manager(&config, daemon.running()).await);
    checks.push(daemon.check.clone());
    checks.push(live::breaker(&daemon).await);
    checks.extend(service_path::checks(&config, opts.env));
    checks.extend(live::servers(&config).await);
    checks.extend(live::discovery_files(opts.home));
    checks
}

/// Loads the config (FAIL on an error, then carries on with the defaults) and reports its
/// invalid server entries.
fn load_config(opts: DoctorOptions<'_>, checks: &mut Vec<Check>) -> Config {
    match config::load(opts.config_path, opts.env) {
        Ok(loaded) => {
            let detail = match &loaded.source {
                Some(path) => format!("{} loads", path.display()),
                None => "no config file; using the defaults".to_owned(),
            };
            if loaded.warnings.is_empty() {
                checks.push(Check::ok("config", detail));
            } else {
                let detail = format!(
                    "{detail}, with {} warning(s): {}",
                    loaded.warnings.len(),
                    loaded.warnings.join("; ")
                );
                checks.push(Check::warn("config", detail, "see `revka config check`"));
            }
            for server in &loaded.config.mcp.invalid_servers {
                checks.push(Check::fail(
                    format!("server {}", server.name),
                    format!("invalid configuration: {}", server.reason),
                    "fix or remove this [[mcp.servers]] entry (`revka config check`)",
                ));
            }
            loaded.config
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                format!("{e} (the remaining checks use the defaults)"),
                "fix the config file; `revka config check` shows the error",
            ));
            Config::default_in(opts.home)
        }
    }
}

/// The checks as text, one line each (hints indented below).
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let _ = writeln!(
            out,
            "{} {}: {}",
            check.status.label(),
            check.name,
            check.detail
        );
        if let Some(hint) = check.hint.as_deref().filter(|_| check.status != Status::Ok) {
            let _ = writeln!(out, "       hint: {hint}");
        }
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let _ = writeln!(
        out,
        "{} ok, {} warning(s), {} failure(s)",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    );
    out
}

/// Whether any check failed.
pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

/// `revka doctor [--json]` for the process environment's `REVKA_HOME`.
pub fn run(config_path: Option<&Path>, json: bool) -> ExitCode {
    let home = config::revka_home();
    let runtime = match crate::cli::runtime(crate::cli::Threads::PerCpu) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let opts = DoctorOptions {
        home: &home,
        config_path,
        env: &config::process_env,
    };
    let checks = runtime.block_on(diagnose(opts));
    runtime.shutdown_timeout(Duration::from_secs(1));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        );
    } else {
        print!("{}", render_text(&checks));
    }
    if failed(&checks) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
