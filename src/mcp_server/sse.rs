//! Server-Sent Events framing for the MCP server's streams.
//!
//! Events are written by hand into a bounded channel that backs the response body: a slow
//! client applies backpressure to its own stream only, and dropping the body (the client hung
//! up) closes the channel, which the producer notices.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;
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
/// line.
pub(crate) fn final_frames(id: &Value, result: &RawValue) -> Bytes {
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

/// A streaming `text/event-stream` response fed by `rx`. Frames already queued go out with the
/// headers, in one write.
pub(crate) fn response(rx: mpsc::Receiver<Bytes>) -> Response {
    response_after(None, rx)
}

/// Like [`response`], with `first` (already taken from `rx`) ahead of the queued frames.
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
    frames.extend(tail);
    stream_response(&frames, futures::stream::empty())
}

/// `frames` as the first chunk (one write with the headers), then `rest`.
fn stream_response(
    frames: &[Bytes],
    rest: impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    let head = match frames {
        [] => None,
        [one] => Some(one.clone()),
        _ => Some(concat(frames)),
    };
    let stream = futures::stream::iter(head.map(Ok)).chain(rest);
    (
        StatusCode::OK,
        // Static values: a `&str` would be copied into each response.
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn final_frames_are_the_response_then_done() {
        let result =
            RawValue::from_string("{\"content\": [],\n \"isError\": false}".into()).unwrap();
        let frames = final_frames(&serde_json::json!("a\"b"), &result);
        assert_eq!(
            &frames[..],
            b"data: {\"jsonrpc\":\"2.0\",\"id\":\"a\\\"b\",\"result\":{\"content\": [],  \"isError\": false}}\n\nevent: done\ndata: {}\n\n"
        );
        let text = std::str::from_utf8(&frames).unwrap();
        let data = text
            .strip_prefix("data: ")
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap();
        let parsed: Value = serde_json::from_str(data).unwrap();
        assert_eq!(parsed["id"], "a\"b");
        assert_eq!(parsed["result"]["isError"], false);
    }

    #[test]
    fn events_and_comments() {
        assert_eq!(&event(None, "{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        assert_eq!(
            &event(Some("done"), "x\ny")[..],
            b"event: done\ndata: x\ndata: y\n\n"
        );
        assert_eq!(&comment("keep-alive")[..], b": keep-alive\n\n");
    }

    async fn body_chunks(response: Response) -> Vec<Bytes> {
        let mut body = response.into_body().into_data_stream();
        let mut chunks = Vec::new();
        while let Some(chunk) = body.next().await {
            chunks.push(chunk.unwrap());
        }
        chunks
    }

    #[tokio::test]
    async fn queued_frames_go_out_with_the_headers_in_one_chunk() {
        let (tx, rx) = mpsc::channel(BUFFER);
        tx.send(event(None, "1")).await.unwrap();
        tx.send(event(Some("done"), "{}")).await.unwrap();
        drop(tx);
        let chunks = body_chunks(response_after(Some(comment("first")), rx)).await;
        assert_eq!(
            chunks,
            vec![Bytes::from_static(
                b": first\n\ndata: 1\n\nevent: done\ndata: {}\n\n"
            )]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn later_frames_stream_as_they_come() {
        let (tx, rx) = mpsc::channel(BUFFER);
        let response = response(rx);
        assert_eq!(response.status(), StatusCode::OK);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.send(event(None, "late")).await.unwrap();
        });
        assert_eq!(
            body_chunks(response).await,
            vec![Bytes::from_static(b"data: late\n\n")]
        );
    }
}
