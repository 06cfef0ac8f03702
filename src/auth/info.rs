//! What the token store shows of its tokens ([`TokenInfo`], [`TokenKind`]) and what a
//! verified gateway token is ([`Verified`]).
//!
//! Part of the daemon's auth layer ([`crate::auth`]): `GET /api/tokens` and `revka tokens
//! list` show [`TokenInfo`]s; the gateway listener attaches a [`Verified`] to each request.
//! Nothing here holds a token or its hash.

use std::time::SystemTime;

use revka_actors::session::ToolScope;
use serde::{Serialize, Serializer};

use super::persist::rfc3339;
use super::role::Role;
use super::token::TokenId;

/// The kind of a token, as [`TokenInfo`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A gateway token (with a role): the gateway's API, never the MCP server's standard flow.
    Gateway,
    /// A client token: the MCP server's standard flow (`/mcp`), never the gateway.
    Client,
}

/// What may be shown about a token: never the token, never its hash.
///
/// Serialises with RFC 3339 times (whole seconds, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The public id (first 8 hex digits of the hash).
    pub id: TokenId,
    /// Who or what holds it (`owner`, or the label given when pairing).
    pub label: String,
    /// When it was issued (whole seconds).
    #[serde(serialize_with = "serialize_time")]
    pub created_at: SystemTime,
    /// When it last authenticated a request, to within [`LAST_USED_RESOLUTION`](super::LAST_USED_RESOLUTION).
    #[serde(serialize_with = "serialize_opt_time")]
    pub last_used_at: Option<SystemTime>,
    /// Whether it was revoked (it no longer authenticates anything).
    pub revoked: bool,
    /// Gateway or client token.
    pub kind: TokenKind,
    /// What a gateway token may do; absent for a client token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Whether it is (or was) the token written to `$REVKA_HOME/gateway.token` at a daemon
    /// start, which the next start revokes.
    pub file_token: bool,
    /// The tools a client token is limited to; absent for a client token that may use every
    /// tool, and for gateway tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolScope>,
    /// When it stops authenticating; `null`: never.
    #[serde(serialize_with = "serialize_opt_time")]
    pub expires_at: Option<SystemTime>,
    /// Whether `expires_at` had passed when it was listed.
    pub expired: bool,
}

/// A token that [`TokenStore::verify_caller`](super::TokenStore::verify_caller) accepted: who is calling, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The token's public id (what the gateway records as the owner of what it creates).
    pub id: TokenId,
    /// Its role.
    pub role: Role,
}

fn serialize_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn serialize_opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}
