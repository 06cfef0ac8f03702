//! Revka's MCP protocol layer: everything about speaking MCP to a server, with no actor runtime.
//!
//! This crate knows messages, transports and the client core; it does not know supervision.
//! `revka-actors` runs it: its connection actor (`root/mcp_servers/mcp:<name>`) starts the
//! server's process, hands the pipes to [`stdio`] (or opens an [`http`] transport), makes an
//! [`McpClient`](client::McpClient) over it and publishes it in the hub; the daemon crate
//! (`revka`) builds the [`spec`]s from its config and serves the tools.
//!
//! # Layout
//!
//! - [`jsonrpc`]: JSON-RPC 2.0 message types; outgoing messages serialise to one line,
//!   incoming lines are classified in one pass with `params`/`result` kept as raw JSON.
//! - [`framing`]: newline-delimited framing for the stdio transport, with a line-length cap
//!   enforced while reading.
//! - [`sse`]: an incremental, bounded Server-Sent Events parser for the HTTP transport.
//! - [`naming`]: exposed tool names (`<server>__<tool>`, sanitised, at most 64 characters),
//!   server-name validation, collision reporting, and resolution of bare tool names.
//! - [`wrapper`]: argument preparation before `tools/call` (the `approved` field stripped,
//!   string-encoded values coerced to the schema's types) and `isError` detection.
//! - [`protocol`]: MCP versions, the initialize exchange, tool pages, progress, error results.
//! - [`redact`]: the one rule for showing a server's URL and command line in logs and
//!   introspection (userinfo, query values and secret-looking argument values masked).
//! - [`spec`]: how to reach a server ([`ServerSpec`](spec::ServerSpec),
//!   [`TransportSpec`](spec::TransportSpec)) and how its liveness is probed
//!   ([`PingPolicy`](spec::PingPolicy)).
//! - [`client`]: the client core shared by all transports: concurrent calls correlated by id,
//!   timeouts, cancellation, progress routing, answers to server requests.
//! - [`stdio`]: the stdio transport over a child's pipes, given as an async reader and writer
//!   plus the process's exit (whoever spawned the child supplies them).
//! - [`oauth`]: OAuth 2.1 for remote servers: discovery, client identity, PKCE, token
//!   storage and refresh, client credentials; the HTTP transports put its token on requests.
//! - [`http`]: the HTTP transports: Streamable HTTP (sessions, per-request event streams, the
//!   server's GET stream), legacy HTTP+SSE, and `url` well-known discovery with the fallback rule.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod client;
pub mod framing;
pub mod http;
pub mod jsonrpc;
pub mod naming;
pub mod oauth;
pub mod protocol;
pub mod redact;
pub mod spec;
pub mod sse;
pub mod stdio;
#[cfg(test)]
mod testing;
pub mod wrapper;
