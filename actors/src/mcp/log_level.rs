//! The log level Revka asks of its upstream servers: the most verbose level any session's
//! client asked for (`logging/setLevel`), set on every connected server that declares the
//! `logging` capability, and on each server as it (re)connects.
//!
//! Held by the hub ([`McpHub::log_level`](super::hub::McpHub::log_level)); the MCP server
//! recomputes the wanted level when a client sets one and when such a session ends
//! ([`UpstreamLogLevel::want`]). When no session asks any more, the servers are set back to
//! [`RESTING_LEVEL`]. Requests are sent in the background, bounded by the server's handshake
//! timeout; a server that refuses is logged at debug and left as it is.

use std::sync::{Mutex, PoisonError};

use revka_mcp::client::{CallOptions, McpClient};
use revka_mcp::protocol::LogLevel;
use serde_json::json;

use super::hub::ServerEntry;

/// The level servers are set back to when no session asks for one any more.
pub const RESTING_LEVEL: LogLevel = LogLevel::Info;

/// See the module doc.
#[derive(Debug, Default)]
pub struct UpstreamLogLevel {
    /// What sessions ask for; `None` before anyone asked.
    wanted: Mutex<Option<LogLevel>>,
}

impl UpstreamLogLevel {
    /// The level servers are set to now, if any session ever asked.
    pub fn current(&self) -> Option<LogLevel> {
        *self.wanted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the level sessions want (`None`: none asks any more) and applies a change to every
    /// server in `servers`. Returns whether it changed.
    pub fn want(&self, level: Option<LogLevel>, servers: &[std::sync::Arc<ServerEntry>]) -> bool {
        let applied = {
            let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
            // Before anyone asked there is nothing to put back.
            let next = match (level, *wanted) {
                (None, None) => return false,
                (None, Some(_)) => RESTING_LEVEL,
                (Some(level), _) => level,
            };
            if *wanted == Some(next) {
                return false;
            }
            *wanted = Some(next);
            next
        };
        tracing::info!(level = applied.as_str(), "upstream servers' log level");
        for entry in servers {
            if let Some(client) = entry.client() {
                apply(entry, client, applied);
            }
        }
        true
    }

    /// Applies the current level to a server that just connected.
    pub fn connected(&self, entry: &ServerEntry, client: std::sync::Arc<McpClient>) {
        if let Some(level) = self.current() {
            apply(entry, client, level);
        }
    }
}

/// Sends `logging/setLevel` to a server that declares `logging`, in the background.
fn apply(entry: &ServerEntry, client: std::sync::Arc<McpClient>, level: LogLevel) {
    let declares = entry
        .hello()
        .is_some_and(|h| h.capabilities.get("logging").is_some());
    if !declares || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let timeout = entry.spec().handshake_timeout;
    tokio::spawn(async move {
        let opts = CallOptions {
            timeout,
            ..Default::default()
        };
        let params = json!({ "level": level.as_str() });
        if let Err(e) = client
            .request("logging/setLevel", Some(params), &opts)
            .await
        {
            tracing::debug!(server = %client.server(), error = %e, "logging/setLevel refused");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_follows_the_sessions_and_rests_when_none_asks() {
        let levels = UpstreamLogLevel::default();
        assert!(
            !levels.want(None, &[]),
            "nothing to put back before anyone asked"
        );
        assert_eq!(levels.current(), None);
        assert!(levels.want(Some(LogLevel::Debug), &[]));
        assert!(
            !levels.want(Some(LogLevel::Debug), &[]),
            "no change, nothing sent"
        );
        assert!(levels.want(Some(LogLevel::Error), &[]));
        assert!(levels.want(None, &[]));
        assert_eq!(levels.current(), Some(RESTING_LEVEL));
        assert!(!levels.want(None, &[]));
    }
}
