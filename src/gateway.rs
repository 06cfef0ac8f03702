//! The gateway: Revka's browser-, script- and operator-facing HTTP surface, `root/gateway`.
//!
//! It serves the `/api/*` routes, the WebSocket and the dashboard (the page at `/`) on one
//! origin. Every route requires a bearer token of a role (`viewer < operator < owner`), except
//! `POST /pair`, which trades a one-time code for one, and the dashboard's files, which carry
//! no data. Tokens, roles and pairing codes live in [`crate::auth`], shared with
//! the MCP server and the CLI.
//!
//! - `routes`: the route table, every route with the role it needs; the router is built from
//!   it alone.
//! - `server`: the listener, router, bearer auth, timeouts.
//! - `origin`: the `Host`/`Origin` guard.
//! - `assets`: the dashboard, `GET /` and `GET /assets/...` (embedded files, public: they
//!   carry no data).
//! - `api`: pairing and tokens (`/api/whoami`, `/api/logout` for the caller's own),
//!   introspection (`/api/actors`), `/api/health`, `/metrics`.
//! - `config_api`: the config editor (`/api/config/servers`): `[[mcp.servers]]` entries read,
//!   written with comments kept, then reloaded.
//! - `fleet`: the Sidecars view's reads: the session manager's process, breaker (and its
//!   reset), retry queue, agents and chat rooms, and an agent's event stream relayed.
//! - `events`: `/api/events`, the supervision event log by page or as a live SSE stream.
//! - `proxy`: `/api/mcp/*`, the same-origin proxy to the MCP server, the server-config test,
//!   and `/ws/mcp/events`.
//! - `stats`: `/api/servers/stats`, per-server calls/s, error rate and latency of the last
//!   minutes (the listener runs their sampler, [`crate::telemetry::history`]).
//! - `terminal`: `GET /ws/terminal` and `GET /api/terminal/launchers`, the Code tab's
//!   terminals (`root/terminals`).
//! - [`ws`]: the relay behind `GET /ws/mcp/events`, which forwards an MCP session's progress
//!   stream (SSE) to a WebSocket.

mod api;
mod assets;
mod config_api;
mod events;
mod fleet;
mod origin;
mod proxy;
mod routes;
mod server;
mod stats;
mod terminal;
#[cfg(test)]
mod tests;
pub mod ws;

pub use server::{GATEWAY_FILE, Gateway, MAX_BODY, listener};
