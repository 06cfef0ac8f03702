//! The daemon's [`Peer`]: where a server's requests and notifications go when no call of a
//! session relates to them.
//!
//! Installed on the hub by the daemon ([`McpHub::set_peer`]) before any server starts, so every
//! connection (`root/mcp_servers/mcp:<name>`) takes it at its handshake. Called on the
//! transport's task: it never blocks.
//!
//! What it does today:
//! - `notifications/resources/updated` goes to the sessions that follow the resource
//!   ([`McpHub::resource_updated`]);
//! - other notifications are logged at debug;
//! - `roots/list` is answered with the server's configured roots; every other request is refused
//!   as a connection without a peer would refuse it (`sampling/createMessage` and
//!   `elicitation/create`: no client of Revka takes it here; anything else: method not found).

use std::sync::{Arc, Weak};

use futures::FutureExt;
use revka_mcp::client::{Peer, PeerAnswer};
use revka_mcp::jsonrpc::ErrorObject;
use revka_mcp::protocol::to_raw;
use serde_json::json;
use serde_json::value::RawValue;

use super::hub::McpHub;

/// The daemon's peer. Holds the hub weakly: the hub holds it.
#[derive(Debug, Clone)]
pub struct DaemonPeer {
    hub: Weak<McpHub>,
}

impl DaemonPeer {
    /// The peer of `hub`.
    pub fn new(hub: &Arc<McpHub>) -> Self {
        Self {
            hub: Arc::downgrade(hub),
        }
    }

    /// The answer to a request that nothing relays.
    fn refusal(&self, server: &str, method: &str) -> Result<Box<RawValue>, ErrorObject> {
        match method {
            "roots/list" => {
                let roots = self
                    .hub
                    .upgrade()
                    .and_then(|hub| hub.server(server))
                    .map(|entry| entry.spec().roots.clone())
                    .unwrap_or_default();
                Ok(to_raw(&json!({ "roots": roots })))
            }
            "sampling/createMessage" | "elicitation/create" => Err(ErrorObject::new(
                ErrorObject::METHOD_NOT_FOUND,
                format!("{method} is not available: no client of Revka takes it here"),
            )),
            other => Err(ErrorObject::method_not_found(other)),
        }
    }
}

impl Peer for DaemonPeer {
    fn request(&self, server: &str, method: &str, _params: Option<Box<RawValue>>) -> PeerAnswer {
        let answer = self.refusal(server, method);
        async move { answer }.boxed()
    }

    fn notification(&self, server: &str, method: &str, params: Option<&RawValue>) {
        match method {
            "notifications/resources/updated" => {
                if let Some(hub) = self.hub.upgrade() {
                    let told = hub.resource_updated(server, params);
                    tracing::debug!(%server, told, "resource updated");
                }
            }
            other => tracing::debug!(%server, method = other, "notification from a server ignored"),
        }
    }
}
