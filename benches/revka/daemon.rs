//! A Revka daemon (or another gateway) run for a benchmark: a temporary `REVKA_HOME` with the
//! given config, started from the built binary, stopped (SIGTERM, then SIGKILL of its group)
//! when dropped.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running daemon.
pub struct Daemon {
    pub child: Child,
    pub home: tempfile::TempDir,
    /// A client token of the daemon's token store, for its standard MCP path.
    pub client_token: String,
    /// When `exec` was called.
    pub spawned_at: Instant,
}

impl Daemon {
    /// Writes `config` and spawns `revka daemon` (does not wait for anything).
    pub fn spawn(config: &str) -> anyhow::Result<Self> {
        let home = tempfile::tempdir()?;
        std::fs::write(home.path().join("config.toml"), config)?;
        let log = std::fs::File::create(home.path().join("daemon.log"))?;
        // Issued into the store the daemon loads at start, as `revka tokens create` would.
        let client_token = revka::auth::TokenStore::open(home.path())?
            .issue_client("bench", None, None)?
            .token;
        let spawned_at = Instant::now();
        let child = Command::new(crate::env::revka_bin())
            .arg("daemon")
            .env("REVKA_HOME", home.path())
            .env(
                "RUST_LOG",
                std::env::var("REVKA_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("REVKA_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("spawn revka daemon")?;
        Ok(Self {
            child,
            home,
            client_token,
            spawned_at,
        })
    }

    /// Spawns and waits until `mcp.json` is written.
    pub fn start(config: &str) -> anyhow::Result<Self> {
        let mut daemon = Self::spawn(config)?;
        daemon.wait_for_file("mcp.json", Duration::from_secs(30))?;
        Ok(daemon)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Polls (every 200 µs) until `$REVKA_HOME/<name>` exists; returns when it appeared,
    /// measured from the exec.
    pub fn wait_for_file(&mut self, name: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let path = self.home.path().join(name);
        let deadline = Instant::now() + timeout;
        loop {
            if path.exists() {
                return Ok(self.spawned_at.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the daemon exited ({status}):\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("no {name} within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("daemon.log")).unwrap_or_default()
    }

    fn url_of(&self, file: &str) -> anyhow::Result<String> {
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.home.path().join(file))?)?;
        Ok(doc["url"].as_str().context("url")?.to_owned())
    }

    /// The MCP server's address (from `mcp.json`).
    pub fn mcp_addr(&self) -> anyhow::Result<SocketAddr> {
        addr_of(&self.url_of("mcp.json")?)
    }

    /// SIGTERM, then wait (a SIGKILL of the group after 30 s).
    pub fn stop(mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        terminate(&mut self.child, Duration::from_secs(30));
        Ok(started.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(30));
    }
}

/// SIGTERM to `child`, then SIGKILL to its process group after `grace`.
pub fn terminate(child: &mut Child, grace: Duration) {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// `127.0.0.1:port` of an `http://host:port/...` URL.
pub fn addr_of(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").context("http URL")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .parse()
        .with_context(|| format!("address of {url}"))
}

/// A config with `[mcp]` enabled and the given servers (`(name, command, args)`), plus extra
/// TOML.
pub fn config(servers: &[(String, PathBuf, Vec<String>)], extra: &str) -> String {
    // The operator sidecar is off: the figures are Revka's own.
    let mut out = String::from("[operator]\nenabled = false\n\n[mcp]\nenabled = true\n");
    out.push_str(extra);
    out.push('\n');
    for (name, command, args) in servers {
        out.push_str(&format!(
            "\n[[mcp.servers]]\nname = {name:?}\ncommand = {command:?}\nargs = {args:?}\n",
            command = command.display().to_string(),
        ));
    }
    out
}

/// Polls `f` every `every` until it returns `Some`, or gives up after `timeout`.
pub async fn poll<T, F, Fut>(timeout: Duration, every: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("gave up after {timeout:?}");
        }
        tokio::time::sleep(every).await;
    }
}
