//! Integration tests: one binary, one module per area (ripgrep style).

mod bad_input;
mod chaos;
mod cli_edit;
mod cli_mcp;
mod cli_ops;
mod daemon;
mod first_run;
mod fixtures;
mod gateway;
mod home;
mod interop;
mod liveness;
mod mcp_client;
mod mcp_server;
mod metrics;
mod operator;
mod orphans;
mod reload;
mod secrets;
mod sidecar_faults;
mod sidecar_tools;
mod sidecars;
mod stdio_bridge;
mod util;
mod watchdog;
