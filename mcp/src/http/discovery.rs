//! The `url` transport's discovery step, run by the MCP connection actor of a `url` server
//! (under `root/mcp_servers/mcp:<name>`) before it picks a transport.
//!
//! [`discover`] GETs a JSON document (≤ 1 MiB, any content type: static hosts often serve
//! `.well-known` files as `text/plain`). The configured URL is the document itself; a URL
//! with no path (`https://example.com` or `https://example.com/`) means `https://example.com/.well-known/mcp`. Accepted
//! shapes, first match wins per kind:
//!
//! 1. `{"endpoints": {"streamable_http" | "streamableHttp" | "streamable-http" | "http": URL,
//!    "sse": URL}}`: endpoints by kind;
//! 2. an MCP server card, `{"remotes": [{"type": "streamable-http" | "sse", "url": URL}, …]}`:
//!    the first remote of each kind;
//! 3. `{"endpoint": URL}`, `{"url": URL}` or `{"mcp_endpoint": URL}`: an endpoint of unknown
//!    kind, used only when the shapes above name none. It counts as Streamable HTTP with an SSE
//!    fallback on the same URL (the spec's backwards-compatibility procedure).
//!
//! URLs may be relative; they are resolved against the document's final URL (after
//! redirects). They may point at another origin (a card on `example.com` naming
//! `mcp.example.com` is normal, and the operator chose to trust the document), but an `http`
//! endpoint named by an `https` document is refused: the configured headers would travel in
//! clear text.
//!
//! [`is_not_streamable`] is the fallback rule: after Streamable HTTP fails with it on
//! `initialize`, the connection tries [`legacy_sse::connect`](super::legacy_sse::connect).

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use serde_json::Value;

use super::{HttpEndpoint, header_map, http_error, net_error, parse_url, read_capped, resolve_url};
use crate::client::TransportError;

/// The cap on the discovery document.
pub const MAX_DOCUMENT: usize = 1 << 20;

/// The endpoints a discovery document names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// A Streamable HTTP endpoint: try it first.
    pub streamable: Option<String>,
    /// A legacy SSE endpoint: use it if there is no Streamable HTTP one, or if that one
    /// [is not streamable](is_not_streamable).
    pub sse: Option<String>,
}

/// Fetches and reads the discovery document of `endpoint` (see the
/// [module documentation](self)); errors name it as [`HttpEndpoint::shown`] does.
pub async fn discover(
    endpoint: &HttpEndpoint,
    http: &reqwest::Client,
    timeout: Duration,
) -> Result<Discovered, TransportError> {
    let doc_url = document_url(&endpoint.url)
        .map_err(|e| TransportError::Protocol(format!("invalid URL {}: {e}", endpoint.shown)))?;
    let doc_shown = if doc_url == endpoint.url {
        endpoint.shown.clone()
    } else {
        format!("{}{WELL_KNOWN}", endpoint.shown.trim_end_matches('/'))
    };
    let doc_shown = doc_shown.as_str();
    let mut headers = header_map(&endpoint.headers)?;
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    let fetch = async {
        let resp = http.get(&doc_url).headers(headers).send().await;
        let resp = resp.map_err(|e| net_error(doc_shown, &e))?;
        if !resp.status().is_success() {
            return Err(http_error(resp, doc_shown).await);
        }
        let base = resp.url().to_string();
        let body = read_capped(resp, MAX_DOCUMENT, doc_shown).await?;
        Ok((base, body))
    };
    let (base, body) = tokio::time::timeout(timeout, fetch).await.map_err(|_| {
        TransportError::Io(format!(
            "discovery document {doc_shown} not read within {:.1}s",
            timeout.as_secs_f64()
        ))
    })??;
    let doc: Value = serde_json::from_slice(&body).map_err(|e| {
        TransportError::Protocol(format!("discovery document {doc_shown} is not JSON: {e}"))
    })?;
    parse_document(&doc, &base)
        .map_err(|e| TransportError::Protocol(format!("discovery document {doc_shown}: {e}")))
}

/// Where the document of a URL without a path is.
const WELL_KNOWN: &str = "/.well-known/mcp";

/// The document's URL: `url` itself, or its `/.well-known/mcp` when it has no path.
fn document_url(url: &str) -> Result<String, String> {
    let mut parsed = parse_url(url)?;
    if parsed.path() == "/" && parsed.query().is_none() {
        parsed.set_path(WELL_KNOWN);
    }
    Ok(parsed.into())
}

/// A non-blank string member.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// Reads the endpoints out of a discovery document fetched from `base`.
pub(crate) fn parse_document(doc: &Value, base: &str) -> Result<Discovered, String> {
    let mut streamable = None;
    let mut sse = None;
    if let Some(endpoints) = doc.get("endpoints") {
        streamable = [
            "streamable_http",
            "streamableHttp",
            "streamable-http",
            "http",
        ]
        .iter()
        .find_map(|k| text(endpoints.get(k)));
        sse = text(endpoints.get("sse"));
    }
    if let Some(remotes) = doc.get("remotes").and_then(Value::as_array) {
        for remote in remotes {
            let kind = text(remote.get("type")).map(str::to_ascii_lowercase);
            let target = match kind.as_deref() {
                Some("streamable-http" | "streamable_http" | "streamablehttp" | "http") => {
                    &mut streamable
                }
                Some("sse") => &mut sse,
                _ => continue,
            };
            if target.is_none() {
                *target = text(remote.get("url"));
            }
        }
    }
    if streamable.is_none() && sse.is_none() {
        let generic = ["endpoint", "url", "mcp_endpoint"]
            .iter()
            .find_map(|k| text(doc.get(k)));
        (streamable, sse) = (generic, generic);
    }
    if streamable.is_none() && sse.is_none() {
        return Err(
            "names no MCP endpoint (expected `endpoint`, `url`, `mcp_endpoint`, \
                    `endpoints` or a server card's `remotes`)"
                .into(),
        );
    }
    let base = parse_url(base)?;
    let resolve = |found: Option<&str>| -> Result<Option<String>, String> {
        let Some(found) = found else { return Ok(None) };
        let resolved = resolve_url(&base, found)?;
        if base.scheme() == "https" && resolved.scheme() == "http" {
            return Err(format!(
                "refusing the plain-http endpoint {} named by an https document",
                crate::redact::url(resolved.as_str())
            ));
        }
        Ok(Some(resolved.into()))
    };
    Ok(Discovered {
        streamable: resolve(streamable)?,
        sse: resolve(sse)?,
    })
}

/// Whether a Streamable HTTP failure means the server does not speak it, so the connection
/// should fall back to legacy SSE: HTTP 404, 405 or 415 (what SSE-only servers answer a POST
/// to their URL with), or a POST answered with an SSE `endpoint` event. Authentication errors,
/// 5xx and network failures are not: falling back would only hide them.
pub fn is_not_streamable(err: &TransportError) -> bool {
    matches!(
        err,
        TransportError::Http {
            status: 404 | 405 | 415,
            ..
        } | TransportError::NotStreamable(_)
    )
}
