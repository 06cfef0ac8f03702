//! Restart latency: `kill -9` of the echo server under Revka, to the first successful call
//! through `/mcp` again, beside the echo server's own cold start (spawn → initialize →
//! first call, made by the load generator directly).
//!
//! The server's policy allows many restarts and counts a run of 1 s as stable, so every kill
//! (one every ~1.1 s) gets the immediate first restart, not a backoff delay: what is measured
//! is the supervisor's reaction, the respawn and the MCP handshake.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::daemon::{self, Daemon};
use crate::http::McpSession;
use crate::procs;
use crate::stats::{Latencies, us};
use crate::stdio::StdioServer;

const ARGS: &str = r#"{"text":"after restart"}"#;

/// The echo server's pid under the daemon.
fn echo_pid(daemon: i32) -> Option<i32> {
    procs::tree(daemon)
        .into_iter()
        .find(|&p| p != daemon && procs::cmdline(p).contains("echo_server"))
}

/// Spawn → handshake → one successful call, `n` times.
async fn cold_starts(echo: &std::path::Path, n: usize) -> anyhow::Result<Latencies> {
    let mut lat = Latencies::default();
    for _ in 0..n {
        let t0 = Instant::now();
        let mut server = StdioServer::start(echo, &[]).await?;
        server.call(1, "echo", ARGS).await?;
        lat.record(t0.elapsed());
        server.stop().await;
    }
    Ok(lat)
}

pub async fn run(kills: usize) -> anyhow::Result<()> {
    let echo = crate::env::example("echo_server")?;
    println!(
        "\n## restart latency: kill -9 of the stdio echo server -> first successful call through /mcp, {kills} kills"
    );
    let cold = cold_starts(&echo, 20).await?.summary();
    let config = daemon::config(
        &[("echo".into(), echo.clone(), vec![])],
        "\n[supervisor]\nintensity = 100000\nintensity_period_secs = 1\n",
    )
    .replace(
        "args = []\n",
        "args = []\nrestart = { max_restarts = 100000, window_secs = 1, reset_after_secs = 1 }\n",
    );
    let daemon = Daemon::start(&config)?;
    let addr = daemon.mcp_addr()?;
    let mut session = daemon::poll(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async { McpSession::revka(addr, &["echo__echo"]).await.ok() },
    )
    .await
    .with_context(|| format!("echo never became callable:\n{}", daemon.log()))?;

    let mut lat = Latencies::default();
    let mut failed_calls = 0u64;
    let mut id = 1;
    for kill in 0..kills {
        let pid = echo_pid(daemon.pid()).context("no echo server under the daemon")?;
        // A stable run first, so this restart is the immediate one.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let t0 = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        loop {
            id += 1;
            match session.call(id, "echo__echo", ARGS).await {
                Ok(()) => break,
                Err(_) => failed_calls += 1,
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!(
                    "kill {kill}: no successful call 30 s after the kill:\n{}",
                    daemon.log()
                );
            }
        }
        lat.record(t0.elapsed());
        if echo_pid(daemon.pid()) == Some(pid) {
            bail!("kill {kill}: the echo server kept its pid {pid}");
        }
    }
    let s = lat.summary();
    println!(
        "{:<26} {:>5} {:>8} {:>8} {:>8} {:>9}",
        "", "n", "p50 µs", "p90 µs", "p99 µs", "max µs"
    );
    for (name, v) in [("echo server cold start", cold), ("kill -9 -> call ok", s)] {
        println!(
            "{name:<26} {:>5} {:>8} {:>8} {:>8} {:>9}",
            v.n,
            us(v.p50),
            us(v.p90),
            us(v.p99),
            us(v.max)
        );
    }
    println!(
        "restart adds {} at p50 and {} at p99 to the cold start (µs unless marked); {failed_calls} calls failed fast while the server was down",
        us(s.p50 - cold.p50),
        us(s.p99 - cold.p99),
    );
    Ok(())
}
