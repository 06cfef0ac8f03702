//! The revka daemon library: everything `revka` (the binary in `src/main.rs`) runs, as a
//! library so tests can drive it in-process.
//!
//! Revka supervises a fleet of MCP servers and agent sidecars in one OTP-style supervision tree
//! (the actors live in the `revka-actors` crate, the MCP protocol they speak in `revka-mcp`) and
//! serves all their tools through one endpoint.
//!
//! # Layout
//!
//! The daemon's modules, in the order of the supervision tree they build (`revka status`
//! shows it; `docs/architecture.md` draws it), then what the tree runs on:
//!
//! - [`daemon`]: the daemon lifecycle: lock `$REVKA_HOME`, build the tree, run until a
//!   signal, stop in reverse order within the grace period, reap every child.
//! - [`tree`]: `root` and the actors under it, one child spec per node of the config's plan.
//!   - `root/progress`: the sessions' progress broadcaster (an actor of `revka-actors`).
//!   - [`mcp_servers`] (`root/mcp_servers`): `[[mcp.servers]]` entries → connection actors.
//!   - [`sidecars`] (`root/sidecars`): the session manager, its breaker and retry queue.
//!   - `root/sessions`: the MCP sessions (actors of `revka-actors`), with [`tools`], the tool
//!     tiers they serve: built-in tools, `tool_search`, deferred loading, tool dispatch.
//!   - [`terminal`] (`root/terminals`): the Code tab's terminals, one PTY and its process per
//!     temporary child `term:<id>`, with the launchers that hand coding CLIs a fresh session.
//!   - [`mcp_http`] (`root/mcp_http`): the MCP server's HTTP face: two-header and standard
//!     Streamable HTTP sessions, client tokens, SSE tool calls with progress, `mcp.json`.
//!   - [`gateway`] (`root/gateway`): the browser/script/operator-facing HTTP face: bearer auth,
//!     the introspection and health API, the `/api/mcp` proxy, the WebSocket relays.
//! - [`config`]: `$REVKA_HOME/config.toml` as one typed [`config::Config`] (defaults, `~` and
//!   `${VAR}` expansion, JSON server import, diagnostics with `file:line:column`), then the
//!   validated [`config::DaemonPlan`] the tree runs.
//! - [`reload`]: live reload of the configuration (SIGHUP, `revka reload`), one at a time.
//! - [`http`]: the plumbing both HTTP faces share: the serve loop (hyper HTTP/1.1 with read
//!   and idle timeouts, the per-source connection cap, graceful stop), the loopback Host/Origin
//!   guard, bearer extraction, JSON error bodies, TCP options, the discovery files.
//! - [`auth`]: the credentials both faces and the CLI share: bearer tokens in
//!   `$REVKA_HOME/gateway_tokens.json` (gateway tokens with their roles, MCP client tokens),
//!   the owner token file, pairing codes, the failure throttle.
//! - [`health`]: the daemon's health verdict over the status tree (`/api/health`, the
//!   `system_dashboard` tool).
//! - [`telemetry`]: the Prometheus metrics (`GET /metrics`).
//! - [`runlog`]: the JSONL run log of tool calls and supervision events, size-rotated.
//! - [`notify`]: systemd `READY=1` / `RELOADING=1` / `STOPPING=1` / `WATCHDOG=1` notifications.
//! - [`watchdog`]: the task that sends `WATCHDOG=1` while the root supervisor answers.
//! - [`logging`]: tracing set-up (text or JSON, ANSI only on a terminal without `NO_COLOR`,
//!   syslog priorities for journald) and the panic hook.
//! - [`logrotate`]: size rotation of the daemon's own stdout/stderr files under launchd.
//! - [`cli`]: the `revka` command line (parsing, dispatch, exit codes).
//! - [`banner`]: the start-up banner (endpoints, pairing code, what is missing and how to add
//!   it).
#![warn(missing_docs)]

pub mod agents;
pub mod auth;
pub mod banner;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod gateway;
pub mod health;
pub mod http;
pub mod logging;
pub mod logrotate;
pub mod mcp_http;
pub mod mcp_servers;
pub mod notify;
pub mod reload;
pub mod runlog;
pub mod scheduler;
pub mod security;
pub mod sidecars;
pub mod telemetry;
pub mod terminal;
pub mod tools;
pub mod tree;
pub mod watchdog;

#[cfg(test)]
mod layout;
