//! The Streamable HTTP transport (MCP 2025-03-26 and later), owned by the MCP connection actor
//! of an `http` (or discovered `url`) server under `root/mcp_servers/mcp:<name>`.
//!
//! - **Sending**: `send` only enqueues. Each message is POSTed by its own task (so concurrent
//!   calls run concurrently), with `Accept: application/json, text/event-stream`, the
//!   configured headers, `Mcp-Session-Id` once the server issued one, and `MCP-Protocol-Version`
//!   once [`Transport::negotiated`] was called. A notification's POST is accepted before any
//!   later message is sent (see [message order](super#message-order)); requests never wait for
//!   each other.
//! - **Answers**: 202/204 carry nothing. A 200 `application/json` body (≤ 4 MiB) holds one
//!   message, or an array of them (tolerated). A 200 `text/event-stream` body is read event by
//!   event (each ≤ 4 MiB) as it arrives, so progress notifications reach the caller before the
//!   result; reading stops at the answer to our request. Events with empty data (priming
//!   events) only carry an id and a `retry`. A stream that ends or breaks before the answer is
//!   resumed (MCP 2025-11-25) if it carried an event id: after the server's `retry` (capped at
//!   30 s; 1 s without one), a GET with `Last-Event-ID` continues it, at most 5 times in a row
//!   without a message; the call's own timeout still ends the call. Without an event id the
//!   call fails. Answers to server requests (`ping`, `roots/list`) are POSTed back.
//! - **Session**: the first `Mcp-Session-Id` response header (on the `initialize` answer) is
//!   kept. HTTP 404 on a request carrying it means the session expired: the original
//!   `initialize` line is POSTed again (its result is not dispatched: the caller had its answer
//!   long ago), the new session id kept, `notifications/initialized` POSTed, and the message
//!   retried once; a second 404 fails it. Concurrent 404s re-initialize once. A new session
//!   may serve other tools (the server may have restarted), so after a re-initialization the
//!   client is handed `notifications/tools/list_changed` and its connection re-reads the list.
//! - **Server stream**: after `negotiated`, a GET opens the stream of server-initiated messages
//!   (`notifications/tools/list_changed`); 405 means the server has none. When the server
//!   ends it, it is reopened after the server's `retry` (capped at 30 s), or without one with
//!   backoff (1 s doubling to 30 s, back to 1 s after a stream that delivered events), as when
//!   it fails, with the `Last-Event-ID` of the same session (never an old session's). A 404
//!   on it re-initializes the session as a POST's does, and the new session's stream opens at
//!   once; once a stream opens after one that failed, the tool list is re-read (a change may
//!   have been announced while it was down).
//! - **OAuth** (with an [`Authorizer`]): each request carries its current bearer token (renewed
//!   first when due); a `401`, or a `403` whose challenge says `insufficient_scope`, goes to
//!   [`Authorizer::challenged`] and the request is sent again, at most
//!   [`MAX_AUTHORIZATIONS`] times; a GET stream's `401` renews the token and reopens it. After
//!   the handshake, a token only a person can replace (and the idle refresher finding one)
//!   closes the client with the login hint. The DELETE carries the current token.
//! - **Close**: every task is cancelled; a known session is ended with a best-effort `DELETE`
//!   (2 s timeout). Dropping the transport closes it.
//!
//! The answer reading lives in `streamable/answer.rs`, re-initialization and the GET stream in
//! `streamable/session.rs`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE,
};
use tokio_util::sync::CancellationToken;

use super::{HttpEndpoint, Sequencer, Ticket, hand_to_client, header_map, http_error, net_error};
use crate::client::{Inbound, Outgoing, Relation, Transport, TransportError};
use crate::oauth::{Authorizer, Challenge, MAX_AUTHORIZATIONS, OAuthError};

mod answer;
mod session;

const SESSION: HeaderName = HeaderName::from_static("mcp-session-id");
const PROTOCOL: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
const POST_ACCEPT: &str = "application/json, text/event-stream";
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A Streamable HTTP transport; see the [module documentation](self).
#[derive(Debug)]
pub struct StreamableHttp {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    /// How errors and logs name the endpoint ([`HttpEndpoint::shown`]).
    shown: String,
    /// The configured headers, or why they are invalid (every send then fails with it).
    headers: Result<HeaderMap, TransportError>,
    http: reqwest::Client,
    inbound: Inbound,
    stop: CancellationToken,
    closed: AtomicBool,
    session: Mutex<Option<HeaderValue>>,
    protocol: Mutex<Option<HeaderValue>>,
    /// The `initialize` request (id, line), replayed when the session expires.
    initialize: Mutex<Option<(u64, Bytes)>>,
    /// Serialises re-initialization, so concurrent 404s re-initialize once.
    reinit: tokio::sync::Mutex<()>,
    order: Sequencer,
    listening: AtomicBool,
    /// OAuth: puts the bearer token on every request and handles 401/403 challenges.
    auth: Option<Arc<Authorizer>>,
}

/// What kind of message a delivery carries.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Request(u64),
    Notification,
    Response,
}

/// Why a POST failed.
enum Failure {
    /// HTTP 404 on a request carrying this session id.
    SessionExpired {
        stale: HeaderValue,
        error: TransportError,
    },
    Other(TransportError),
}

impl Failure {
    fn into_error(self) -> TransportError {
        match self {
            Failure::SessionExpired { error, .. } | Failure::Other(error) => error,
        }
    }
}

/// Handles one message of an answer; returns the id of the response it carried.
type Handler<'a> = &'a mut (dyn FnMut(&[u8]) -> Option<u64> + Send);

impl StreamableHttp {
    /// A transport POSTing to `endpoint.url` with the shared `http` client, feeding `inbound`.
    pub fn new(endpoint: HttpEndpoint, http: reqwest::Client, inbound: Inbound) -> Arc<Self> {
        Self::with_auth(endpoint, http, inbound, None)
    }

    /// [`StreamableHttp::new`], with OAuth by `auth` (see [`crate::oauth`]).
    pub fn with_auth(
        endpoint: HttpEndpoint,
        http: reqwest::Client,
        inbound: Inbound,
        auth: Option<Arc<Authorizer>>,
    ) -> Arc<Self> {
        let inner = Inner {
            auth,
            headers: header_map(&endpoint.headers),
            url: endpoint.url,
            shown: endpoint.shown,
            http,
            inbound,
            stop: CancellationToken::new(),
            closed: AtomicBool::new(false),
            session: Mutex::new(None),
            protocol: Mutex::new(None),
            initialize: Mutex::new(None),
            reinit: tokio::sync::Mutex::new(()),
            order: Sequencer::default(),
            listening: AtomicBool::new(false),
        };
        Arc::new(Self {
            inner: Arc::new(inner),
        })
    }

    /// The session id the server issued, if any.
    pub fn session_id(&self) -> Option<String> {
        let session = self.inner.session();
        session.and_then(|s| s.to_str().ok().map(str::to_owned))
    }
}

impl Transport for StreamableHttp {
    fn send(&self, msg: Outgoing) -> Result<(), TransportError> {
        self.inner.enqueue(msg)
    }

    fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.stop.cancel();
        let Some(session) = self.inner.session() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let headers = self.inner.headers(Some(&session), None, true);
        let request = self.inner.http.delete(&self.inner.url).headers(headers);
        let url = self.inner.shown.clone();
        runtime.spawn(async move {
            match request.timeout(DELETE_TIMEOUT).send().await {
                Ok(resp) => tracing::debug!(%url, status = %resp.status(), "MCP session ended"),
                Err(e) => {
                    let error = net_error(&url, &e);
                    tracing::debug!(%url, %error, "ending the MCP session failed");
                }
            }
        });
    }

    fn negotiated(&self, protocol_version: &str) {
        match HeaderValue::from_str(protocol_version) {
            Ok(v) => *lock(&self.inner.protocol) = Some(v),
            Err(_) => tracing::warn!(
                version = protocol_version,
                "protocol version is not a valid header value"
            ),
        }
        if self.inner.stop.is_cancelled() || self.inner.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(auth) = self.inner.auth.clone() {
            // Keeps the token fresh; a token that died ends the connection with the reason
            // (its actor then finds it needs a login and marks the server failed).
            let (stop, inbound) = (self.inner.stop.clone(), self.inner.inbound.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    dead = auth.run_refresher() => inbound.close(&dead.to_string()),
                }
            });
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let stop = inner.stop.clone();
            tokio::select! {
                () = stop.cancelled() => {}
                () = inner.listen() => {}
            }
        });
    }
}

impl Drop for StreamableHttp {
    fn drop(&mut self) {
        self.close();
    }
}

/// An OAuth failure as a transport error: one a person must resolve is
/// [`TransportError::Unauthorized`] (no restart helps); the rest (an unreachable or broken
/// authorization server) may pass.
pub(crate) fn oauth_error(e: OAuthError) -> TransportError {
    match e {
        OAuthError::NeedsLogin { .. }
        | OAuthError::Authorization(_)
        | OAuthError::Refused { .. } => TransportError::Unauthorized(e.to_string()),
        OAuthError::Protocol(_) | OAuthError::Store(_) | OAuthError::NotRequired(_) => {
            TransportError::Protocol(format!("OAuth: {e}"))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn session(&self) -> Option<HeaderValue> {
        lock(&self.session).clone()
    }

    /// The headers of one request: configured ones first, the protocol's own on top.
    fn headers(
        &self,
        session: Option<&HeaderValue>,
        accept: Option<&'static str>,
        protocol: bool,
    ) -> HeaderMap {
        let mut h = self.headers.as_ref().cloned().unwrap_or_default();
        if let Some(bearer) = self.auth.as_ref().and_then(|a| a.current_header()) {
            h.insert(AUTHORIZATION, bearer);
        }
        if let Some(accept) = accept {
            h.insert(ACCEPT, HeaderValue::from_static(accept));
        }
        if let Some(session) = session {
            h.insert(SESSION, session.clone());
        }
        if let Some(version) = protocol.then(|| lock(&self.protocol).clone()).flatten() {
            h.insert(PROTOCOL, version);
        }
        h
    }

    /// Keeps the session id of `resp`: the first one seen, or (re-initializing) the new one.
    fn capture_session(&self, resp: &reqwest::Response, replace: bool) {
        let mut session = lock(&self.session);
        if replace || session.is_none() {
            let issued = resp.headers().get(SESSION).cloned();
            if issued.is_some() || replace {
                *session = issued;
            }
        }
    }

    fn enqueue(self: &Arc<Self>, msg: Outgoing) -> Result<(), TransportError> {
        if self.stop.is_cancelled() {
            return Err(TransportError::Closed(
                "the HTTP transport was closed".into(),
            ));
        }
        if let Err(e) = &self.headers {
            return Err(e.clone());
        }
        let (kind, line) = match msg {
            Outgoing::Request { id, line } => (Kind::Request(id), Bytes::from(line)),
            Outgoing::Notification { line } => (Kind::Notification, Bytes::from(line)),
            Outgoing::Response { line } => (Kind::Response, Bytes::from(line)),
        };
        if let Kind::Request(id) = kind {
            self.remember_initialize(id, &line);
        }
        let ticket = self.order.ticket(matches!(kind, Kind::Notification));
        let this = self.clone();
        tokio::spawn(async move {
            let stop = this.stop.clone();
            tokio::select! {
                () = stop.cancelled() => {}
                () = this.deliver(kind, line, ticket) => {}
            }
        });
        Ok(())
    }

    fn remember_initialize(&self, id: u64, line: &Bytes) {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            method: Cow<'a, str>,
        }
        let mut initialize = lock(&self.initialize);
        if initialize.is_none()
            && serde_json::from_slice::<Head<'_>>(line).is_ok_and(|h| h.method == "initialize")
        {
            *initialize = Some((id, line.clone()));
        }
    }

    async fn deliver(self: &Arc<Self>, kind: Kind, line: Bytes, mut ticket: Ticket) {
        ticket.wait().await;
        let id = match kind {
            Kind::Request(id) => Some(id),
            _ => None,
        };
        let result = match self.post(&line, id, &mut ticket).await {
            Err(Failure::SessionExpired { stale, .. }) => match self.reinitialize(&stale).await {
                Ok(()) => self
                    .post(&line, id, &mut ticket)
                    .await
                    .map_err(Failure::into_error),
                Err(e) => {
                    tracing::warn!(server = %self.inbound.server(), url = %self.shown, error = %e, "MCP session expired and re-initializing failed");
                    Err(e)
                }
            },
            other => other.map_err(Failure::into_error),
        };
        ticket.release();
        if let Err(error) = result {
            match kind {
                Kind::Request(id) => self.inbound.fail(id, error),
                Kind::Notification => {
                    tracing::warn!(server = %self.inbound.server(), %error, "notification not delivered")
                }
                Kind::Response => {
                    tracing::warn!(server = %self.inbound.server(), %error, "reply to a server request not delivered")
                }
            }
        }
    }

    /// POSTs one message and handles the answer.
    async fn post(
        self: &Arc<Self>,
        line: &Bytes,
        id: Option<u64>,
        ticket: &mut Ticket,
    ) -> Result<(), Failure> {
        let session = self.session();
        let mut authorizations = 0;
        let (resp, status) = loop {
            if let Some(auth) = &self.auth {
                auth.bearer()
                    .await
                    .map_err(|e| Failure::Other(oauth_error(e)))?;
            }
            let mut headers = self.headers(session.as_ref(), Some(POST_ACCEPT), true);
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let sent = headers.get(AUTHORIZATION).cloned();
            let request = self
                .http
                .post(&self.url)
                .headers(headers)
                .body(line.clone());
            let resp = request
                .send()
                .await
                .map_err(|e| Failure::Other(net_error(&self.shown, &e)))?;
            let status = resp.status();
            let Some(auth) = &self.auth else {
                break (resp, status);
            };
            let www = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let step_up = status == StatusCode::FORBIDDEN
                && www
                    .as_deref()
                    .and_then(Challenge::parse)
                    .is_some_and(|c| c.insufficient_scope());
            if status != StatusCode::UNAUTHORIZED && !step_up {
                break (resp, status);
            }
            if authorizations >= MAX_AUTHORIZATIONS {
                let error = http_error(resp, &self.shown).await;
                return Err(Failure::Other(TransportError::Unauthorized(format!(
                    "{error} (still refused after {authorizations} new authorizations; {})",
                    auth.hint()
                ))));
            }
            authorizations += 1;
            if let Err(e) = auth
                .challenged(status.as_u16(), www.as_deref(), sent.as_ref())
                .await
            {
                // The token is dead and only a person can get a new one: after the handshake,
                // the connection ends with the reason (its actor then marks the server failed).
                if status == StatusCode::UNAUTHORIZED
                    && matches!(e, OAuthError::NeedsLogin { .. })
                    && self.listening.load(Ordering::Acquire)
                {
                    self.inbound.close(&e.to_string());
                }
                return Err(Failure::Other(oauth_error(e)));
            }
        };
        if let Some(stale) = session.filter(|_| status == StatusCode::NOT_FOUND) {
            let error = http_error(resp, &self.shown).await;
            return Err(Failure::SessionExpired { stale, error });
        }
        if !status.is_success() {
            return Err(Failure::Other(http_error(resp, &self.shown).await));
        }
        ticket.release(); // accepted: later messages may go
        self.capture_session(&resp, false);
        let this = self.clone();
        // What this POST's stream carries besides its answer serves the request it carried.
        let relation = id.map_or(Relation::None, Relation::Call);
        let mut dispatch = move |bytes: &[u8]| {
            hand_to_client(&this.inbound, bytes, relation, |reply| this.reply(reply))
        };
        self.read_answer(resp, id, &mut dispatch)
            .await
            .map_err(Failure::Other)
    }

    fn reply(self: &Arc<Self>, reply: Outgoing) {
        if let Err(e) = self.enqueue(reply) {
            tracing::debug!(server = %self.inbound.server(), error = %e, "reply to a server request dropped");
        }
    }
}
