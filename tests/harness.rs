//! The integration tests' harness: the real daemon in a temporary home ([`TestHome`],
//! [`TestDaemon`]) and the binaries the tests run.
//!
//! Every test module imports what it needs from here (`use crate::harness::…`); nothing in
//! here is a test.

mod daemon;

pub use daemon::*;
