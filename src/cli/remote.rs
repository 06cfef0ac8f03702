//! A small async client for the running daemon's gateway, used by the operator commands
//! (`revka status`, `restart`, `pair`, `tokens list | create | revoke`, `reload`).
//!
//! [`Gateway::connect`] finds the daemon through `$REVKA_HOME/gateway.json`
//! (`{url, pid, started_at}`) once it has checked that the home is private (owned by this user,
//! not group/world-writable), checks that its pid is alive (`kill(pid, 0)`), and reads the
//! owner token from `$REVKA_HOME/gateway.token`; every request then carries
//! `Authorization: Bearer <owner token>` and gives up after [`REQUEST_TIMEOUT`]. Failures are
//! [`RemoteError`]s whose messages are meant to be printed as they are: a missing or stale
//! discovery file, a gateway that does not answer, a stale owner token (401), or the `error`
//! field of any other non-2xx answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::{OWNER_TOKEN_FILE, Role, StoreError, read_owner_token};

mod discovery;

#[cfg(test)]
mod tests;

pub use discovery::{Discovery, GATEWAY_FILE, pid_alive, read_gateway_file};

/// How long one request to the gateway may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a gateway request failed. Every message is complete enough to print as is.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// No discovery file: the daemon is not running (or runs under another `REVKA_HOME`).
    #[error("the daemon is not running (no {})", path.display())]
    NotRunning {
        /// The missing `gateway.json`.
        path: PathBuf,
    },
    /// `$REVKA_HOME` is not private (another owner, or group/world-writable): its discovery
    /// file could send the owner token anywhere, so neither is used.
    #[error(transparent)]
    UnsafeHome(revka_actors::fs::FsError),
    /// The discovery file exists but cannot be read or parsed.
    #[error("cannot use {}: {reason}", path.display())]
    BadDiscovery {
        /// The `gateway.json`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The discovery file names a process that is gone.
    #[error("stale {} (pid {pid} is not running)", path.display())]
    Stale {
        /// The `gateway.json`.
        path: PathBuf,
        /// The pid it names.
        pid: u32,
    },
    /// The owner token file is missing or malformed.
    #[error("cannot read the owner token: {0}")]
    Token(#[source] StoreError),
    /// The actor path is empty.
    #[error("invalid actor path {0:?}: expected a slash-separated path like root/mcp_servers")]
    InvalidPath(String),
    /// The gateway could not be reached, or the connection broke.
    #[error("the daemon's gateway at {url} does not answer: {reason}")]
    Unreachable {
        /// The gateway's base URL.
        url: String,
        /// The transport error, with its causes.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("the daemon's gateway at {url} did not answer within {} s", timeout.as_secs_f64())]
    Timeout {
        /// The gateway's base URL.
        url: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// 401: the gateway does not accept the owner token.
    #[error(
        "the gateway rejected the owner token in {} (401 Unauthorized): the token is stale; \
         is the daemon running under another REVKA_HOME, or was the file replaced?",
        path.display()
    )]
    Unauthorized {
        /// The owner token file.
        path: PathBuf,
    },
    /// Any other non-2xx answer; the message is the body's `error` field.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The `error` field, or a description of the status when there is none.
        message: String,
        /// The JSON body, if it was JSON.
        body: Option<Value>,
    },
    /// A 2xx answer that is not what the contract says.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The request URL.
        url: String,
        /// What did not match.
        reason: String,
    },
}

/// A connection to the running daemon's gateway: its URL, the owner token, an HTTP client.
#[derive(Clone)]
pub struct Gateway {
    url: String,
    token: String,
    token_path: PathBuf,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("Gateway")
            .field("url", &self.url)
            .field("token_path", &self.token_path)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Finds the daemon of `home` (`gateway.json`, pid alive) and reads its owner token.
    pub fn connect(home: &Path) -> Result<Self, RemoteError> {
        Self::connect_with_timeout(home, REQUEST_TIMEOUT)
    }

    /// [`Gateway::connect`] with another per-request timeout.
    pub fn connect_with_timeout(home: &Path, timeout: Duration) -> Result<Self, RemoteError> {
        let discovery = read_gateway_file(home)?;
        let token = read_owner_token(home).map_err(RemoteError::Token)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // A local daemon: never through a proxy, and never follow a redirect elsewhere
            // with the owner token.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RemoteError::Unreachable {
                url: discovery.url.clone(),
                reason: error_chain(&e),
            })?;
        Ok(Self {
            url: discovery.url.trim_end_matches('/').to_owned(),
            token,
            token_path: home.join(OWNER_TOKEN_FILE),
            timeout,
            http,
        })
    }

    /// The gateway's base URL (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET /api/actors` (the whole tree), or `GET /api/actors/{path}` (one subtree), as JSON.
    pub async fn actors(&self, path: Option<&str>) -> Result<Value, RemoteError> {
        let endpoint = match path {
            None => "/api/actors".to_owned(),
            Some(p) => format!("/api/actors/{}", encode_actor_path(p)?),
        };
        self.request(Method::GET, &endpoint).await
    }

    /// `GET /api/health`: `{status, components, mcp_servers, sidecars, ...}`, also when the
    /// daemon reports itself `unhealthy` (which the gateway answers with 503).
    pub async fn health(&self) -> Result<Value, RemoteError> {
        match self.request(Method::GET, "/api/health").await {
            Err(RemoteError::Api {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: Some(body),
                ..
            }) if body.get("status").is_some() => Ok(body),
            other => other,
        }
    }

    /// `POST /api/actors/{path}/restart`: the path the daemon restarted.
    pub async fn restart(&self, path: &str) -> Result<String, RemoteError> {
        #[derive(Deserialize)]
        struct Restarted {
            restarted: String,
        }
        let endpoint = format!("/api/actors/{}/restart", encode_actor_path(path)?);
        let answer: Restarted = self.typed(Method::POST, &endpoint).await?;
        Ok(answer.restarted)
    }

    /// `POST /api/pair/code`: a fresh one-time pairing code for a token of `role`.
    pub async fn pair_code(&self, role: Role) -> Result<PairingCode, RemoteError> {
        let body = serde_json::json!({ "role": role });
        let value = self
            .request_with(Method::POST, "/api/pair/code", Some(body))
            .await?;
        decode(&format!("{}/api/pair/code", self.url), value)
    }

    /// `GET /api/tokens`, as JSON.
    pub async fn tokens(&self) -> Result<Value, RemoteError> {
        self.request(Method::GET, "/api/tokens").await
    }

    /// `POST /api/tokens`: a new client token named `name`, limited to `tools` if given,
    /// expiring after `expires` if given. The answer as JSON, and decoded.
    pub async fn create_token(
        &self,
        name: &str,
        tools: Option<&[String]>,
        expires: Option<Duration>,
    ) -> Result<(Value, CreatedToken), RemoteError> {
        let body = serde_json::json!({
            "name": name,
            "tools": tools,
            "expires_secs": expires.map(|d| d.as_secs()),
        });
        let value = self
            .request_with(Method::POST, "/api/tokens", Some(body))
            .await?;
        let created = decode(&format!("{}/api/tokens", self.url), value.clone())?;
        Ok((value, created))
    }

    /// `DELETE /api/tokens/{id_prefix}`: the revoked token.
    pub async fn revoke(&self, id_prefix: &str) -> Result<TokenRow, RemoteError> {
        let endpoint = format!("/api/tokens/{}", encode_segment(id_prefix.trim()));
        self.typed(Method::DELETE, &endpoint).await
    }

    /// `POST /api/reload`: what was applied and what needs a restart.
    pub async fn reload(&self) -> Result<ReloadReport, RemoteError> {
        self.typed(Method::POST, "/api/reload").await
    }

    /// A request whose 2xx body is decoded as `T`.
    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
    ) -> Result<T, RemoteError> {
        let value = self.request(method, endpoint).await?;
        decode(&format!("{}{endpoint}", self.url), value)
    }

    /// One authenticated request; a 2xx JSON body, or the matching [`RemoteError`].
    async fn request(&self, method: Method, endpoint: &str) -> Result<Value, RemoteError> {
        self.request_with(method, endpoint, None).await
    }

    /// [`Self::request`] with a JSON body.
    async fn request_with(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<Value>,
    ) -> Result<Value, RemoteError> {
        let url = format!("{}{endpoint}", self.url);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let body = serde_json::from_slice::<Value>(&bytes);
        if status == StatusCode::UNAUTHORIZED {
            return Err(RemoteError::Unauthorized {
                path: self.token_path.clone(),
            });
        }
        if !status.is_success() {
            let body = body.ok();
            let message = body
                .as_ref()
                .and_then(|b| b.get("error"))
                .and_then(Value::as_str)
                .map_or_else(|| describe_status(status, &bytes), str::to_owned);
            return Err(RemoteError::Api {
                status,
                message,
                body,
            });
        }
        body.map_err(|e| RemoteError::Decode {
            url,
            reason: format!("not JSON: {e}"),
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> RemoteError {
        if e.is_timeout() {
            RemoteError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            }
        } else {
            RemoteError::Unreachable {
                url: self.url.clone(),
                reason: error_chain(e),
            }
        }
    }
}

/// The answer of `POST /api/pair/code`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PairingCode {
    /// The one-time code, e.g. `7KQ4-MX2P`.
    pub code: String,
    /// The role of the token it is traded for (absent from daemons before roles).
    #[serde(default)]
    pub role: Option<String>,
    /// How long it stays valid.
    pub expires_in_secs: u64,
}

/// One gateway token as the daemon lists it (the serialised `TokenInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenRow {
    /// The public id (8 hex digits).
    pub id: String,
    /// Who or what holds it.
    pub label: String,
    /// When it was issued (RFC 3339).
    pub created_at: String,
    /// When it last authenticated a request (RFC 3339).
    #[serde(default)]
    pub last_used_at: Option<String>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// What it may do: `viewer`, `operator` or `owner` (absent from daemons before roles).
    #[serde(default)]
    pub role: Option<String>,
    /// Whether it is (or was) the token of `$REVKA_HOME/gateway.token` (`owner` from daemons
    /// before roles).
    #[serde(default, alias = "owner")]
    pub file_token: bool,
    /// `gateway` or `client` (absent from daemons before client tokens: `gateway`).
    #[serde(default)]
    pub kind: Option<String>,
    /// A client token's tool scope; absent: every tool (or a gateway token).
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// When it expires (RFC 3339); absent: never.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Whether it had expired when listed.
    #[serde(default)]
    pub expired: bool,
}

/// The answer of `POST /api/tokens`: the token as listed, plus its secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CreatedToken {
    /// The new token as `GET /api/tokens` lists it.
    #[serde(flatten)]
    pub row: TokenRow,
    /// The token itself, shown this once.
    pub token: String,
    /// The MCP endpoint to use it on, if the MCP server is bound.
    #[serde(default)]
    pub mcp_url: Option<String>,
}

/// The answer of `POST /api/reload`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReloadReport {
    /// The changes now in effect.
    #[serde(default)]
    pub applied: Vec<Value>,
    /// The changes that take effect only at the next daemon start.
    #[serde(default)]
    pub restart_required: Vec<Value>,
    /// The changes that could not be applied (the rest were).
    #[serde(default)]
    pub failed: Vec<Value>,
}

/// Decodes a 2xx body as `T`.
pub(crate) fn decode<T: DeserializeOwned>(url: &str, value: Value) -> Result<T, RemoteError> {
    serde_path_to_error::deserialize(value).map_err(|e| RemoteError::Decode {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

/// Percent-encodes each segment of a slash-separated actor path, keeping the slashes.
///
/// Leading, trailing and repeated slashes are dropped; a `.` or `..` segment is encoded so
/// that URL normalisation cannot swallow it. Fails on an empty path.
pub fn encode_actor_path(path: &str) -> Result<String, RemoteError> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(encode_segment)
        .collect();
    if segments.is_empty() {
        return Err(RemoteError::InvalidPath(path.to_owned()));
    }
    Ok(segments.join("/"))
}

/// Percent-encodes one path segment: everything but unreserved characters, `:` and `@`.
pub fn encode_segment(segment: &str) -> String {
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b':')
        .remove(b'@');
    if segment == "." || segment == ".." {
        return segment.replace('.', "%2E");
    }
    utf8_percent_encode(segment, KEEP).to_string()
}

/// The error's causes, `outer: inner: innermost`, without repeats. The outermost message is
/// left out when there are causes: for reqwest it only repeats the URL.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = e.source().or(Some(e));
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// A message for a non-2xx answer without an `error` field.
fn describe_status(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(200).collect();
    if text.is_empty() {
        format!("the gateway answered {status}")
    } else {
        format!("the gateway answered {status}: {text}")
    }
}
