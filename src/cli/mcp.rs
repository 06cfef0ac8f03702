//! `revka mcp`: the configured MCP servers, without going through the daemon.
//!
//! - `list | test | call` (`probe`) connect to the servers themselves (`list` and `call` to
//!   one server given by `--url` instead, if asked); `call` answers what the servers ask of
//!   their client through the terminal (`peer`, `elicit`);
//! - `add | remove` (`edit`) and `import` (`import`) change `config.toml` in place, keeping
//!   its comments and layout (see [`crate::config::edit`]), then ask a running daemon to
//!   reload, so the change is live at once (or say it applies at the next start);
//! - `login | logout` (`login`) authorize Revka at a remote server that requires OAuth, or
//!   forget that authorization; `call` and `test` log in by themselves when needed;
//! - `get` (`get`) shows one server's entry as written, and its state in a running daemon;
//! - `serve --stdio` (`serve`) is a stdio MCP server relaying to the running daemon, for
//!   clients that only spawn stdio servers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config;

mod edit;
mod elicit;
mod get;
mod import;
mod login;
mod peer;
mod probe;
mod serve;

pub use edit::AddArgs;
pub(crate) use edit::{refused, save_and_reload};
pub use elicit::ElicitMode;
pub use import::ImportArgs;
pub use serve::ServeArgs;

/// `revka mcp` actions.
#[derive(Debug, Subcommand)]
pub enum McpAction {
    /// Connect to every configured server and show its state and tools.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Connect to the Streamable HTTP server at this URL instead of the configured ones.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Run the handshake with one server and print a JSON report.
    Test {
        /// The server's name.
        name: String,
    },
    /// Call one tool and print the result JSON (exit 1 on an error result).
    Call {
        /// `server__tool`, or a bare tool name that exactly one server has.
        tool: String,
        /// The arguments, as a JSON object.
        #[arg(long, default_value = "{}", value_name = "JSON")]
        args: String,
        /// Give up after this many seconds (default: the server's tool_timeout_secs).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Call the Streamable HTTP server at this URL instead of the configured ones.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// How to answer a server's request for user input: ask on the terminal (declined
        /// when stdin is not one), accept its defaults without asking, or decline.
        #[arg(long, value_enum, default_value_t, value_name = "HOW")]
        elicitation: ElicitMode,
    },
    /// Add a server to config.toml: `add NAME -- COMMAND [ARGS...]`, or `add NAME URL`.
    Add(AddArgs),
    /// Remove a server from config.toml.
    #[command(visible_alias = "rm")]
    Remove {
        /// The server's name.
        name: String,
    },
    /// Show one server's configuration and, if the daemon runs, its state.
    Get {
        /// The server's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Authorize Revka at a remote server that requires OAuth: opens the browser ($BROWSER, or
    /// prints the URL), waits for the redirect, stores the tokens, reconnects the daemon's
    /// connection.
    Login {
        /// The server's name.
        name: String,
    },
    /// Forget a server's OAuth tokens (the daemon's connection is restarted without them).
    Logout {
        /// The server's name.
        name: String,
    },
    /// Copy servers from another client's config: claude-desktop, cursor, vscode, or a file.
    Import(ImportArgs),
    /// Serve the running daemon's tools on stdin/stdout, for clients that only spawn stdio
    /// servers: `command = "revka", args = ["mcp", "serve", "--stdio"]`.
    Serve(ServeArgs),
}

/// Runs an `mcp` action against the config at `path` (`--config`; default
/// `$REVKA_HOME/config.toml`).
pub fn run(path: Option<PathBuf>, action: McpAction) -> ExitCode {
    let file = || path.clone().unwrap_or_else(config::default_config_path);
    let probe = match action {
        McpAction::Add(args) => return edit::add(&file(), args),
        McpAction::Remove { name } => return edit::remove(&file(), &name),
        McpAction::Import(args) => return import::run(&file(), args),
        McpAction::Get { name, json } => return get::run(&file(), &name, json),
        McpAction::Serve(args) => return serve::run(path, args),
        McpAction::List { json, url } => (probe::Probe::List { json }, url),
        McpAction::Login { name } => (probe::Probe::Login { name }, None),
        McpAction::Logout { name } => (probe::Probe::Logout { name }, None),
        McpAction::Test { name } => (probe::Probe::Test { name }, None),
        McpAction::Call {
            tool,
            args,
            timeout,
            url,
            elicitation,
        } => (
            probe::Probe::Call {
                tool,
                args,
                timeout,
                elicitation,
            },
            url,
        ),
    };
    let (probe, url) = probe;
    match super::load(path) {
        Ok(mut loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(url) = url {
                loaded.config.mcp.servers = vec![probe::url_server(&url)];
                loaded.config.mcp.invalid_servers.clear();
            }
            probe::run(loaded.config, probe)
        }
        Err(code) => code,
    }
}
