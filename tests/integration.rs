//! Integration tests: one binary, one module per area (ripgrep style).

mod daemon;
mod fixtures;
mod mcp_client;
mod util;
