//! Client tokens: bearer tokens for the MCP server's standard Streamable HTTP flow (`/mcp`
//! with `Mcp-Session-Id`), for MCP clients that cannot run the two-header flow.
//!
//! Part of the daemon's auth layer, in the same [`TokenStore`] (and file, cap, listing and
//! revocation) as the gateway's tokens, but a kind apart: [`TokenStore::verify_client`]
//! accepts only client tokens and [`TokenStore::verify_caller`] only gateway tokens, so a
//! client token opens no gateway route and a gateway token, even the owner's, is no client
//! token. Created by the owner (`revka tokens create`, `POST /api/tokens`); each token is
//! `rvkc_` + 64 hex digits, shown once, stored as its SHA-256, checked in constant time, and
//! may carry:
//!
//! - a tool scope ([`ToolScope`]): the session it opens sees, activates and calls only those
//!   tools;
//! - an expiry: from then on it authenticates nothing (it is listed as expired until it is
//!   revoked or pruned to make room).

use std::time::{Duration, SystemTime};

use revka_actors::session::ToolScope;

use super::error::StoreError;
use super::persist::whole_seconds;
use super::store::{Kind, Template, TokenStore};
use super::token::{CLIENT_TOKEN_PREFIX, NewToken, TokenId};

/// The longest lifetime a client token may be given: 10 years (none: it never expires).
pub const MAX_CLIENT_TOKEN_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A client token that [`TokenStore::verify_client`] accepted: who the client is and what it
/// may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    /// The token's public id: what a session opened with it records, so that only this token
    /// may use that session.
    pub id: TokenId,
    /// The name it was created with (`revka tokens create <name>`).
    pub name: String,
    /// The tools it may see and call; `None`: every tool.
    pub scope: Option<ToolScope>,
    /// When it stops authenticating, if it expires: the sessions it opened end then too.
    pub expires_at: Option<SystemTime>,
}

impl TokenStore {
    /// The grant of the live client token `presented` is, if any: not revoked, not expired,
    /// and a client token (a gateway token of any role is refused).
    ///
    /// Like [`Self::verify_caller`]: constant-time comparison with every stored hash, no disk
    /// I/O, and the use is recorded at most once a
    /// [`LAST_USED_RESOLUTION`](super::LAST_USED_RESOLUTION).
    pub fn verify_client(&self, presented: &str) -> Option<ClientGrant> {
        self.verify_client_at(presented, SystemTime::now())
    }

    /// [`Self::verify_client`] at `now`.
    pub(crate) fn verify_client_at(&self, presented: &str, now: SystemTime) -> Option<ClientGrant> {
        let client = |kind: &Kind| matches!(kind, Kind::Client(_));
        self.find_live(presented, now, client, |record| match &record.kind {
            Kind::Client(scope) => Some(ClientGrant {
                id: record.id(),
                name: record.label.clone(),
                scope: scope.clone(),
                expires_at: record.expires_at,
            }),
            Kind::Gateway(_) => None,
        })
    }

    /// Issues a client token named `name`, limited to `scope` if given, expiring after
    /// `expires_in` if given (whole seconds, at least 1 s, at most
    /// [`MAX_CLIENT_TOKEN_TTL`]), and persists it.
    pub fn issue_client(
        &self,
        name: &str,
        scope: Option<ToolScope>,
        expires_in: Option<Duration>,
    ) -> Result<NewToken, StoreError> {
        self.issue_client_at(name, scope, expires_in, SystemTime::now())
    }

    /// [`Self::issue_client`] at `now`.
    pub(crate) fn issue_client_at(
        &self,
        name: &str,
        scope: Option<ToolScope>,
        expires_in: Option<Duration>,
        now: SystemTime,
    ) -> Result<NewToken, StoreError> {
        let expires_at = match expires_in {
            None => None,
            Some(ttl) => Some(whole_seconds(now) + check_ttl(ttl)?),
        };
        let template = Template {
            kind: Kind::Client(scope),
            file_token: false,
            expires_at,
        };
        self.issue_with(name, CLIENT_TOKEN_PREFIX, template, now)
    }
}

/// `ttl` if it is a usable lifetime, whole seconds.
fn check_ttl(ttl: Duration) -> Result<Duration, StoreError> {
    let secs = ttl.as_secs();
    let reason = if secs == 0 {
        "must be at least 1 second"
    } else if ttl > MAX_CLIENT_TOKEN_TTL {
        "must be at most 10 years (leave it out for a token that never expires)"
    } else {
        return Ok(Duration::from_secs(secs));
    };
    Err(StoreError::InvalidExpiry {
        given: humantime::format_duration(ttl).to_string(),
        reason,
    })
}
