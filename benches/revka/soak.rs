//! Soak: a mixed load for a long time, sampling the daemon's RSS, open fds and process count.
//! Four sessions call `echo` in a closed loop; one calls the fault server's `progress` tool
//! (100 events, 1 ms apart) over and over; a session is created and deleted every 100 ms; the
//! echo server is killed with SIGKILL every 10 s. A daemon that leaks shows it as a rising
//! RSS or fd count, or a growing process tree.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::daemon::{self, Daemon};
use crate::http::McpSession;
use crate::procs;

const ARGS: &str = r#"{"text":"soak"}"#;

#[derive(Default)]
struct Counts {
    calls: u64,
    errors: u64,
    churned: u64,
    kills: u64,
}

fn sample(t: Duration, pid: i32, c: &Counts) -> (u64, usize, usize) {
    let rss = procs::rss_kib(pid);
    let fds = procs::fds(pid);
    let procs = procs::tree(pid).len();
    println!(
        "{:>6.0} {:>10} {:>7} {:>8} {:>6} {:>10} {:>5} {:>6}",
        t.as_secs_f64(),
        c.calls,
        c.errors,
        c.churned,
        c.kills,
        rss,
        fds,
        procs
    );
    (rss, fds, procs)
}

async fn churn(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut s = McpSession::revka(addr, &[]).await?;
    let (id, auth) = s
        .revka_credentials()
        .map(|(i, a)| (i.to_owned(), a.to_owned()))
        .context("a Revka session")?;
    let conn = s.conn();
    let (status, _, _) = conn
        .request(
            Method::DELETE,
            &format!("/session/{id}"),
            &[("authorization", auth.as_str())],
            Bytes::new(),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::NO_CONTENT,
        "DELETE /session: {status}"
    );
    Ok(())
}

pub async fn run(length: Duration) -> anyhow::Result<()> {
    let echo = crate::env::example("echo_server")?;
    let fault = crate::env::example("fault_server")?;
    let every = (length / 20).clamp(Duration::from_secs(1), Duration::from_secs(30));
    println!(
        "\n## soak: {}s of mixed load (4 echo callers, progress calls, session churn every 100 ms, kill -9 of the echo server every 10 s); a sample every {}s",
        length.as_secs(),
        every.as_secs()
    );
    let config = daemon::config(
        &[
            ("echo".into(), echo, vec![]),
            ("fault".into(), fault, vec![]),
        ],
        "\n[sessions]\nmax_sessions = 100\ncreate_per_minute = 6000\n\n[supervisor]\nmax_restarts = 100000\nwindow_secs = 1\nreset_after_secs = 1\nintensity = 100000\nintensity_period_secs = 1\n",
    );
    let daemon = Daemon::start(&config)?;
    let addr = daemon.mcp_addr()?;
    let mut callers = Vec::new();
    for _ in 0..4 {
        callers.push(
            daemon::poll(
                Duration::from_secs(30),
                Duration::from_millis(20),
                || async { McpSession::revka(addr, &["echo__echo"]).await.ok() },
            )
            .await
            .with_context(|| format!("echo never became callable:\n{}", daemon.log()))?,
        );
    }
    let mut progress = daemon::poll(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async { McpSession::revka(addr, &["fault__progress"]).await.ok() },
    )
    .await?;

    println!(
        "{:>6} {:>10} {:>7} {:>8} {:>6} {:>10} {:>5} {:>6}",
        "t s", "calls", "errors", "churned", "kills", "RSS KiB", "fds", "procs"
    );
    let start = Instant::now();
    let end = start + length;
    let mut c = Counts::default();
    let first = sample(Duration::ZERO, daemon.pid(), &c);
    let mut samples = vec![first];
    let mut next_sample = start + every;
    let mut next_kill = start + Duration::from_secs(10);
    let mut next_churn = start + Duration::from_millis(100);
    let mut round = 0u64;
    while Instant::now() < end {
        // One round: every caller makes a call; every 50th round the progress session too.
        round += 1;
        let base = round * 10;
        let (results, p) =
            futures::future::join(
                futures::future::join_all(callers.iter_mut().enumerate().map(
                    |(k, s)| async move { s.call(base + k as u64, "echo__echo", ARGS).await },
                )),
                async {
                    if round.is_multiple_of(50) {
                        let args = r#"{"steps":100,"interval_ms":1}"#;
                        Some(progress.call(base + 9, "fault__progress", args).await)
                    } else {
                        None
                    }
                },
            )
            .await;
        for r in results.into_iter().chain(p) {
            c.calls += 1;
            if r.is_err() {
                c.errors += 1;
            }
        }
        let now = Instant::now();
        if now >= next_churn {
            next_churn = now + Duration::from_millis(100);
            match churn(addr).await {
                Ok(()) => c.churned += 1,
                Err(_) => c.errors += 1,
            }
        }
        if now >= next_kill {
            next_kill = now + Duration::from_secs(10);
            if let Some(pid) = procs::tree(daemon.pid())
                .into_iter()
                .find(|&p| procs::cmdline(p).contains("echo_server"))
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                c.kills += 1;
            }
        }
        if now >= next_sample {
            next_sample = now + every;
            samples.push(sample(start.elapsed(), daemon.pid(), &c));
        }
    }
    samples.push(sample(start.elapsed(), daemon.pid(), &c));
    // Growth from the second sample (after warm-up) to the last.
    let base = samples.get(1).copied().unwrap_or(first);
    let last = *samples.last().expect("sampled");
    println!(
        "after warm-up: RSS {:+} KiB, fds {:+}, processes {:+}; {} calls ({} failed, most while the echo server was down), {} sessions churned, {} kills",
        last.0 as i64 - base.0 as i64,
        last.1 as i64 - base.1 as i64,
        last.2 as i64 - base.2 as i64,
        c.calls,
        c.errors,
        c.churned,
        c.kills
    );
    Ok(())
}
