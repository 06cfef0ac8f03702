//! Integration tests: one binary, one module per area (ripgrep style).

mod bad_input;
mod chaos;
mod cli_mcp;
mod cli_ops;
mod daemon;
mod fixtures;
mod gateway;
mod home;
mod interop;
mod mcp_client;
mod mcp_server;
mod operator;
mod orphans;
mod reload;
mod secrets;
mod sidecar_faults;
mod sidecar_tools;
mod sidecars;
mod util;
