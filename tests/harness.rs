//! The integration tests' harness: the real daemon in a temporary home ([`TestHome`],
//! [`TestDaemon`]), its gateway ([`Gateway`]: the owner token, a server's actors), the binaries
//! the tests run, and a daemon serving the fault fixture with
//! its MCP sessions ([`Served`], [`Session`]), and the one way to wait for something
//! ([`eventually`]).
//!
//! Every test module imports what it needs from here (`use crate::harness::…`); nothing in
//! here is a test.

mod builtin;
mod daemon;
mod gateway;
mod poll;
mod served;
mod servers;

pub use builtin::*;
pub use daemon::*;
pub use gateway::*;
pub use poll::*;
pub use served::*;
pub use servers::*;
