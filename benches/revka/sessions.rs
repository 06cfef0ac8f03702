//! Memory per idle session: `n` sessions created (`POST /session`, then `initialize` on
//! `/mcp` with the two headers, as a real client does) and held; the daemon's RSS before and
//! after, per session.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::daemon::{self, Daemon};
use crate::http::{HttpConn, is_success};
use crate::procs;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"revka-bench","version":"0"}}}"#;

/// Creates one session on `conn` and initialises it.
async fn open(conn: &mut HttpConn) -> anyhow::Result<()> {
    let (status, _, body) = conn
        .request(Method::POST, "/session", &[], Bytes::from_static(b"{}"))
        .await?;
    if status != StatusCode::OK {
        bail!("POST /session: {status} {}", String::from_utf8_lossy(&body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let id = v["session_id"].as_str().context("session_id")?;
    let auth = format!("Bearer {}", v["token"].as_str().context("token")?);
    let headers = [
        ("authorization", auth.as_str()),
        ("x-revka-session", id),
        ("accept", "application/json, text/event-stream"),
    ];
    let (status, _, body) = conn
        .request(
            Method::POST,
            "/mcp",
            &headers,
            Bytes::from_static(INIT.as_bytes()),
        )
        .await?;
    if status != StatusCode::OK || !is_success(&body) {
        bail!("initialize: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// The daemon's RSS once it has settled (the smallest of a few readings).
async fn settled_rss(pid: i32) -> u64 {
    let mut least = u64::MAX;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        least = least.min(procs::rss_kib(pid));
    }
    least
}

pub async fn run(n: usize) -> anyhow::Result<()> {
    println!("\n## sessions: {n} sessions created (POST /session + initialize) and held");
    // As fast as they can be created: past the default rate limit of `POST /session`.
    let extra = format!(
        "\n[sessions]\nmax_sessions = {}\ncreate_burst = {n}\ncreate_per_minute = 1000000\n",
        n * 2
    );
    let daemon = Daemon::start(&daemon::config(&[], &extra))?;
    let addr = daemon.mcp_addr()?;
    let mut conn = HttpConn::connect(addr).await?;
    // One session first, so that what is allocated once (buffers, lazy statics) is not
    // counted per session.
    open(&mut conn).await?;
    let before = settled_rss(daemon.pid()).await;
    let t0 = Instant::now();
    for i in 0..n {
        open(&mut conn)
            .await
            .with_context(|| format!("session {i}:\n{}", daemon.log()))?;
    }
    let took = t0.elapsed();
    let after = settled_rss(daemon.pid()).await;
    let grown = after.saturating_sub(before);
    println!(
        "RSS {before} KiB with 1 session, {after} KiB with {} ({:.0} sessions/s created): {:.2} KiB per idle session",
        n + 1,
        n as f64 / took.as_secs_f64(),
        grown as f64 / n as f64
    );
    Ok(())
}
