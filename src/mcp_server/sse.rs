//! Server-Sent Events framing for the MCP server's streams.
//!
//! Events are written by hand into a bounded channel that backs the response body: a slow
//! client applies backpressure to its own stream only, and dropping the body (the client hung
//! up) closes the channel, which the producer notices.

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
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
    let head = match frames.len() {
        0 => None,
        1 => frames.pop(),
        _ => Some(concat(&frames)),
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(frame), rx))
    });
    let stream = futures::stream::iter(head.map(Ok)).chain(rest);
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
    use std::time::Duration;

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
