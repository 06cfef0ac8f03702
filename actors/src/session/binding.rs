//! Sessions of the standard Streamable HTTP path: bound to the client credential that created
//! them.
//!
//! Part of the session's shared state ([`Session`]). `POST /session` hands out a session token,
//! which the two-header flow presents on every request. A session created by a standard
//! `initialize` hands out no token: its client presents the same client token on every request,
//! so the session records which client created it (the grant's id, shown in introspection and
//! used to end its sessions when the grant goes) and the token it presented, compared in
//! constant time with every request's. The token is kept as the session keeps its own token: in
//! the daemon's memory only, for the session's life, never printed ([`Credential`]); comparing
//! it costs about fifty instructions, where hashing each request's token would cost thousands on
//! a CPU without SHA instructions. The binding also keeps the token's expiry, past which the
//! session admits nothing; a revoked token's sessions are ended by whoever revokes it
//! ([`Sessions::end_bound_to`]). A session bound without a credential (the
//! `require_token = false` mode) admits any request that names it; a session that was never
//! bound (minted by `POST /session`) admits none on the standard path.

use std::sync::Arc;
use std::time::SystemTime;

use subtle::{Choice, ConstantTimeEq};

use super::{Session, Sessions};

/// Who created a standard-path session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientBinding {
    /// The id of the client grant (token) that created the session; `local` when no token is
    /// required.
    pub owner: Box<str>,
    /// The token presented at creation, which every later request must present again; `None`
    /// when no token is required.
    pub credential: Option<Credential>,
    /// When the token expires: from then on the session admits no request (it then idles out
    /// like any other); `None`: never.
    pub expires_at: Option<SystemTime>,
}

/// A client token a session holds: compared in constant time, never shown (`Debug` prints
/// no byte of it).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(Box<[u8]>);

impl Credential {
    /// The credential `token`.
    pub fn new(token: &str) -> Self {
        Self(token.as_bytes().into())
    }

    /// Whether `presented` is this credential: constant time in the bytes (a length that
    /// differs, which is no secret, answers at once).
    ///
    /// Compared eight bytes at a time: each word's comparison is `subtle`'s (an optimisation
    /// barrier on every result, no branch on the bytes), and the results are combined with
    /// `Choice`'s `&`. A byte-by-byte `ct_eq` costs a barrier per byte, ~300 instructions for
    /// a client token on every standard-path request; this costs a sixth of that. The last
    /// partial word is zero-padded on both sides, which two slices of one length share.
    pub fn matches(&self, presented: &str) -> bool {
        let (expected, presented) = (&*self.0, presented.as_bytes());
        if expected.len() != presented.len() {
            return false;
        }
        let mut same = Choice::from(1);
        let (mut a, mut b) = (expected.chunks_exact(8), presented.chunks_exact(8));
        for (x, y) in (&mut a).zip(&mut b) {
            same &= word(x).ct_eq(&word(y));
        }
        same &= word(a.remainder()).ct_eq(&word(b.remainder()));
        bool::from(same)
    }
}

/// Up to eight bytes as one word, zero-padded.
fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

impl Session {
    /// The client binding, for a session created on the standard path.
    pub fn client_binding(&self) -> Option<&ClientBinding> {
        self.client.get()
    }

    /// Whether a standard-path request presenting the token `presented` (`None` when it
    /// presented none) may use this session: the session was created on the standard path, and
    /// the token is the one that created it (compared in constant time) and has not expired,
    /// or none is required. Touches the session when it may.
    pub fn admits_client(&self, presented: Option<&str>) -> bool {
        let admitted = match self.client.get() {
            None => false,
            Some(ClientBinding {
                credential: None, ..
            }) => true,
            Some(ClientBinding {
                credential: Some(expected),
                expires_at,
                ..
            }) => {
                presented.is_some_and(|presented| expected.matches(presented))
                    && expires_at.is_none_or(|at| SystemTime::now() < at)
            }
        };
        if admitted {
            self.touch();
        }
        admitted
    }
}

impl Sessions {
    /// Ends every session created by the client grant `owner` (its token was revoked or
    /// expired); returns how many.
    pub fn end_bound_to(&self, owner: &str, reason: &str) -> usize {
        let bound: Vec<Arc<Session>> = self
            .map
            .iter()
            .filter(|e| e.value().client.get().is_some_and(|b| &*b.owner == owner))
            .map(|e| e.value().clone())
            .collect();
        for session in &bound {
            self.end(&session.id, reason);
        }
        bound.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Credential;

    /// Every length around the word boundaries, and a difference in every byte (the last
    /// partial word included) is told apart.
    #[test]
    fn a_credential_matches_itself_only() {
        for len in 0..=27 {
            let token: String = (0..len).map(|i| char::from(b'a' + i as u8 % 26)).collect();
            let credential = Credential::new(&token);
            assert!(credential.matches(&token), "len {len}");
            assert!(
                !credential.matches(&format!("{token}a")),
                "longer, len {len}"
            );
            if len > 0 {
                assert!(!credential.matches(&token[1..]), "shorter, len {len}");
            }
            for at in 0..len {
                let mut other = token.clone().into_bytes();
                other[at] ^= 0x01;
                let other = String::from_utf8(other).unwrap();
                assert!(!credential.matches(&other), "byte {at} of {len}");
            }
        }
    }
}
