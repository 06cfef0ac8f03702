//! The operator commands that talk to the running daemon through its gateway: `status`,
//! `restart`, `pair`, `tokens list | create | revoke`, `reload`.
//!
//! [`execute`] runs one [`Op`] against the daemon of a given home and returns an [`Outcome`]
//! (what to print on stdout and stderr, and whether it succeeded), so every command is tested
//! end to end against an in-test gateway; [`run`] is the thin blocking wrapper the binary calls.
//! Any failure exits 1 with `revka: <reason>` on stderr. `reload` returns only once the
//! daemon's reload is done (waiting up to [`crate::reload::RELOAD_WAIT`]), with its report, and
//! exits 1 when the config was rejected or a change could not be applied.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use reqwest::StatusCode;
use revka_actors::Snapshot;
use serde_json::Value;

use super::remote::{self, Gateway, RemoteError, TokenRow};
use super::status::{human_duration, render_tree, use_color};
use crate::auth::Role;

/// `revka tokens` actions.
#[derive(Debug, Subcommand)]
pub enum TokensAction {
    /// List the tokens, gateway and client (never the secrets).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a client token for an MCP client of the standard Streamable HTTP flow (`/mcp`),
    /// printed once.
    Create {
        /// Who will hold it, e.g. `zed` or `ci` (a label, at most 64 characters).
        name: String,
        /// Limit the client to these tools: an exposed name (`time__get_current_time`,
        /// `health`) or a prefix ending in `*` (`fs__*`); repeat or separate with commas.
        /// Default: every tool.
        #[arg(long = "tools", value_name = "PATTERN", value_delimiter = ',')]
        tools: Vec<String>,
        /// Expire it after this long, e.g. `30d`, `12h`, `90min` (default: never).
        #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
        expires: Option<Duration>,
        /// Print the answer as JSON (with the token) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token (gateway or client) by id (4 to 8 leading hex digits of it).
    Revoke {
        /// The token id, or an unambiguous prefix of it.
        id: String,
    },
}

/// One operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `revka status [--json] [--path P]`.
    Status {
        /// Print the snapshot JSON.
        json: bool,
        /// Only this subtree.
        path: Option<String>,
    },
    /// `revka restart <path>`.
    Restart {
        /// The actor to restart.
        path: String,
    },
    /// `revka pair [--role R]`.
    Pair {
        /// The role of the token the code is traded for.
        role: Role,
    },
    /// `revka tokens list [--json]`.
    TokensList {
        /// Print JSON instead of a table.
        json: bool,
    },
    /// `revka tokens create <name> [--tools P]... [--expires D] [--json]`.
    TokensCreate {
        /// The label.
        name: String,
        /// The tool scope's patterns; none: every tool.
        tools: Vec<String>,
        /// The lifetime; `None`: never expires.
        expires: Option<Duration>,
        /// Print JSON instead of text.
        json: bool,
    },
    /// `revka tokens revoke <id>`.
    TokensRevoke {
        /// The token id or prefix.
        id: String,
    },
    /// `revka reload`.
    Reload,
}

impl From<TokensAction> for Op {
    fn from(action: TokensAction) -> Self {
        match action {
            TokensAction::List { json } => Self::TokensList { json },
            TokensAction::Create {
                name,
                tools,
                expires,
                json,
            } => Self::TokensCreate {
                name,
                tools,
                expires,
                json,
            },
            TokensAction::Revoke { id } => Self::TokensRevoke { id },
        }
    }
}

/// What a command printed, and whether it succeeded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit 0 (true) or 1 (false).
    pub success: bool,
}

impl Outcome {
    fn ok(stdout: String) -> Self {
        Self {
            stdout,
            stderr: String::new(),
            success: true,
        }
    }

    fn failed(error: impl std::fmt::Display) -> Self {
        Self {
            stdout: String::new(),
            stderr: format!("revka: {error}\n"),
            success: false,
        }
    }
}

/// Runs `op` against the daemon of `home` and prints the outcome.
pub fn run(home: &Path, op: Op) -> ExitCode {
    let runtime = match crate::cli::runtime(crate::cli::Threads::Current) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let color = use_color(
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    let outcome = runtime.block_on(execute(home, &op, color));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `op` against the daemon of `home`; `color` applies to `status`.
pub async fn execute(home: &Path, op: &Op, color: bool) -> Outcome {
    // `revka reload` returns when the reload is done (a slow server stop takes its whole
    // shutdown timeout), so it waits as long as the gateway does, and a little more to hear
    // its 504 rather than time out itself.
    let timeout = match op {
        Op::Reload => crate::reload::RELOAD_WAIT + Duration::from_secs(30),
        _ => remote::REQUEST_TIMEOUT,
    };
    let gateway = match Gateway::connect_with_timeout(home, timeout) {
        Ok(g) => g,
        Err(e) => return Outcome::failed(e),
    };
    execute_on(&gateway, op, color).await
}

/// Runs `op` against a connected gateway.
pub async fn execute_on(gateway: &Gateway, op: &Op, color: bool) -> Outcome {
    let result = match op {
        Op::Status { json, path } => status(gateway, *json, path.as_deref(), color).await,
        Op::Restart { path } => gateway
            .restart(path)
            .await
            .map(|done| format!("restarted {done}\n")),
        Op::Pair { role } => pair(gateway, *role).await,
        Op::TokensList { json } => tokens_list(gateway, *json).await,
        Op::TokensCreate {
            name,
            tools,
            expires,
            json,
        } => tokens_create(gateway, name, tools, *expires, *json).await,
        Op::TokensRevoke { id } => gateway.revoke(id).await.map(|t| revoked(&t)),
        Op::Reload => return reload(gateway).await,
    };
    result.map_or_else(Outcome::failed, Outcome::ok)
}

async fn status(
    gateway: &Gateway,
    json: bool,
    path: Option<&str>,
    color: bool,
) -> Result<String, RemoteError> {
    let value = gateway.actors(path).await?;
    let url = format!("{}/api/actors", gateway.url());
    let snapshot: Snapshot = remote::decode(&url, value.clone())?;
    if json {
        Ok(pretty(&value))
    } else {
        Ok(render_tree(&snapshot, SystemTime::now(), color))
    }
}

async fn pair(gateway: &Gateway, role: Role) -> Result<String, RemoteError> {
    let code = gateway.pair_code(role).await?;
    let valid = human_duration(Duration::from_secs(code.expires_in_secs));
    Ok(format!(
        "pairing code: {code} (valid for {valid}, once) for a token with the {role} role\n\
         trade it for a token: POST {url}/pair with header X-Pairing-Code: {code}\n",
        code = code.code,
        role = code.role.as_deref().map_or(role.as_str(), clean_str),
        url = gateway.url(),
    ))
}

/// `text` without control characters, for one line of output.
fn clean_str(text: &str) -> &str {
    if text.chars().any(char::is_control) {
        "?"
    } else {
        text
    }
}

async fn tokens_list(gateway: &Gateway, json: bool) -> Result<String, RemoteError> {
    let value = gateway.tokens().await?;
    if json {
        return Ok(pretty(&value));
    }
    let url = format!("{}/api/tokens", gateway.url());
    let rows: Vec<TokenRow> = remote::decode(&url, value)?;
    Ok(tokens_table(&rows))
}

/// A `--expires` value: a humantime duration (`30d`, `12h`, `1h 30m`) of at least a second
/// (a fraction of a second is dropped; the daemon checks the upper bound).
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e} (expected a duration like 30d, 12h or 90min)"))?;
    if lifetime < Duration::from_secs(1) {
        return Err("must be at least 1s".to_owned());
    }
    Ok(lifetime)
}

async fn tokens_create(
    gateway: &Gateway,
    name: &str,
    tools: &[String],
    expires: Option<Duration>,
    json: bool,
) -> Result<String, RemoteError> {
    let tools = (!tools.is_empty()).then_some(tools);
    let (value, created) = gateway.create_token(name, tools, expires).await?;
    if json {
        return Ok(pretty(&value));
    }
    let mut out = format!(
        "created client token {} ({})\n  tools:   {}\n  expires: {}\n\n{}\n\n",
        created.row.id,
        clean(&created.row.label),
        created
            .row
            .tools
            .as_deref()
            .map_or("every tool".to_owned(), |t| clean(&t.join(", "))),
        created
            .row
            .expires_at
            .as_deref()
            .map_or("never".to_owned(), clean),
        clean(&created.token),
    );
    let url = created
        .mcp_url
        .as_deref()
        .map_or("the url in $REVKA_HOME/mcp.json".to_owned(), clean);
    let _ = writeln!(
        out,
        "This is the only time it is shown (only its hash is kept). An MCP client sends it to\n\
         {url} as the header\n  Authorization: Bearer {token}\n\
         Revoke it with `revka tokens revoke {id}`.",
        token = clean(&created.token),
        id = created.row.id,
    );
    Ok(out)
}

/// The `tokens list` table: id, label, kind (the role of a gateway token, `client` for a client
/// token), tools (a client token's scope), created, last used, expires, flags (`gateway.token`
/// for the token of that file, `revoked`, `expired`).
pub fn tokens_table(rows: &[TokenRow]) -> String {
    if rows.is_empty() {
        return "no tokens\n".to_owned();
    }
    let header = [
        "ID",
        "LABEL",
        "KIND",
        "TOOLS",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "FLAGS",
    ]
    .map(str::to_owned);
    let mut table = vec![header];
    for row in rows {
        let client = row.kind.as_deref() == Some("client");
        let mut flags = Vec::new();
        if row.file_token {
            flags.push("gateway.token");
        }
        if row.revoked {
            flags.push("revoked");
        }
        if row.expired {
            flags.push("expired");
        }
        let kind = if client {
            "client".to_owned()
        } else {
            row.role.as_deref().map_or("-".to_owned(), clean)
        };
        let tools = match (&row.tools, client) {
            (Some(tools), _) => clean(&tools.join(",")),
            (None, true) => "*".to_owned(),
            (None, false) => "-".to_owned(),
        };
        table.push([
            row.id.clone(),
            clean(&row.label),
            kind,
            tools,
            clean(&row.created_at),
            row.last_used_at
                .as_deref()
                .map_or("never".to_owned(), clean),
            row.expires_at.as_deref().map_or("never".to_owned(), clean),
            if flags.is_empty() {
                "-".to_owned()
            } else {
                flags.join(",")
            },
        ]);
    }
    let mut widths = [0usize; 8];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &table {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                let _ = write!(text, "{cell}{:pad$}  ", "");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

fn revoked(token: &TokenRow) -> String {
    let mut out = format!("revoked token {} ({})\n", token.id, clean(&token.label));
    if token.file_token {
        out.push_str(
            "note: it was the owner token of gateway.token; the daemon issues a new one when it \
             next starts\n",
        );
    }
    out
}

async fn reload(gateway: &Gateway) -> Outcome {
    match gateway.reload().await {
        Ok(report) => {
            let mut out = String::new();
            if report.applied.is_empty()
                && report.restart_required.is_empty()
                && report.failed.is_empty()
            {
                out.push_str("reloaded: nothing changed\n");
            }
            list_section(&mut out, "applied", &report.applied);
            list_section(
                &mut out,
                "restart required (takes effect at the next daemon start)",
                &report.restart_required,
            );
            if report.failed.is_empty() {
                return Outcome::ok(out);
            }
            let mut err = String::new();
            list_section(&mut err, "failed", &report.failed);
            Outcome {
                stdout: out,
                stderr: err,
                success: false,
            }
        }
        Err(RemoteError::Api {
            status,
            message,
            body,
        }) if status == StatusCode::UNPROCESSABLE_ENTITY => {
            let body = match body {
                Some(Value::Object(body)) => body,
                _ => serde_json::Map::new(),
            };
            let mut err = format!("revka: reload rejected, nothing was applied: {message}\n");
            for (key, value) in body.iter().filter(|(k, _)| k.as_str() != "error") {
                match value {
                    Value::Array(items) => list_section(&mut err, key, items),
                    other => {
                        let _ = writeln!(err, "{key}: {}", item_text(other));
                    }
                }
            }
            Outcome {
                stderr: err,
                ..Outcome::default()
            }
        }
        Err(e) => Outcome::failed(e),
    }
}

/// Appends `title:` and one `  - item` line per item, when there are items.
fn list_section(out: &mut String, title: &str, items: &[Value]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}:");
    for item in items {
        let _ = writeln!(out, "  - {}", item_text(item));
    }
}

/// A JSON value as one line of text: strings bare, anything else as compact JSON.
fn item_text(value: &Value) -> String {
    match value {
        Value::String(s) => clean(s),
        other => clean(&other.to_string()),
    }
}

/// Control characters replaced by spaces.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}
