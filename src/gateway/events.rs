//! `GET /api/events`: the supervision event log, read by page or followed live (`root/gateway`).
//!
//! The daemon keeps the last [`CAPACITY`] supervision events of its fleet, and as many of its
//! sessions and terminals, in a ring ([`revka_actors::events`]); this route serves it, to any
//! gateway token (`viewer` and up).
//!
//! Query (every parameter optional; an unknown one is a 400):
//! - `since=<seq>`: only events with a greater sequence number (default 0: all that are kept);
//!   a cursor from before a daemon restart (ahead of the newest event) reads from the start;
//! - `limit=<n>`: at most this many events, 1 to [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]; not
//!   used by a followed stream);
//! - `path=<prefix>`: only the node at that path and its subtree (`root/mcp_servers`; a path
//!   not starting at `root` is taken below it);
//! - `follow=true|false`: stream (also asked for by `Accept: text/event-stream`).
//!
//! The JSON answer is `{"events": [...], "next": <since for the next page>, "oldest": <oldest
//! seq kept, 0 while none>, "gap": <whether events after since were already overwritten>}`.
//!
//! The stream is Server-Sent Events: `retry: 2000` first, then the events kept after `since`
//! (or after `Last-Event-ID`, which wins), then live ones, each as `id: <seq>`,
//! `event: supervision`, `data: <event JSON>`; `event: gap` with
//! `{"missed_from": a, "missed_to": b}` when events were lost (the ring overwrote them before
//! this reader got them); a keep-alive comment every 15 s. Events that are ready go out
//! together in one write at once, so a `fetch()` reader sees each as it happens. The stream
//! ends when the client goes, or when the daemon (or the gateway) stops. While no stream is
//! open, the event log does no work for streams at all.
//!
//! Redaction follows `GET /api/actors`: the events of the MCP sessions and terminals
//! (`root/sessions/<id>`, `root/terminals/<id>` and below) are shown to the owner role only;
//! others see those of their supervisors.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use revka_actors::events::{CAPACITY, Delivery, Event, Gap, Subscription};
use revka_actors::{ActorState, StatusNode};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::server::{Caller, Gateway};
use crate::auth::Role;
use crate::http::response::error;

/// `limit` when none is given.
pub(super) const DEFAULT_LIMIT: usize = 500;
/// The largest `limit`: the whole ring.
pub(super) const MAX_LIMIT: usize = CAPACITY;
/// A stream's keep-alive comment period.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// The reconnection delay a stream asks its client for (`retry:`), in milliseconds.
const RETRY_MS: u64 = 2_000;
/// Ready events are gathered into one write until it holds at least this many bytes.
const MAX_CHUNK: usize = 64 * 1024;

/// The query of `GET /api/events`, as given (parsed by [`Request::parse`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    since: Option<String>,
    limit: Option<String>,
    path: Option<String>,
    follow: Option<String>,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    since: u64,
    limit: usize,
    /// The subtree, as a full path.
    path: Option<String>,
    follow: bool,
}

impl Request {
    /// Parses the query and the headers; `Err` is the 400's message.
    fn parse(query: &EventsQuery, headers: &HeaderMap, root: &str) -> Result<Self, String> {
        let header = |name: header::HeaderName| {
            headers
                .get(name)
                .map(|v| v.to_str().map(str::trim).unwrap_or("\u{fffd}"))
        };
        let mut since = match query.since.as_deref().map(str::trim) {
            None | Some("") => 0,
            Some(s) => s.parse::<u64>().map_err(|_| {
                format!("invalid since `{s}`: expected a sequence number (an integer >= 0)")
            })?,
        };
        // A reconnecting EventSource (or a fetch() reader doing the same) resumes after it.
        if let Some(id) =
            header(header::HeaderName::from_static("last-event-id")).filter(|id| !id.is_empty())
        {
            since = id.parse::<u64>().map_err(|_| {
                format!(
                    "invalid Last-Event-ID `{id}`: expected a sequence number (an integer >= 0)"
                )
            })?;
        }
        let limit = match query.limit.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_LIMIT,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    format!("invalid limit `{s}`: expected a number from 1 to {MAX_LIMIT}")
                })?,
        };
        let accepts_stream = header(header::ACCEPT)
            .is_some_and(|accept| accept.to_ascii_lowercase().contains("text/event-stream"));
        let follow = match query.follow.as_deref().map(str::trim) {
            None => accepts_stream,
            Some("" | "true" | "1") => true,
            Some("false" | "0") => false,
            Some(other) => {
                return Err(format!("invalid follow `{other}`: expected true or false"));
            }
        };
        let path = query
            .path
            .as_deref()
            .map(|p| p.trim().trim_matches('/'))
            .filter(|p| !p.is_empty())
            .map(|p| {
                let under_root = p
                    .strip_prefix(root)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
                if under_root {
                    p.to_owned()
                } else {
                    format!("{root}/{p}")
                }
            });
        Ok(Self {
            since,
            limit,
            path,
            follow,
        })
    }
}

/// Which events a caller gets: its role's and its `path`'s.
#[derive(Debug, Clone)]
struct Filter {
    owner: bool,
    path: Option<String>,
}

impl Filter {
    fn passes(&self, event: &Event) -> bool {
        visible(self.owner, &event.path) && self.path.as_deref().is_none_or(|p| event.is_under(p))
    }
}

/// Whether a caller sees the events of the node at `path`: the owner all, the others all but
/// those of the sessions and terminals themselves (the rule of `GET /api/actors`).
fn visible(owner: bool, path: &str) -> bool {
    owner || !super::api::owner_only(path)
}

/// `GET /api/events`.
pub(super) async fn events(
    State(gw): State<Gateway>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid query: {} (expected since, limit, path, follow)",
                    e.body_text()
                ),
            );
        }
    };
    let root = &gw.services().status_root;
    let request = match Request::parse(&query, &headers, root.path()) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let filter = Filter {
        owner: caller.role == Role::Owner,
        path: request.path,
    };
    if request.follow {
        return follow(root, request.since, filter);
    }
    let page = root
        .events()
        .page(request.since, request.limit, |e| filter.passes(e));
    let events: Vec<&Event> = page.events.iter().map(AsRef::as_ref).collect();
    Json(json!({
        "events": events,
        "next": page.next,
        "oldest": page.oldest,
        "gap": page.gap.is_some(),
    }))
    .into_response()
}

/// The SSE stream (module docs).
fn follow(root: &StatusNode, since: u64, filter: Filter) -> Response {
    let mut feed = Feed {
        subscription: root.events().subscribe(since),
        filter,
        keepalive: tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE),
        stop: Box::pin(stopping(root)),
    };
    // The retry line and the backlog that is ready go out with the headers.
    let mut first = format!("retry: {RETRY_MS}\n: connected\n\n").into_bytes();
    feed.drain_ready(&mut first);
    let rest = futures::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), feed))
    });
    let body = futures::stream::iter([Ok::<_, Infallible>(Bytes::from(first))]).chain(rest);
    crate::http::response::event_stream(Body::from_stream(body))
}

/// Resolves when the stream should end because the daemon stops: the root moves to
/// `stopping` or `stopped`, or the gateway (`root/gateway`) leaves `running` (it is being
/// stopped or restarted, and waits for its open connections).
fn stopping(root: &StatusNode) -> impl Future<Output = ()> + Send + 'static {
    let mut root_changes = root.state_changes();
    let mut gateway_changes = root.find("gateway").map(|g| g.state_changes());
    async move {
        loop {
            let gateway = async {
                match gateway_changes.as_mut() {
                    Some(changes) => match changes.changed().await {
                        Ok(()) => Some(*changes.borrow_and_update()),
                        Err(_) => None,
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = root_changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let state = *root_changes.borrow_and_update();
                    if matches!(state, ActorState::Stopping | ActorState::Stopped) {
                        return;
                    }
                }
                state = gateway => match state {
                    Some(ActorState::Running | ActorState::Starting) => {}
                    // Anything else, or the node is gone.
                    _ => return,
                },
            }
        }
    }
}

/// One follower's stream, polled by its connection's own task.
struct Feed {
    subscription: Subscription,
    filter: Filter,
    keepalive: tokio::time::Interval,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Feed {
    /// The next chunk to write, or `None` when the stream ends. Cancel safe.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let first = tokio::select! {
                biased;
                () = &mut self.stop => return None,
                delivery = self.subscription.next() => delivery?,
                _ = self.keepalive.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
            };
            let mut out = Vec::new();
            self.push(&mut out, first);
            self.drain_ready(&mut out);
            if !out.is_empty() {
                self.keepalive.reset();
                return Some(Bytes::from(out));
            }
            // Everything ready was filtered out: wait for more.
        }
    }

    /// Appends the deliveries that are ready now, up to about [`MAX_CHUNK`] bytes.
    fn drain_ready(&mut self, out: &mut Vec<u8>) {
        while out.len() < MAX_CHUNK {
            let Some(delivery) = self.subscription.try_next() else {
                break;
            };
            self.push(out, delivery);
        }
    }

    /// Appends the frame of `delivery`, if the caller may see it.
    fn push(&self, out: &mut Vec<u8>, delivery: Delivery) {
        match delivery {
            Delivery::Event(event) if self.filter.passes(&event) => event_frame(out, &event),
            Delivery::Event(_) => {}
            Delivery::Gap(gap) => gap_frame(out, gap),
        }
    }
}

/// `id: <seq>`, `event: supervision`, `data: <JSON>` (one line: JSON strings escape newlines).
fn event_frame(out: &mut Vec<u8>, event: &Event) {
    let Ok(json) = serde_json::to_string(event) else {
        return;
    };
    out.extend_from_slice(
        format!("id: {}\nevent: supervision\ndata: {json}\n\n", event.seq).as_bytes(),
    );
}

/// `event: gap` with the sequence numbers lost.
fn gap_frame(out: &mut Vec<u8>, gap: Gap) {
    out.extend_from_slice(
        format!(
            "event: gap\ndata: {}\n\n",
            json!({ "missed_from": gap.missed_from, "missed_to": gap.missed_to })
        )
        .as_bytes(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> EventsQuery {
        let mut q = EventsQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "since" => q.since = v,
                "limit" => q.limit = v,
                "path" => q.path = v,
                "follow" => q.follow = v,
                other => panic!("{other}"),
            }
        }
        q
    }

    fn parse(pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Result<Request, String> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                header::HeaderValue::from_str(v).unwrap(),
            );
        }
        Request::parse(&query(pairs), &map, "root")
    }

    #[test]
    fn defaults_and_bounds() {
        let request = parse(&[], &[]).unwrap();
        assert_eq!(
            request,
            Request {
                since: 0,
                limit: DEFAULT_LIMIT,
                path: None,
                follow: false
            }
        );
        assert_eq!(parse(&[("limit", "4096")], &[]).unwrap().limit, 4096);
        for bad in ["0", "4097", "-1", "ten"] {
            let e = parse(&[("limit", bad)], &[]).unwrap_err();
            assert_eq!(
                e,
                format!("invalid limit `{bad}`: expected a number from 1 to 4096")
            );
        }
        let e = parse(&[("since", "abc")], &[]).unwrap_err();
        assert_eq!(
            e,
            "invalid since `abc`: expected a sequence number (an integer >= 0)"
        );
        assert!(parse(&[("follow", "maybe")], &[]).is_err());
    }

    #[test]
    fn follow_by_parameter_or_accept_and_last_event_id_wins() {
        assert!(parse(&[("follow", "true")], &[]).unwrap().follow);
        assert!(
            parse(&[], &[("accept", "text/event-stream")])
                .unwrap()
                .follow
        );
        assert!(
            !parse(&[("follow", "false")], &[("accept", "text/event-stream")])
                .unwrap()
                .follow
        );
        let request = parse(&[("since", "3")], &[("last-event-id", "42")]).unwrap();
        assert_eq!(request.since, 42);
        assert!(parse(&[], &[("last-event-id", "x")]).is_err());
    }

    #[test]
    fn paths_are_full_paths_below_the_root() {
        let path = |p: &str| parse(&[("path", p)], &[]).unwrap().path;
        assert_eq!(path("root/mcp_servers/"), Some("root/mcp_servers".into()));
        assert_eq!(path("mcp_servers"), Some("root/mcp_servers".into()));
        assert_eq!(path("root"), Some("root".into()));
        assert_eq!(path("rootless"), Some("root/rootless".into()));
        assert_eq!(path("/"), None);
    }

    #[test]
    fn only_the_owner_sees_the_sessions_events() {
        assert!(visible(false, "root/sessions"));
        assert!(!visible(false, "root/sessions/abc"));
        assert!(!visible(false, "root/sessions/abc/operator"));
        assert!(visible(false, "root/sessions2/abc"));
        assert!(visible(true, "root/sessions/abc"));
        assert!(!visible(false, "root/terminals/term:1"));
        assert!(visible(false, "root/terminals"));
    }

    #[test]
    fn frames_are_one_event_each() {
        let root = StatusNode::root("root", "supervisor");
        root.set_state(ActorState::Running);
        let page = root.events().page(0, 10, |_| true);
        let mut out = Vec::new();
        event_frame(&mut out, &page.events[0]);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("id: 1\nevent: supervision\ndata: {\"seq\":1,"),
            "{text}"
        );
        assert!(text.ends_with("}\n\n") && text.matches('\n').count() == 4);
        let mut out = Vec::new();
        gap_frame(
            &mut out,
            Gap {
                missed_from: 2,
                missed_to: 9,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: gap\ndata: {\"missed_from\":2,\"missed_to\":9}\n\n"
        );
    }

    #[tokio::test]
    async fn a_feed_streams_what_the_caller_may_see_and_ends_when_the_daemon_stops() {
        let root = StatusNode::root("root", "supervisor");
        let sessions = root.child("sessions", "supervisor", None);
        let servers = root.child("mcp_servers", "supervisor", None);
        root.set_state(ActorState::Running);
        let mut feed = Feed {
            subscription: root.events().subscribe(0),
            filter: Filter {
                owner: false,
                path: None,
            },
            keepalive: tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE),
            stop: Box::pin(stopping(&root)),
        };
        let mut backlog = Vec::new();
        feed.drain_ready(&mut backlog);
        let backlog = String::from_utf8(backlog).unwrap();
        assert_eq!(
            backlog.matches("event: supervision").count(),
            3,
            "{backlog}"
        );

        sessions.child("s1", "session", None);
        servers.child("mcp:fs", "mcp_connection", None);
        let chunk = feed.next_chunk().await.unwrap();
        let chunk = String::from_utf8(chunk.to_vec()).unwrap();
        assert!(chunk.contains("root/mcp_servers/mcp:fs"), "{chunk}");
        assert!(!chunk.contains("s1"), "a session is the owner's: {chunk}");

        root.set_state(ActorState::Stopping);
        let end = tokio::time::timeout(Duration::from_secs(5), feed.next_chunk()).await;
        assert_eq!(end.unwrap(), None, "the stream ends when the daemon stops");
    }
}
