//! The `revka` command line: parsing, logging set-up, and dispatch to the daemon and tools.
//!
//! `daemon`, `config` and `mcp` work from the config file (`mcp add | remove | import` edit it,
//! then reload a running daemon); `client install | uninstall | list` edit other MCP clients'
//! config files to run `revka mcp serve --stdio`; `status`, `events`, `restart`, `pair`, `tokens` and `reload` talk to
//! the running daemon of `$REVKA_HOME` through its gateway; `install --sidecars-only` installs
//! the sidecars under `$REVKA_HOME/operator_mcp`, and `doctor` checks the installation, the
//! config and the running daemon; `service` installs and drives it as a systemd user service
//! or launchd agent. `completions` and the hidden `man` print shell completions and the man
//! page, generated from these same definitions.
//!
//! The daemon logs at `info` by default; every other command is one-shot and logs at `warn`
//! (its output is its report), unless `--log-level` or `RUST_LOG` say otherwise.
//!
//! Exit codes: 0 success; 1 failure; 64 invalid configuration (nothing was bound or started);
//! 69 no service manager for `revka service` (see [`service`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod client;
mod doctor;
mod events;
mod furniture;
pub mod install;
mod jsonc;
mod mcp;
mod ops;
pub mod remote;
pub mod service;
mod status;
mod toolchain;

use crate::config::{self, ConfigError};
use crate::logging::{self, LogFormat};
use crate::notify::Notifier;

/// Exit code for an invalid configuration (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// Revka: keeps a fleet of MCP servers and agent sidecars alive and serves their tools.
#[derive(Debug, Parser)]
#[command(name = "revka", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (default: $REVKA_HOME/config.toml; REVKA_HOME defaults to ~/.revka).
    #[arg(long, global = true, value_name = "PATH", env = "REVKA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `debug` or `revka=debug,ractor=warn` (default: RUST_LOG, else `info`
    /// for the daemon and `warn` for other commands).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground until SIGTERM or SIGINT.
    Daemon,
    /// Inspect the configuration.
    Config {
        /// The config action.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// The MCP servers: list, test and call them (no daemon needed); add, remove, get, import.
    Mcp {
        /// The MCP action.
        #[command(subcommand)]
        action: mcp::McpAction,
    },
    /// Connect MCP clients (Claude Code, Claude Desktop, Cursor, VS Code, Codex, Gemini CLI)
    /// to Revka: add or remove a `revka` server in their own config files, or list them.
    Client {
        /// The client action.
        #[command(subcommand)]
        action: client::ClientAction,
    },
    /// Show the running daemon's supervision tree (exit 1 if the daemon does not answer).
    Status {
        /// Print the snapshot JSON instead of a tree.
        #[arg(long)]
        json: bool,
        /// Only this subtree, e.g. `root/mcp_servers`.
        #[arg(long, value_name = "P")]
        path: Option<String>,
    },
    /// Print the running daemon's supervision events (started, exited, restart scheduled,
    /// gave up, escalated, reloaded, ...); `-f` keeps following them.
    Events(events::EventsArgs),
    /// Restart one actor of the running daemon, e.g. `root/mcp_servers/mcp:fs`.
    Restart {
        /// The actor's path.
        path: String,
    },
    /// Issue a one-time pairing code a browser or script trades for a gateway token.
    Pair {
        /// The role of the token: viewer (read-only), operator (also restarts actors, calls
        /// tools, tests http/sse/url servers) or owner (everything, also spawning processes,
        /// reloads, pairing and tokens).
        #[arg(long, value_name = "ROLE", default_value = "viewer")]
        role: crate::auth::Role,
    },
    /// List, create or revoke tokens: the gateway's, and client tokens for MCP clients.
    Tokens {
        /// The tokens action.
        #[command(subcommand)]
        action: ops::TokensAction,
    },
    /// Make the running daemon re-read its configuration.
    Reload,
    /// Install the sidecars (operator MCP, session manager) under $REVKA_HOME/operator_mcp.
    Install(install::InstallArgs),
    /// Check the installation and the running daemon; exit 1 if any check fails.
    Doctor {
        /// Print the checks as a JSON array of {name, status, detail, hint}.
        #[arg(long)]
        json: bool,
    },
    /// Install and manage the daemon as a systemd user service (Linux) or launchd agent (macOS).
    Service {
        /// The service action.
        #[command(subcommand)]
        action: service::ServiceAction,
    },
    /// Print a shell completion script (see the README for where to put it).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into DIR.
    #[command(hide = true)]
    Man {
        /// Write `revka.1`, `revka-mcp.1`, `revka-mcp-add.1`, ... into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `revka config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate the config and print the effective configuration.
    Check,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // One-shot commands print their own report: only their warnings and errors are logged,
    // unless --log-level or RUST_LOG asks for more.
    let default_level = match cli.command {
        Command::Daemon => "info",
        _ => "warn",
    };
    if let Err(e) = logging::init(cli.log_level.as_deref(), default_level, cli.log_format) {
        eprintln!("revka: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command {
        Command::Daemon => run_daemon(cli.config),
        Command::Config {
            action: ConfigAction::Check,
        } => config_check(cli.config),
        Command::Mcp { action } => mcp::run(cli.config, action),
        Command::Client { action } => client::run(action),
        Command::Status { json, path } => remote_op(ops::Op::Status { json, path }),
        Command::Events(args) => events::run(&config::revka_home(), &args),
        Command::Restart { path } => remote_op(ops::Op::Restart { path }),
        Command::Pair { role } => remote_op(ops::Op::Pair { role }),
        Command::Tokens { action } => remote_op(action.into()),
        Command::Reload => remote_op(ops::Op::Reload),
        Command::Install(args) => install::run(&args, &config::revka_home(), cli.config),
        Command::Doctor { json } => doctor::run(cli.config.as_deref(), json),
        Command::Service { action } => service::run(action, cli.config),
        Command::Completions { shell } => furniture::completions(shell),
        Command::Man { dir } => furniture::man(dir.as_deref()),
    }
}

/// Runs an operator command against the daemon of `$REVKA_HOME`.
fn remote_op(op: ops::Op) -> ExitCode {
    ops::run(&config::revka_home(), op)
}

fn load(path: Option<PathBuf>) -> Result<config::Loaded, ExitCode> {
    config::load(path.as_deref(), &config::process_env).map_err(|e: ConfigError| {
        eprintln!("revka: invalid configuration: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn config_check(path: Option<PathBuf>) -> ExitCode {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let invalid = &loaded.config.mcp.invalid_servers;
    for server in invalid {
        eprintln!(
            "error: server `{}` is invalid: {}",
            server.name, server.reason
        );
    }
    if !invalid.is_empty() {
        eprintln!(
            "config: {} invalid server(s); the daemon would run without them",
            invalid.len()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    match &loaded.source {
        Some(p) => eprintln!("config: {} is valid", p.display()),
        None => eprintln!("config: no config file; using the embedded defaults"),
    }
    print!("{}", loaded.config.display_toml());
    ExitCode::SUCCESS
}

fn run_daemon(path: Option<PathBuf>) -> ExitCode {
    // Validate before building a runtime or binding anything.
    let loaded = match load(path.clone()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let home = config::revka_home();
    // The CPUs this process may run on: its affinity mask and cgroup quota, not the machine's.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let workers = loaded.config.runtime.worker_threads(cpus);
    let runtime = match runtime(Threads::Workers(workers)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let notifier = Notifier::from_env(&config::process_env);
    let result = runtime.block_on(crate::daemon::run(loaded, path, home, notifier));
    // Do not wait for stray blocking tasks (e.g. a wedged probe) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("revka: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The threads of a command's tokio runtime.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Threads {
    /// The calling thread only: a one-shot request to the daemon.
    Current,
    /// tokio's default, one worker per CPU: commands that run servers and probes themselves.
    PerCpu,
    /// Exactly this many workers (at least 1): the daemon, from `[runtime] worker_threads`.
    Workers(usize),
}

/// Builds the tokio runtime a command runs on.
pub(crate) fn build_runtime(threads: Threads) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Threads::Current => tokio::runtime::Builder::new_current_thread(),
        Threads::PerCpu => tokio::runtime::Builder::new_multi_thread(),
        Threads::Workers(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n.max(1));
            builder
        }
    };
    builder.enable_all().build()
}

/// [`build_runtime`], or the exit code of a command that cannot start (the reason printed).
pub(crate) fn runtime(threads: Threads) -> Result<tokio::runtime::Runtime, ExitCode> {
    build_runtime(threads).map_err(|e| {
        eprintln!("revka: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}
