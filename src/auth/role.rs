//! [`Role`]: what a gateway token may do, `viewer < operator < owner`.
//!
//! Part of the daemon's auth layer ([`crate::auth`]). Every token in the [`TokenStore`]
//! carries one, every pairing code is minted for one, and every route of the gateway's route
//! table names the least role it needs. The role is independent of whether a token is the
//! owner token of `$REVKA_HOME/gateway.token` (the one rotated at each start): that token has
//! the `owner` role, but a paired token may have it too when the owner asked for it.
//!
//! [`TokenStore`]: super::TokenStore

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a gateway token may do; each role may do everything the lower ones may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only: the supervision tree (without sessions), health, metrics, progress events of
    /// sessions it holds the MCP token of. The default of a pairing code.
    #[default]
    Viewer,
    /// A viewer that may also act on the running daemon without spawning anything: restart
    /// actors, create MCP sessions and call tools through the proxy, test http/sse/url server
    /// configs.
    Operator,
    /// Everything: spawning processes (testing a stdio server config), reloading the config,
    /// pairing devices, managing tokens, seeing session ids and labels.
    Owner,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Owner];

    /// `viewer`, `operator` or `owner`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Owner => "owner",
        }
    }

    /// Whether a token of this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `viewer`, `operator` or `owner`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected viewer, operator or owner")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// The role named `s` (any case, surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}
