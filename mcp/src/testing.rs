//! Test helpers shared by this crate's tests (compiled for tests only).

use serde_json::Value;
use tokio::sync::mpsc;

use crate::client::{Outgoing, Transport, TransportError};

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
