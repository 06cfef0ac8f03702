//! The daemon fixture: the real `revka` binary run against a temporary `REVKA_HOME`.

use std::env;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::try_within;

// ---------------------------------------------------------------------------
// The real daemon
// ---------------------------------------------------------------------------

/// The `revka` binary under test.
pub fn revka_bin() -> &'static str {
    env!("CARGO_BIN_EXE_revka")
}

/// A temporary `REVKA_HOME`, optionally with a config file.
pub struct TestHome {
    pub dir: tempfile::TempDir,
    client_token: std::sync::OnceLock<String>,
}

impl TestHome {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            client_token: std::sync::OnceLock::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_config(&self, toml: &str) -> PathBuf {
        let path = self.path().join("config.toml");
        std::fs::write(&path, toml).expect("write config");
        path
    }

    /// A client token a daemon of this home accepts on the standard MCP path: issued into the
    /// home's token store on first use, as `revka tokens create test` would (a daemon loads the
    /// store at start: call this before starting the daemon).
    pub fn client_token(&self) -> String {
        self.client_token
            .get_or_init(|| {
                revka::auth::TokenStore::open(self.path())
                    .and_then(|store| store.issue_client("test", None, None))
                    .expect("issue a client token")
                    .token
            })
            .clone()
    }

    /// A `revka` command with this home and a clean logging environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(revka_bin());
        cmd.env("REVKA_HOME", self.path())
            .env_remove("REVKA_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env("RUST_LOG", "info");
        cmd
    }
}

/// A daemon started from [`TestHome`], which reports to a fake systemd notify socket.
pub struct TestDaemon {
    pub child: Child,
    notify: UnixDatagram,
    pub stderr_path: PathBuf,
}

impl TestDaemon {
    /// Starts `revka daemon` with extra env vars and waits for `READY=1`.
    pub fn start(home: &TestHome, env: &[(&str, &str)]) -> Self {
        let daemon = Self::spawn(home, env);
        daemon.expect_notification("READY=1", Duration::from_secs(30));
        daemon
    }

    /// Starts `revka daemon` without waiting.
    pub fn spawn(home: &TestHome, env: &[(&str, &str)]) -> Self {
        let sock = home
            .path()
            .join(format!("notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&sock);
        let notify = UnixDatagram::bind(&sock).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let stderr_path = home.path().join("daemon.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = home.command();
        cmd.arg("daemon")
            .env("NOTIFY_SOCKET", &sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn revka daemon");
        Self {
            child,
            notify,
            stderr_path,
        }
    }

    /// Waits for a notification equal to `want`, skipping others (e.g. WATCHDOG=1).
    pub fn expect_notification(&self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf)
                && &buf[..n] == want.as_bytes()
            {
                return;
            }
        }
        panic!("no {want} within {timeout:?}; stderr:\n{}", self.stderr());
    }

    /// Waits for a notification starting with `prefix` (a multi-line one such as
    /// `RELOADING=1\nMONOTONIC_USEC=…`), skipping others; returns it whole.
    pub fn expect_notification_starting(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(text) = self.next_notification(Duration::from_millis(100))
                && text.starts_with(prefix)
            {
                return text;
            }
        }
        panic!(
            "no {prefix}… within {timeout:?}; stderr:\n{}",
            self.stderr()
        );
    }

    /// Receives the next notification, if one arrives within `timeout`.
    pub fn next_notification(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), sig).expect("signal daemon");
    }

    /// Waits for the daemon to exit (generous timeout).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        match try_within(timeout, || self.child.try_wait().expect("try_wait")) {
            Some(status) => status,
            None => panic!(
                "daemon did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Whether a process (or its zombie) exists.
pub fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
