//! Who may open sessions on the standard Streamable HTTP path: the client-token check.
//!
//! Part of the MCP server (`root/mcp_http`). A standard client (one that does not mint its
//! session with `POST /session`) presents a client token in `Authorization: Bearer` on its
//! `initialize` and on every request after. The server asks a [`ClientAuth`] once, at
//! `initialize`; the session then keeps the token and compares later requests with it in
//! constant time (`revka_actors::session::Credential`), so a request costs one comparison
//! whatever the number of tokens, and no hashing.
//!
//! Every check goes through [`ClientAuth::verify_client`]: the daemon's token store implements
//! it where client tokens are kept. Until then, [`ListedClientTokens`] holds tokens given to
//! the daemon at start in [`CLIENT_TOKENS_ENV`] (what the end-to-end tests use), and
//! [`NoClientTokens`] verifies none.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// The environment variable [`ListedClientTokens::from_env`] reads: client tokens separated by
/// commas or whitespace.
pub const CLIENT_TOKENS_ENV: &str = "REVKA_MCP_CLIENT_TOKENS";

/// A client token that verified: who the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrant {
    /// The token's public id (the first 8 hex digits of its SHA-256), recorded on the sessions
    /// it creates.
    pub id: String,
    /// What the token was issued for.
    pub name: String,
}

/// Verifies the client tokens presented on the standard path.
pub trait ClientAuth: Send + Sync + 'static {
    /// The grant `presented` is a live client token of, if any. Constant time in the token.
    fn verify_client(&self, presented: &str) -> Option<ClientGrant>;
}

/// The digest a token is kept as (SHA-256, as the token store keeps tokens); its first 4 bytes,
/// in hex, are the token's public id.
pub fn credential_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Verifies no token: the standard path needs `require_token = false` to be used.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoClientTokens;

impl ClientAuth for NoClientTokens {
    fn verify_client(&self, _: &str) -> Option<ClientGrant> {
        None
    }
}

/// A fixed list of client tokens, kept as digests.
#[derive(Debug, Default, Clone)]
pub struct ListedClientTokens {
    digests: Vec<[u8; 32]>,
}

impl ListedClientTokens {
    /// The tokens of `tokens` (empty ones are skipped).
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            digests: tokens
                .into_iter()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(credential_digest)
                .collect(),
        }
    }

    /// The tokens of [`CLIENT_TOKENS_ENV`], if set.
    pub fn from_env() -> Self {
        let listed = std::env::var(CLIENT_TOKENS_ENV).unwrap_or_default();
        Self::new(listed.split(|c: char| c == ',' || c.is_whitespace()))
    }

    /// Tokens listed.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// As a [`ClientAuth`].
    pub fn shared(self) -> Arc<dyn ClientAuth> {
        Arc::new(self)
    }
}

impl ClientAuth for ListedClientTokens {
    fn verify_client(&self, presented: &str) -> Option<ClientGrant> {
        let digest = credential_digest(presented);
        // 1-based index of the match (0: none), found without branching on the comparisons.
        let mut found = 0u32;
        for (i, listed) in self.digests.iter().enumerate() {
            let hit: Choice = listed.ct_eq(&digest);
            let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
            found.conditional_assign(&position, hit);
        }
        let index = usize::try_from(found).ok()?.checked_sub(1)?;
        let id = hex(&self.digests.get(index)?[..4]);
        Some(ClientGrant {
            name: format!("{CLIENT_TOKENS_ENV}[{index}]"),
            id,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_tokens_verify_by_digest_and_name_their_grant() {
        let tokens = ListedClientTokens::new(["rvk_a", " ", "rvk_b"]);
        assert_eq!(tokens.len(), 2);
        let b = tokens.verify_client("rvk_b").unwrap();
        assert_eq!(b.id, hex(&credential_digest("rvk_b")[..4]));
        assert_eq!(b.name, "REVKA_MCP_CLIENT_TOKENS[1]");
        assert!(tokens.verify_client("rvk_a").is_some());
        for bad in ["", "rvk_", "rvk_bb", "RVK_B"] {
            assert!(tokens.verify_client(bad).is_none(), "{bad:?}");
        }
        assert!(NoClientTokens.verify_client("rvk_a").is_none());
    }
}
