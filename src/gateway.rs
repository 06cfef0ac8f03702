//! The gateway: Revka's browser-, script- and operator-facing HTTP surface, `root/gateway`.
//!
//! It serves the `/api/*` routes and the WebSocket on one origin. Every route requires a
//! bearer token of a role (`viewer < operator < owner`), except `POST /pair`, which trades a
//! one-time code for one. Tokens, roles and pairing codes live in [`crate::auth`], shared with
//! the MCP server and the CLI.
//!
//! - `routes`: the route table, every route with the role it needs; the router is built from
//!   it alone.
//! - `server`: the listener, router, bearer auth, timeouts.
//! - `origin`: the `Host`/`Origin` guard.
//! - `api`: pairing and tokens, introspection (`/api/actors`), `/api/health`, `/metrics`.
//! - `proxy`: `/api/mcp/*`, the same-origin proxy to the MCP server, the server-config test,
//!   and `/ws/mcp/events`.
//! - `terminal`: `GET /ws/terminal` and `GET /api/terminal/launchers`, the Code tab's
//!   terminals (`root/terminals`).
//! - [`ws`]: the relay behind `GET /ws/mcp/events`, which forwards an MCP session's progress
//!   stream (SSE) to a WebSocket.

mod api;
mod origin;
mod proxy;
mod routes;
mod server;
mod terminal;
#[cfg(test)]
mod tests;
pub mod ws;

pub use server::{GATEWAY_FILE, Gateway, MAX_BODY, listener};
