//! The revka daemon library: everything `revka` (the binary in `src/main.rs`) runs, as a
//! library so tests can drive it in-process.
//!
//! Revka supervises a fleet of MCP servers and agent sidecars in one OTP-style supervision tree
//! (the actors live in the `revka-actors` crate) and serves all their tools through one
//! endpoint.
//!
//! # Layout
//!
//! - [`config`]: `$REVKA_HOME/config.toml` as one typed, validated [`config::Config`]:
//!   defaults, `~` and `${VAR}` expansion, JSON server import, diagnostics with
//!   `file:line:column` and key paths, and conversion into supervisor policies.

pub mod config;
