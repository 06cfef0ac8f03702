//! Server-Sent Events framing for the MCP server's streams.
//!
//! Events are written by hand into a bounded channel that backs the response body: a slow
//! client applies backpressure to its own stream only, and dropping the body (the client hung
//! up) closes the channel, which the producer notices.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

/// Frames buffered per stream before the producer waits for the client.
pub(crate) const BUFFER: usize = 64;

/// One event: an optional `event:` name and the data (each line as its own `data:` line).
pub(crate) fn event(name: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(name) = name {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// A comment line (keep-alive): ignored by every SSE client.
pub(crate) fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

/// A streaming `text/event-stream` response fed by `rx`.
pub(crate) fn response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(frame), rx))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_comments() {
        assert_eq!(&event(None, "{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        assert_eq!(
            &event(Some("done"), "x\ny")[..],
            b"event: done\ndata: x\ndata: y\n\n"
        );
        assert_eq!(&comment("keep-alive")[..], b": keep-alive\n\n");
    }
}
