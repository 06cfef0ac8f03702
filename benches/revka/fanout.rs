//! Progress fan-out: 100 subscribers on one session's `GET /session/{id}/events` while a tool
//! of that session emits ~1,000 progress events/s (the fault server's `progress` tool, 1 ms
//! apart); meanwhile another session calls `echo` in a closed loop. Its latency is measured
//! before and during the fan-out, in one run. Each progress message carries the time the fault
//! server sent it (`stamp`), so the subscribers also measure how long a progress event took
//! to reach them: through the daemon and its pacing, and their own thread's queue.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};

use crate::daemon::{self, Daemon};
use crate::http::{HttpConn, McpSession};
use crate::procs::CpuMeter;
use crate::stats::{Latencies, Summary, us};
use crate::throughput::closed_loop;

const SUBSCRIBERS: usize = 100;

/// Microseconds since the Unix epoch: the clock the fault server stamps its progress with.
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// The send time in a stamped progress message (`"step 12 at 1733400000123456"`).
fn stamp(event: &[u8]) -> Option<u64> {
    let at = event.windows(4).position(|w| w == b" at ")? + 4;
    let digits = event[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&event[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    progress: u64,
    lagged: u64,
    /// From the fault server's send to this subscriber's read, per progress event.
    delivery: Latencies,
}

/// One subscriber: reads the stream, counting progress events (and `lagged` notices) and
/// timing their delivery, until `until`.
async fn subscribe(
    addr: std::net::SocketAddr,
    session: String,
    auth: String,
    ready: tokio::sync::mpsc::Sender<()>,
    until: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Seen> {
    let mut conn = HttpConn::connect(addr).await?;
    let path = format!("/session/{session}/events");
    let resp = conn
        .send(
            Method::GET,
            &path,
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await?;
    if resp.status() != StatusCode::OK {
        bail!("GET {path}: {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut carry: Vec<u8> = Vec::new();
    let mut seen = Seen::default();
    let mut announced = false;
    let mut until = until;
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = until.changed() => break,
        };
        let Some(frame) = frame else { break };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if !announced {
            announced = true; // the `: connected` comment: this subscriber is on
            let _ = ready.send(()).await;
        }
        let read_at = unix_us();
        carry.extend_from_slice(&data);
        // Count complete events (blank-line terminated); keep the partial tail.
        let mut start = 0;
        while let Some(end) = carry[start..].windows(2).position(|w| w == b"\n\n") {
            let event = &carry[start..start + end];
            if event.starts_with(b"event: lagged") {
                seen.lagged += 1;
            } else if event.windows(10).any(|w| w == b"\"progress\"") {
                seen.progress += 1;
                if let Some(sent) = stamp(event) {
                    let took = read_at.saturating_sub(sent);
                    seen.delivery.record(Duration::from_micros(took));
                }
            }
            start += end + 2;
        }
        carry.drain(..start);
    }
    Ok(seen)
}

fn row(name: &str, s: &Summary, calls_per_s: f64) {
    println!(
        "{name:<34} {:>9.0} {:>8} {:>8} {:>8} {:>9}",
        calls_per_s,
        us(s.p50),
        us(s.p90),
        us(s.p99),
        us(s.max)
    );
}

pub async fn run(secs: Duration) -> anyhow::Result<()> {
    let echo = crate::env::example("echo_server")?;
    let fault = crate::env::example("fault_server")?;
    println!(
        "\n## progress fan-out: {SUBSCRIBERS} subscribers on one session's event stream, ~1,000 progress events/s; echo calls on another session, {}s each",
        secs.as_secs()
    );
    let config = daemon::config(
        &[
            ("echo".into(), echo, vec![]),
            ("fault".into(), fault, vec![]),
        ],
        "\n[sessions]\nmax_sessions = 100\n",
    );
    let daemon = Daemon::start(&config)?;
    let addr = daemon.mcp_addr()?;
    let mut caller = daemon::poll(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async { McpSession::revka(addr, &["echo__echo"]).await.ok() },
    )
    .await
    .with_context(|| format!("echo never became callable:\n{}", daemon.log()))?;
    let mut emitter = daemon::poll(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async { McpSession::revka(addr, &["fault__progress"]).await.ok() },
    )
    .await
    .with_context(|| format!("fault never became callable:\n{}", daemon.log()))?;
    let (id, auth) = emitter
        .revka_credentials()
        .map(|(i, a)| (i.to_owned(), a.to_owned()))
        .context("a Revka session")?;

    // Baseline.
    closed_loop(
        std::slice::from_mut(&mut caller),
        "echo__echo",
        Instant::now() + Duration::from_secs(1),
    )
    .await;
    let t0 = Instant::now();
    let base = closed_loop(
        std::slice::from_mut(&mut caller),
        "echo__echo",
        Instant::now() + secs,
    )
    .await;
    let base_rate = base[0].0.len() as f64 / t0.elapsed().as_secs_f64();

    // Subscribers, all connected before the emitter starts.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The subscribers run on a thread of their own, so that reading 100 streams does not
    // delay the echo caller's own event loop (which would be charged to Revka).
    let subscribers = {
        let (id, auth) = (id.clone(), auth.clone());
        std::thread::spawn(move || -> anyhow::Result<Seen> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let all: Vec<_> = (0..SUBSCRIBERS)
                    .map(|_| {
                        tokio::spawn(subscribe(
                            addr,
                            id.clone(),
                            auth.clone(),
                            ready_tx.clone(),
                            stop_rx.clone(),
                        ))
                    })
                    .collect();
                let mut total = Seen::default();
                for s in all {
                    let seen = s.await??;
                    total.progress += seen.progress;
                    total.lagged += seen.lagged;
                    total.delivery.extend(seen.delivery);
                }
                Ok(total)
            })
        })
    };
    for _ in 0..SUBSCRIBERS {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await
            .context("a subscriber never connected")?;
    }
    let steps = (secs.as_secs() + 3) * 1000;
    let args = format!(r#"{{"steps":{steps},"interval_ms":1,"stamp":true}}"#);
    let emit = tokio::spawn(async move {
        let r = emitter.call_raw(1, "fault__progress", &args).await;
        (emitter, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let meter = CpuMeter::start(daemon.pid());
    let t1 = Instant::now();
    let loaded = closed_loop(
        std::slice::from_mut(&mut caller),
        "echo__echo",
        Instant::now() + secs,
    )
    .await;
    let window = t1.elapsed();
    let cpu = meter.stop();
    stop_tx.send(true)?;
    emit.abort();
    let Seen {
        progress: delivered,
        lagged,
        delivery,
    } = subscribers
        .join()
        .map_err(|_| anyhow::anyhow!("the subscriber thread panicked"))??;
    let loaded_rate = loaded[0].0.len() as f64 / window.as_secs_f64();
    println!(
        "{:<34} {:>9} {:>8} {:>8} {:>8} {:>9}",
        "echo on another session", "calls/s", "p50 µs", "p90 µs", "p99 µs", "max µs"
    );
    row("  alone", &base[0].0.summary(), base_rate);
    row("  during the fan-out", &loaded[0].0.summary(), loaded_rate);
    let d = delivery.summary();
    println!(
        "{:<34} {:>9} {:>8} {:>8} {:>8} {:>9}",
        "progress: fault server → subscriber", "events", "p50 µs", "p90 µs", "p99 µs", "max µs"
    );
    println!(
        "{:<34} {:>9} {:>8} {:>8} {:>8} {:>9}",
        "  (as read by the subscriber thread)",
        d.n,
        us(d.p50),
        us(d.p90),
        us(d.p99),
        us(d.max)
    );
    let per_sub = delivered as f64 / SUBSCRIBERS as f64;
    println!(
        "fan-out: {per_sub:.0} progress events per subscriber in ~{:.1}s ({:.0} events/s delivered in all), {lagged} lagged notices; daemon tree CPU {:.0}%, load generator {:.0}% (caller and subscriber threads)",
        (window + Duration::from_millis(500)).as_secs_f64(),
        delivered as f64 / (window + Duration::from_millis(500)).as_secs_f64(),
        cpu.tree.as_secs_f64() * 100.0 / cpu.wall.as_secs_f64(),
        cpu.load.as_secs_f64() * 100.0 / cpu.wall.as_secs_f64(),
    );
    Ok(())
}
