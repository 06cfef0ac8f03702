//! `revka service`: install and manage the daemon as a systemd user service (Linux) or a
//! launchd agent (macOS).
//!
//! `install [--dry-run] [--force]` renders the unit or plist from the templates in `config/`
//! (binary = this executable, canonicalised; `REVKA_HOME`; `--config` when given; the stop
//! timeouts from `[supervisor] shutdown_grace_secs`; this shell's `PATH`; for systemd,
//! `Type=notify-reload` from systemd 253, else `Type=notify` with `ExecReload=revka reload`),
//! writes it, creates `$REVKA_HOME/logs`
//! (0700), and registers it (`systemctl --user daemon-reload` + `enable`, or `launchctl
//! bootstrap`). `uninstall` stops, unregisters and removes it; `start | stop | restart |
//! status` and `logs [-f] [-n N]` map onto `systemctl --user` / `journalctl --user` or
//! `launchctl` / `tail`.
//!
//! Every external command is printed (`$ systemctl --user enable revka.service`) on stderr
//! before it runs, with its output passed through. `--dry-run` prints the file on stdout and
//! the commands on stderr and touches nothing. Exit codes: 0 success; a failed command's own
//! exit code (1 if it was killed); 64 invalid config; 69 when the service manager is not
//! available (no `systemctl`, no user bus, no launchd GUI domain); 1 for anything else.
//!
//! # Layout
//!
//! - `render`: the embedded templates, strict `{{placeholder}}` substitution, escaping.
//! - `platform`: file locations and the commands of each service manager.
//! - `manage`: [`Service`], the actions themselves.
//! - `exec`: the [`Runner`] trait (real commands, or recorded ones in tests).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

mod exec;
mod manage;
mod platform;
mod render;

#[cfg(test)]
mod tests;

pub use exec::{Captured, Cmd, Runner, SystemRunner};
pub use manage::Service;
pub use platform::{Host, Platform, Step, Verb, parse_systemd_version, systemd_version_cmd};
pub use render::{
    FALLBACK_PATH, LABEL, NOTIFY_RELOAD_SINCE, PLIST_TEMPLATE, ReloadMode, RenderError,
    STOP_MARGIN_SECS, ServiceParams, UNIT_NAME, UNIT_TEMPLATE, render_plist, render_unit,
    service_path, substitute,
};

use crate::config;

/// Exit code when the service manager is not available here (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// `revka service` actions.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ServiceAction {
    /// Write the unit (or plist) and enable it.
    Install {
        /// Print the file and the commands; write and run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace an existing file that differs (or redo the steps for an identical one).
        #[arg(long)]
        force: bool,
    },
    /// Stop and disable the service and remove its file ($REVKA_HOME stays).
    Uninstall {
        /// Print the commands; run and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Start the service.
    Start,
    /// Stop the service (the daemon stops its children gracefully).
    Stop,
    /// Restart the service.
    Restart,
    /// Show the service manager's view of the service (exit 3 when it is not running).
    Status,
    /// Show the service's logs.
    Logs {
        /// Keep following new lines.
        #[arg(short, long)]
        follow: bool,
        /// How many past lines to show.
        #[arg(short = 'n', long, value_name = "N", default_value_t = 100)]
        lines: u32,
    },
}

/// Why a `revka service` command failed: the exit code, and what to say (nothing when the
/// failed command already said it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The process exit code.
    pub code: u8,
    /// The message, printed as `revka: <message>`.
    pub message: Option<String>,
}

impl ServiceError {
    /// A failure with a message.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
        }
    }

    /// A failed file operation (`cannot write <path>: <error>`), exit 1.
    pub(crate) fn io(what: &str, path: &Path, e: &io::Error) -> Self {
        Self::new(1, format!("cannot {what} {}: {e}", path.display()))
    }
}

/// Runs `action` on this machine's service manager and prints the outcome.
pub fn run(action: ServiceAction, config_path: Option<PathBuf>) -> ExitCode {
    let uid = nix::unistd::getuid().as_raw();
    let stdout = io::stdout();
    let stderr = io::stderr();
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    let result = Host::detect(Platform::current(), &config::process_env, uid).and_then(|host| {
        let mut runner = SystemRunner;
        let params = match action {
            ServiceAction::Install { .. } => {
                let systemd = (host.platform == Platform::Systemd)
                    .then(|| runner.capture(&systemd_version_cmd()).ok())
                    .flatten()
                    .filter(Captured::success)
                    .and_then(|c| parse_systemd_version(&c.output));
                Some(install_params(&host, config_path, systemd, &mut err)?)
            }
            _ => None,
        };
        let mut service = Service::new(&host, &mut runner, &mut out, &mut err);
        match (action, params) {
            (ServiceAction::Install { dry_run, force }, Some(params)) => {
                service.install(&params, dry_run, force)
            }
            (ServiceAction::Uninstall { dry_run }, _) => service.uninstall(dry_run),
            (ServiceAction::Start, _) => service.control(Verb::Start),
            (ServiceAction::Stop, _) => service.control(Verb::Stop),
            (ServiceAction::Restart, _) => service.control(Verb::Restart),
            (ServiceAction::Status, _) => service.control(Verb::Status),
            (ServiceAction::Logs { follow, lines }, _) => service.logs(follow, lines),
            (ServiceAction::Install { .. }, None) => unreachable!("install params are loaded"),
        }
    });
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(message) = e.message {
                let _ = writeln!(err, "revka: {message}");
            }
            ExitCode::from(e.code)
        }
    }
}

/// What the installed service runs: this executable, the config (validated; it gives the
/// shutdown grace, and whether `revka reload` has a gateway to talk to), `REVKA_HOME`, this
/// shell's `PATH`, and for systemd (`systemd`: its version, if known) the reload protocol.
fn install_params(
    host: &Host,
    config_path: Option<PathBuf>,
    systemd: Option<u32>,
    err: &mut dyn Write,
) -> Result<ServiceParams, ServiceError> {
    let loaded = config::load(config_path.as_deref(), &config::process_env).map_err(|e| {
        ServiceError::new(super::EXIT_CONFIG, format!("invalid configuration: {e}"))
    })?;
    for warning in &loaded.warnings {
        let _ = writeln!(err, "warning: {warning}");
    }
    let binary = std::env::current_exe()
        .and_then(fs::canonicalize)
        .map_err(|e| ServiceError::new(1, format!("cannot locate the revka binary: {e}")))?;
    if looks_like_build_output(&binary) {
        let _ = writeln!(
            err,
            "warning: {} is a build output; the service runs this exact file \
             (install revka somewhere stable first, e.g. `cargo install --path .`)",
            binary.display()
        );
    }
    let config = match config_path {
        Some(path) => Some(
            fs::canonicalize(&path)
                .or_else(|_| std::path::absolute(&path))
                .map_err(|e| ServiceError::io("resolve", &path, &e))?,
        ),
        None => None,
    };
    let (path, dropped) = service_path(config::process_env("PATH").as_deref());
    if !dropped.is_empty() {
        let _ = writeln!(
            err,
            "warning: PATH entries left out of the service's PATH (not absolute, or \
             unrepresentable): {dropped:?}"
        );
    }
    if host.platform == Platform::Systemd && systemd.is_none() {
        let _ = writeln!(
            err,
            "warning: cannot tell the systemd version (`systemctl --version`); writing a \
             Type=notify unit, which every version supports"
        );
    }
    Ok(ServiceParams {
        binary,
        revka_home: host.revka_home.clone(),
        config,
        grace_secs: loaded.config.supervisor.shutdown_grace_secs,
        path,
        reload: ReloadMode::for_systemd(systemd, loaded.config.gateway.enabled),
    })
}

/// Whether `binary` sits in a cargo profile directory (`target/debug`, `target/release`, or
/// any other `CARGO_TARGET_DIR`): cargo keeps its `.fingerprint` directory next to it.
fn looks_like_build_output(binary: &Path) -> bool {
    binary
        .parent()
        .is_some_and(|dir| dir.join(".fingerprint").is_dir())
}
