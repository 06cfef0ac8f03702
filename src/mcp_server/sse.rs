//! Server-Sent Events framing for the MCP server's streams.
//!
//! Events are written by hand into a bounded channel that backs the response body: a slow
//! client applies backpressure to its own stream only, and dropping the body (the client hung
//! up) closes the channel, which the producer notices.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
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

/// A streaming `text/event-stream` response fed by `rx`.
pub(crate) fn response(rx: mpsc::Receiver<Bytes>) -> Response {
    with_first(None, rx)
}

/// Like [`response`], but waits up to `hold` for the first frame before answering, and sends
/// it (with whatever else is already queued) together with the headers: a quick tool call is
/// answered with one write instead of two, and its client wakes once. A call still running
/// after `hold` gets its headers then, so no client waits long for them.
pub(crate) async fn held_response(mut rx: mpsc::Receiver<Bytes>, hold: Duration) -> Response {
    let first = match tokio::time::timeout(hold, rx.recv()).await {
        Ok(Some(frame)) => {
            let mut frames = vec![frame];
            while let Ok(next) = rx.try_recv() {
                frames.push(next);
            }
            Some(if frames.len() == 1 {
                frames.remove(0)
            } else {
                concat(&frames)
            })
        }
        // The producer finished without a frame, or has none yet: stream what comes.
        Ok(None) | Err(_) => None,
    };
    with_first(first, rx)
}

fn with_first(first: Option<Bytes>, rx: mpsc::Receiver<Bytes>) -> Response {
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(frame), rx))
    });
    let stream = futures::stream::iter(first.map(Ok)).chain(rest);
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

    async fn body_chunks(response: Response) -> Vec<Bytes> {
        let mut body = response.into_body().into_data_stream();
        let mut chunks = Vec::new();
        while let Some(chunk) = body.next().await {
            chunks.push(chunk.unwrap());
        }
        chunks
    }

    #[tokio::test]
    async fn a_quick_answer_goes_out_with_the_headers_in_one_chunk() {
        let (tx, rx) = mpsc::channel(BUFFER);
        tx.send(event(None, "1")).await.unwrap();
        tx.send(event(Some("done"), "{}")).await.unwrap();
        drop(tx);
        let chunks = body_chunks(held_response(rx, Duration::from_secs(5)).await).await;
        assert_eq!(
            chunks,
            vec![Bytes::from_static(b"data: 1\n\nevent: done\ndata: {}\n\n")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_gets_its_headers_after_the_hold() {
        let (tx, rx) = mpsc::channel(BUFFER);
        let response = held_response(rx, Duration::from_millis(50)).await;
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
