//! The auth layer's errors: [`StoreError`] (the token store and its files) and
//! [`RevokeError`].
//!
//! Part of the daemon's auth layer ([`crate::auth`]). Every message names the file or the
//! token id concerned, since the CLI prints it as is.

use std::io;
use std::path::PathBuf;

use super::store::MAX_TOKENS;
use super::token::TokenId;

/// Why the token store could not be read, changed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The token store (or owner token) file is not what Revka writes.
    #[error("{}: corrupt gateway token file: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. `tokens[2].hash: expected 64 lowercase hex digits`.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// [`MAX_TOKENS`] tokens exist and none is revoked or expired.
    #[error("too many tokens: {MAX_TOKENS} live tokens exist; revoke one first")]
    Full,
    /// A label that is empty, too long, or contains control characters.
    #[error("invalid token label {label:?}: {reason}")]
    InvalidLabel {
        /// The label as given.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A client token lifetime of zero, or longer than
    /// [`MAX_CLIENT_TOKEN_TTL`](super::MAX_CLIENT_TOKEN_TTL).
    #[error("invalid expiry {given}: {reason}")]
    InvalidExpiry {
        /// The lifetime asked for, e.g. `11years`.
        given: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The OS random number generator failed.
    #[error("cannot generate a gateway token: the OS random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// Why a token could not be revoked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// Not 4 to 8 hex digits.
    #[error("invalid token id {0:?}: expected 4 to 8 hex digits")]
    InvalidPrefix(String),
    /// No token's id starts with the prefix.
    #[error("no token has an id starting with {0:?}")]
    Unknown(String),
    /// Several live tokens' ids start with the prefix.
    #[error("token id {prefix:?} is ambiguous: it matches {}", join_ids(matches))]
    Ambiguous {
        /// The prefix, lowercased.
        prefix: String,
        /// The live tokens it matches.
        matches: Vec<TokenId>,
    },
    /// The only matching token is already revoked.
    #[error("token {0} is already revoked")]
    AlreadyRevoked(TokenId),
    /// The change could not be persisted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn join_ids(ids: &[TokenId]) -> String {
    ids.iter()
        .map(TokenId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
