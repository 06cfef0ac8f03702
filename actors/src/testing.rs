//! Test helpers shared by the actor tests (compiled for tests only).

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use revka_mcp::client::{Outgoing, Transport, TransportError};

/// An in-memory transport that records what an `McpClient` sends; the test plays the server and
/// answers through the client's `Inbound`.
pub(crate) struct Wire {
    /// Every message the client sent, parsed.
    pub(crate) sent: mpsc::UnboundedSender<Value>,
}

impl Transport for Wire {
    fn send(&self, msg: Outgoing) -> Result<(), TransportError> {
        let v: Value = serde_json::from_slice(msg.line()).expect("client sends JSON");
        self.sent
            .send(v)
            .map_err(|_| TransportError::Closed("test over".into()))
    }
    fn close(&self) {}
}

/// Polls `cond` every 5 ms until it holds, or panics naming `what` after `timeout`. Works under
/// paused time (virtual time advances) and real time alike.
pub(crate) async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether a process (or its zombie) still exists.
pub(crate) fn process_exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Reads a pid written by a test child into `path`, waiting for it to appear.
pub(crate) async fn read_pid(path: &std::path::Path) -> i32 {
    let mut found = None;
    eventually("pid file", Duration::from_secs(10), || {
        found = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        found.is_some()
    })
    .await;
    found.unwrap()
}
