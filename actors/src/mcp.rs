//! The supervised side of the MCP client: the actors that run servers and the hub that serves
//! their tools. The protocol itself (messages, transports, the client core, server specs) is the
//! `revka-mcp` crate; this module runs it under supervision.
//!
//! - [`connection`]: the connection actor `mcp:<name>` (transport, process, handshake,
//!   liveness probe, restart on failure) and the unsupervised `probe`. For a stdio server it
//!   starts a [`ProcessActor`](crate::process::ProcessActor) and hands the child's pipes and
//!   exit to `revka_mcp::stdio`.
//! - [`hub`]: the registry of servers, the merged tool table and the merged resources,
//!   templates and prompts; the call path.
//! - [`log_level`]: the log level asked of upstream servers, the most verbose any session wants.

pub mod connection;
pub mod hub;
pub mod log_level;
