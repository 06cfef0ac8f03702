//! An incremental Server-Sent Events parser, per the WHATWG HTML "event stream" rules.
//!
//! Drive it from a byte stream: [`SseParser::push`] each chunk, then drain
//! [`SseParser::next_event`] until `None`; at end of stream call [`SseParser::finish`].
//!
//! - Lines end with CRLF, LF or CR; a CR ending one chunk and an LF starting the next are one
//!   line ending. A UTF-8 byte-order mark at the very start of the stream is skipped.
//! - Bytes are buffered and whole lines decoded, so a character split across chunks decodes
//!   correctly. Invalid UTF-8 is replaced with U+FFFD, as the standard's decoder does; it is
//!   not an error.
//! - `data` lines are joined with `\n`; one space after the colon is stripped; a line without a
//!   colon is a field with an empty value; comment lines (starting with `:`) are counted and
//!   otherwise ignored; unknown fields are ignored.
//! - A blank line dispatches the event, unless its data buffer is empty. At end of stream an
//!   unfinished event is discarded, as the standard says.
//! - `id` is ignored if it contains NUL; the last event id is sticky across events, as in
//!   `EventSource` (an empty `id` clears it). `retry` is taken only if it is all ASCII digits
//!   (and fits a `u64`).
//! - Bounded: a line longer than `max_event_bytes`, or an event whose data (or, decoded, its
//!   `event` or `id` value) would exceed it, yields one [`SseError::EventTooLarge`], and
//!   everything up to the next blank line is discarded without being buffered. An over-long
//!   comment line is just skipped.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type; `None` is the default, `"message"`.
    pub event: Option<String>,
    /// The data lines, joined with `\n`.
    pub data: String,
    /// The last event id at dispatch (sticky: set by this or an earlier event); `None` if unset
    /// or cleared.
    pub id: Option<String>,
    /// A valid `retry` field (milliseconds) seen in this event's block, if any. The stream's
    /// current reconnection time, including from blocks without data, is [`SseParser::retry`].
    pub retry: Option<u64>,
}

/// Why an event was not dispatched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A line or an event was larger than the parser's limit; it was discarded up to the next
    /// blank line.
    #[error("server-sent event larger than the limit of {limit} bytes")]
    EventTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The incremental parser; see the [module documentation](self).
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// The partial line carried over from earlier chunks.
    line: Vec<u8>,
    /// No line has ended yet in this stream: strip a BOM from the first.
    at_start: bool,
    /// The last line ended with a CR at the end of a chunk: skip an LF that starts the next.
    skip_lf: bool,
    /// The current line is too long: drop it up to its end.
    discard_line: bool,
    /// The current event is too large: ignore fields up to the next blank line.
    discard_event: bool,
    data: String,
    event_type: String,
    block_retry: Option<u64>,
    last_event_id: String,
    retry: Option<u64>,
    comments: u64,
    ready: VecDeque<Result<SseEvent, SseError>>,
}

impl SseParser {
    /// A parser that rejects lines and events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max_event_bytes,
            line: Vec::new(),
            at_start: true,
            skip_lf: false,
            discard_line: false,
            discard_event: false,
            data: String::new(),
            event_type: String::new(),
            block_retry: None,
            last_event_id: String::new(),
            retry: None,
            comments: 0,
            ready: VecDeque::new(),
        }
    }

    /// Feeds the next chunk of the stream. Events it completes are queued for
    /// [`next_event`](Self::next_event); drain them before pushing more, or the queue grows with
    /// the input.
    pub fn push(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.partial(rest);
                break;
            };
            self.end_line(&rest[..end]);
            rest = match (rest[end], rest.get(end + 1)) {
                (b'\r', Some(b'\n')) => &rest[end + 2..],
                (b'\r', None) => {
                    self.skip_lf = true;
                    &[]
                }
                _ => &rest[end + 1..],
            };
        }
    }

    /// The next dispatched event or error, in stream order.
    pub fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        self.ready.pop_front()
    }

    /// Ends the stream: an unfinished line and event are discarded (queued events stay
    /// available). Returns whether anything was discarded. The parser can then be fed a new
    /// stream (e.g. after reconnecting); the last event id and retry are kept.
    pub fn finish(&mut self) -> bool {
        let discarded = !self.line.is_empty()
            || self.discard_line
            || self.discard_event
            || !self.data.is_empty()
            || !self.event_type.is_empty()
            || self.block_retry.is_some();
        self.line.clear();
        self.reset_event();
        self.discard_line = false;
        self.discard_event = false;
        self.at_start = true;
        self.skip_lf = false;
        discarded
    }

    /// The last event id (sticky across events, as sent in `Last-Event-ID` on reconnection).
    pub fn last_event_id(&self) -> Option<&str> {
        Some(self.last_event_id.as_str()).filter(|id| !id.is_empty())
    }

    /// The reconnection time (milliseconds) from the last valid `retry` field.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// How many comment lines were seen (servers send them as keep-alives).
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// Bytes buffered for the unfinished line and event (bounded by about 3 × the limit).
    pub fn buffered_len(&self) -> usize {
        self.line.len() + self.data.len() + self.event_type.len()
    }

    /// A piece of a line whose end is in a later chunk.
    fn partial(&mut self, bytes: &[u8]) {
        if self.discard_line {
            return;
        }
        if self.line.len() + bytes.len() > self.max_event_bytes {
            let first = self.line.first().or(bytes.first());
            self.line_too_large(first == Some(&b':'));
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// The end of a line, whose last piece is `tail`.
    fn end_line(&mut self, tail: &[u8]) {
        if std::mem::take(&mut self.discard_line) {
            self.at_start = false;
            return;
        }
        if self.line.len() + tail.len() > self.max_event_bytes {
            let first = self.line.first().or(tail.first());
            self.line_too_large(first == Some(&b':'));
            self.discard_line = false;
            self.at_start = false;
            return;
        }
        if self.line.is_empty() {
            self.process_line(tail);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(tail);
            self.process_line(&line);
            line.clear();
            self.line = line;
        }
    }

    fn line_too_large(&mut self, comment: bool) {
        self.line.clear();
        self.line.shrink_to(self.max_event_bytes.min(64 * 1024));
        self.discard_line = true;
        if comment {
            self.comments += 1;
        } else {
            self.event_too_large();
        }
    }

    fn event_too_large(&mut self) {
        if !self.discard_event {
            self.discard_event = true;
            self.ready.push_back(Err(SseError::EventTooLarge {
                limit: self.max_event_bytes,
            }));
        }
        self.reset_event();
    }

    fn reset_event(&mut self) {
        self.data.clear();
        self.event_type.clear();
        self.block_retry = None;
    }

    fn process_line(&mut self, mut line: &[u8]) {
        if std::mem::take(&mut self.at_start) {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        if self.discard_event {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                let value = String::from_utf8_lossy(value);
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    self.event_too_large();
                    return;
                }
                self.data.push_str(&value);
                self.data.push('\n');
            }
            // Decoded, a value can be 3 × its bytes (U+FFFD for each invalid one): the limit
            // applies to what is kept.
            b"event" => {
                let value = String::from_utf8_lossy(value);
                if value.len() > self.max_event_bytes {
                    self.event_too_large();
                    return;
                }
                self.event_type.clear();
                self.event_type.push_str(&value);
            }
            b"id" if !value.contains(&0) => {
                let value = String::from_utf8_lossy(value);
                if value.len() > self.max_event_bytes {
                    self.event_too_large();
                    return;
                }
                self.last_event_id.clear();
                self.last_event_id.push_str(&value);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // All digits, so ASCII; too many digits for a u64 is ignored like a bad value.
                let parsed = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                if let Some(ms) = parsed {
                    self.retry = Some(ms);
                    self.block_retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        if std::mem::take(&mut self.discard_event) || self.data.is_empty() {
            self.reset_event();
            return;
        }
        self.data.pop(); // the `\n` after the last data line
        let event = Some(std::mem::take(&mut self.event_type)).filter(|t| !t.is_empty());
        let event = SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.last_event_id().map(str::to_owned),
            retry: self.block_retry.take(),
        };
        self.ready.push_back(Ok(event));
    }
}
