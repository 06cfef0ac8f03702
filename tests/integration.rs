//! Integration tests: one binary, one module per area (ripgrep style).

mod daemon;
mod fixtures;
mod interop;
mod mcp_client;
mod util;
