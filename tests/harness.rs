//! The integration tests' harness: the real daemon in a temporary home ([`TestHome`],
//! [`TestDaemon`]), the binaries the tests run, and a daemon serving the fault fixture with
//! its MCP sessions ([`Served`], [`Session`]), and the one way to wait for something
//! ([`eventually`]).
//!
//! Every test module imports what it needs from here (`use crate::harness::…`); nothing in
//! here is a test.

mod daemon;
mod poll;
mod served;
mod servers;

pub use daemon::*;
pub use poll::*;
pub use served::*;
pub use servers::*;
