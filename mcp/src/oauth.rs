//! OAuth 2.1 for remote MCP servers: the MCP authorization spec (2025-11-25) on the client
//! side, with the 2025-03-26 back-compat rules.
//!
//! An HTTP transport ([`crate::http`]) that was given an [`Authorizer`] puts its bearer token
//! on every request, and hands each `401` (and each `403` with `insufficient_scope`) back to it
//! before retrying. The authorizer is built by whoever opens the transport: the MCP connection
//! actor under `root/mcp_servers/mcp:<name>` in the daemon (unattended: stored tokens, refresh,
//! client credentials) and `revka mcp login | call | test` on the command line (interactive:
//! the browser step through a [`UserAgent`]).
//!
//! - `challenge`: the `WWW-Authenticate: Bearer …` parameters (`resource_metadata`, `scope`,
//!   `error`).
//! - `discovery`: protected resource metadata (RFC 9728) from the challenge's URL or the
//!   well-known paths, then authorization server metadata (RFC 8414, OpenID Connect discovery)
//!   in the spec's order; without any (2025-03-26 servers), metadata at the server's origin
//!   or the default endpoints there.
//! - `endpoint`: client identity (pre-registered, a Client ID Metadata Document, or dynamic
//!   registration, RFC 7591), the token endpoint's client authentication (`client_secret_basic`,
//!   `client_secret_post`, `none`, `private_key_jwt`) and its grants (authorization code,
//!   refresh, client credentials).
//! - `pkce`, `jwt`: S256 challenges and random values; signed client assertions (RFC 7523).
//! - [`callback`]: the loopback redirect listener (`http://127.0.0.1:<port>/callback`).
//! - [`store`]: tokens in one owner-only file per server, written atomically, with a lock so
//!   the daemon and the command line never both spend the same refresh token.
//! - `authorizer`: the flows put together, single-flight per server.
//!
//! Secrets (tokens, client secrets, private keys, codes, verifiers) never reach a log line or
//! an error message: their types print as `***`, error messages quote only an endpoint's
//! `error` and `error_description`, masked by [`crate::redact::text`].

pub mod callback;
pub mod store;

mod authorizer;
mod challenge;
mod discovery;
mod endpoint;
mod jwt;
mod pkce;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use authorizer::{Authorized, Authorizer};
pub use challenge::Challenge;
pub use store::{AuthState, Store};

/// The cap on a metadata document, a registration answer and a token answer.
pub const MAX_DOCUMENT: usize = 256 << 10;
/// The longest one request to an authorization server (or a metadata fetch) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// [`REQUEST_TIMEOUT`]; two seconds in unit tests, which serve hanging endpoints.
fn request_timeout() -> Duration {
    if cfg!(test) {
        Duration::from_secs(2)
    } else {
        REQUEST_TIMEOUT
    }
}
/// The most times one request is retried after a new authorization (on `401`, or a step-up
/// on `403 insufficient_scope`); past it the request fails instead of looping. With the login
/// that may precede a connection, a server that never accepts makes at most three
/// authorization requests.
pub const MAX_AUTHORIZATIONS: u32 = 2;
/// A token is refreshed this long before it expires (or at half its lifetime, if shorter).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Which grant gets the tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Grant {
    /// Authorization code with PKCE, through a person's browser (`revka mcp login`).
    #[default]
    AuthorizationCode,
    /// Client credentials, machine to machine: no person, no refresh token.
    ClientCredentials,
}

impl Grant {
    /// `authorization_code` or `client_credentials`, as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

/// A value that must never be shown: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::redact::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::redact::MASK)
    }
}

/// Opens an authorization URL for a person: `revka mcp login` runs `$BROWSER` or prints it.
pub trait UserAgent: Send + Sync + 'static {
    /// Shows `url` to the person who approves the access; returns once it is shown (the
    /// answer arrives at the loopback callback).
    fn open(&self, url: &str) -> Result<(), String>;
}

/// A [`UserAgent`] held by a spec: compared by identity, printed by name only.
#[derive(Clone)]
pub struct Interactive(pub Arc<dyn UserAgent>);

impl PartialEq for Interactive {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Interactive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Interactive")
    }
}

/// How a server's OAuth is set up: `[mcp.servers.oauth]` over `[oauth]`, built by the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthSpec {
    /// The server's name: the store key, and what the login hint names.
    pub server: String,
    /// A pre-registered client id (first choice of client identity).
    pub client_id: Option<String>,
    /// Its secret, if it is a confidential client.
    pub client_secret: Option<Secret>,
    /// A Client ID Metadata Document URL, used where the server supports them.
    pub client_metadata_url: Option<String>,
    /// The `client_name` sent in a dynamic registration.
    pub client_name: String,
    /// Scopes to request instead of the discovered ones (empty: discover).
    pub scopes: Vec<String>,
    /// The grant.
    pub grant: Grant,
    /// A PKCS#8 PEM private key file for `private_key_jwt` (client credentials); read when a
    /// token is requested.
    pub private_key_file: Option<PathBuf>,
    /// Its algorithm: `ES256` or `RS256` (default: from the key).
    pub signing_alg: Option<String>,
    /// The loopback callback's port; 0 picks a free one.
    pub redirect_port: u16,
    /// The token store's directory (`$REVKA_HOME/oauth`).
    pub store_dir: PathBuf,
    /// What a person must do when no token can be had without them, e.g. "run `revka mcp
    /// login github`"; ends every such error.
    pub login_hint: String,
    /// How long a login waits for the browser's redirect.
    pub login_timeout: Duration,
    /// Present when a person is there to approve (`revka mcp login | call | test`); the
    /// daemon never has one.
    pub interactive: Option<Interactive>,
}

impl OAuthSpec {
    /// The defaults for server `name`, storing under `store_dir`.
    pub fn new(server: impl Into<String>, store_dir: impl Into<PathBuf>) -> Self {
        let server = server.into();
        Self {
            login_hint: format!("run `revka mcp login {server}`"),
            server,
            client_id: None,
            client_secret: None,
            client_metadata_url: None,
            client_name: "Revka".to_owned(),
            scopes: Vec::new(),
            grant: Grant::AuthorizationCode,
            private_key_file: None,
            signing_alg: None,
            redirect_port: 0,
            store_dir: store_dir.into(),
            login_timeout: Duration::from_secs(300),
            interactive: None,
        }
    }
}

/// The stored authorization of the server `spec` names at `url` (no network).
pub fn stored_state(spec: &OAuthSpec, url: &str) -> Result<AuthState, OAuthError> {
    let parsed = url::Url::parse(url)
        .map_err(|_| OAuthError::Protocol(format!("`{}` is not a URL", crate::redact::url(url))))?;
    Store::new(&spec.store_dir).state(&spec.server, &discovery::canonical(&parsed))
}

/// Why authorization failed. Messages name endpoints (masked) and the server's own `error`
/// codes, never a secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OAuthError {
    /// A document or answer broke the rules (malformed, too large, wrong origin, wrong
    /// content type) or an endpoint failed.
    #[error("{0}")]
    Protocol(String),
    /// The authorization server refused a grant (`invalid_grant`, `invalid_client`, …).
    #[error("{endpoint} refused {what}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The endpoint, masked.
        endpoint: String,
        /// What was asked: `the refresh_token grant`, `client registration`.
        what: String,
        /// The server's `error` code.
        error: String,
        /// Its `error_description`, masked and cut.
        description: Option<String>,
    },
    /// A person must act: no stored token can be used or refreshed.
    #[error("{reason}: {hint}")]
    NeedsLogin {
        /// Why.
        reason: String,
        /// What to do ([`OAuthSpec::login_hint`]).
        hint: String,
    },
    /// The interactive step failed: the callback's `state` did not match, the person denied
    /// access, or nobody came back in time.
    #[error("authorization failed: {0}")]
    Authorization(String),
    /// The server asks for no authorization: no 401 and no protected resource metadata.
    #[error("{0}")]
    NotRequired(String),
    /// Reading or writing the token store failed.
    #[error("token store: {0}")]
    Store(String),
}
