//! The HTTP transports of the MCP client: Streamable HTTP, legacy HTTP+SSE, and `url`
//! discovery.
//!
//! They are siblings of the [stdio transport](crate::stdio): each implements
//! [`Transport`](crate::client::Transport) and hands everything the server sends to the
//! client's [`Inbound`]. A transport is owned by the MCP connection actor of its server, under
//! `root/mcp_servers/mcp:<name>`; the actor creates it, drives `initialize` through an
//! [`McpClient`](crate::client::McpClient), calls
//! [`Transport::negotiated`](crate::client::Transport::negotiated), and closes it on stop.
//!
//! - [`streamable`]: Streamable HTTP (MCP 2025-03-26 and later): one POST per message, answers
//!   as JSON or as a per-request event stream, an `Mcp-Session-Id` session re-established once
//!   on HTTP 404, and a GET stream for server-initiated messages.
//! - [`legacy_sse`]: the HTTP+SSE transport of MCP 2024-11-05: one long GET event stream
//!   carrying every answer, messages POSTed to the URL of its `endpoint` event.
//! - [`discovery`]: the `url` transport: reads a well-known JSON document naming the endpoints,
//!   and says when a Streamable HTTP failure means "fall back to SSE".
//!
//! Streamable HTTP may carry OAuth: given an [`Authorizer`](crate::oauth::Authorizer)
//! ([`StreamableHttp::with_auth`]), it sends the bearer token and hands `401`/`403
//! insufficient_scope` answers to it (see [`crate::oauth`]).
//!
//! Shared rules, enforced here: one [`reqwest::Client`] is passed in and reused (connection
//! pooling, proxies and TLS roots are configured once by the daemon; give it a connect timeout,
//! never a total request timeout, which would cut long event streams); the configured headers go
//! on every request, with the protocol's own headers (`Accept`, `Content-Type`,
//! `Mcp-Session-Id`, `MCP-Protocol-Version`) taking precedence; every body read from the network
//! is size-capped ([`MAX_JSON_BODY`], [`MAX_SSE_EVENT`]) while it is read; errors and log lines
//! name the URL (`connection refused to http://…`, `HTTP 401 from …: <body>`) as shown: the
//! config's unexpanded form for a configured endpoint ([`HttpEndpoint::shown`]), and always
//! masked by [`crate::redact::url`] (userinfo and query values), since they become failure
//! reasons in `/api/health`, the daemon log and the run log. reqwest's own ` for url (…)` is cut
//! from its messages.
//!
//! # Message order
//!
//! `send` never waits. Each message is delivered by its own task, so requests
//! never wait for each other; a notification, though, is delivered (its POST accepted) before
//! any message enqueued after it starts, so `notifications/initialized` reaches the server before
//! the `tools/list` that follows it.

pub mod discovery;
pub mod legacy_sse;
pub mod streamable;

#[cfg(test)]
mod tests;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use futures::future::Shared;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::oneshot;
use url::Url;

pub use discovery::{Discovered, discover, is_not_streamable};
pub use legacy_sse::{LegacySse, connect as connect_legacy_sse};
pub use streamable::StreamableHttp;

use crate::client::{Inbound, Outgoing, Relation, TransportError};
use crate::jsonrpc::{Incoming, parse_message};
use crate::redact;
use crate::sse::{SseError, SseEvent, SseParser};

/// The cap on a JSON response body.
pub const MAX_JSON_BODY: usize = 4 << 20;
/// The cap on one server-sent event (the parser's line and data limit).
pub const MAX_SSE_EVENT: usize = 4 << 20;
/// How much of an error response's body is quoted in [`TransportError::Http`].
const ERROR_BODY_PREVIEW: usize = 500;

/// Where an HTTP MCP server lives.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpEndpoint {
    /// The endpoint URL (`http` or `https`).
    pub url: String,
    /// Headers sent on every request (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// How errors and log lines name the endpoint: for a configured server its config form
    /// (`${VAR}` unexpanded), masked by [`crate::redact::url`]; never the URL's secrets.
    pub shown: String,
}

impl HttpEndpoint {
    /// An endpoint at `url`, shown as [`crate::redact::url`] shows it.
    pub fn new(url: impl Into<String>, headers: Vec<(String, String)>) -> Self {
        let url = url.into();
        Self {
            shown: redact::url(&url),
            url,
            headers,
        }
    }
}

/// Header values are never printed, nor the URL's secrets: only [`HttpEndpoint::shown`].
impl std::fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpEndpoint")
            .field("url", &self.shown)
            .field("headers", &names)
            .finish()
    }
}

/// The configured headers as a header map, or which one is invalid. Values are marked
/// sensitive: `Debug` prints them as `Sensitive`, and HTTP/2 never indexes them.
pub(crate) fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, TransportError> {
    let mut map = HeaderMap::with_capacity(headers.len() + 4);
    for (name, value) in headers {
        let invalid =
            |why: String| TransportError::Protocol(format!("invalid header `{name}`: {why}"));
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| invalid(e.to_string()))?;
        let mut value = HeaderValue::from_str(value.trim()).map_err(|e| invalid(e.to_string()))?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

/// Parses an absolute `http`/`https` URL with a host, dropping its fragment (never sent over
/// HTTP). Whitespace or control characters inside it are refused, not percent-encoded: they
/// mean a malformed document or event, not a URL.
pub(crate) fn parse_url(text: &str) -> Result<Url, String> {
    http_url(text, Url::parse(text.trim()))
}

/// Resolves `reference` against `base` (RFC 3986 §5.2: absolute, scheme-relative, absolute
/// and relative paths with dot segments removed, query-only, empty) into an absolute
/// `http`/`https` URL without a fragment.
pub(crate) fn resolve_url(base: &Url, reference: &str) -> Result<Url, String> {
    http_url(reference, base.join(reference.trim()))
}

/// The checks of [`parse_url`] and [`resolve_url`] on a parse of `text`. Errors show `text`
/// masked ([`crate::redact::url`]): it may be a configured URL.
fn http_url(text: &str, parsed: Result<Url, url::ParseError>) -> Result<Url, String> {
    let trimmed = text.trim();
    let shown = || redact::url(trimmed);
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{}` contains whitespace or control characters",
            shown()
        ));
    }
    let mut url = parsed.map_err(|e| format!("`{}` is not a valid URL: {e}", shown()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme `{}` in `{}` (expected http or https)",
            url.scheme(),
            shown()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{}` has no host", shown()));
    }
    url.set_fragment(None);
    Ok(url)
}

/// A network failure as a precise error naming the URL as shown (`shown`: an
/// [`HttpEndpoint::shown`], or a URL, which is masked here by [`crate::redact::url`]).
pub(crate) fn net_error(shown: &str, err: &reqwest::Error) -> TransportError {
    let url = redact::url(shown);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut innermost = without_url(err);
    while let Some(e) = source {
        let io = e.downcast_ref::<std::io::Error>();
        if io.is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return TransportError::Io(format!("connection refused to {url}"));
        }
        if !std::ptr::addr_eq(e, err) {
            innermost = e.to_string();
        }
        source = e.source();
    }
    TransportError::Io(if err.is_timeout() {
        format!("request to {url} timed out")
    } else if err.is_connect() {
        format!("could not connect to {url}: {innermost}")
    } else {
        format!("request to {url} failed: {innermost}")
    })
}

/// A reqwest error's own message without the ` for url (…)` it appends: that is the real
/// URL, secrets included.
fn without_url(err: &reqwest::Error) -> String {
    let text = err.to_string();
    match err.url() {
        Some(url) => text.replace(&format!(" for url ({url})"), ""),
        None => text,
    }
}

/// An error status as [`TransportError::Http`], quoting the start of the body; the URL is
/// named as [`net_error`] names it.
pub(crate) async fn http_error(mut resp: reqwest::Response, shown: &str) -> TransportError {
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while body.len() < 4 * ERROR_BODY_PREVIEW {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let mut text: String = text.trim().replace(['\r', '\n'], " ");
    if text.len() > ERROR_BODY_PREVIEW {
        let mut end = ERROR_BODY_PREVIEW;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    if text.is_empty() {
        text.push_str("(empty body)");
    }
    TransportError::Http {
        status,
        url: redact::url(shown),
        body: text,
    }
}

/// `4 MiB` for a power-of-two-ish size, else bytes.
fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads a whole body, failing as soon as it exceeds `limit` (checked on `Content-Length` first).
/// Errors name the URL as shown (`shown`, masked by [`crate::redact::url`]).
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
    shown: &str,
) -> Result<Vec<u8>, TransportError> {
    let url = redact::url(shown);
    let url = url.as_str();
    let too_large = || {
        TransportError::Protocol(format!(
            "response from {url} is larger than the {} limit",
            size(limit)
        ))
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| read_error(url, &e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn read_error(shown: &str, err: &reqwest::Error) -> TransportError {
    let mut message = without_url(err);
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        message = e.to_string();
        source = e.source();
    }
    let url = redact::url(shown);
    TransportError::Io(format!("reading the response from {url} failed: {message}"))
}

/// The response's media type, lowercased, without parameters (`""` when absent).
pub(crate) fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Events read from a streaming response body, through a bounded [`SseParser`].
pub(crate) struct EventStream {
    resp: reqwest::Response,
    parser: SseParser,
    url: String,
    oversized: u64,
    done: bool,
}

impl EventStream {
    /// Reads `resp` with `parser` (kept across reconnections for `Last-Event-ID`); `shown`
    /// names the URL in errors and log lines (masked by [`crate::redact::url`]).
    pub(crate) fn new(resp: reqwest::Response, parser: SseParser, shown: &str) -> Self {
        Self {
            resp,
            parser,
            url: redact::url(shown),
            oversized: 0,
            done: false,
        }
    }

    /// The next event; `Ok(None)` when the stream ends. Oversized events are logged, counted
    /// and skipped.
    pub(crate) async fn next(&mut self) -> Result<Option<SseEvent>, TransportError> {
        loop {
            while let Some(event) = self.parser.next_event() {
                match event {
                    Ok(event) => return Ok(Some(event)),
                    Err(SseError::EventTooLarge { limit }) => {
                        self.oversized += 1;
                        tracing::warn!(url = %self.url, limit, "server-sent event over the size limit skipped");
                    }
                }
            }
            if self.done {
                return Ok(None);
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.parser.push(&chunk),
                Ok(None) => {
                    self.parser.finish();
                    self.done = true;
                }
                Err(e) => {
                    self.parser.finish();
                    self.done = true;
                    return Err(read_error(&self.url, &e));
                }
            }
        }
    }

    /// How many events were skipped for exceeding the size limit.
    pub(crate) fn oversized(&self) -> u64 {
        self.oversized
    }

    /// The parser back, with the stream's last event id.
    pub(crate) fn into_parser(self) -> SseParser {
        self.parser
    }
}

/// Whether an event carries a JSON-RPC message (`event` absent or `message`, and data that is
/// not blank: an event with empty data is a priming event, sent to hand the client an event id
/// and a `retry` before anything else).
pub(crate) fn is_message(event: &SseEvent) -> bool {
    matches!(event.event.as_deref(), None | Some("message")) && !event.data.trim().is_empty()
}

/// The longest a server's `retry` is honoured: a larger one is cut to this.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// How long to wait before reconnecting an event stream: the server's last `retry` (capped at
/// [`MAX_RETRY`]), or `otherwise` when it sent none.
pub(crate) fn retry_delay(parser: &SseParser, otherwise: Duration) -> Duration {
    parser
        .retry()
        .map_or(otherwise, |ms| Duration::from_millis(ms).min(MAX_RETRY))
}

/// Hands one JSON-RPC message to the client, which relates to our requests as `relation` says;
/// a reply (the answer to a server request) goes to `reply`. Returns the id of the response the
/// message carried, if it was one.
pub(crate) fn hand_to_client(
    inbound: &Inbound,
    bytes: &[u8],
    relation: Relation,
    reply: impl FnOnce(Outgoing),
) -> Option<u64> {
    match parse_message(bytes) {
        Ok(msg) => {
            let answered = match &msg {
                Incoming::Response(r) => r.id.as_ref().and_then(|id| id.as_u64()),
                _ => None,
            };
            if let Some(out) = inbound.dispatch_on(msg, relation) {
                reply(out);
            }
            answered
        }
        Err(_) => {
            // Not JSON-RPC: `dispatch_line` logs and counts it, and never replies.
            let _ = inbound.dispatch_line(bytes);
            None
        }
    }
}

/// The completion of a notification's delivery, awaited by later messages.
type Barrier = Shared<oneshot::Receiver<()>>;

/// Orders deliveries: every message waits for the last notification enqueued before it.
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    last_notification: Mutex<Option<Barrier>>,
}

/// One message's place in the order: what to wait for, and (for a notification) what to
/// release once it is delivered.
#[derive(Debug)]
pub(crate) struct Ticket {
    after: Option<Barrier>,
    release: Option<oneshot::Sender<()>>,
}

impl Sequencer {
    /// Takes a place in the order; call synchronously in `send`.
    pub(crate) fn ticket(&self, notification: bool) -> Ticket {
        let mut last = self
            .last_notification
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if notification {
            let (tx, rx) = oneshot::channel();
            Ticket {
                after: last.replace(rx.shared()),
                release: Some(tx),
            }
        } else {
            Ticket {
                after: last.clone(),
                release: None,
            }
        }
    }
}

impl Ticket {
    /// Waits until the notifications enqueued before this message were delivered (or failed).
    pub(crate) async fn wait(&mut self) {
        if let Some(after) = self.after.take() {
            let _ = after.await;
        }
    }

    /// Lets later messages go (this notification was accepted, or failed). Dropping the ticket
    /// does the same.
    pub(crate) fn release(&mut self) {
        self.release.take();
    }
}
