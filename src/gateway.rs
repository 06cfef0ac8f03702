//! The gateway: Revka's browser-, script- and operator-facing HTTP surface.
//!
//! The gateway listener runs under `root/gateway` in the supervision tree and serves the
//! dashboard, the `/api/*` routes and the WebSockets on one origin. Every route will require a
//! bearer token, except the pairing endpoint that trades a one-time code for one.
//!
//! For now the building blocks live here; the routes come later:
//!
//! - [`auth`]: token store, owner token, pairing codes, failed-attempt limiter, bearer
//!   extraction.
//! - [`ws`]: the relay behind `GET /ws/mcp/events`, which forwards an MCP session's progress
//!   stream (SSE) to a WebSocket.

pub mod auth;
pub mod ws;
