//! The service of one connection of the shared serve loop (`crate::http`), between hyper and
//! a listener's axum service, and the bodies it wraps.
//!
//! - [`Adapter`]: hands each request to the listener's service with its body wrapped in a
//!   [`TimedBody`], and notes in the connection's state that a request is being answered.
//! - [`TimedBody`]: a request body that must arrive in full within the body-read timeout of
//!   the first time its reader waits for it; past it, the read fails with
//!   [`BodyError::TimedOut`] (the handler answers as it would to any failed read).
//! - [`Answer`]: the service's answer, replaced by a 408 (`Connection: close`) if the request
//!   body timed out, whatever the handler made of the failed read.
//! - [`Tracked`]: the answer's body, which tells the connection's state when hyper is done
//!   with it: the connection is then waiting for a next request.
//!
//! Nothing here allocates per request: the service is called in place (hyper serves one
//! request at a time on an HTTP/1.1 connection), the timer of a body is made only if the body
//! stalls, and the wrappers sit inside the boxes axum and hyper make anyway.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::conn::ConnState;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The connection failed or closed in the middle of the body.
    #[error("cannot read the request body: {0}")]
    Read(#[source] hyper::Error),
    /// The body did not arrive in full within the body-read timeout.
    #[error("the request body did not arrive in full within {}s", .0.as_secs())]
    TimedOut(Duration),
}

/// The hyper service of one connection, over the listener's (always ready) axum service.
pub(super) struct Adapter<S> {
    /// Called in place: hyper calls it from the connection's task, one call at a time.
    service: RefCell<S>,
    state: Arc<ConnState>,
    body_read: Duration,
}

impl<S> Adapter<S> {
    pub(super) fn new(service: S, state: Arc<ConnState>, body_read: Duration) -> Self {
        Self {
            service: RefCell::new(service),
            state,
            body_read,
        }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Adapter<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Answer<S::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.state.begin_request();
        let request = request.map(|incoming| {
            if incoming.is_end_stream() {
                Body::empty()
            } else {
                Body::new(TimedBody {
                    incoming,
                    limit: self.body_read,
                    stall: None,
                    state: self.state.clone(),
                })
            }
        });
        let future = self.service.borrow_mut().call(request);
        Answer {
            future,
            state: Some(self.state.clone()),
            body_read: self.body_read,
        }
    }
}

pin_project! {
    /// A request body held to the body-read timeout (module docs).
    pub(super) struct TimedBody {
        incoming: Incoming,
        limit: Duration,
        // Made when the body first stalls; a body that is there when read needs no timer.
        #[pin]
        stall: Option<Sleep>,
        state: Arc<ConnState>,
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = Pin::new(&mut *this.incoming).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::Read)));
        }
        if this.stall.is_none() {
            this.stall.set(Some(tokio::time::sleep(*this.limit)));
        }
        if let Some(stall) = this.stall.as_pin_mut() {
            ready!(stall.poll(cx));
        }
        this.state.mark_body_timed_out();
        Poll::Ready(Some(Err(BodyError::TimedOut(*this.limit))))
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

pin_project! {
    /// The answer to one request (module docs).
    pub(super) struct Answer<F> {
        #[pin]
        future: F,
        // Taken when the answer is ready.
        state: Option<Arc<ConnState>>,
        body_read: Duration,
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match ready!(this.future.poll(cx)) {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let Some(state) = this.state.take() else {
            // Polled again after it was ready: a contract breach by the caller.
            return Poll::Pending;
        };
        let response = if state.body_timed_out() {
            body_timed_out(*this.body_read)
        } else {
            response
        };
        Poll::Ready(Ok(response.map(|body| Tracked { body, state })))
    }
}

/// 408, and the connection closes: the rest of the body may still be on its way.
fn body_timed_out(limit: Duration) -> Response<Body> {
    let message = BodyError::TimedOut(limit).to_string();
    let mut response = Response::new(Body::from(
        serde_json::json!({ "error": message }).to_string(),
    ));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// An answer's body (module docs).
pub(super) struct Tracked {
    body: Body,
    state: Arc<ConnState>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.state.end_request();
    }
}
