//! `revka mcp list | test | call`: talk to the configured MCP servers without a daemon.
//!
//! Part of `revka mcp` ([`super`]). `list` and `test` run a one-off handshake per server (the
//! same `probe` the gateway's test endpoint uses). `call` starts the needed servers under a
//! temporary supervisor, exactly as the daemon would (argument coercion, timeouts, progress),
//! makes one call, prints the result JSON and stops everything again; what the servers ask
//! of their client meanwhile is answered through the terminal ([`super::peer`]).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use revka_actors::mcp::connection::connection_spec;
use revka_actors::mcp::hub::{HubError, McpHub};
use revka_actors::supervisor::{Intensity, Strategy, SupervisorActor, SupervisorArguments};
use revka_actors::{ActorState, StatusNode};
use revka_mcp::client::CallOptions;
use revka_mcp::protocol::ProgressUpdate;
use revka_mcp::wrapper::result_is_error;
use serde_json::{Value, json};

use super::elicit::ElicitMode;
use super::peer::TerminalPeer;
use crate::config::{Config, McpServerConfig, Transport, server_spec};
use crate::mcp_servers::{http_client, probe_server};

/// The actions that talk to the servers.
#[derive(Debug)]
pub(super) enum Probe {
    /// `list [--json]`.
    List {
        /// Print JSON instead of a table.
        json: bool,
    },
    /// `test <name>`.
    Test {
        /// The server.
        name: String,
    },
    /// `login <name>`.
    Login {
        /// The server.
        name: String,
    },
    /// `logout <name>`.
    Logout {
        /// The server.
        name: String,
    },
    /// `call <tool> [--args JSON] [--timeout SECS]`.
    Call {
        /// `server__tool` or a bare tool name.
        tool: String,
        /// The arguments, as JSON text.
        args: String,
        /// The timeout override, in seconds.
        timeout: Option<u64>,
        /// How elicitation requests are answered.
        elicitation: ElicitMode,
    },
}

/// The server a `--url` names, in place of the configured ones: Streamable HTTP, every
/// default, named after the URL's host (so its tools are `<host>__<tool>`; bare names
/// resolve).
pub(super) fn url_server(url: &str) -> McpServerConfig {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let mut name: String = host
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' => c,
            _ => '-',
        })
        .collect();
    if name.is_empty() {
        name.push_str("url");
    }
    McpServerConfig {
        name,
        transport: Transport::Http.into(),
        url: Some(url.to_owned()),
        ..McpServerConfig::default()
    }
}

/// Runs a [`Probe`]; `config` is already validated.
pub(super) fn run(config: Config, action: Probe) -> ExitCode {
    let runtime = match crate::cli::runtime(crate::cli::Threads::PerCpu) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = runtime.block_on(async move {
        match action {
            Probe::List { json } => list(&config, json).await,
            Probe::Test { name } => test(&config, &name).await,
            Probe::Login { name } => super::login::login(&config, &name).await,
            Probe::Logout { name } => super::login::logout(&config, &name).await,
            Probe::Call {
                tool,
                args,
                timeout,
                elicitation,
            } => call(&config, &tool, &args, timeout, elicitation).await,
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn list(config: &Config, as_json: bool) -> ExitCode {
    let http = http_client();
    let probes = config.mcp.servers.iter().map(|server| {
        let http = http.clone();
        async move { (server, probe_server(server, &config.mcp, &http).await) }
    });
    let results = futures::future::join_all(probes).await;
    let invalid = &config.mcp.invalid_servers;
    if as_json {
        let mut rows: Vec<Value> = results
            .iter()
            .map(|(server, report)| {
                let mut row = serde_json::to_value(report).unwrap_or_default();
                row["name"] = json!(server.name);
                row["auth"] = json!(auth_label(server, &config.mcp));
                row["transport"] = json!(server.transport.as_str());
                row["auto_connect"] = json!(server.auto_connect);
                row
            })
            .collect();
        rows.extend(invalid.iter().map(|s| json!({ "name": s.name, "ok": false, "error": format!("invalid configuration: {}", s.reason) })));
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else if results.is_empty() && invalid.is_empty() {
        println!("no MCP servers configured ([[mcp.servers]] in config.toml)");
    } else {
        if !config.mcp.enabled {
            println!("note: [mcp] enabled = false: the daemon does not connect to these servers\n");
        }
        for (server, report) in &results {
            let auto = if server.auto_connect {
                ""
            } else {
                " (auto_connect = false)"
            };
            let state = if report.ok {
                format!(
                    "ok, {} tools, {} ms",
                    report.tool_count.unwrap_or(0),
                    report.latency_ms
                )
            } else {
                format!(
                    "failed: {}",
                    report.error.as_deref().unwrap_or("unknown error")
                )
            };
            let auth = auth_label(server, &config.mcp);
            let auth = if auth == "-" {
                String::new()
            } else {
                format!("  (OAuth: {auth})")
            };
            println!(
                "{}  [{}]{auto}  {state}{auth}",
                server.name,
                server.transport.as_str()
            );
            for tool in report.tools.iter().flatten() {
                println!("    {}__{tool}", server.name);
            }
        }
        for server in invalid {
            println!(
                "{}  failed: invalid configuration: {}",
                server.name, server.reason
            );
        }
    }
    if invalid.is_empty() && results.iter().all(|(_, r)| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A server's OAuth state as `list` shows it: `authorized`, `expired`, `needs login`, or `-`
/// when OAuth does not apply (or the entry is invalid).
fn auth_label(server: &McpServerConfig, mcp: &crate::config::McpConfig) -> String {
    let Ok(spec) = server_spec(server, mcp) else {
        return "-".into();
    };
    match super::login::state(&spec) {
        None => "-".into(),
        Some(Ok(state)) => state.label().into(),
        Some(Err(e)) => format!("unreadable ({e})"),
    }
}

fn find<'a>(config: &'a Config, name: &str) -> Result<&'a McpServerConfig, String> {
    config
        .mcp
        .servers
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.mcp.servers.iter().map(|s| s.name.as_str()).collect();
            format!(
                "no server named `{name}` (configured: {})",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            )
        })
}

async fn test(config: &Config, name: &str) -> ExitCode {
    let server = match find(config, name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("revka: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http = http_client();
    let report = match server_spec(server, &config.mcp) {
        Ok(mut spec) => {
            super::login::interactive(&mut spec);
            if let Err(e) = super::login::ensure_authorized(&spec, &http).await {
                eprintln!("revka: {e}");
                return ExitCode::FAILURE;
            }
            revka_actors::mcp::connection::probe(&spec, &http).await
        }
        Err(_) => probe_server(server, &config.mcp, &http).await,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn call(
    config: &Config,
    tool: &str,
    args: &str,
    timeout: Option<u64>,
    elicitation: ElicitMode,
) -> ExitCode {
    let arguments: Value = match serde_json::from_str(args) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return usage("--args must be a JSON object"),
        Err(e) => return usage(&format!("--args is not valid JSON: {e}")),
    };
    // `server__tool` starts only that server; a bare name needs all of them to resolve.
    let servers: Vec<&McpServerConfig> = match tool
        .split_once("__")
        .and_then(|(s, _)| find(config, s).ok())
    {
        Some(server) => vec![server],
        None => config.mcp.servers.iter().collect(),
    };
    if servers.is_empty() {
        eprintln!("revka: no MCP servers configured");
        return ExitCode::FAILURE;
    }
    let hub = McpHub::new();
    let http = http_client();
    let node = StatusNode::root("mcp_servers", "supervisor");
    let mut children = Vec::with_capacity(servers.len());
    let mut roots = HashMap::new();
    for s in &servers {
        let spec = match server_spec(s, &config.mcp) {
            Ok(mut spec) => {
                super::login::interactive(&mut spec);
                if let Err(e) = super::login::ensure_authorized(&spec, &http).await {
                    eprintln!("revka: {e}");
                    return ExitCode::FAILURE;
                }
                spec
            }
            Err(invalid) => {
                eprintln!(
                    "revka: {}: invalid configuration: {}",
                    invalid.name, invalid.reason
                );
                return ExitCode::FAILURE;
            }
        };
        roots.insert(spec.name.clone(), spec.roots.clone());
        let mut policy = s.policy(&config.supervisor);
        policy.max_restarts = 0; // a one-shot call reports failures instead of retrying
        children.push(connection_spec(
            Arc::new(spec),
            policy,
            hub.clone(),
            http.clone(),
        ));
    }
    // Before any connection is made: each takes the peer when it connects.
    hub.set_peer(Arc::new(TerminalPeer::new(elicitation, roots)));
    let args = SupervisorArguments {
        node: node.clone(),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children,
    };
    let sup = match SupervisorActor::spawn(None, SupervisorActor, args).await {
        Ok((sup, _)) => sup,
        Err(e) => {
            eprintln!("revka: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_settled(&node, config.mcp.handshake_timeout()).await;
    let timeout = timeout
        .map(Duration::from_secs)
        .or_else(|| servers.first().map(|s| s.tool_timeout()));
    let progress = ProgressBar::new();
    let opts = CallOptions {
        timeout: timeout.unwrap_or(Duration::from_secs(180)),
        progress: Some(Arc::new(move |p| progress.show(&p))),
        ..Default::default()
    };
    let outcome = hub.call(tool, arguments, &opts).await;
    ProgressBar::finish();
    let _ = sup.stop_and_wait(None, Some(Duration::from_secs(30))).await;
    match outcome {
        Ok(raw) => {
            let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            if result_is_error(&value) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(HubError::UnknownTool(name)) => {
            let failed: Vec<String> = node
                .children()
                .iter()
                .filter_map(|c| c.last_failure().map(|f| format!("{}: {f}", c.id())))
                .collect();
            eprintln!("revka: unknown tool `{name}`");
            for f in failed {
                eprintln!("  (server {f})");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("revka: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits until every server is connected or has failed (bounded by the handshake timeout).
async fn wait_settled(node: &StatusNode, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        let children = node.children();
        if !children.is_empty()
            && children
                .iter()
                .all(|c| !matches!(c.state(), ActorState::Starting | ActorState::Stopped))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("revka: {message}");
    ExitCode::from(2)
}

/// Upstream progress on stderr: a bar on a terminal, one line per update otherwise.
struct ProgressBar {
    tty: bool,
}

impl ProgressBar {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, p: &ProgressUpdate) {
        let done = p.progress.as_f64().unwrap_or(0.0);
        let total = p.total.as_ref().and_then(Value::as_f64);
        let message = p.message.as_deref().unwrap_or("");
        let mut err = std::io::stderr().lock();
        if self.tty {
            let bar = match total {
                Some(t) if t > 0.0 => {
                    let filled = ((done / t).clamp(0.0, 1.0) * 30.0).round() as usize;
                    format!(
                        "[{}{}] {done}/{t}",
                        "#".repeat(filled),
                        "-".repeat(30 - filled)
                    )
                }
                _ => format!("[{done}]"),
            };
            let _ = write!(err, "\r\x1b[2K{bar} {message}");
        } else {
            match total {
                Some(t) => {
                    let _ = writeln!(err, "progress {done}/{t} {message}");
                }
                None => {
                    let _ = writeln!(err, "progress {done} {message}");
                }
            }
        }
        let _ = err.flush();
    }

    fn finish() {
        if std::io::stderr().is_terminal() {
            eprint!("\r\x1b[2K");
        }
    }
}
