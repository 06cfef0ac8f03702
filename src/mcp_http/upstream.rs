//! What upstream servers send that no call relates to ([`revka_mcp::client::Peer`]), installed
//! on the hub (`McpHub::set_peer`) so that every connection under `root/mcp_servers` hands it
//! here.
//!
//! - `notifications/message`: to every session whose client set a log level at or below the
//!   message's (`logging/setLevel`; a session that never set one gets only the messages of its
//!   own calls, see `relay`), on its `GET /mcp` stream or, for a two-header session, its events
//!   stream ([`Session::deliver`](revka_actors::session::Session::deliver)). A server may send [`LOG_BURST`] messages at once and
//!   [`LOG_PER_SEC`] a second after that, whether they relate to a call or not: the client core
//!   drops the rest before they are routed, and they are counted here per server.
//! - `sampling/createMessage` and `elicitation/create` with no related call are refused with an
//!   error that says why: Revka relays them only while serving a session's call, so that a
//!   person is only ever asked for something one of their own calls needs. (A request from a
//!   stdio server while calls of several sessions are in flight is refused by the client core
//!   for the same reason.)
//! - `roots/list` with no related call: the server's configured roots (`[mcp] roots`).
//! - `notifications/resources/updated`: to the sessions that follow the resource
//!   ([`McpHub::resource_updated`]).
//! - Every relayed request's outcome and latency go to the metrics ([`Telemetry`]).

use std::sync::Arc;
use std::time::Duration;

use revka_actors::mcp::hub::McpHub;
use revka_actors::session::Sessions;
use revka_mcp::client::{Outcome, Peer, PeerAnswer};
use revka_mcp::jsonrpc::ErrorObject;
use revka_mcp::protocol::{LogLevel, Offers};
use serde_json::value::RawValue;

use super::relay::{Note, roots_result};
use crate::telemetry::Telemetry;

pub use revka_mcp::client::{LOG_BURST, LOG_PER_SEC};

/// The daemon's peer (see the module doc).
pub struct UpstreamPeer {
    sessions: Arc<Sessions>,
    hub: std::sync::Weak<McpHub>,
    telemetry: Telemetry,
}

impl UpstreamPeer {
    /// The peer of the servers in `hub`, delivering to `sessions`.
    pub fn new(sessions: Arc<Sessions>, hub: &Arc<McpHub>, telemetry: Telemetry) -> Self {
        Self {
            sessions,
            hub: Arc::downgrade(hub),
            telemetry,
        }
    }

    fn log_message(&self, server: &str, method: &str, params: Option<&RawValue>) {
        self.telemetry.record_server_log(server, true);
        let level = LogLevel::of_message(params);
        let mut line: Option<Arc<str>> = None;
        for session in self.sessions.all() {
            if session.client_side().wants(level, false) {
                let line = line.get_or_insert_with(|| Note::line(method, params).into());
                session.deliver(line.clone());
            }
        }
    }
}

fn ready(answer: Result<Box<RawValue>, ErrorObject>) -> PeerAnswer {
    Box::pin(std::future::ready(answer))
}

impl Peer for UpstreamPeer {
    fn request(&self, server: &str, method: &str, _params: Option<Box<RawValue>>) -> PeerAnswer {
        match method {
            "roots/list" => {
                let roots = self
                    .hub
                    .upgrade()
                    .and_then(|hub| hub.server(server))
                    .map(|entry| entry.spec().roots.clone())
                    .unwrap_or_default();
                ready(Ok(roots_result(&roots, None)))
            }
            "sampling/createMessage" | "elicitation/create" => ready(Err(ErrorObject::new(
                ErrorObject::METHOD_NOT_FOUND,
                format!(
                    "Revka relays {method} only while serving a tool call of one of its \
                     clients, and this request relates to none"
                ),
            ))),
            other => ready(Err(ErrorObject::method_not_found(other))),
        }
    }

    fn notification(&self, server: &str, method: &str, params: Option<&RawValue>) {
        match method {
            "notifications/message" => self.log_message(server, method, params),
            "notifications/resources/updated" => {
                if let Some(hub) = self.hub.upgrade() {
                    let told = hub.resource_updated(server, params);
                    tracing::debug!(server, told, "resource updated");
                }
            }
            other => {
                tracing::debug!(server, method = other, "server notification not relayed")
            }
        }
    }

    fn answered(&self, server: &str, method: &str, outcome: Outcome, took: Duration) {
        self.telemetry.record_relay(server, method, outcome, took);
    }

    fn log_dropped(&self, server: &str) {
        self.telemetry.record_server_log(server, false);
    }

    /// Calls' relays answer roots and relay sampling and elicitation to clients that can.
    fn offers(&self) -> Offers {
        Offers {
            roots: true,
            sampling: true,
            elicitation: true,
        }
    }
}
