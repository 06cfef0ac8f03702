//! The session's server-to-client stream, `GET /mcp`, relayed to the client. Part of
//! [`super`].
//!
//! Opened when a link is made, with the session's two headers, once a daemon answered the
//! client's `initialize` (a server message must not reach the client before that). Every event whose data is a
//! JSON-RPC message (a notification such as `tools/list_changed`, or a server request such as
//! `sampling/createMessage`, whose answer the client writes on stdin and the bridge POSTs like
//! any message) goes to stdout as one line; anything else is logged and dropped. Keep-alive
//! comments and `retry:` are honoured: when the stream ends, or is silent for
//! [`STREAM_IDLE`], it is reopened after the server's `retry` (else a backoff from 1 s,
//! doubling to 30 s, back to 1 s after a stream that delivered something), with
//! `Last-Event-ID`, so the daemon can replay what was missed.
//!
//! A daemon without the stream answers 405 (or 404): the task ends and the bridge goes on
//! without it. A refused connection or a 401 (the session is gone) is reported as a lost link
//! ([`Upstream::report_lost`]) and tried again after the backoff: the keeper's reconnection
//! replaces the link (aborting this task, the next link opens its own stream), or finds the
//! daemon there after all.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue};
use revka_mcp::jsonrpc::parse_message;
use revka_mcp::sse::SseParser;

use super::answer::MAX_ANSWER;
use super::io::{Output, one_line};
use super::link::{Link, SESSION_HEADER};
use super::upstream::Upstream;

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A stream silent for this long (no event, no keep-alive comment) is reopened.
const STREAM_IDLE: Duration = Duration::from_secs(90);

/// Relays the server stream of `link` until the link is dropped (the task is aborted) or lost.
pub(super) async fn listen(up: Arc<Upstream>, link: Arc<Link>, out: Output) {
    up.handshake_done().await;
    let mut parser = SseParser::new(MAX_ANSWER);
    let mut backoff = MIN_BACKOFF;
    loop {
        let mut request = up
            .http
            .get(link.mcp.clone())
            .header(AUTHORIZATION, link.auth.clone())
            .header(SESSION_HEADER, link.session.clone())
            .header(ACCEPT, EVENT_STREAM);
        if let Some(id) = parser
            .last_event_id()
            .and_then(|id| HeaderValue::try_from(id).ok())
        {
            request = request.header(LAST_EVENT_ID, id);
        }
        let wait = match request.send().await {
            Err(e) if e.is_connect() => {
                up.report_lost(link.generation);
                backoff
            }
            Err(e) => {
                tracing::debug!(error = %e, "the server stream could not be opened");
                backoff
            }
            Ok(answer) => match answer.status() {
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND => {
                    tracing::debug!("the daemon has no server stream");
                    return;
                }
                StatusCode::UNAUTHORIZED => {
                    up.report_lost(link.generation);
                    backoff
                }
                StatusCode::OK => {
                    if relay(answer, &mut parser, &out).await > 0 {
                        backoff = MIN_BACKOFF;
                    }
                    parser.finish();
                    parser.retry().map_or(backoff, Duration::from_millis)
                }
                status => {
                    tracing::debug!(%status, "the server stream was refused");
                    backoff
                }
            },
        };
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Relays one opened stream until it ends; returns how many messages it delivered.
async fn relay(mut answer: reqwest::Response, parser: &mut SseParser, out: &Output) -> u64 {
    let mut delivered = 0;
    loop {
        let chunk = match tokio::time::timeout(STREAM_IDLE, answer.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => return delivered,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the server stream broke");
                return delivered;
            }
            Err(_) => {
                tracing::debug!("the server stream went silent");
                return delivered;
            }
        };
        parser.push(&chunk);
        while let Some(event) = parser.next_event() {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, "a server message was dropped");
                    continue;
                }
            };
            // An event with no data primes the client's `Last-Event-ID` (the 2025-11-25 spec's
            // priming event): the parser kept its id; there is nothing to relay.
            if event.data.trim().is_empty() {
                continue;
            }
            let message = one_line(Bytes::from(event.data));
            if let Err(e) = parse_message(&message) {
                tracing::warn!(error = %e, event = ?event.event, "a server event that is not a JSON-RPC message was dropped");
                continue;
            }
            out.send(message).await;
            delivered += 1;
        }
    }
}
