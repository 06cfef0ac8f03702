//! Who may open sessions on the standard Streamable HTTP path: the client-token check.
//!
//! Part of the MCP server (`root/mcp_http`). A standard client (one that does not mint its
//! session with `POST /session`) presents a client token in `Authorization: Bearer` on its
//! `initialize` and on every request after. The server asks a [`ClientAuth`] once, at
//! `initialize`; the session then keeps the token and compares later requests with it in
//! constant time (`revka_actors::session::Credential`), so a request costs one comparison
//! whatever the number of tokens, and no hashing. A revoked token's sessions are ended by the
//! revocation (`gateway::api::revoke`); an expiring token's session stops admitting it at the
//! expiry it was granted with.
//!
//! The daemon's [`TokenStore`] ([`crate::auth`], shared with the gateway; `revka tokens create`
//! puts client tokens there) is the [`ClientAuth`] of the running server; [`NoClientTokens`]
//! verifies none.

use std::sync::Arc;
use std::time::SystemTime;

use revka_actors::session::ToolScope;

use crate::auth::TokenStore;

/// A client token that verified: who the client is and what it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    /// The token's public id (the first 8 hex digits of its SHA-256), recorded on the sessions
    /// it creates.
    pub id: String,
    /// What the token was issued for.
    pub name: String,
    /// The tools its sessions may see and call; `None`: every tool.
    pub scope: Option<Arc<ToolScope>>,
    /// When the token stops authenticating, if it expires.
    pub expires_at: Option<SystemTime>,
}

/// Verifies the client tokens presented on the standard path.
pub trait ClientAuth: Send + Sync + 'static {
    /// The grant `presented` is a live client token of, if any. Constant time in the token.
    fn verify_client(&self, presented: &str) -> Option<ClientGrant>;
}

/// Verifies no token: the standard path needs `require_token = false` to be used.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoClientTokens;

impl ClientAuth for NoClientTokens {
    fn verify_client(&self, _: &str) -> Option<ClientGrant> {
        None
    }
}

impl ClientAuth for TokenStore {
    fn verify_client(&self, presented: &str) -> Option<ClientGrant> {
        TokenStore::verify_client(self, presented).map(|grant| ClientGrant {
            id: grant.id.as_str().to_owned(),
            name: grant.name,
            scope: grant.scope.map(Arc::new),
            expires_at: grant.expires_at,
        })
    }
}
