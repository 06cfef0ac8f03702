//! The session side of the [Streamable HTTP transport](super), owned by the MCP connection
//! actor: re-initializing an expired session, and the server's GET stream.

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};

use super::{Inner, LAST_EVENT_ID, MAX_BACKOFF, MIN_BACKOFF, POST_ACCEPT, lock, oauth_error};
use crate::client::{Relation, TransportError};
use crate::http::{
    EventStream, MAX_SSE_EVENT, content_type, hand_to_client, http_error, is_message, net_error,
    retry_delay,
};
use crate::jsonrpc::{Incoming, Notification, parse_message};
use crate::sse::SseParser;

impl Inner {
    /// Re-establishes an expired session (unless another task already did).
    pub(super) async fn reinitialize(
        self: &Arc<Self>,
        stale: &HeaderValue,
    ) -> Result<(), TransportError> {
        let _one_at_a_time = self.reinit.lock().await;
        if self.session().as_ref() != Some(stale) {
            return Ok(());
        }
        let Some((init_id, init)) = lock(&self.initialize).clone() else {
            return Err(TransportError::Protocol(format!(
                "{} expired a session that was never initialized",
                self.shown
            )));
        };
        tracing::info!(server = %self.inbound.server(), url = %self.shown, "MCP session expired (HTTP 404): re-initializing");
        let mut headers = self.headers(None, Some(POST_ACCEPT), false);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let request = self.http.post(&self.url).headers(headers).body(init);
        let resp = request
            .send()
            .await
            .map_err(|e| net_error(&self.shown, &e))?;
        if !resp.status().is_success() {
            return Err(http_error(resp, &self.shown).await);
        }
        self.capture_session(&resp, true);
        // Read the new initialize result without dispatching it; only its error matters.
        let mut rejected = None;
        let mut check = |bytes: &[u8]| match parse_message(bytes) {
            Ok(Incoming::Response(r)) => {
                if let Err(e) = r.result {
                    rejected = Some(e);
                }
                r.id.and_then(|id| id.as_u64())
            }
            _ => None,
        };
        self.read_answer(resp, Some(init_id), &mut check).await?;
        if let Some(e) = rejected {
            return Err(TransportError::Protocol(format!(
                "{} rejected the re-initialization: {e}",
                self.shown
            )));
        }
        let initialized = Notification::new("notifications/initialized", None).to_line();
        let headers = self.headers(self.session().as_ref(), Some(POST_ACCEPT), true);
        let request = self
            .http
            .post(&self.url)
            .headers(headers)
            .header(CONTENT_TYPE, "application/json");
        let resp = request
            .body(initialized)
            .send()
            .await
            .map_err(|e| net_error(&self.shown, &e))?;
        if !resp.status().is_success() {
            return Err(http_error(resp, &self.shown).await);
        }
        // A new session of a server that may have restarted: its tools may differ, and any
        // change announced meanwhile went to the old session.
        self.tools_may_have_changed();
        Ok(())
    }

    /// Has the client re-read the tool list, as if the server had sent `list_changed`.
    fn tools_may_have_changed(self: &Arc<Self>) {
        hand_to_client(
            &self.inbound,
            LIST_CHANGED.as_bytes(),
            Relation::None,
            |reply| self.reply(reply),
        );
    }

    /// Keeps the server's GET stream open until the transport closes or the server has none.
    ///
    /// A stream the server ends is reopened after the server's `retry` (capped), or with
    /// backoff when it sent none; a stream that failed is reopened with backoff.
    ///
    /// Reconnections send `Last-Event-ID` of the same session only: after a re-initialization
    /// the old session's ids mean nothing. A 404 on the stream means the session expired (the
    /// server restarted): the session is re-established, as a POST's 404 would. After a
    /// stream that failed, the tool list is re-read, since a change may have been announced
    /// while it was down.
    pub(super) async fn listen(self: Arc<Self>) {
        let mut parser = SseParser::new(MAX_SSE_EVENT);
        let mut parser_session = self.session();
        let mut delay = MIN_BACKOFF;
        let mut failures = 0u32;
        loop {
            let session = self.session();
            if session != parser_session {
                parser = SseParser::new(MAX_SSE_EVENT);
                parser_session = session;
            }
            let (back, outcome) = self.listen_once(parser, failures > 0).await;
            parser = back;
            // A stream the server ended is reopened after its `retry`, if it sent one.
            let mut wait = delay;
            match outcome {
                Listened::NoStream => {
                    tracing::debug!(server = %self.inbound.server(), url = %self.shown, "server offers no GET stream");
                    return;
                }
                Listened::Ended(events) => {
                    failures = 0;
                    if events > 0 {
                        delay = MIN_BACKOFF;
                    }
                    wait = retry_delay(&parser, delay);
                    tracing::debug!(server = %self.inbound.server(), events, ?wait, "server stream ended; reopening");
                }
                Listened::Expired(stale) => match self.reinitialize(&stale).await {
                    // The new session's stream opens at once.
                    Ok(()) => {
                        failures = 0;
                        delay = MIN_BACKOFF;
                        continue;
                    }
                    Err(error) => self.stream_failed(&mut failures, &error),
                },
                Listened::Failed(error) => self.stream_failed(&mut failures, &error),
            }
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// Logs a failed stream: a warning for the first failure in a row, then at debug.
    fn stream_failed(&self, failures: &mut u32, error: &TransportError) {
        *failures += 1;
        if *failures == 1 {
            tracing::warn!(server = %self.inbound.server(), %error, "server stream failed; retrying with backoff");
        } else {
            tracing::debug!(server = %self.inbound.server(), %error, failures = *failures, "server stream failed again");
        }
    }

    /// One GET stream, with the events it delivered or why it ended. `recovering`: the last
    /// one failed, so once this one opens, the tool list is re-read.
    async fn listen_once(
        self: &Arc<Self>,
        parser: SseParser,
        recovering: bool,
    ) -> (SseParser, Listened) {
        let session = self.session();
        let mut headers = self.headers(session.as_ref(), Some("text/event-stream"), true);
        if let Some(id) = parser
            .last_event_id()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            headers.insert(LAST_EVENT_ID, id);
        }
        let sent = headers.get(AUTHORIZATION).cloned();
        let resp = match self.http.get(&self.url).headers(headers).send().await {
            Ok(resp) => resp,
            Err(e) => return (parser, Listened::Failed(net_error(&self.shown, &e))),
        };
        if resp.status() == StatusCode::UNAUTHORIZED
            && let Some(auth) = &self.auth
        {
            // Renew the token (without a person) and reopen after the usual backoff.
            let www = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let error = match auth.challenged(401, www.as_deref(), sent.as_ref()).await {
                Ok(()) => http_error(resp, &self.shown).await,
                Err(e) => oauth_error(e),
            };
            return (parser, Listened::Failed(error));
        }
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            return (parser, Listened::NoStream);
        }
        if let Some(stale) = session.filter(|_| resp.status() == StatusCode::NOT_FOUND) {
            tracing::debug!(server = %self.inbound.server(), url = %self.shown, "server stream: session expired (HTTP 404)");
            return (parser, Listened::Expired(stale));
        }
        if !resp.status().is_success() {
            let error = http_error(resp, &self.shown).await;
            return (parser, Listened::Failed(error));
        }
        if content_type(&resp) != "text/event-stream" {
            tracing::debug!(url = %self.shown, content_type = %content_type(&resp), "GET did not open an event stream");
            return (parser, Listened::NoStream);
        }
        if recovering {
            self.tools_may_have_changed();
        }
        let mut events = EventStream::new(resp, parser, &self.shown);
        let mut delivered = 0;
        let result = loop {
            match events.next().await {
                Ok(Some(event)) if is_message(&event) => {
                    delivered += 1;
                    // The GET stream relates to no request of ours.
                    hand_to_client(
                        &self.inbound,
                        event.data.as_bytes(),
                        Relation::None,
                        |reply| self.reply(reply),
                    );
                }
                Ok(Some(_)) => {}
                Ok(None) => break Listened::Ended(delivered),
                Err(e) => break Listened::Failed(e),
            }
        };
        (events.into_parser(), result)
    }
}

/// How one GET stream ended.
enum Listened {
    /// The server has no GET stream (405, or not an event stream).
    NoStream,
    /// It ended after delivering this many messages.
    Ended(u64),
    /// HTTP 404 on this session id: the session expired.
    Expired(HeaderValue),
    /// It could not be opened, or failed while read.
    Failed(TransportError),
}

/// What the client is handed when the tool list may have changed unannounced.
const LIST_CHANGED: &str = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
