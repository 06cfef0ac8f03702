//! Gateway authentication: who may call the gateway, and how they got their credential.
//!
//! Used by the gateway listener (`root/gateway`): every request passes through
//! [`FailedAuthLimiter::check`], then [`extract_bearer`] (or, for WebSockets,
//! [`bearer_from_subprotocols`] / the `?token=` query parameter), then
//! [`TokenStore::verify`]. Everything here is plain Rust with no HTTP types, so it is tested
//! without a listener.
//!
//! - **Tokens** are `rvk_` followed by 64 lowercase hex digits (256 bits from the OS).
//!   [`TokenStore`] keeps only their SHA-256 in memory and in
//!   `$REVKA_HOME/gateway_tokens.json` (mode 0600, replaced atomically); verification compares
//!   hashes in constant time and never touches the disk.
//! - **The owner token** ([`TokenStore::ensure_owner_token`]) is written to
//!   `$REVKA_HOME/gateway.token` (mode 0600) at each daemon start, replacing and revoking the
//!   previous one, so the CLI of the same account needs no pairing.
//! - **Pairing codes** ([`PairingCodes`]) are short one-time codes (`7KQ4-MX2P`) an operator
//!   types into a browser or script to obtain a token of its own.
//! - **[`FailedAuthLimiter`]** locks out a client address after too many failed attempts.

mod bearer;
mod error;
mod limiter;
mod pairing;
mod persist;
mod store;
mod token;

#[cfg(test)]
mod tests;

pub use bearer::{bearer_from_subprotocols, extract_bearer, extract_bearer_bytes};
pub use error::{RevokeError, StoreError};
pub use limiter::{
    DEFAULT_FAILURE_WINDOW, DEFAULT_LOCKOUT, DEFAULT_MAX_FAILURES, FailedAuthLimiter,
    MAX_TRACKED_ADDRESSES,
};
pub use pairing::{
    DEFAULT_PAIRING_TTL, MAX_OUTSTANDING_CODES, MAX_PAIRING_TTL, PairError, PairingCodes,
};
pub use store::{
    LAST_USED_RESOLUTION, MAX_LABEL_CHARS, MAX_TOKENS, OWNER_LABEL, OWNER_TOKEN_FILE, TOKENS_FILE,
    TokenInfo, TokenStore, read_owner_token,
};
pub use token::{NewToken, TOKEN_PREFIX, TokenId};
