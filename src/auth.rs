//! Bearer-token authentication: who may call the gateway, which MCP clients may use the MCP
//! server's standard flow, and how they got their credential.
//!
//! Shared by both HTTP faces and the CLI, and part of neither face: the daemon builds one
//! [`TokenStore`] and [`PairingCodes`] into its services (`crate::tree`). The gateway listener
//! (`root/gateway`) passes every request's bearer token (taken by [`crate::http::bearer`]) to
//! [`TokenStore::verify_caller`], which says which [`Role`] the caller has; a wrong credential
//! is answered after the delay [`FailureThrottle::record_failure`] gives it. The MCP server
//! (`root/mcp_http`) checks the client tokens of its standard flow with
//! [`TokenStore::verify_client`]. The CLI reads the owner token file. Everything here is plain
//! Rust with no HTTP types, so it is tested without a listener.
//!
//! - **Gateway tokens** are `rvk_` followed by 64 lowercase hex digits (256 bits from the OS).
//!   [`TokenStore`] keeps only their SHA-256 in memory and in
//!   `$REVKA_HOME/gateway_tokens.json` (mode 0600, replaced atomically); verification compares
//!   hashes in constant time and never touches the disk.
//! - **Client tokens** (`rvkc_` + 64 hex digits, see `client`) live in the same store, for the
//!   MCP server only, each with an optional tool scope ([`ToolScope`]) and expiry. Neither kind
//!   is ever accepted where the other is expected.
//! - **The owner token** ([`TokenStore::ensure_owner_token`]) is written to
//!   `$REVKA_HOME/gateway.token` (mode 0600) at each daemon start, replacing and revoking the
//!   previous one, so the CLI of the same account needs no pairing. It has the `owner` role.
//! - **Roles** ([`Role`]): `viewer < operator < owner`, stored with each token.
//! - **Pairing codes** ([`PairingCodes`]) are short one-time codes (`7KQ4-MX2P`), each minted
//!   for a role, that an operator types into a browser or script to obtain a token of its own.
//! - **[`FailureThrottle`]** delays the answer to failed attempts, more for each failure of the
//!   same source; it never sees, and so never refuses, a valid token.

mod client;
mod error;
mod info;
mod limiter;
mod pairing;
mod persist;
mod role;
mod store;
mod token;

#[cfg(test)]
mod tests;

pub use client::{ClientGrant, MAX_CLIENT_TOKEN_TTL};
pub use error::{RevokeError, StoreError};
pub use info::{TokenInfo, TokenKind, Verified};
pub use limiter::{
    FIRST_DELAY, FORGET_AFTER, FailureThrottle, MAX_DELAY, MAX_DELAYED_FAILURES,
    MAX_TRACKED_SOURCES,
};
pub use pairing::{
    DEFAULT_PAIRING_TTL, MAX_FAILED_REDEMPTIONS, MAX_OUTSTANDING_CODES, MAX_PAIRING_TTL, PairError,
    PairingCodes, REDEMPTION_WINDOW, Redeemed,
};
pub use role::{Role, UnknownRole};
pub use store::{
    LAST_USED_RESOLUTION, MAX_LABEL_CHARS, MAX_TOKENS, OWNER_LABEL, OWNER_TOKEN_FILE, TOKENS_FILE,
    TokenStore, read_owner_token,
};
pub use token::{CLIENT_TOKEN_PREFIX, NewToken, TOKEN_PREFIX, TokenId};

pub use revka_actors::session::{ScopeError, ToolScope};
