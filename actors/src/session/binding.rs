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
//! it costs a hundred instructions, where hashing each request's token would cost thousands on
//! a CPU without SHA instructions. The binding also keeps the token's expiry, past which the
//! session admits nothing; a revoked token's sessions are ended by whoever revokes it
//! ([`Sessions::end_bound_to`]). A session bound without a credential (the
//! `require_token = false` mode) admits any request that names it; a session that was never
//! bound (minted by `POST /session`) admits none on the standard path.

use std::sync::Arc;
use std::time::SystemTime;

use subtle::ConstantTimeEq;

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
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.ct_eq(presented.as_bytes()))
    }
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
