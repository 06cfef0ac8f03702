//! Reading the answer to a POST: a JSON body (one message or an array) or an event stream
//! read until the answer to our request; part of the [Streamable HTTP
//! transport](super) owned by the MCP connection actor.

use reqwest::StatusCode;
use serde_json::value::RawValue;

use super::{Handler, Inner};
use crate::client::TransportError;
use crate::http::{
    EventStream, MAX_JSON_BODY, MAX_SSE_EVENT, content_type, is_message, read_capped,
};
use crate::sse::SseParser;

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

    async fn read_stream(
        &self,
        resp: reqwest::Response,
        id: Option<u64>,
        handle: Handler<'_>,
    ) -> Result<(), TransportError> {
        let url = &self.shown;
        let mut events = EventStream::new(resp, SseParser::new(MAX_SSE_EVENT), url);
        while let Some(event) = events.next().await? {
            if is_message(&event) {
                let answered = handle(event.data.as_bytes());
                if id.is_some() && answered == id {
                    return Ok(());
                }
            } else if event.event.as_deref() == Some("endpoint") {
                return Err(TransportError::NotStreamable(format!(
                    "{url} answered a POST with a legacy SSE `endpoint` event"
                )));
            } else {
                tracing::debug!(%url, event = ?event.event, "event of unknown type ignored");
            }
        }
        match id {
            Some(id) => {
                let skipped = match events.oversized() {
                    0 => String::new(),
                    n => format!(" ({n} event(s) over the {MAX_SSE_EVENT}-byte limit skipped)"),
                };
                Err(TransportError::Protocol(format!(
                    "the event stream from {url} ended before the answer to request {id}{skipped}"
                )))
            }
            None => Ok(()),
        }
    }
}
