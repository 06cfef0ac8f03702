//! Token primitives: generation, hashing, ids, and the one constant-time comparison.
//!
//! Part of the daemon's auth layer ([`crate::auth`]). Every secret comparison in the layer
//! (token hashes in the store, pairing codes) goes through [`constant_time_eq`].

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// What every gateway token starts with, so leaked tokens are recognisable (secret scanners,
/// logs).
pub const TOKEN_PREFIX: &str = "rvk_";

/// What every client token starts with: recognisable like a gateway token, and told apart
/// from one at a glance (which endpoint it is for). Only a recognition aid: the store checks
/// a token's kind by its record, never by its prefix.
pub const CLIENT_TOKEN_PREFIX: &str = "rvkc_";

/// Random bytes in a token (256 bits).
const TOKEN_BYTES: usize = 32;

/// Hex digits of a hash that make a token's id.
pub(super) const ID_LEN: usize = 8;

/// The SHA-256 of a token: what the store keeps instead of the token.
pub(super) type TokenHash = [u8; 32];

/// The public id of a token: the first 8 hex digits of its hash, e.g. `3f9a0c1e`.
///
/// Shown by `revka token list` and accepted (or a unique prefix of it) by `revoke`. It
/// reveals nothing usable about the token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TokenId(String);

impl TokenId {
    /// The id of the token whose hash is `hash`.
    pub(super) fn of(hash: &TokenHash) -> Self {
        let mut hex = to_hex(hash);
        hex.truncate(ID_LEN);
        Self(hex)
    }

    /// The 8 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A freshly issued token: the only moment its clear text exists outside its holder.
///
/// `Debug` does not print the token.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// The token's public id.
    pub id: TokenId,
    /// The token itself (`rvk_` or `rvkc_`, then 64 hex digits), to hand to the client once.
    pub token: String,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A new random token, `prefix` + 64 lowercase hex digits, from the OS random number
/// generator.
pub(super) fn generate_token(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", to_hex(&bytes)))
}

/// The SHA-256 of a presented or issued token.
pub(super) fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths (which are not
/// secret: hashes and normalised pairing codes have fixed lengths).
///
/// The only place secrets are compared; returns a [`Choice`] so callers can fold several
/// comparisons without branching on the result.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> Choice {
    a.ct_eq(b)
}

/// Lowercase hex of `bytes`.
pub(super) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The bytes of a lowercase hex string of exactly `N` bytes; `None` for anything else.
pub(super) fn from_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let hex = hex.as_bytes();
    if hex.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}
