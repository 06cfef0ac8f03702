//! The legacy HTTP+SSE transport (MCP 2024-11-05), owned by the MCP connection actor of an
//! `sse` server (or of an `http`/`url` server that turned out not to speak Streamable HTTP)
//! under `root/mcp_servers/mcp:<name>`.
//!
//! [`connect`] GETs the SSE URL (`Accept: text/event-stream`) and waits, within its timeout, for
//! the `endpoint` event; its data is resolved against the SSE URL (a relative path, or an
//! absolute URL). Every message is then POSTed there by its own task (202 or 200 expected, any
//! error status fails the request; notifications keep their order, as in
//! [`http`](super)). All answers, notifications and server requests arrive on the one stream as
//! `message` events and go to the client's [`Inbound`]. When the stream ends or breaks after
//! an event that carried an id, it is reopened after the server's `retry` (capped at 30 s; 1 s
//! without one) with `Last-Event-ID`, at most 5 times in a row without a message; an
//! `endpoint` event on the reopened stream moves the POSTs there (same origin only). When it
//! ends for good (or carried no id, as most 2024-11-05 servers' streams), the inbound is
//! closed with `SSE stream ended: …`, failing every pending call.
//!
//! An `endpoint` on another origin than the SSE URL is refused, even when absolute: the
//! configured headers (often an `Authorization` token) go on every POST, so a server, or anyone
//! able to inject an event into its stream, could otherwise have them sent anywhere. Servers
//! behind a proxy that splits GET and POST across hosts are not supported.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{
    EventStream, HttpEndpoint, MAX_SSE_EVENT, Sequencer, content_type, hand_to_client, header_map,
    http_error, is_message, net_error, parse_url, read_capped, resolve_url, retry_delay,
};
use crate::client::{Inbound, Outgoing, Relation, Transport, TransportError};
use crate::redact;
use crate::sse::SseParser;

/// How much of a POST's answer body is read (and ignored) so the connection can be reused.
const MAX_POST_ANSWER: usize = 64 * 1024;
/// How many times in a row the stream is reopened without delivering a message.
const MAX_REOPENS: u32 = 5;
/// The wait before reopening a stream whose server sent no `retry`.
const REOPEN_DELAY: Duration = Duration::from_secs(1);
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// A connected legacy SSE transport; see the [module documentation](self).
#[derive(Debug)]
pub struct LegacySse {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The event stream's URL, reopened to resume it.
    sse_url: Url,
    /// Where messages go (from the last `endpoint` event), and how errors and logs name it
    /// (masked by [`redact::url`]).
    post: Mutex<(String, String)>,
    /// How errors and logs name the event stream ([`HttpEndpoint::shown`]).
    sse_shown: String,
    headers: HeaderMap,
    http: reqwest::Client,
    inbound: Inbound,
    stop: CancellationToken,
    closed: AtomicBool,
    order: Sequencer,
}

/// Opens the event stream at `endpoint.url`, waits (at most `timeout`) for its `endpoint`
/// event, and starts reading it into `inbound`.
pub async fn connect(
    endpoint: HttpEndpoint,
    http: reqwest::Client,
    inbound: Inbound,
    timeout: Duration,
) -> Result<Arc<LegacySse>, TransportError> {
    let headers = header_map(&endpoint.headers)?;
    let sse = parse_url(&endpoint.url)
        .map_err(|e| TransportError::Protocol(format!("invalid SSE URL: {e}")))?;
    let sse_url = sse.to_string();
    let sse_shown = endpoint.shown.clone();
    let opened = tokio::time::timeout(
        timeout,
        open(&http, &sse_url, &sse_shown, &headers, &inbound),
    )
    .await;
    let (events, data) = opened.map_err(|_| {
        TransportError::Io(format!(
            "no `endpoint` event from {sse_shown} within {:.1}s",
            timeout.as_secs_f64()
        ))
    })??;
    let (post_url, post_shown) = post_endpoint(&sse, &sse_shown, &data)?;
    tracing::debug!(server = %inbound.server(), sse_url = %sse_shown, post_url = %post_shown, "legacy SSE transport connected");
    let inner = Arc::new(Inner {
        sse_url: sse,
        post: Mutex::new((post_url, post_shown)),
        sse_shown,
        headers,
        http,
        inbound,
        stop: CancellationToken::new(),
        closed: AtomicBool::new(false),
        order: Sequencer::default(),
    });
    let reader = inner.clone();
    tokio::spawn(async move {
        let stop = reader.stop.clone();
        tokio::select! {
            () = stop.cancelled() => {}
            () = reader.read(events) => {}
        }
    });
    Ok(Arc::new(LegacySse { inner }))
}

/// The POST URL an `endpoint` event's `data` names (resolved against the SSE URL `sse`), and
/// how to show it; refused on another origin.
fn post_endpoint(
    sse: &Url,
    sse_shown: &str,
    data: &str,
) -> Result<(String, String), TransportError> {
    let post = resolve_url(sse, data).map_err(|e| {
        TransportError::Protocol(format!("invalid `endpoint` event from {sse_shown}: {e}"))
    })?;
    let post_url = post.to_string();
    let post_shown = redact::url(&post_url);
    if post.origin() != sse.origin() {
        return Err(TransportError::Protocol(format!(
            "the `endpoint` event from {sse_shown} points at another origin ({post_shown}); refused, \
             as the configured headers would be sent there"
        )));
    }
    Ok((post_url, post_shown))
}

/// GETs the stream and reads up to its `endpoint` event; returns the stream and the event data.
async fn open(
    http: &reqwest::Client,
    sse_url: &str,
    shown: &str,
    headers: &HeaderMap,
    inbound: &Inbound,
) -> Result<(EventStream, String), TransportError> {
    let mut events = get_stream(
        http,
        sse_url,
        shown,
        headers,
        None,
        SseParser::new(MAX_SSE_EVENT),
    )
    .await?;
    loop {
        match events.next().await? {
            Some(event) if event.event.as_deref() == Some("endpoint") => {
                return Ok((events, event.data));
            }
            // Nothing can be answered before the endpoint is known: replies are dropped.
            Some(event) if is_message(&event) => {
                hand_to_client(inbound, event.data.as_bytes(), Relation::Infer, |_| {
                    tracing::debug!(sse_url = %shown, "server request before the `endpoint` event left unanswered");
                });
            }
            Some(_) => {}
            None => {
                return Err(TransportError::Protocol(format!(
                    "the event stream from {shown} ended before its `endpoint` event"
                )));
            }
        }
    }
}

impl LegacySse {
    /// The URL messages are POSTed to (from the last `endpoint` event).
    pub fn post_url(&self) -> String {
        lock(&self.inner.post).0.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Transport for LegacySse {
    fn send(&self, msg: Outgoing) -> Result<(), TransportError> {
        self.inner.enqueue(msg)
    }

    fn close(&self) {
        if !self.inner.closed.swap(true, Ordering::AcqRel) {
            self.inner.stop.cancel();
        }
    }
}

impl Drop for LegacySse {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn enqueue(self: &Arc<Self>, msg: Outgoing) -> Result<(), TransportError> {
        if self.stop.is_cancelled() {
            return Err(TransportError::Closed(
                "the SSE transport was closed".into(),
            ));
        }
        let (id, notification, line) = match msg {
            Outgoing::Request { id, line } => (Some(id), false, line),
            Outgoing::Notification { line } => (None, true, line),
            Outgoing::Response { line } => (None, false, line),
        };
        let mut ticket = self.order.ticket(notification);
        let this = self.clone();
        tokio::spawn(async move {
            let stop = this.stop.clone();
            let deliver = async {
                ticket.wait().await;
                let result = this.post(Bytes::from(line)).await;
                ticket.release();
                if let Err(error) = result {
                    match id {
                        Some(id) => this.inbound.fail(id, error),
                        None => {
                            tracing::warn!(server = %this.inbound.server(), %error, "message not delivered")
                        }
                    }
                }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                () = deliver => {}
            }
        });
        Ok(())
    }

    async fn post(&self, line: Bytes) -> Result<(), TransportError> {
        let (post_url, post_shown) = lock(&self.post).clone();
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let request = self.http.post(&post_url).headers(headers).body(line);
        let resp = request
            .send()
            .await
            .map_err(|e| net_error(&post_shown, &e))?;
        if !resp.status().is_success() {
            return Err(http_error(resp, &post_shown).await);
        }
        // The answer comes on the stream; the body ("Accepted") is drained for connection reuse.
        let _ = read_capped(resp, MAX_POST_ANSWER, &post_shown).await;
        Ok(())
    }

    /// Reads the stream until it ends for good, then closes the client. A stream that carried
    /// an event id is reopened after the server's `retry` with `Last-Event-ID`, at most
    /// [`MAX_REOPENS`] times in a row without a message.
    async fn read(self: &Arc<Self>, mut events: EventStream) {
        let mut fruitless = 0;
        let reason = loop {
            let (reason, delivered) = self.read_stretch(&mut events).await;
            let parser = events.into_parser();
            let Some(last) = parser.last_event_id().map(str::to_owned) else {
                break reason;
            };
            fruitless = if delivered > 0 { 1 } else { fruitless + 1 };
            if fruitless > MAX_REOPENS {
                break format!("{reason}; reopened {MAX_REOPENS} times in a row without a message");
            }
            let delay = retry_delay(&parser, REOPEN_DELAY);
            tracing::debug!(server = %self.inbound.server(), url = %self.sse_shown, %reason, ?delay, last_event_id = %last, "SSE stream ended; reopening it");
            tokio::time::sleep(delay).await;
            match self.reopen(parser, &last).await {
                Ok(reopened) => events = reopened,
                Err(e) => break format!("{reason}; reopening it failed: {e}"),
            }
        };
        self.inbound.close(&format!("SSE stream ended: {reason}"));
    }

    /// Reads until the stream ends or fails: why, and how many messages it delivered. A new
    /// `endpoint` event (a reopened stream's) moves the POSTs there.
    async fn read_stretch(self: &Arc<Self>, events: &mut EventStream) -> (String, u64) {
        let mut delivered = 0;
        loop {
            match events.next().await {
                Ok(Some(event)) if is_message(&event) => {
                    delivered += 1;
                    // One stream carries everything: which call a request serves is inferred.
                    hand_to_client(
                        &self.inbound,
                        event.data.as_bytes(),
                        Relation::Infer,
                        |reply| {
                            if let Err(e) = self.enqueue(reply) {
                                tracing::debug!(server = %self.inbound.server(), error = %e, "reply to a server request dropped");
                            }
                        },
                    );
                }
                Ok(Some(event)) if event.event.as_deref() == Some("endpoint") => {
                    match post_endpoint(&self.sse_url, &self.sse_shown, &event.data) {
                        Ok(post) => *lock(&self.post) = post,
                        Err(e) => return (e.to_string(), delivered),
                    }
                }
                Ok(Some(event)) => {
                    tracing::debug!(url = %self.sse_shown, event = ?event.event, "event ignored");
                }
                Ok(None) => return (format!("{} closed the stream", self.sse_shown), delivered),
                Err(e) => return (e.to_string(), delivered),
            }
        }
    }

    /// GETs the stream again with `Last-Event-ID`.
    async fn reopen(&self, parser: SseParser, last: &str) -> Result<EventStream, TransportError> {
        get_stream(
            &self.http,
            self.sse_url.as_str(),
            &self.sse_shown,
            &self.headers,
            Some(last),
            parser,
        )
        .await
    }
}

/// GETs the event stream at `sse_url` (with `Last-Event-ID: last`, when given), read by
/// `parser`: refused unless the answer is a success with `text/event-stream`.
async fn get_stream(
    http: &reqwest::Client,
    sse_url: &str,
    shown: &str,
    headers: &HeaderMap,
    last: Option<&str>,
    parser: SseParser,
) -> Result<EventStream, TransportError> {
    let mut headers = headers.clone();
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    if let Some(last) = last.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.insert(LAST_EVENT_ID, last);
    }
    let resp = http.get(sse_url).headers(headers).send().await;
    let resp = resp.map_err(|e| net_error(shown, &e))?;
    if !resp.status().is_success() {
        return Err(http_error(resp, shown).await);
    }
    let kind = content_type(&resp);
    if kind != "text/event-stream" {
        return Err(TransportError::Protocol(format!(
            "unexpected content type {kind} from {shown} (expected text/event-stream)"
        )));
    }
    Ok(EventStream::new(resp, parser, shown))
}
