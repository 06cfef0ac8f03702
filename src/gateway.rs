//! The gateway: Revka's browser-, script- and operator-facing HTTP surface, `root/gateway`.
//!
//! It serves the `/api/*` routes and the WebSocket on one origin. Every route requires a
//! bearer token, except `POST /pair`, which trades a one-time code for one.
//!
//! - [`auth`]: token store, owner token, pairing codes, failed-attempt limiter, bearer
//!   extraction.
//! - `server`: the listener, router, `Host`/`Origin` guard, bearer auth, timeouts.
//! - `api`: pairing and tokens, introspection (`/api/actors`), `/api/health`, `/metrics`.
//! - `proxy`: `/api/mcp/*`, the same-origin proxy to the MCP server, the server-config test,
//!   and `/ws/mcp/events`.
//! - [`ws`]: the relay behind `GET /ws/mcp/events`, which forwards an MCP session's progress
//!   stream (SSE) to a WebSocket.

mod api;
pub mod auth;
mod proxy;
mod server;
#[cfg(test)]
mod tests;
pub mod ws;

pub(crate) use api::health_report;
pub use server::{GATEWAY_FILE, Gateway, MAX_BODY, listener};
