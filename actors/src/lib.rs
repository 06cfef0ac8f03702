//! Revka's supervised actors.
//!
//! Everything stateful in the daemon is an actor in one supervision tree with OTP semantics;
//! this crate holds the actors, the daemon crate (`revka`) wires them together. The MCP protocol
//! they run (messages, transports, the client core, server specs) is the `revka-mcp` crate,
//! which has no actor runtime.
//!
//! # Layout
//!
//! - [`supervisor`]: the OTP-style supervisor (strategies, restart types, per-child limits,
//!   intensity with escalation, backoff with jitter, ordered graceful-then-forced shutdown).
//! - [`listener`]: a supervised TCP listener (bind, announce, serve, graceful stop) for the
//!   MCP server and the gateway.
//! - [`process`]: a supervised OS process in its own process group: stdio hand-off, a bounded
//!   stderr ring, exit classification, SIGTERM-then-SIGKILL of the whole group, no zombies.
//! - [`mcp`]: the MCP servers under supervision: the connection actor `mcp:<name>` (process or
//!   HTTP transport, handshake, liveness probe, restart) and the hub (the registry of servers,
//!   the merged tool table, the call path).
//! - [`session`]: MCP-server sessions: the shared table the auth hot path reads, and the
//!   `temporary` session actors under `root/sessions` (idle expiry, cap, cleanup).
//! - [`progress`]: the progress broadcaster (`root/progress`): owns the sessions' event
//!   channels and registers their subscribers; publishers send without crossing its mailbox,
//!   and subscribers survive its restart with an explicit reset.
//! - [`fs`]: the files the daemon writes in its home: atomic replacement (temporary file,
//!   fsync, rename, directory fsync), in-place opens that never follow a planted link, and the
//!   private-directory rule (owned by this user, not group/world-writable).
//! - [`breaker`]: the circuit breaker guarding every daemon → sidecar call (closed, open,
//!   half open with bounded, time-limited probes; doubling recovery timeout), its supervised
//!   actor (`root/sidecars/breaker:session_manager`) and its metrics.
//! - [`metrics`]: the daemon's Prometheus registry (counters, gauges, histograms, callback
//!   gauges; bounded series per family), rendered for the gateway's `GET /metrics`.
//! - [`retry_queue`]: a sidecar's persistent retry queue (`root/sidecars/retry:session_manager`):
//!   bounded, retries with backoff, per-attempt deadline, bounded concurrency, dead letters to
//!   list, replay or drop, and an append-only journal with compaction that survives `kill -9`.
//! - [`sidecar`]: the session-manager sidecar's process spec (readiness and liveness over its
//!   Unix socket) and the daemon's HTTP client for that socket.
//! - [`status`]: the introspection model: every actor's live status, readable without its
//!   mailbox, as a tree of serde snapshots.
//! - [`events`]: the supervision event log: a bounded ring of what happened to the actors of a
//!   status tree (started, exited, restart scheduled, gave up, escalated, reloaded, ...),
//!   shared by its nodes, read by page or by a live subscription that costs nothing unused.
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod breaker;
pub mod events;
pub mod fs;
pub mod listener;
pub mod mcp;
pub mod metrics;
pub mod process;
pub mod progress;
#[cfg(test)]
mod ractor_patch;
pub mod retry_queue;
pub mod session;
pub mod sidecar;
pub mod status;
pub mod supervisor;
#[cfg(test)]
mod testing;

pub use events::{Event, EventKind, EventLog};
pub use status::{ActorState, Snapshot, StatusNode};
