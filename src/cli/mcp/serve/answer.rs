//! One client request, from its POST to its one response. Part of [`super`].
//!
//! A request ends in exactly one way: the daemon's answer relayed, an error response made by
//! the bridge (no daemon, a daemon that failed mid-answer, an answer over the size cap), or
//! the client cancelling it (then nothing: the client no longer waits). Its task is aborted
//! on cancellation and when the bridge stops, which drops the HTTP request in flight.
//!
//! The daemon's answer is a JSON body (one message) or an SSE stream: progress and other
//! notifications, maybe requests, the response, then `event: done`. Each message goes to stdout
//! as soon as it is read; the response goes to the request's [`Reply`] (stdout, or a batch's
//! collector). `event: done` without a response means the daemon dropped the call (its
//! session ended), and the client is told so.
//!
//! **When the daemon goes away** (a refused connection: nothing was sent; a 401: the session is
//! unknown, nothing ran) the request waits for a new link ([`Upstream::reconnect`]) and is
//! sent again. A connection that broke after the request went out is retried too, after a
//! look at the daemon, unless the request is a `tools/call`: that may have run, so it is
//! answered with an error saying so, and the link is reported for the keeper to check.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use reqwest::StatusCode;
use revka_mcp::jsonrpc::{ErrorObject, Id, Incoming, parse_message};
use revka_mcp::sse::{SseError, SseParser};
use tokio_util::sync::CancellationToken;

use super::batch::Slot;
use super::http1::{Answer, PostError};
use super::io::{Output, one_line};
use super::relay::{EntryGuard, error_line};
use super::upstream::{NO_DAEMON, Purpose, Upstream};

/// The largest answer (a JSON body, or one SSE event) relayed.
pub(super) const MAX_ANSWER: usize = 32 * 1024 * 1024;
/// An answer stream silent for this long is given up: the daemon sends a keep-alive every 15 s.
const STREAM_IDLE: Duration = Duration::from_secs(60);
/// Sends of one request at most (the first and two after reconnections).
const MAX_ATTEMPTS: u32 = 3;

/// Where a request's response goes.
#[derive(Debug)]
pub(super) enum Reply {
    /// Straight to stdout.
    Direct,
    /// Into the response array of a batch.
    Batch(Slot),
}

impl Reply {
    /// Delivers the response.
    pub(super) async fn answer(&mut self, out: &Output, line: Bytes) {
        match self {
            Reply::Direct => out.send(line).await,
            Reply::Batch(slot) => slot.fill(line),
        }
    }
}

/// A request's task; see the [module documentation](self).
pub(super) struct RequestTask {
    pub(super) up: Arc<Upstream>,
    pub(super) out: Output,
    /// The request's id, as the client wrote it (for the bridge's own error responses).
    pub(super) id: Id,
    /// The request as the client sent it: POSTed unchanged.
    pub(super) line: Bytes,
    pub(super) purpose: Purpose,
    /// A `tools/call`: never sent twice.
    pub(super) call: bool,
    pub(super) reply: Reply,
    /// The last notification before it, until its POST is accepted.
    pub(super) gate: Option<CancellationToken>,
    /// Unregisters the request when the task ends, however it ends.
    pub(super) _entry: EntryGuard,
}

/// How one send of a request went.
enum Outcome {
    /// Answered (by the daemon or with an error): the request is over.
    Done,
    /// Not sent, or refused before anything ran: send it again on a new link.
    Again,
    /// The connection broke after the request went out.
    Broken(String),
}

impl RequestTask {
    /// Sends the request until it is answered.
    pub(super) async fn run(mut self) {
        if let Some(gate) = self.gate.take() {
            gate.cancelled().await;
        }
        let mut link = match self.up.link(self.purpose).await {
            Ok(link) => link,
            Err(e) => return self.fail(NO_DAEMON, &e.to_string()).await,
        };
        for attempt in 1.. {
            let outcome = match self.up.post(&link, self.line.clone()).await {
                Ok(answer) => self.deliver(answer).await,
                Err(PostError::Unreached(e)) => {
                    tracing::debug!(error = %e, "the daemon does not answer");
                    Outcome::Again
                }
                Err(PostError::Broken(e)) => Outcome::Broken(e),
            };
            let reconnect = match outcome {
                Outcome::Done => return,
                Outcome::Again => true,
                Outcome::Broken(why) if self.call => {
                    self.up.report_lost(link.generation);
                    let message = format!(
                        "the connection to the Revka daemon broke during this tools/call ({why}); \
                         the call may or may not have run, and was not retried"
                    );
                    return self.fail(ErrorObject::INTERNAL_ERROR, &message).await;
                }
                Outcome::Broken(_) => !self.up.check(&link).await,
            };
            if attempt >= MAX_ATTEMPTS {
                let message = "the Revka daemon did not answer this request after reconnecting";
                return self.fail(ErrorObject::INTERNAL_ERROR, message).await;
            }
            if reconnect {
                link = match self.up.reconnect(link.generation).await {
                    Ok(link) => link,
                    Err(e) => return self.fail(NO_DAEMON, &e.to_string()).await,
                };
            }
        }
    }

    /// Answers the client with an error.
    async fn fail(&mut self, code: i64, message: &str) {
        let line = error_line(Some(&self.id), code, message);
        self.reply.answer(&self.out, line).await;
    }

    /// Relays the daemon's answer.
    async fn deliver(&mut self, answer: Answer) -> Outcome {
        let status = answer.status;
        if status == StatusCode::UNAUTHORIZED {
            answer.drain().await;
            return Outcome::Again;
        }
        let stream = status == StatusCode::OK && answer.is_event_stream();
        if stream {
            return self.stream(answer).await;
        }
        let body = match read_capped(answer, MAX_ANSWER).await {
            Ok(body) => body,
            Err(Capped::TooLarge) => {
                let message = format!("the daemon's answer exceeds {} MiB", MAX_ANSWER >> 20);
                self.fail(ErrorObject::INTERNAL_ERROR, &message).await;
                return Outcome::Done;
            }
            Err(Capped::Broken(why)) => return Outcome::Broken(why),
        };
        if status == StatusCode::OK && !body.trim_ascii().is_empty() {
            if self.purpose == Purpose::Initialize {
                self.up.initialized(protocol_version(&body));
            }
            self.reply.answer(&self.out, one_line(body)).await;
            return Outcome::Done;
        }
        // Anything else is an error: the daemon's JSON-RPC error, with this request's id.
        let error = match parse_message(&body) {
            Ok(Incoming::Response(response)) => response.result.err(),
            _ => None,
        };
        let error = error.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            ErrorObject::internal_error(format!("the Revka daemon answered HTTP {status}: {text}"))
        });
        let line = revka_mcp::jsonrpc::Response::error(Some(self.id.clone()), error);
        self.reply
            .answer(&self.out, Bytes::from(line.to_line()))
            .await;
        Outcome::Done
    }

    /// Relays an SSE answer, event by event.
    async fn stream(&mut self, mut answer: Answer) -> Outcome {
        let mut parser = SseParser::new(MAX_ANSWER);
        let mut answered = false;
        let mut done = false;
        let mut oversized = false;
        // Whether every chunk so far was whole events read by `whole_events` (the parser has
        // seen nothing): then the next one may be too.
        let mut pristine = true;
        let mut fast_chunks = 0u64;
        loop {
            // A chunk that is already there (a short call's whole answer comes with its head)
            // is taken without arming the idle timer.
            let next = match answer.chunk().now_or_never() {
                Some(next) => Ok(next),
                None => tokio::time::timeout(STREAM_IDLE, answer.chunk()).await,
            };
            let chunk = match next {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => break,
                Ok(Err(e)) if !answered => return Outcome::Broken(e),
                Err(_) if !answered => {
                    let secs = STREAM_IDLE.as_secs();
                    return Outcome::Broken(format!("nothing from the daemon for {secs} s"));
                }
                Ok(Err(_)) | Err(_) => break,
            };
            if pristine && let Some(events) = whole_events(&chunk) {
                for (name, data) in events {
                    match name {
                        Some(b"done") => done = true,
                        None | Some(b"message") => {
                            if !answered && is_response(&data) {
                                answered = true;
                                self.reply.answer(&self.out, data).await;
                            } else {
                                self.out.send(data).await;
                            }
                        }
                        Some(_) => {}
                    }
                }
                fast_chunks += 1;
                continue;
            }
            if pristine && fast_chunks > 0 {
                // Past the stream's start: a byte-order mark here is not one to skip.
                parser.push(b"\n");
            }
            pristine = false;
            parser.push(&chunk);
            while let Some(event) = parser.next_event() {
                let event = match event {
                    Ok(event) => event,
                    Err(SseError::EventTooLarge { .. }) => {
                        oversized = true;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "an event of the daemon's answer was dropped");
                        continue;
                    }
                };
                match event.event.as_deref() {
                    Some("done") => done = true,
                    None | Some("message") => {
                        let message = one_line(Bytes::from(event.data));
                        if !answered && is_response(&message) {
                            answered = true;
                            self.reply.answer(&self.out, message).await;
                        } else {
                            self.out.send(message).await;
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        if answered {
            return Outcome::Done;
        }
        if oversized {
            let message = format!("the daemon's answer exceeds {} MiB", MAX_ANSWER >> 20);
            self.fail(ErrorObject::INTERNAL_ERROR, &message).await;
            return Outcome::Done;
        }
        if done {
            let message =
                "the Revka daemon ended this request without an answer (its session ended)";
            self.fail(ErrorObject::INTERNAL_ERROR, message).await;
            return Outcome::Done;
        }
        Outcome::Broken("the answer stream ended early".into())
    }
}

/// One event of an answer: its name (`None` for the default) and its data.
pub(super) type Event<'a> = (Option<&'a [u8]>, Bytes);

/// The events of `chunk` when it holds whole events in the daemon's plain form, as slices of
/// it (no copy): `event:` and single `data:` lines and comments, LF line ends, no byte-order
/// mark (a line starting with one is no field), valid UTF-8, ending with a blank line. `None`
/// for anything else, which then goes through the full [`SseParser`].
pub(super) fn whole_events(chunk: &Bytes) -> Option<Vec<Event<'_>>> {
    if !chunk.ends_with(b"\n\n") || memchr::memchr(b'\r', chunk).is_some() {
        return None;
    }
    std::str::from_utf8(chunk).ok()?;
    // A finished call's answer is two events: its response, and `done`.
    let mut events = Vec::with_capacity(2);
    let mut name: Option<&[u8]> = None;
    let mut data: Option<Bytes> = None;
    let mut at = 0;
    while at < chunk.len() {
        let end = at + memchr::memchr(b'\n', &chunk[at..])?;
        let line = &chunk[at..end];
        if line.is_empty() {
            if let Some(data) = data.take() {
                events.push((name, data));
            }
            name = None;
        } else if let Some(value) = field(line, b"data") {
            if data.is_some() || value.len() > MAX_ANSWER {
                return None;
            }
            let start = end - value.len();
            data = Some(chunk.slice(start..end));
        } else if let Some(value) = field(line, b"event") {
            name = Some(value).filter(|v| !v.is_empty());
        } else if line[0] != b':' {
            return None;
        }
        at = end + 1;
    }
    Some(events)
}

/// The value of the SSE field `name` on `line` (one space after the colon stripped).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let value = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// Why [`read_capped`] failed.
pub(super) enum Capped {
    /// The body is larger than the cap.
    TooLarge,
    /// The connection broke: why.
    Broken(String),
}

/// A whole body of at most `cap` bytes.
pub(super) async fn read_capped(mut answer: Answer, cap: usize) -> Result<Bytes, Capped> {
    if answer.content_length().is_some_and(|n| n > cap as u64) {
        return Err(Capped::TooLarge);
    }
    // A body in one chunk (nearly all of them) is kept as it came, not copied.
    let mut single: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(Capped::Broken)? {
        if single.is_none() && joined.is_empty() {
            single = Some(chunk);
        } else {
            if let Some(first) = single.take() {
                joined.extend_from_slice(&first);
            }
            joined.extend_from_slice(&chunk);
        }
        if single.as_ref().map_or(joined.len(), Bytes::len) > cap {
            return Err(Capped::TooLarge);
        }
    }
    Ok(single.unwrap_or_else(|| Bytes::from(joined)))
}

/// The `result.protocolVersion` of an `initialize` answer.
fn protocol_version(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["result"]["protocolVersion"]
        .as_str()
        .map(str::to_owned)
}

/// Whether a message from the daemon is a response (not a notification or a request).
///
/// The daemon writes compact JSON with `jsonrpc` first and then `id` or `method`: that shape
/// is read from the first bytes, without a parse of what may be a large result. Anything
/// else is parsed.
pub(super) fn is_response(message: &[u8]) -> bool {
    const HEAD: &[u8] = br#"{"jsonrpc":"2.0","#;
    if let Some(rest) = message.strip_prefix(HEAD) {
        if rest.starts_with(br#""method":"#) {
            return false;
        }
        if let Some(after) = rest.strip_prefix(br#""id":"#)
            && let Some(end) = token_end(after)
        {
            let tail = &after[end..];
            if tail.starts_with(br#","result":"#) || tail.starts_with(br#","error":"#) {
                return true;
            }
            if tail.starts_with(br#","method":"#) {
                return false;
            }
        }
    }
    matches!(parse_message(message), Ok(Incoming::Response(_)))
}

/// Where the JSON string or number at the start of `text` ends.
fn token_end(text: &[u8]) -> Option<usize> {
    if text.first() == Some(&b'"') {
        let mut escaped = false;
        for (i, &b) in text.iter().enumerate().skip(1) {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => return Some(i + 1),
                _ => {}
            }
        }
        return None;
    }
    text.iter().position(|&b| b == b',' || b == b'}')
}
