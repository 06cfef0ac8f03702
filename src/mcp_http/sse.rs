//! Server-Sent Events framing for the MCP server's streams.
//!
//! Events are written by hand into a bounded channel that backs the response body: a slow
//! client applies backpressure to its own stream only, and dropping the body (the client hung
//! up) closes the channel, which the producer notices. A call that ended before its headers
//! went out is sent as one whole body with a `Content-Length` (no chunked framing).

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::StreamExt;
use revka_mcp::jsonrpc::Id;
use serde_json::value::RawValue;
use std::convert::Infallible;
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

/// A call's last frames in one buffer: its JSON-RPC response `{"jsonrpc","id","result"}`, then
/// `event: done`. Line breaks in `result` can only be insignificant whitespace in valid JSON
/// (a string cannot hold a raw one), so they become spaces and the response stays one `data:`
/// line. The id is written exactly as the request had it.
pub(crate) fn final_frames(id: &Id, result: &RawValue) -> Bytes {
    const HEAD: &[u8] = br#"data: {"jsonrpc":"2.0","id":"#;
    const TAIL: &[u8] = b"}\n\nevent: done\ndata: {}\n\n";
    let result = result.get().as_bytes();
    let mut out = Vec::with_capacity(HEAD.len() + 24 + 10 + result.len() + TAIL.len());
    out.extend_from_slice(HEAD);
    if serde_json::to_writer(&mut out, id).is_err() {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(br#","result":"#);
    out.extend(result.iter().map(|&b| match b {
        b'\n' | b'\r' => b' ',
        b => b,
    }));
    out.extend_from_slice(TAIL);
    Bytes::from(out)
}

/// A comment line (keep-alive): ignored by every SSE client.
pub(crate) fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

/// Several frames as one (written to the socket together).
pub(crate) fn concat(frames: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(frames.iter().map(Bytes::len).sum());
    for frame in frames {
        out.extend_from_slice(frame);
    }
    Bytes::from(out)
}

/// A streaming `text/event-stream` response fed by `rx`, with `first` (already taken from `rx`)
/// ahead of the frames queued there: they go out with the headers, in one write.
pub(crate) fn response_after(first: Option<Bytes>, mut rx: mpsc::Receiver<Bytes>) -> Response {
    let mut frames: Vec<Bytes> = first.into_iter().collect();
    while let Ok(next) = rx.try_recv() {
        frames.push(next);
    }
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(frame), rx))
    });
    stream_response(&frames, rest)
}

/// The whole stream of a call that ended before its headers went out: what it queued on `rx`,
/// then `tail`, in one write.
///
/// `rx` is drained with a no-op waker: that replaces the waker of the task running the call
/// (registered while it waited for either), so the senders dropped after this do not wake that
/// task, already running, for a pointless second poll.
pub(crate) fn response_ended(mut rx: mpsc::Receiver<Bytes>, tail: Option<Bytes>) -> Response {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut frames = Vec::new();
    while let std::task::Poll::Ready(Some(frame)) = rx.poll_recv(&mut cx) {
        frames.push(frame);
    }
    drop(rx);
    // A whole body (sent with a Content-Length, not chunked): nothing more will follow.
    let body = match (frames.is_empty(), tail) {
        (true, Some(tail)) => tail,
        (_, tail) => {
            frames.extend(tail);
            concat(&frames)
        }
    };
    crate::http::response::event_stream(Body::from(body))
}

/// `frames` as the first chunk (one write with the headers), then `rest`.
pub(crate) fn stream_response(
    frames: &[Bytes],
    rest: impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    let head = match frames {
        [] => None,
        [one] => Some(one.clone()),
        _ => Some(concat(frames)),
    };
    let stream = futures::stream::iter(head.map(Ok)).chain(rest);
    crate::http::response::event_stream(Body::from_stream(stream))
}
