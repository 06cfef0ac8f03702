//! The MCP client protocol layer: the byte- and message-level pieces every transport shares.
//!
//! - [`jsonrpc`]: JSON-RPC 2.0 message types; outgoing messages serialise to one line,
//!   incoming lines are classified in one pass with `params`/`result` kept as raw JSON.
//! - [`framing`]: newline-delimited framing for the stdio transport, with a line-length cap
//!   enforced while reading.
//! - [`sse`]: an incremental, bounded Server-Sent Events parser for the HTTP transport.
//!
//! - [`protocol`]: MCP versions, the initialize exchange, tool pages, progress, error results.
//! - [`client`]: the client core shared by all transports: concurrent calls correlated by id,
//!   timeouts, cancellation, progress routing, answers to server requests.
//! - [`stdio`]: the stdio transport over a supervised child process.
//! - [`http`]: the HTTP transports: Streamable HTTP (sessions, per-request event streams, the
//!   server's GET stream), legacy HTTP+SSE, and `url` well-known discovery with the fallback rule.

pub mod client;
pub mod framing;
pub mod http;
pub mod jsonrpc;
pub mod protocol;
pub mod sse;
pub mod stdio;
