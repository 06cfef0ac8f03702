//! Reading the answer to a POST: a JSON body (one message or an array) or an event stream
//! read until the answer to our request, resumed with `Last-Event-ID` when the server closes
//! it early (MCP 2025-11-25 resumability); part of the [Streamable HTTP transport](super)
//! owned by the MCP connection actor.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::value::RawValue;

use super::{Handler, Inner, LAST_EVENT_ID};
use crate::client::TransportError;
use crate::http::{
    EventStream, MAX_JSON_BODY, MAX_SSE_EVENT, content_type, http_error, is_message, net_error,
    read_capped, retry_delay,
};
use crate::sse::SseParser;

/// How many times in a row a POST's event stream is resumed without delivering a message.
const MAX_RESUMPTIONS: u32 = 5;
/// The wait before resuming a stream whose server sent no `retry`.
const MIN_RESUME_DELAY: Duration = Duration::from_secs(1);

impl Inner {
    /// Reads the answer to a POST, handing each message to `handle`; fails when a request's
    /// answer is not in it.
    pub(super) async fn read_answer(
        &self,
        resp: reqwest::Response,
        id: Option<u64>,
        handle: Handler<'_>,
    ) -> Result<(), TransportError> {
        if matches!(resp.status(), StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(());
        }
        let url = &self.shown;
        let kind = content_type(&resp);
        let answered = match kind.as_str() {
            "text/event-stream" => return self.read_stream(resp, id, handle).await,
            // No content type: tolerated when the body is JSON (or empty, for a notification).
            "application/json" | "" => {
                let body = read_capped(resp, MAX_JSON_BODY, url).await?;
                let body = body.trim_ascii();
                let mut answered = false;
                let batch = body
                    .starts_with(b"[")
                    .then(|| serde_json::from_slice::<Vec<&RawValue>>(body).ok())
                    .flatten();
                match batch {
                    Some(batch) => {
                        for msg in batch {
                            answered |= handle(msg.get().as_bytes()).is_some_and(|a| Some(a) == id);
                        }
                    }
                    None if body.is_empty() => {}
                    None => answered = handle(body).is_some_and(|a| Some(a) == id),
                }
                answered
            }
            other => {
                return Err(TransportError::Protocol(format!(
                    "unexpected content type {other} from {url}"
                )));
            }
        };
        match id {
            Some(id) if !answered => Err(TransportError::Protocol(format!(
                "the JSON response from {url} did not answer request {id}"
            ))),
            _ => Ok(()),
        }
    }

    /// Reads a POST's event stream, handing each message to `handle`, until the answer to
    /// request `id` (if any). A stream that ends or breaks before the answer is resumed when
    /// the server gave it an event id: after the server's `retry` (capped at
    /// [`MAX_RETRY`](crate::http::MAX_RETRY)), a GET with `Last-Event-ID` continues it, at most
    /// [`MAX_RESUMPTIONS`] times in a row without a message in between. Without an event id
    /// the request fails.
    async fn read_stream(
        &self,
        resp: reqwest::Response,
        id: Option<u64>,
        handle: Handler<'_>,
    ) -> Result<(), TransportError> {
        let url = &self.shown;
        let mut events = EventStream::new(resp, SseParser::new(MAX_SSE_EVENT), url);
        let mut fruitless = 0;
        loop {
            let (read, delivered) = read_events(&mut events, id, handle).await;
            let broke = match read {
                Read::Answered => return Ok(()),
                Read::Ended => None,
                Read::Broke(e) => Some(e),
                Read::Legacy => {
                    return Err(TransportError::NotStreamable(format!(
                        "{url} answered a POST with a legacy SSE `endpoint` event"
                    )));
                }
            };
            let Some(id) = id else {
                return broke.map_or(Ok(()), Err);
            };
            let oversized = events.oversized();
            let parser = events.into_parser();
            if parser.last_event_id().is_none() {
                return Err(broke.unwrap_or_else(|| ended_early(url, id, oversized)));
            }
            fruitless = if delivered > 0 { 1 } else { fruitless + 1 };
            if fruitless > MAX_RESUMPTIONS {
                return Err(TransportError::Protocol(format!(
                    "the event stream from {url} ended before the answer to request {id}, \
                     {MAX_RESUMPTIONS} times in a row without a message; gave up resuming it"
                )));
            }
            let delay = retry_delay(&parser, MIN_RESUME_DELAY);
            let reason = broke.map(|e| e.to_string());
            tracing::debug!(server = %self.inbound.server(), %url, id, ?delay, ?reason, "event stream ended before the answer; resuming it");
            tokio::time::sleep(delay).await;
            // The call may have timed out or been dropped meanwhile: nobody waits any more.
            if !self.inbound.is_pending(id) {
                return Ok(());
            }
            events = self.resume(parser, url).await?;
        }
    }

    /// Continues an event stream of this session: a GET with the stream's `Last-Event-ID`.
    async fn resume(&self, parser: SseParser, url: &str) -> Result<EventStream, TransportError> {
        let mut headers = self.headers(self.session().as_ref(), Some("text/event-stream"), true);
        if let Some(last) = parser
            .last_event_id()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            headers.insert(LAST_EVENT_ID, last);
        }
        let resp = self.http.get(&self.url).headers(headers).send().await;
        let resp = resp.map_err(|e| net_error(url, &e))?;
        if !resp.status().is_success() {
            let error = http_error(resp, url).await;
            return Err(TransportError::Protocol(format!(
                "resuming the event stream failed: {error}"
            )));
        }
        let kind = content_type(&resp);
        if kind != "text/event-stream" {
            return Err(TransportError::Protocol(format!(
                "resuming the event stream from {url} answered {kind}, not an event stream"
            )));
        }
        Ok(EventStream::new(resp, parser, url))
    }
}

/// How one stretch of an event stream ended.
enum Read {
    /// The answer to our request came.
    Answered,
    /// The stream ended first.
    Ended,
    /// Reading it failed first.
    Broke(TransportError),
    /// It is a legacy SSE stream (an `endpoint` event).
    Legacy,
}

/// Reads `events` until the answer to `id`, the end, or a failure; also how many messages it
/// handed on.
async fn read_events(
    events: &mut EventStream,
    id: Option<u64>,
    handle: Handler<'_>,
) -> (Read, u64) {
    let mut delivered = 0;
    loop {
        match events.next().await {
            Ok(Some(event)) if is_message(&event) => {
                delivered += 1;
                let answered = handle(event.data.as_bytes());
                if id.is_some() && answered == id {
                    return (Read::Answered, delivered);
                }
            }
            Ok(Some(event)) if event.event.as_deref() == Some("endpoint") => {
                return (Read::Legacy, delivered);
            }
            Ok(Some(event)) => {
                if event.event.is_some() {
                    tracing::debug!(event = ?event.event, "event of unknown type ignored");
                }
            }
            Ok(None) => return (Read::Ended, delivered),
            Err(e) => return (Read::Broke(e), delivered),
        }
    }
}

/// The error of a stream that ended before the answer and cannot be resumed.
fn ended_early(url: &str, id: u64, oversized: u64) -> TransportError {
    let skipped = match oversized {
        0 => String::new(),
        n => format!(" ({n} event(s) over the {MAX_SSE_EVENT}-byte limit skipped)"),
    };
    TransportError::Protocol(format!(
        "the event stream from {url} ended before the answer to request {id}{skipped}"
    ))
}
