//! Start-up: daemon exec → `mcp.json` written (the MCP server bound), with no servers and
//! with 20 stdio servers; exec → all 20 servers connected (every tool activatable through `/mcp`),
//! for 20 echo servers and for 20 servers that each take 300 ms to answer `initialize` (a
//! parallel connect takes about one server's time, a sequential one twenty times that).
//! Idle RSS of the daemon alone and of its whole tree.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::daemon::{self, Daemon};
use crate::http::McpSession;
use crate::procs;
use crate::stats::{Latencies, us};

const RUNS: usize = 5;
const SERVERS: usize = 20;
const SLOW_INIT_MS: u64 = 300;

/// Polls until every server's `tool` can be activated through `/mcp` (each connected, its
/// tool list read); when, from the exec.
async fn all_connected(daemon: &mut Daemon, tool: &str) -> anyhow::Result<Duration> {
    daemon.wait_for_file("mcp.json", Duration::from_secs(30))?;
    let addr = daemon.mcp_addr()?;
    let names: Vec<String> = (0..SERVERS).map(|i| format!("s{i}__{tool}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if McpSession::revka(addr, &names).await.is_ok() {
            return Ok(daemon.spawned_at.elapsed());
        }
        if Instant::now() > deadline {
            bail!(
                "not all {SERVERS} servers connected after 60 s:\n{}",
                daemon.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn servers(
    program: &std::path::Path,
    args: &[&str],
) -> Vec<(String, std::path::PathBuf, Vec<String>)> {
    (0..SERVERS)
        .map(|i| {
            (
                format!("s{i}"),
                program.to_owned(),
                args.iter().map(|a| (*a).to_owned()).collect(),
            )
        })
        .collect()
}

fn line(name: &str, lat: &Latencies) {
    let s = lat.summary();
    println!("{name:<44} {:>4} {:>9} {:>9}", s.n, us(s.p50), us(s.max));
}

pub async fn run() -> anyhow::Result<()> {
    let echo = crate::env::example("echo_server")?;
    let fault = crate::env::example("fault_server")?;
    println!("\n## start-up: from exec, {RUNS} runs each");
    println!("{:<44} {:>4} {:>9} {:>9}", "", "n", "p50 µs", "max µs");

    let mut bound = Latencies::default();
    let mut idle = (0, 0);
    for _ in 0..RUNS {
        let mut d = Daemon::spawn(&daemon::config(&[], ""))?;
        bound.record(d.wait_for_file("mcp.json", Duration::from_secs(30))?);
        tokio::time::sleep(Duration::from_secs(2)).await;
        idle = (procs::rss_kib(d.pid()), procs::tree_rss_kib(d.pid()));
    }
    line("no servers: exec -> mcp.json", &bound);

    let mut cold = Latencies::default();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let server = crate::stdio::StdioServer::start(&echo, &[]).await?;
        cold.record(t0.elapsed());
        server.stop().await;
    }
    line("one echo server alone: spawn -> initialized", &cold);

    let echo_cfg = daemon::config(&servers(&echo, &[]), "");
    let slow = SLOW_INIT_MS.to_string();
    let slow_cfg = daemon::config(&servers(&fault, &["--slow-init", &slow]), "");
    let mut rss20 = (0, 0);
    for (name, tool, config) in [
        ("echo", "echo", &echo_cfg),
        ("slow-init", "progress", &slow_cfg),
    ] {
        let mut bound = Latencies::default();
        let mut ready = Latencies::default();
        let mut stop = Latencies::default();
        for _ in 0..RUNS {
            let mut d = Daemon::spawn(config)?;
            bound.record(d.wait_for_file("mcp.json", Duration::from_secs(30))?);
            ready.record(all_connected(&mut d, tool).await?);
            if name == "echo" {
                tokio::time::sleep(Duration::from_secs(2)).await;
                rss20 = (procs::rss_kib(d.pid()), procs::tree_rss_kib(d.pid()));
            }
            stop.record(d.stop()?);
        }
        line(
            &format!("{SERVERS} {name} servers: exec -> mcp.json"),
            &bound,
        );
        line(
            &format!("{SERVERS} {name} servers: exec -> all connected"),
            &ready,
        );
    }
    println!(
        "(each slow-init server takes {SLOW_INIT_MS} ms to answer initialize: {SERVERS} connected in sequence would take {} ms)",
        SLOW_INIT_MS * SERVERS as u64
    );
    println!(
        "idle RSS: {} KiB daemon alone with no servers ({} KiB tree); {} KiB daemon with {SERVERS} echo servers ({} KiB with them)",
        idle.0, idle.1, rss20.0, rss20.1
    );
    Ok(())
}
