//! The daemon fixture: locating the example fixtures and running the real
//! `revka` binary against a temporary `REVKA_HOME`.

use std::collections::BTreeSet;
use std::env;
use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

// ---------------------------------------------------------------------------
// Locating and building the examples
// ---------------------------------------------------------------------------

/// Path of the built example `name`, building it first (once per process).
pub fn example_path(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let profile_dir = profile_dir();
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", env::consts::EXE_SUFFIX));
    // Held across the build so parallel tests wait instead of racing cargo.
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if built.insert(name.to_owned()) {
        build_example(name, &profile_dir, &path);
    }
    path
}

/// `target/<profile>`: this test binary is `target/<profile>/deps/fixtures-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent dir");
    deps.parent()
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Runs `cargo build --example name` with the same target dir and profile as this test.
fn build_example(name: &str, profile_dir: &Path, path: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--example", name, "--profile", profile])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir);
    // Drop what `cargo test` set for this test binary. A build script that says
    // `rerun-if-env-changed=CARGO_MANIFEST_DIR` (ring's) would otherwise see a change, and this
    // build and the next `cargo build`/`cargo test` would each rebuild half the tree (~30 s).
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || matches!(
                &*key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            cmd.env_remove(&*key);
        }
    }
    let status = cmd.status();
    match status {
        Ok(status) if status.success() => {}
        // Without a working cargo (e.g. the test binary run by hand), use what is there.
        _ if path.exists() => eprintln!("warning: could not build {name}; using {path:?}"),
        other => panic!("cargo build --example {name} failed: {other:?}"),
    }
    assert!(path.exists(), "{path:?} missing after cargo build");
}

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
                revka::gateway::auth::TokenStore::open(self.path())
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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
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

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where `.ci/test` installed the official MCP servers and clients (`REVKA_TEST_CACHE`, else
/// `.cache/test-deps`). `None` when absent, unless `REVKA_REQUIRE_INTEROP=1` (set by `.ci/test`),
/// in which case a missing install fails the test instead of skipping it.
pub fn test_cache() -> Option<PathBuf> {
    let dir = env::var_os("REVKA_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/test-deps"));
    let installed = dir.join("npm/node_modules/.bin").exists() && dir.join("venv/bin").exists();
    if installed {
        return Some(dir);
    }
    assert!(
        env::var("REVKA_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "interop dependencies missing in {dir:?}; run .ci/test"
    );
    eprintln!("skipping: interop dependencies not installed (run .ci/test)");
    None
}

/// An installed npm binary (`mcp-server-everything`, ...).
pub fn npm_bin(cache: &Path, name: &str) -> PathBuf {
    cache.join("npm/node_modules/.bin").join(name)
}

/// An installed Python console script (`mcp-server-time`, ...).
pub fn venv_bin(cache: &Path, name: &str) -> PathBuf {
    cache.join("venv/bin").join(name)
}

/// Whether a process (or its zombie) exists.
pub fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
