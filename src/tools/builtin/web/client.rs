//! The network tools' HTTP client: every request of `http_request`, `web_fetch`, `weather` and
//! `web_search_tool` goes through [`Net::send`], which checks the URL with the network rules
//! (`[security] allowed_hosts` / `blocked_hosts`, [`crate::security::net`]) before each hop,
//! follows redirects itself (at most [`MAX_REDIRECTS`], each hop checked again, credentials
//! dropped when the origin changes), and never goes through a proxy. Names are resolved by
//! [`CheckedResolver`], which refuses internal addresses before any connection.
//!
//! Also here: the bounded body reader, text decoding and binary detection, and the error
//! descriptions that never show a secret.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use url::Url;

use crate::security::net::CheckedResolver;
use crate::security::{Policy, Refusal};
use crate::tools::BuiltinError;

/// The most redirects one request follows.
pub(super) const MAX_REDIRECTS: usize = 5;

/// What the network tools say they are.
const USER_AGENT: &str = concat!("revka/", env!("CARGO_PKG_VERSION"), " (built-in web tools)");

/// The request headers kept when a redirect goes to another origin: ones that carry no
/// credential. Every other header the caller set is dropped and named in the result.
const CROSS_ORIGIN_SAFE: [&str; 7] = [
    "accept",
    "accept-language",
    "cache-control",
    "content-language",
    "content-type",
    "pragma",
    "user-agent",
];

/// Headers a caller may not set: the client sets them from the URL and the body.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// The most headers a caller may set, and the longest value.
const MAX_HEADERS: usize = 64;
const MAX_HEADER_VALUE: usize = 8 * 1024;

/// The client, with the policy its resolver and URL checks use.
pub(super) struct Net {
    client: reqwest::Client,
    policy: Arc<Policy>,
}

/// One request as the caller asked for it.
pub(super) struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub follow_redirects: bool,
}

impl Request {
    /// A `GET` of `url` that follows redirects.
    pub fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            follow_redirects: true,
        }
    }
}

/// A response whose headers have arrived; the body is read with [`read_capped`].
pub(super) struct Response {
    pub inner: reqwest::Response,
    /// The URL that answered (after redirects).
    pub url: Url,
    /// The redirects followed: `{status, url}` each.
    pub redirects: Vec<Value>,
    /// Request headers dropped because a redirect changed the origin.
    pub dropped_headers: Vec<String>,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The `Content-Type` header, if it is text.
    pub fn content_type(&self) -> Option<String> {
        self.inner
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

impl Net {
    /// The client of the network tools, checking against `policy`.
    pub fn new(policy: Arc<Policy>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            // Proxy variables must not route a request around the address checks.
            .no_proxy()
            // Redirects are followed by `send`, which checks every hop.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .dns_resolver(Arc::new(CheckedResolver::new(policy.clone())))
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("the HTTP client cannot be built: {}", chain(&e)))?;
        Ok(Self { client, policy })
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Sends `req`, following redirects when it asks to: the URL of every hop is checked
    /// before it is requested (the resolver checks names), at most [`MAX_REDIRECTS`] are
    /// followed, and a hop to another origin (scheme, host or port) drops every header not in
    /// [`CROSS_ORIGIN_SAFE`]. `secrets` are masked in error messages.
    pub async fn send(&self, mut req: Request, secrets: &[&str]) -> Result<Response, BuiltinError> {
        let mut redirects: Vec<Value> = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        loop {
            self.policy.net.check_url(&req.url).map_err(|refusal| {
                BuiltinError::Refused(if redirects.is_empty() {
                    refusal
                } else {
                    Refusal::new(
                        refusal.rule,
                        format!(
                            "redirect {} to {}: {}",
                            redirects.len(),
                            shown(&req.url),
                            refusal.message
                        ),
                    )
                })
            })?;
            let mut builder = self
                .client
                .request(req.method.clone(), req.url.clone())
                .headers(req.headers.clone());
            if let Some(body) = &req.body {
                builder = builder.body(body.clone());
            }
            let inner = builder
                .send()
                .await
                .map_err(|e| failure(&e, &req.method, &req.url, redirects.len(), secrets))?;
            let status = inner.status();
            let location = inner
                .headers()
                .get(header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            let (true, true, Some(location)) = (req.follow_redirects, redirect, location) else {
                return Ok(Response {
                    inner,
                    url: req.url,
                    redirects,
                    dropped_headers: dropped,
                });
            };
            let next = req.url.join(location.trim()).map_err(|e| {
                BuiltinError::Failed(format!(
                    "{} answered {status} with a Location that is not a URL ({e})",
                    shown(&req.url)
                ))
            })?;
            if redirects.len() >= MAX_REDIRECTS {
                return Err(BuiltinError::Failed(format!(
                    "stopped after {MAX_REDIRECTS} redirects (the next was to {})",
                    shown(&next)
                )));
            }
            redirects.push(json!({ "status": status.as_u16(), "url": shown_full(&next) }));
            let to_get = (status == StatusCode::SEE_OTHER && req.method != Method::HEAD)
                || (matches!(status.as_u16(), 301 | 302) && req.method == Method::POST);
            if to_get {
                req.method = Method::GET;
                req.body = None;
                for name in [
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    header::CONTENT_LANGUAGE,
                ] {
                    req.headers.remove(name);
                }
            }
            if next.origin() != req.url.origin() {
                let mut kept = HeaderMap::new();
                for (name, value) in &req.headers {
                    if CROSS_ORIGIN_SAFE.contains(&name.as_str()) {
                        kept.append(name.clone(), value.clone());
                    } else if !dropped.iter().any(|d| d == name.as_str()) {
                        dropped.push(name.as_str().to_owned());
                    }
                }
                req.headers = kept;
            }
            drop(inner);
            req.url = next;
        }
    }
}

/// Reads at most `cap` bytes of `resp`'s body: the bytes and whether more was left unread.
pub(super) async fn read_capped(
    resp: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let hint = resp.content_length().unwrap_or(0).min(1 << 20) as usize;
    let mut buf = Vec::with_capacity(hint.min(cap));
    while let Some(chunk) = resp.chunk().await? {
        let room = cap - buf.len();
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

/// A body read error, described.
pub(super) fn body_failure(e: &reqwest::Error, url: &Url) -> BuiltinError {
    BuiltinError::Failed(format!(
        "reading the response of {} failed: {}",
        shown(url),
        chain(e)
    ))
}

/// Why a request failed: a refusal of the resolver as itself, anything else described with
/// the host and path only (no query, no userinfo) and `secrets` masked.
fn failure(
    e: &reqwest::Error,
    method: &Method,
    url: &Url,
    hop: usize,
    secrets: &[&str],
) -> BuiltinError {
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            return BuiltinError::Refused(if hop == 0 {
                refusal.clone()
            } else {
                Refusal::new(
                    refusal.rule,
                    format!("redirect {hop} to {}: {}", shown(url), refusal.message),
                )
            });
        }
        source = cause.source();
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    BuiltinError::Failed(mask(
        &format!("{method} {} {what}: {}", shown(url), chain(e)),
        secrets,
    ))
}

/// An error's causes, without reqwest's own line (which holds the whole URL).
pub(super) fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        parts.push(if e.is_timeout() {
            "operation timed out".to_owned()
        } else {
            "error".to_owned()
        });
    }
    parts.join(": ")
}

/// `text` with every non-empty secret replaced by `***`.
pub(super) fn mask(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_owned(), |t, s| {
            t.replace(s, revka_mcp::redact::MASK)
        })
}

/// A URL as shown in messages: scheme, host, port and path (no userinfo, query or fragment).
pub(super) fn shown(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// A URL as returned to the caller: without userinfo and fragment.
pub(super) fn shown_full(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    u.to_string()
}

/// The caller's `headers` object as a header map: names and values checked, the headers the
/// client sets itself refused.
pub(super) fn caller_headers(
    headers: Option<&Map<String, Value>>,
) -> Result<HeaderMap, BuiltinError> {
    let mut map = HeaderMap::new();
    let Some(headers) = headers else {
        return Ok(map);
    };
    if headers.len() > MAX_HEADERS {
        return Err(BuiltinError::Arguments(format!(
            "`headers` has {} entries; at most {MAX_HEADERS}",
            headers.len()
        )));
    }
    for (name, value) in headers {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(BuiltinError::Arguments(format!(
                    "`headers.{name}` must be a string"
                )));
            }
        };
        let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            BuiltinError::Arguments(format!("`headers`: {name:?} is not a valid header name"))
        })?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err(BuiltinError::Arguments(format!(
                "`headers.{name}` cannot be set: the client sets it from the URL and the body"
            )));
        }
        if value.len() > MAX_HEADER_VALUE {
            return Err(BuiltinError::Arguments(format!(
                "`headers.{name}` is longer than {MAX_HEADER_VALUE} bytes"
            )));
        }
        let value = HeaderValue::from_str(&value).map_err(|_| {
            BuiltinError::Arguments(format!(
                "`headers.{name}` holds a character a header value cannot (a line break or a \
                 control character)"
            ))
        })?;
        map.append(parsed, value);
    }
    Ok(map)
}

/// The most response headers returned, and the longest value shown.
const MAX_SHOWN_HEADERS: usize = 100;
const MAX_SHOWN_VALUE: usize = 2048;

/// Response headers as a JSON object (names lower case, repeated headers joined by `, `).
pub(super) fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in headers.keys().take(MAX_SHOWN_HEADERS) {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        let (value, _) = super::super::capped(joined.as_bytes(), MAX_SHOWN_VALUE);
        out.insert(name.as_str().to_owned(), Value::String(value));
    }
    Value::Object(out)
}

/// The media type of a `Content-Type` value, lower case (`text/html`).
pub(super) fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .filter(|m| !m.is_empty())
}

/// Whether a media type is text of some kind.
fn textual(media: &str) -> bool {
    media.starts_with("text/")
        || media.ends_with("+json")
        || media.ends_with("+xml")
        || matches!(
            media,
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/ecmascript"
                | "application/x-javascript"
                | "application/x-www-form-urlencoded"
                | "application/x-ndjson"
                | "application/ndjson"
                | "application/yaml"
                | "application/x-yaml"
                | "application/toml"
                | "application/graphql"
                | "application/sql"
                | "image/svg+xml"
        )
}

/// Whether a body is binary: by its media type when that says so, else by its bytes (a NUL,
/// or bytes that are not UTF-8 apart from a sequence cut at the end).
pub(super) fn is_binary(content_type: Option<&str>, bytes: &[u8]) -> bool {
    let sniff = &bytes[..bytes.len().min(8192)];
    if sniff.contains(&0) {
        return true;
    }
    if let Some(media) = media_type(content_type) {
        if textual(&media) {
            return false;
        }
        if media.starts_with("image/")
            || media.starts_with("audio/")
            || media.starts_with("video/")
            || media.starts_with("font/")
            || matches!(
                media.as_str(),
                "application/octet-stream"
                    | "application/pdf"
                    | "application/zip"
                    | "application/gzip"
                    | "application/x-tar"
                    | "application/wasm"
            )
        {
            return true;
        }
    }
    if latin1(content_type) {
        return false;
    }
    match std::str::from_utf8(sniff) {
        Ok(_) => false,
        // A sequence cut at the end (by the cap or the sniff window) is not a sign of binary.
        Err(e) => e.error_len().is_some(),
    }
}

/// Whether the `charset` is ISO-8859-1 or a close relative (decoded byte for byte).
fn latin1(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    ct.split(';').skip(1).any(|p| {
        let Some((k, v)) = p.split_once('=') else {
            return false;
        };
        let v = v.trim().trim_matches('"').to_ascii_lowercase();
        k.trim().eq_ignore_ascii_case("charset")
            && matches!(
                v.as_str(),
                "iso-8859-1" | "latin1" | "iso_8859-1" | "windows-1252" | "cp1252" | "us-ascii"
            )
    })
}

/// A text body as a string: ISO-8859-1 byte for byte when the charset says so, else UTF-8
/// (invalid sequences replaced).
pub(super) fn decode_text(bytes: &[u8], content_type: Option<&str>) -> String {
    if latin1(content_type) {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        // A sequence cut at the end by the cap is dropped, not shown as U+FFFD.
        let end = match std::str::from_utf8(bytes) {
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            _ => bytes.len(),
        };
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_detection() {
        assert!(!is_binary(Some("text/html; charset=utf-8"), b"<p>hi</p>"));
        assert!(!is_binary(Some("application/json"), b"{}"));
        assert!(is_binary(Some("image/png"), b"\x89PNG"));
        assert!(is_binary(Some("text/plain"), b"a\0b"));
        assert!(is_binary(None, b"\xff\xfe\xfd plain?"));
        assert!(!is_binary(None, "héllo".as_bytes()));
        // A UTF-8 sequence cut by the cap is still text.
        let cut = &"héllo".as_bytes()[..2];
        assert!(!is_binary(
            None,
            &[b"x".repeat(9000).as_slice(), cut].concat()
        ));
        assert!(!is_binary(
            Some("text/plain; charset=ISO-8859-1"),
            b"caf\xe9"
        ));
        assert_eq!(
            decode_text(b"caf\xe9", Some("text/plain; charset=\"iso-8859-1\"")),
            "café"
        );
    }

    #[test]
    fn caller_headers_are_checked() {
        let ok = json!({ "X-Api-Key": "k", "Accept": "text/plain", "X-N": 3 });
        let map = caller_headers(ok.as_object()).unwrap();
        assert_eq!(map["x-n"], "3");
        for (bad, says) in [
            (json!({ "Host": "internal" }), "cannot be set"),
            (json!({ "Content-Length": "1" }), "cannot be set"),
            (json!({ "X-A": "a\r\nInjected: 1" }), "line break"),
            (json!({ "bad name": "x" }), "not a valid header name"),
            (json!({ "X-A": ["x"] }), "must be a string"),
        ] {
            let err = caller_headers(bad.as_object()).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn shown_urls_hide_credentials() {
        let url = Url::parse("https://u:secretpw@example.com/p?api_key=abcd#f").unwrap();
        assert_eq!(shown(&url), "https://example.com/p");
        assert_eq!(shown_full(&url), "https://example.com/p?api_key=abcd");
        assert_eq!(mask("key=abcd1234 here", &["abcd1234"]), "key=*** here");
    }
}
