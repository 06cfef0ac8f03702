//! The load generator's HTTP side: one keep-alive HTTP/1.1 connection per MCP session (hyper's
//! client connection, no pool), speaking Revka's own session API or plain Streamable HTTP (for
//! Revka's standard path, supergateway and mcp-proxy).

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One HTTP/1.1 connection.
pub struct HttpConn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends a request; the response's body is left to the caller.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.sender.ready().await?;
        Ok(self.sender.send_request(req.body(Full::new(body))?).await?)
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let resp = self.send(method, path, headers, body).await?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }
}

/// Whether a `tools/call` answer (JSON or SSE) holds a successful result.
pub fn is_success(body: &[u8]) -> bool {
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    has(b"\"result\":") && !has(b"\"isError\":true")
}

/// An MCP session of the load generator.
pub enum McpSession {
    /// Revka's `/mcp`: `POST /session`, then the bearer token and `X-Revka-Session` header.
    Revka {
        conn: HttpConn,
        id: String,
        auth: String,
    },
    /// Standard Streamable HTTP: `initialize`, then the `Mcp-Session-Id` header (if any).
    Streamable {
        conn: HttpConn,
        path: String,
        session: Option<String>,
        /// `Bearer <client token>`, sent on every request, when the server needs one.
        auth: Option<String>,
        /// Whether later requests carry `MCP-Protocol-Version`, as the SDK clients send it.
        versioned: bool,
    },
}

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

impl McpSession {
    /// A new Revka session with `tools` activated (deferred loading).
    pub async fn revka(addr: SocketAddr, tools: &[&str]) -> anyhow::Result<Self> {
        let mut conn = HttpConn::connect(addr).await?;
        let (status, _, body) = conn
            .request(Method::POST, "/session", &[], Bytes::from_static(b"{}"))
            .await?;
        if status != StatusCode::OK {
            bail!("POST /session: {status} {}", String::from_utf8_lossy(&body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let id = v["session_id"].as_str().context("session_id")?.to_owned();
        let auth = format!("Bearer {}", v["token"].as_str().context("token")?);
        let mut session = Self::Revka { conn, id, auth };
        if !tools.is_empty() {
            session.activate(tools).await?;
        }
        Ok(session)
    }

    /// Activates deferred `tools` with `tool_search`.
    async fn activate(&mut self, tools: &[&str]) -> anyhow::Result<()> {
        let query = format!("select:{}", tools.join(","));
        let args = serde_json::json!({ "query": query }).to_string();
        let body = self.call_raw(0, "tool_search", &args).await?;
        if !is_success(&body) || String::from_utf8_lossy(&body).contains("Not found") {
            bail!(
                "cannot activate {tools:?}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// A new Streamable HTTP session at `path`, initialised.
    pub async fn streamable(addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        Self::streamable_with(addr, path, None).await
    }

    /// A session on Revka's standard path (`initialize` with a client token, then
    /// `Mcp-Session-Id`, `MCP-Protocol-Version` and the token on each request, as the SDK
    /// clients do), with `tools` activated.
    pub async fn revka_standard(
        addr: SocketAddr,
        token: &str,
        tools: &[&str],
    ) -> anyhow::Result<Self> {
        let mut session = Self::streamable_with(addr, "/mcp", Some(token)).await?;
        if !tools.is_empty() {
            session.activate(tools).await?;
        }
        Ok(session)
    }

    /// A Streamable HTTP session at `path`, with the client token `token` if given.
    async fn streamable_with(
        addr: SocketAddr,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut conn = HttpConn::connect(addr).await?;
        let auth = token.map(|t| format!("Bearer {t}"));
        let init = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "revka-bench", "version": env!("CARGO_PKG_VERSION") },
            },
        });
        let mut headers = vec![ACCEPT];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        let (status, headers, body) = conn
            .request(Method::POST, path, &headers, Bytes::from(init.to_string()))
            .await?;
        if status != StatusCode::OK || !is_success(&body) {
            bail!(
                "initialize at {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let session = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut session = Self::Streamable {
            conn,
            path: path.to_owned(),
            session,
            versioned: auth.is_some(),
            auth,
        };
        let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let (status, _, _) = session.post(note).await?;
        if !status.is_success() {
            bail!("notifications/initialized at {path}: {status}");
        }
        Ok(session)
    }

    async fn post(&mut self, body: Bytes) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        match self {
            Self::Revka { conn, id, auth } => {
                let headers = [
                    ("authorization", auth.as_str()),
                    ("x-revka-session", id.as_str()),
                ];
                conn.request(Method::POST, "/mcp", &headers, body).await
            }
            Self::Streamable {
                conn,
                path,
                session,
                auth,
                versioned,
            } => {
                let mut headers = vec![ACCEPT];
                if let Some(s) = session {
                    headers.push(("mcp-session-id", s.as_str()));
                    if *versioned {
                        headers.push(("mcp-protocol-version", "2025-06-18"));
                    }
                }
                if let Some(auth) = auth {
                    headers.push(("authorization", auth.as_str()));
                }
                conn.request(Method::POST, path, &headers, body).await
            }
        }
    }

    /// A `tools/call`: the raw answer (JSON or SSE).
    pub async fn call_raw(
        &mut self,
        id: u64,
        tool: &str,
        arguments: &str,
    ) -> anyhow::Result<Bytes> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
        );
        let (status, _, body) = self.post(Bytes::from(body)).await?;
        if status != StatusCode::OK {
            bail!(
                "tools/call {tool}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    /// A `tools/call` that must succeed.
    pub async fn call(&mut self, id: u64, tool: &str, arguments: &str) -> anyhow::Result<()> {
        let body = self.call_raw(id, tool, arguments).await?;
        if !is_success(&body) {
            bail!(
                "tools/call {tool} failed: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// The session's connection (for requests of other kinds).
    pub fn conn(&mut self) -> &mut HttpConn {
        match self {
            Self::Revka { conn, .. } | Self::Streamable { conn, .. } => conn,
        }
    }

    /// Revka's session id and bearer header value.
    pub fn revka_credentials(&self) -> Option<(&str, &str)> {
        match self {
            Self::Revka { id, auth, .. } => Some((id, auth)),
            Self::Streamable { .. } => None,
        }
    }
}
