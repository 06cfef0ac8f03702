//! The revka daemon library: everything `revka` (the binary in `src/main.rs`) runs, as a
//! library so tests can drive it in-process.
//!
//! Revka supervises a fleet of MCP servers and agent sidecars in one OTP-style supervision tree
//! (the actors live in the `revka-actors` crate) and serves all their tools through one
//! endpoint.
//!
//! # Layout
//!
//! - [`config`]: `$REVKA_HOME/config.toml` as one typed, validated [`config::Config`]:
//!   defaults, `~` and `${VAR}` expansion, JSON server import, diagnostics with
//!   `file:line:column` and key paths, and conversion into supervisor policies.

//! - [`cli`]: the `revka` command line (parsing, dispatch, exit codes).
//! - [`banner`]: the start-up banner (endpoints, pairing code, what is missing and how to add
//!   it).
//! - [`daemon`]: the daemon lifecycle: lock `$REVKA_HOME`, build the tree, run until a
//!   signal, stop in reverse order within the grace period, reap every child.
//! - [`reload`]: live reload of the configuration (SIGHUP, `revka reload`), one at a time.
//! - [`runlog`]: the JSONL run log of tool calls and supervision events, size-rotated.
//! - [`sidecars`]: the `root/sidecars` subtree: session manager, its breaker and retry queue.
//! - [`servers`]: `[[mcp.servers]]` entries → connection actors under `root/mcp_servers`.
//! - [`telemetry`]: the Prometheus metrics (`GET /metrics`).
//! - [`tools`]: the MCP server's tool tiers: built-in tools, `tool_search`, deferred loading.
//! - [`tree`]: which supervisors sit under `root`, in which order.
//! - [`health`]: the daemon's health verdict over the status tree (`/api/health`, the
//!   `system_dashboard` tool).
//! - [`logging`]: tracing set-up (text or JSON, ANSI only on a terminal without `NO_COLOR`,
//!   syslog priorities for journald) and the panic hook.
//! - [`mcp_server`]: the in-process MCP server (`root/mcp_http`): sessions, two-header auth,
//!   SSE tool calls with progress, the discovery file.
//! - [`notify`]: systemd `READY=1` / `RELOADING=1` / `STOPPING=1` / `WATCHDOG=1` notifications.
//! - [`watchdog`]: the task that sends `WATCHDOG=1` while the root supervisor answers.
//! - [`logrotate`]: size rotation of the daemon's own stdout/stderr files under launchd.
//! - [`http`]: the serve loop both listeners run (hyper HTTP/1.1): header-read, body-read and
//!   keep-alive idle timeouts, the per-source connection cap, graceful stop; and the
//!   per-source rate limit of `POST /session`.
//! - [`auth`]: the credentials both HTTP faces and the CLI share: bearer tokens in
//!   `$REVKA_HOME/gateway_tokens.json` (gateway tokens with their roles, MCP client tokens), the
//!   owner token file, pairing codes, the failure throttle.
//! - [`gateway`]: the browser/script/operator-facing HTTP surface under `root/gateway`: its
//!   bearer auth (over [`auth`]), the introspection and health API, the `/api/mcp` proxy and
//!   the WebSocket progress relay.
#![warn(missing_docs)]

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
pub mod mcp_server;
pub mod notify;
pub mod reload;
pub mod runlog;
pub mod servers;
pub mod sidecars;
pub mod telemetry;
pub mod tools;
pub mod tree;
pub mod watchdog;

#[cfg(test)]
mod layout;
