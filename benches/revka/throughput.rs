//! Tool-call throughput and latency: the same `echo` calls made directly to the echo server
//! over stdio, through Revka's `/mcp` (`revka`: seed 001's two-header sessions; `revka-std`:
//! the standard Streamable HTTP path, `initialize` with a client token then `Mcp-Session-Id`),
//! through `revka mcp serve --stdio` in front of that daemon (`revka-stdio`, driven over its
//! pipes like the echo server), and through supergateway and mcp-proxy in front of the same
//! echo server, with 1 and 8 concurrent sessions, in one run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::daemon::{self, Daemon, terminate};
use crate::http::McpSession;
use crate::procs::{CpuMeter, CpuUse};
use crate::stats::{Latencies, Summary, us};
use crate::stdio::StdioServer;

const ARGS: &str = r#"{"text":"hello"}"#;

/// The targets measured, in order (`--targets` picks some).
pub const TARGETS: &[&str] = &[
    "direct",
    "revka",
    "revka-std",
    "revka-stdio",
    "supergateway",
    "mcp-proxy",
];

/// One measured run.
pub struct Row {
    pub target: String,
    pub sessions: usize,
    pub calls: usize,
    /// Calls made in all, the warm-up's included (the instruction counts of a profiled daemon
    /// cover them too).
    pub all_calls: usize,
    pub errors: u64,
    pub lat: Summary,
    pub cpu: CpuUse,
}

impl Row {
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.cpu.wall.as_secs_f64()
    }

    pub fn cpu_per_call_us(&self) -> f64 {
        self.cpu.tree.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }

    /// Times a thread of the target's tree was put on a CPU, per call.
    pub fn runs_per_call(&self) -> f64 {
        self.cpu.runs as f64 / self.calls.max(1) as f64
    }
}

pub fn header() {
    println!(
        "{:<14} {:>4} {:>9} {:>8} {:>8} {:>8} {:>9} {:>12} {:>9} {:>9} {:>6} {:>9}",
        "target",
        "sess",
        "calls/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "max µs",
        "CPU µs/call",
        "runs/call",
        "loadgen",
        "errors",
        "all calls"
    );
}

pub fn print(row: &Row) {
    println!(
        "{:<14} {:>4} {:>9.0} {:>8} {:>8} {:>8} {:>9} {:>12.1} {:>9.2} {:>8.0}% {:>6} {:>9}",
        row.target,
        row.sessions,
        row.rate(),
        us(row.lat.p50),
        us(row.lat.p90),
        us(row.lat.p99),
        us(row.lat.max),
        row.cpu_per_call_us(),
        row.runs_per_call(),
        row.cpu.load.as_secs_f64() * 100.0 / row.cpu.wall.as_secs_f64(),
        row.errors,
        row.all_calls,
    );
}

/// A free loopback port (bound, then released for the gateway under test to take).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A gateway under test, started in front of the echo server.
enum Gateway {
    /// Revka, its sessions on the two-header flow (`false`) or the standard path (`true`).
    Revka(Daemon, bool),
    Other(Child, SocketAddr, &'static str),
}

impl Gateway {
    fn pid(&self) -> i32 {
        match self {
            Self::Revka(d, _) => d.pid(),
            Self::Other(c, ..) => c.id() as i32,
        }
    }

    async fn session(&self) -> anyhow::Result<McpSession> {
        match self {
            Self::Revka(d, false) => McpSession::revka(d.mcp_addr()?, &["echo__echo"]).await,
            Self::Revka(d, true) => {
                McpSession::revka_standard(d.mcp_addr()?, &d.client_token, &["echo__echo"]).await
            }
            Self::Other(_, addr, path) => McpSession::streamable(*addr, path).await,
        }
    }

    fn tool(&self) -> &'static str {
        match self {
            Self::Revka(..) => "echo__echo",
            Self::Other(..) => "echo",
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Self::Other(child, ..) = self {
            terminate(child, Duration::from_secs(5));
        }
    }
}

/// Revka in front of the echo server; `standard`: its sessions on the standard path.
async fn start_revka(echo: &Path, standard: bool) -> anyhow::Result<Gateway> {
    let config = daemon::config(
        &[("echo".into(), echo.to_owned(), vec![])],
        "\n[sessions]\nmax_sessions = 100\n",
    );
    let daemon = Daemon::start(&config)?;
    let addr = daemon.mcp_addr()?;
    // Wait until the server is connected and its tool can be activated.
    daemon::poll(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async { McpSession::revka(addr, &["echo__echo"]).await.ok() },
    )
    .await
    .with_context(|| format!("echo never became callable:\n{}", daemon.log()))?;
    Ok(Gateway::Revka(daemon, standard))
}

/// Spawns another gateway's command and waits until an MCP session can be initialised.
async fn start_other(mut cmd: Command, port: u16, path: &'static str) -> anyhow::Result<Gateway> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawn gateway")?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let gw = Gateway::Other(child, addr, path);
    daemon::poll(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { McpSession::streamable(addr, path).await.ok() },
    )
    .await
    .context("the gateway never accepted an MCP session")?;
    Ok(gw)
}

use std::os::unix::process::CommandExt;

async fn start_supergateway(bin: &Path, echo: &Path) -> anyhow::Result<Gateway> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--stdio", &echo.display().to_string()])
        .args(["--outputTransport", "streamableHttp", "--stateful"])
        .args(["--port", &port.to_string(), "--logLevel", "none"]);
    start_other(cmd, port, "/mcp").await
}

async fn start_mcp_proxy(bin: &Path, echo: &Path) -> anyhow::Result<Gateway> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--log-level", "WARNING"])
        .arg(echo);
    start_other(cmd, port, "/mcp").await
}

/// Each session calls `tool` in a loop until `until`: its latencies and error count.
pub async fn closed_loop(
    sessions: &mut [McpSession],
    tool: &str,
    until: Instant,
) -> Vec<(Latencies, u64)> {
    futures::future::join_all(sessions.iter_mut().map(|s| async move {
        let mut lat = Latencies::default();
        let mut errors = 0u64;
        let mut id = 1;
        while Instant::now() < until {
            let t0 = Instant::now();
            match s.call(id, tool, ARGS).await {
                Ok(()) => lat.record(t0.elapsed()),
                Err(_) => errors += 1,
            }
            id += 1;
        }
        (lat, errors)
    }))
    .await
}

/// Runs `sessions` sessions in a closed loop against `gw` for `secs` (after a warm-up).
async fn measure_gateway(
    name: &str,
    gw: &Gateway,
    sessions: usize,
    warmup: Duration,
    secs: Duration,
) -> anyhow::Result<Row> {
    let mut all = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        all.push(gw.session().await?);
    }
    let tool = gw.tool();
    let warm: usize = closed_loop(&mut all, tool, Instant::now() + warmup)
        .await
        .iter()
        .map(|(l, e)| l.len() + *e as usize)
        .sum();
    let meter = CpuMeter::start(gw.pid());
    let results = closed_loop(&mut all, tool, Instant::now() + secs).await;
    let cpu = meter.stop();
    let mut lat = Latencies::default();
    let mut errors = 0;
    for (l, e) in results {
        lat.extend(l);
        errors += e;
    }
    Ok(Row {
        target: name.into(),
        sessions,
        calls: lat.len(),
        all_calls: warm + lat.len() + errors as usize,
        errors,
        lat: lat.summary(),
        cpu,
    })
}

async fn measure_direct(
    echo: &Path,
    window: usize,
    warmup: Duration,
    secs: Duration,
) -> anyhow::Result<Row> {
    let mut server = StdioServer::start(echo, &[]).await?;
    server
        .closed_loop(window, Instant::now() + warmup, "echo", ARGS)
        .await?;
    let meter = CpuMeter::start(server.pid());
    let (lat, errors) = server
        .closed_loop(window, Instant::now() + secs, "echo", ARGS)
        .await?;
    let cpu = meter.stop();
    server.stop().await;
    Ok(Row {
        target: "direct stdio".into(),
        sessions: window,
        calls: lat.len(),
        all_calls: lat.len(),
        errors,
        lat: lat.summary(),
        cpu,
    })
}

/// `revka mcp serve --stdio` in front of the daemon of `gw`, driven over its pipes exactly as
/// the echo server is driven directly, `window` calls in flight. The row's CPU is the bridge's,
/// the daemon's and the echo server's; the second figure is the bridge's own use per call
/// (CPU µs, and times one of its threads was put on a CPU).
async fn measure_bridge(
    gw: &Gateway,
    window: usize,
    warmup: Duration,
    secs: Duration,
) -> anyhow::Result<(Row, Own)> {
    let Gateway::Revka(daemon, _) = gw else {
        anyhow::bail!("the stdio bridge needs a Revka daemon");
    };
    let args = ["mcp", "serve", "--stdio"];
    let env = [("REVKA_HOME", daemon.home.path())];
    let mut bridge = StdioServer::start_with_env(&crate::env::revka_bin(), &args, &env).await?;
    let activate = serde_json::json!({ "query": "select:echo__echo" }).to_string();
    let answer = bridge.call_through(0, "tool_search", &activate).await?;
    anyhow::ensure!(
        answer.contains("echo__echo") && !answer.contains("Not found"),
        "cannot activate echo__echo through the bridge: {answer}"
    );
    let tool = gw.tool();
    bridge
        .closed_loop(window, Instant::now() + warmup, tool, ARGS)
        .await?;
    let own_meter = CpuMeter::start(bridge.pid());
    let daemon_meter = CpuMeter::start(gw.pid());
    let (lat, errors) = bridge
        .closed_loop(window, Instant::now() + secs, tool, ARGS)
        .await?;
    let own = own_meter.stop();
    let daemon = daemon_meter.stop();
    bridge.stop().await;
    let calls = lat.len();
    let row = Row {
        target: "revka stdio".into(),
        sessions: window,
        calls,
        all_calls: calls,
        errors,
        lat: lat.summary(),
        cpu: CpuUse {
            tree: own.tree + daemon.tree,
            runs: own.runs + daemon.runs,
            load: own.load,
            wall: own.wall,
        },
    };
    let per_call = calls.max(1) as f64;
    let own = Own {
        cpu_us: own.tree.as_secs_f64() * 1e6 / per_call,
        runs: own.runs as f64 / per_call,
    };
    Ok((row, own))
}

/// The stdio bridge's own use per call.
#[derive(Clone, Copy)]
struct Own {
    /// CPU µs per call.
    cpu_us: f64,
    /// Times a thread of the bridge was put on a CPU, per call.
    runs: f64,
}

/// The whole comparison.
pub async fn run(secs: Duration, targets: &[String]) -> anyhow::Result<()> {
    let on = |t: &str| targets.iter().any(|x| x == t);
    let echo = crate::env::example("echo_server")?;
    let warmup = Duration::from_secs(1);
    println!(
        "\n## tool-call throughput: echo server, {}s per run after a 1s warm-up; CPU = the target's process tree",
        secs.as_secs()
    );
    println!(
        "## direct stdio: 1 or 8 calls in flight on one pipe; gateways: 1 or 8 sessions, one keep-alive connection each"
    );
    println!(
        "## runs/call: times a thread of the target's tree was put on a CPU (wake-ups), per call"
    );
    header();
    let mut rows: Vec<Row> = Vec::new();
    // The stdio bridge's own CPU per call, by calls in flight.
    let mut bridge_own: Vec<(usize, Own)> = Vec::new();
    for sessions in [1, 8] {
        if on("direct") {
            let row = measure_direct(&echo, sessions, warmup, secs).await?;
            print(&row);
            rows.push(row);
        }
        if on("revka") || on("revka-stdio") {
            let gw = start_revka(&echo, false).await?;
            if on("revka") {
                let row = measure_gateway("revka", &gw, sessions, warmup, secs).await?;
                print(&row);
                rows.push(row);
            }
            if on("revka-stdio") {
                let (row, own) = measure_bridge(&gw, sessions, warmup, secs).await?;
                print(&row);
                rows.push(row);
                bridge_own.push((sessions, own));
            }
        }
        if on("revka-std") {
            let gw = start_revka(&echo, true).await?;
            let row = measure_gateway("revka-std", &gw, sessions, warmup, secs).await?;
            print(&row);
            rows.push(row);
        }
        match crate::env::supergateway().filter(|_| on("supergateway")) {
            Some((bin, _)) => {
                let gw = start_supergateway(&bin, &echo).await?;
                let row = measure_gateway("supergateway", &gw, sessions, warmup, secs).await?;
                print(&row);
                rows.push(row);
            }
            None if on("supergateway") => println!(
                "{:<14} {sessions:>4}  not installed (run .ci/bench)",
                "supergateway"
            ),
            None => {}
        }
        match crate::env::mcp_proxy().filter(|_| on("mcp-proxy")) {
            Some((bin, _)) => {
                let gw = start_mcp_proxy(&bin, &echo).await?;
                let row = measure_gateway("mcp-proxy", &gw, sessions, warmup, secs).await?;
                print(&row);
                rows.push(row);
            }
            None if on("mcp-proxy") => println!(
                "{:<14} {sessions:>4}  not installed (run .ci/bench)",
                "mcp-proxy"
            ),
            None => {}
        }
    }
    println!();
    for sessions in [1, 8] {
        let find = |t: &str| {
            rows.iter()
                .find(|r| r.target == t && r.sessions == sessions)
        };
        if let Some(&(_, own)) = bridge_own.iter().find(|(s, _)| *s == sessions) {
            let mut line = format!(
                "{sessions} in flight: the stdio bridge used {:.1} CPU µs per call of its own ({:.2} runs/call)",
                own.cpu_us, own.runs
            );
            if let (Some(http), Some(stdio)) = (find("revka"), find("revka stdio")) {
                line.push_str(&format!(
                    "; revka over stdio adds {} µs at p50 to revka over HTTP ({} vs {})",
                    us(stdio.lat.p50 - http.lat.p50),
                    us(stdio.lat.p50),
                    us(http.lat.p50),
                ));
            }
            println!("{line}");
        }
        let (Some(direct), Some(revka)) = (find("direct stdio"), find("revka")) else {
            continue;
        };
        let mut line = format!(
            "{sessions} session(s): revka adds {} µs at p50 over direct stdio ({} vs {}), {:.1} CPU µs per call",
            us(revka.lat.p50 - direct.lat.p50),
            us(revka.lat.p50),
            us(direct.lat.p50),
            revka.cpu_per_call_us(),
        );
        for other in ["supergateway", "mcp-proxy"] {
            if let Some(o) = find(other) {
                line.push_str(&format!(
                    "; {:.1}x the calls/s of {other} ({:.1}x less CPU per call)",
                    revka.rate() / o.rate(),
                    o.cpu_per_call_us() / revka.cpu_per_call_us()
                ));
            }
        }
        println!("{line}");
    }
    for sessions in [1, 8] {
        let find = |t: &str| {
            rows.iter()
                .find(|r| r.target == t && r.sessions == sessions)
        };
        if let (Some(two), Some(std)) = (find("revka"), find("revka-std")) {
            println!(
                "{sessions} session(s): the standard path used {:.1} CPU µs per call against {:.1} on the two-header path ({:+.1}%), p50 {} vs {} µs",
                std.cpu_per_call_us(),
                two.cpu_per_call_us(),
                (std.cpu_per_call_us() / two.cpu_per_call_us() - 1.0) * 100.0,
                us(std.lat.p50),
                us(two.lat.p50),
            );
        }
    }
    Ok(())
}
