//! `GET /ws/agents/events` (under `root/gateway`): the agent feed (`crate::agents::feed`) as
//! WebSocket text frames, one JSON feed item each — every agent's timeline events and every
//! chat-room message, from the session manager and from the daemon's fallback agents, the
//! outcomes of queued operations, `sidecar_status` and `budget` notices.
//!
//! Authentication and the Origin check are the gateway's (the route needs a viewer token,
//! carried in `Authorization` or as the `bearer.<token>` subprotocol next to `revka`, which
//! the upgrade selects: [`super::check_subprotocols`]). Each subscriber holds at most
//! [`SUBSCRIBER_BOUND`](crate::agents::feed::SUBSCRIBER_BOUND) items; one that falls behind
//! loses the oldest and gets `{"source":"revka","kind":"lag","missed":N}`. A frame not
//! written within the send timeout closes the socket with 1008 ("client too slow"); a Ping
//! goes out every 30 s; client frames other than Close are ignored; when the daemon stops,
//! the socket is closed with 1001.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::time::{Instant, MissedTickBehavior, timeout};

use super::{Outcome, Timing, WS_PROTOCOL, check_subprotocols, close, send};
use crate::agents::feed::Subscriber;
use crate::gateway::server::Gateway;
use crate::http::response::error;

/// The route's handler.
pub(crate) async fn ws_agent_events(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(message) = check_subprotocols(&headers, WS_PROTOCOL) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    // Subscribed before the upgrade: nothing published after the handshake is missed.
    let subscriber = gw.services().agents.feed.subscribe();
    ws.protocols([WS_PROTOCOL])
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| relay(socket, subscriber, Timing::DEFAULT))
}

/// Relays the feed to one socket until either side ends.
pub(crate) async fn relay(mut socket: WebSocket, mut feed: Subscriber, timing: Timing) {
    let mut ping = tokio::time::interval_at(Instant::now() + timing.ping, timing.ping);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) => break Outcome::ClientClosed,
                Some(Ok(_)) => {}
                Some(Err(e)) => break Outcome::ClientGone(e.to_string()),
                None => break Outcome::ClientGone("connection closed".into()),
            },
            _ = ping.tick() => {
                if let Err(outcome) = send(&mut socket, Message::Ping(Bytes::new()), timing.send).await {
                    break outcome;
                }
            }
            item = feed.next() => match item {
                Some(item) => {
                    let text = item.to_string();
                    if let Err(outcome) = send(&mut socket, Message::Text(text.into()), timing.send).await {
                        break outcome;
                    }
                }
                None => break Outcome::UpstreamEnded { detail: "the daemon is stopping".into(), broke: false },
            },
        }
    };
    match outcome {
        Outcome::ClientClosed => {
            let _ = timeout(timing.close_grace, socket.recv()).await;
        }
        Outcome::ClientGone(why) => tracing::debug!(why, "agent events: the client went away"),
        Outcome::ClientTooSlow => {
            tracing::warn!("agent events: client too slow, closing");
            close(socket, None, close_code::POLICY, "client too slow", timing).await;
        }
        Outcome::UpstreamEnded { detail, .. } => {
            close(socket, None, close_code::AWAY, &detail, timing).await;
        }
    }
}
