//! The MCP client layer: the byte- and message-level pieces every transport shares, and the
//! pure tool-level logic (names, argument preparation, `tool_search`) built on them.
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
//! - [`search`]: the `tool_search` tool of deferred loading: argument parsing, `select:` and
//!   keyword search over deferred tools, and the `<functions>` block it answers with.
//! - [`protocol`]: MCP versions, the initialize exchange, tool pages, progress, error results.
//! - [`client`]: the client core shared by all transports: concurrent calls correlated by id,
//!   timeouts, cancellation, progress routing, answers to server requests.
//! - [`stdio`]: the stdio transport over a supervised child process.
//! - [`connection`]: the connection actor `mcp:<name>` (transport, process, handshake,
//!   restart on failure) and the unsupervised `probe`.
//! - [`hub`]: the registry of servers and the merged tool table; the call path.
//! - [`http`]: the HTTP transports: Streamable HTTP (sessions, per-request event streams, the
//!   server's GET stream), legacy HTTP+SSE, and `url` well-known discovery with the fallback rule.

pub mod client;
pub mod connection;
pub mod framing;
pub mod http;
pub mod hub;
pub mod jsonrpc;
pub mod naming;
pub mod protocol;
pub mod search;
pub mod sse;
pub mod stdio;
pub mod wrapper;
