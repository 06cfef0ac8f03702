//! One session with one daemon: minting it from `mcp.json`, its POSTs, ending it. Part of
//! [`super`]; [`super::upstream`] decides when a link is made and replaced.
//!
//! `mcp.json` must name an `http` URL on a loopback address (what the daemon binds): the bridge
//! sends the client's messages and the session token there, and nowhere else. The session is
//! minted with `POST /session` (its `cwd`, its label), and every message is then POSTed with the
//! two headers on the link's own connections ([`super::http1`]): to the daemon's Unix socket
//! when `mcp.json` names one the bridge trusts (a socket owned by the user who wrote
//! `mcp.json`), else to its TCP port.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::json;

use super::http1::{Answer, Pool, PostError};
use super::upstream::UpstreamError;
use crate::http::discovery::read_discovery;

/// The session's `DELETE` when the bridge stops.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// `POST /session`, the replayed handshake, the keep-alive: small requests, answered at once.
const SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The keep-alive and the liveness check.
const PING: &[u8] = br#"{"jsonrpc":"2.0","id":"revka-bridge-ping","method":"ping"}"#;

/// The session header of the two-header flow.
pub(super) const SESSION_HEADER: HeaderName = HeaderName::from_static("x-revka-session");
/// What every `POST /mcp` accepts: JSON, or an SSE stream (a `tools/call`).
pub(super) const POST_ACCEPT: &str = "application/json, text/event-stream";
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// One session with one daemon.
#[derive(Debug)]
pub(super) struct Link {
    /// Which link this is: 1 for the first, one more for each reconnection.
    pub(super) generation: u64,
    /// `http://127.0.0.1:<port>/mcp`, for the server stream.
    pub(super) mcp: reqwest::Url,
    /// The connections every POST goes on.
    pool: Arc<Pool>,
    /// `http://127.0.0.1:<port>`, for `/session`.
    base: String,
    /// The session id, for `DELETE /session/{id}`.
    session_id: String,
    /// `Bearer <token>`, marked sensitive (never logged).
    pub(super) auth: HeaderValue,
    /// The session id as the `X-Revka-Session` value.
    pub(super) session: HeaderValue,
    /// The request line and headers of every POST (but its `Content-Length`), made once.
    head: PostHead,
}

/// A POST's request line and headers. They hold the session token: `Debug` shows their size
/// only.
struct PostHead(Vec<u8>);

impl std::fmt::Debug for PostHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostHead({} bytes, redacted)", self.0.len())
    }
}

impl Link {
    /// Reads `home/mcp.json` and mints a session (labelled `label`, in `cwd`) with the
    /// daemon it names.
    pub(super) async fn open(
        http: &reqwest::Client,
        home: &Path,
        cwd: Option<&Path>,
        label: &str,
        generation: u64,
    ) -> Result<Link, UpstreamError> {
        let shown = home.display().to_string();
        let Some(doc) = read_discovery(home) else {
            return Err(UpstreamError::NoDaemon {
                home: shown,
                detail: String::new(),
            });
        };
        let discovery = home.join(crate::http::discovery::DISCOVERY_FILE);
        let mcp = loopback_url(&doc.url).ok_or_else(|| UpstreamError::NotLoopback {
            path: discovery.display().to_string(),
            url: doc.url.clone(),
        })?;
        let addr = socket_addr(&mcp).ok_or_else(|| UpstreamError::NotLoopback {
            path: discovery.display().to_string(),
            url: doc.url.clone(),
        })?;
        let base = doc
            .url
            .trim_end_matches("/mcp")
            .trim_end_matches('/')
            .to_owned();
        let mut body = json!({ "label": label });
        if let Some(cwd) = cwd {
            body["cwd"] = json!(cwd);
        }
        let answer = http
            .post(format!("{base}/session"))
            .header(CONTENT_TYPE, JSON)
            .body(body.to_string())
            .timeout(SMALL_REQUEST_TIMEOUT)
            .send()
            .await;
        let response = match answer {
            Ok(r) => r,
            Err(e) => {
                let pid = doc.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                return Err(UpstreamError::NoDaemon {
                    home: shown,
                    detail: format!(
                        " ({} names {}{pid}, which does not answer: {})",
                        discovery.display(),
                        doc.url,
                        crate::cli::remote::error_chain(&e)
                    ),
                });
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let refused = |message: String| UpstreamError::Refused {
            url: base.clone(),
            status: status.as_u16(),
            message,
        };
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(refused(message));
        }
        #[derive(serde::Deserialize)]
        struct Minted {
            session_id: String,
            token: String,
        }
        let minted: Minted = serde_json::from_str(&text)
            .map_err(|e| refused(format!("unexpected answer to POST /session: {e}")))?;
        let mut auth = HeaderValue::try_from(format!("Bearer {}", minted.token))
            .map_err(|_| refused("the session token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let session = HeaderValue::try_from(minted.session_id.as_str())
            .map_err(|_| refused("the session id is not a valid header value".into()))?;
        tracing::debug!(generation, url = %doc.url, "session opened");
        let socket = doc
            .socket
            .filter(|socket| trusted_socket(socket, &discovery));
        let pool = Pool::new(addr, socket);
        let head = PostHead(post_head(mcp.path(), pool.host(), &auth, &session));
        Ok(Link {
            generation,
            pool,
            head,
            mcp,
            base,
            session_id: minted.session_id,
            auth,
            session,
        })
    }

    /// Ends the session (best effort, [`DELETE_TIMEOUT`] at most).
    pub(super) async fn end(&self, http: &reqwest::Client) {
        let url = format!("{}/session/{}", self.base, self.session_id);
        let deleted = http
            .delete(url)
            .header(AUTHORIZATION, self.auth.clone())
            .timeout(DELETE_TIMEOUT)
            .send()
            .await;
        match deleted {
            Ok(r) => tracing::debug!(status = %r.status(), "session ended"),
            Err(e) => tracing::debug!(error = %e, "could not end the session"),
        }
    }

    /// POSTs `body` with the session's headers; the answer's body is the caller's to read.
    pub(super) async fn post(&self, body: Bytes) -> Result<Answer, PostError> {
        self.pool.send(&self.head.0, &body).await
    }

    /// POSTs a small message and reads the whole answer: its status, `None` on a failure or
    /// after [`SMALL_REQUEST_TIMEOUT`].
    pub(super) async fn post_small(&self, body: Bytes) -> Option<reqwest::StatusCode> {
        let exchange = async {
            let answer = self.post(body).await.ok()?;
            let status = answer.status;
            answer.drain().await;
            Some(status)
        };
        tokio::time::timeout(SMALL_REQUEST_TIMEOUT, exchange)
            .await
            .ok()
            .flatten()
    }
}

impl Link {
    /// Whether the daemon still answers on this link: a `ping` answered 200.
    pub(super) async fn alive(&self) -> bool {
        self.post_small(Bytes::from_static(PING)).await == Some(reqwest::StatusCode::OK)
    }
}

/// Whether the keep-alive finds the link gone: the daemon refused the connection, or no
/// longer knows the session.
pub(super) async fn link_gone(link: &Link) -> bool {
    let exchange = async {
        match link.post(Bytes::from_static(PING)).await {
            Ok(answer) => {
                let status = answer.status;
                answer.drain().await;
                status == reqwest::StatusCode::UNAUTHORIZED
            }
            Err(PostError::Unreached(_)) => true,
            Err(PostError::Broken(_)) => false,
        }
    };
    tokio::time::timeout(SMALL_REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or(false)
}

/// The request line and headers of a `POST` to `path` with the session's credentials, but
/// its `Content-Length`. The values were checked as header values (no CR, LF or NUL).
fn post_head(path: &str, host: &str, auth: &HeaderValue, session: &HeaderValue) -> Vec<u8> {
    let path = if path.is_empty() { "/mcp" } else { path };
    let mut head = Vec::with_capacity(256);
    for part in [
        b"POST ".as_slice(),
        path.as_bytes(),
        b" HTTP/1.1\r\nhost: ",
        host.as_bytes(),
        b"\r\nauthorization: ",
        auth.as_bytes(),
        b"\r\n",
        SESSION_HEADER.as_str().as_bytes(),
        b": ",
        session.as_bytes(),
        b"\r\ncontent-type: application/json\r\naccept: ",
        POST_ACCEPT.as_bytes(),
        b"\r\n",
    ] {
        head.extend_from_slice(part);
    }
    head
}

/// The URL of a discovery document, if it is `http` on a loopback address (what the daemon
/// binds): the bridge sends the client's messages and its session token there.
fn loopback_url(text: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(text).ok()?;
    let host = url.host_str()?;
    let loopback = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    };
    (url.scheme() == "http" && loopback).then_some(url)
}

/// Whether the Unix socket `mcp.json` (at `discovery`) names may be sent the session: an
/// absolute path to a socket owned by the owner of `mcp.json` (the daemon's user, who made it
/// mode 0600). Anything else is ignored, and the TCP port used.
fn trusted_socket(socket: &Path, discovery: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let (Ok(meta), Ok(doc)) = (
        std::fs::symlink_metadata(socket),
        std::fs::metadata(discovery),
    ) else {
        return false;
    };
    socket.is_absolute() && meta.file_type().is_socket() && meta.uid() == doc.uid()
}

/// The address of a loopback URL (`localhost` is 127.0.0.1).
fn socket_addr(url: &reqwest::Url) -> Option<std::net::SocketAddr> {
    let port = url.port_or_known_default()?;
    let host = url.host_str()?;
    let ip: std::net::IpAddr = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse().ok()?,
        None if host.eq_ignore_ascii_case("localhost") => std::net::Ipv4Addr::LOCALHOST.into(),
        None => host.parse().ok()?,
    };
    Some((ip, port).into())
}
