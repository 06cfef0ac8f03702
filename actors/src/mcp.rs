//! The MCP client protocol layer: the byte- and message-level pieces every transport shares.
//!
//! - [`jsonrpc`]: JSON-RPC 2.0 message types; outgoing messages serialise to one line,
//!   incoming lines are classified in one pass with `params`/`result` kept as raw JSON.
//! - [`framing`]: newline-delimited framing for the stdio transport, with a line-length cap
//!   enforced while reading.
//! - [`sse`]: an incremental, bounded Server-Sent Events parser for the HTTP transport.
//!
//! The transports and the connection actor built on these come later.

pub mod framing;
pub mod jsonrpc;
pub mod sse;
