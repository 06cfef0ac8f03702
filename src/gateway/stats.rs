//! `GET /api/servers/stats`: per-server calls/s, error rate and p50/p99 latency over the last
//! 15 minutes, for the dashboard's Servers view.
//!
//! Part of `root/gateway`. The figures come from [`crate::telemetry::history`], which the
//! sampler the gateway's listener runs fills every 10 s from the daemon's own counters; this
//! route only renders them.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::server::Gateway;

/// `GET /api/servers/stats`: `{"interval_secs", "window_secs", "servers": {name: {"points",
/// "last_minute", "total_calls"}}}` (shape in `History::render`).
pub(super) async fn servers(State(gw): State<Gateway>) -> Response {
    Json(gw.services().telemetry.history().render()).into_response()
}
