//! `revka mcp serve --stdio` end to end: the real binary as a stdio server in front of the real
//! daemon, driven by the official Python SDK's stdio client (calls, progress, cancellation, a
//! daemon restart in the middle) and by hand (no daemon, stdin closing mid-call,
//! `--start-daemon`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::harness::{
    Served, TestDaemon, TestHome, revka_bin, served_only, test_cache, try_within, try_within_async,
    venv_bin, within, within_async,
};

/// Every wait here: generous, so only a lost answer fails a test.
const WAIT: Duration = Duration::from_secs(30);

/// `revka mcp serve --stdio` run by a test.
struct BridgeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl BridgeProcess {
    /// Starts the bridge for `home` with `args` after `--stdio`, in `cwd`.
    fn start(home: &TestHome, args: &[&str], cwd: &Path) -> Self {
        let stderr = std::fs::File::create(home.path().join("bridge.stderr")).unwrap();
        let mut cmd = home.command();
        cmd.args(["mcp", "serve", "--stdio"])
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the bridge");
        Self {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id().unwrap() as i32
    }

    async fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next line on stdout, as JSON.
    async fn next(&mut self) -> Value {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.stdout.read_line(&mut line)).await;
        assert!(
            matches!(read, Ok(Ok(n)) if n > 0),
            "no line from the bridge"
        );
        serde_json::from_str(&line).unwrap()
    }

    /// The response to request `id` (notifications before it skipped).
    async fn answer(&mut self, id: u64) -> Value {
        loop {
            let message = self.next().await;
            if message["id"] == id {
                return message;
            }
        }
    }

    async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        self.answer(id).await
    }

    async fn handshake(&mut self) -> Value {
        let params = json!({ "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": { "name": "rust-test", "version": "1" } });
        let hello = self.request(0, "initialize", params).await;
        self.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        hello
    }

    /// Closes stdin and waits for the exit: 0.
    async fn close(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the bridge exits when stdin closes")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

/// The daemon's sessions opened by a stdio bridge (`/api/actors`, their details).
async fn bridge_sessions(served: &Served) -> Vec<Value> {
    let tree = served.api("/api/actors/root/sessions").await;
    tree["children"]
        .as_array()
        .map(|children| {
            children
                .iter()
                .map(|c| c["details"].clone())
                .filter(|d| {
                    d["label"]
                        .as_str()
                        .is_some_and(|l| l.starts_with("stdio bridge"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The official Python SDK spawns the bridge as its stdio server: initialize, tools, activation,
/// a call with progress, a call it cancels (the fault server is told), and a call in flight
/// while the daemon is stopped with SIGTERM and a new one started on the same home (the call
/// is answered, the client is told the tools changed, and calls work again).
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_stdio_client_calls_cancels_and_rides_a_daemon_restart() {
    let Some(cache) = test_cache() else { return };
    let mut served = Served::start("").await;
    let markers = tempfile::tempdir().unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_sdk_stdio_bridge.py");
    let client = tokio::process::Command::new(venv_bin(&cache, "python"))
        .arg(script)
        .env("REVKA_BIN", revka_bin())
        .env("REVKA_HOME", served.home.path())
        .env("MARKERS", markers.path())
        .env("WORKDIR", workdir.path())
        .kill_on_drop(true)
        .output();
    let restart = async {
        let marker = markers.path().join("restart-now");
        within_async(
            Duration::from_secs(300),
            "the client's restart-now marker",
            async || marker.exists(),
        )
        .await;
        tokio::task::block_in_place(|| {
            let slow_arrived = try_within(WAIT, || {
                let seen = served.recorded();
                seen.iter().any(|m| m["params"]["name"] == "slow_echo")
            })
            .is_some();
            assert!(slow_arrived, "the slow call reached the server");
            served.daemon.signal(Signal::SIGTERM);
            served.daemon.wait(WAIT);
            served.daemon = TestDaemon::start(&served.home, &[]);
        });
        std::fs::write(markers.path().join("restarted"), "").unwrap();
    };
    let (out, ()) = tokio::join!(client, restart);
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    assert_eq!(seen["server_name"], "revka-mcp");
    assert_eq!(seen["protocol_version"], "2025-11-25");
    let names = |v: &Value| {
        served_only(
            v.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned()),
        )
    };
    assert_eq!(names(&seen["tools_before"]), ["tool_search"]);
    assert_eq!(
        names(&seen["tools_after"]),
        [
            "fault__hang",
            "fault__progress",
            "fault__slow_echo",
            "tool_search"
        ]
    );
    for call in [&seen["call"], &seen["after_restart"]] {
        assert_eq!(call["text"], "done", "{seen}");
        assert_eq!(call["progress"].as_array().unwrap().len(), 3, "{seen}");
        assert_eq!(call["progress"][2]["message"], "step 3");
    }
    // The cancelled call: the SDK gave up on it, the fault server was told.
    assert_eq!(seen["hang_cancelled"], true);
    let cancelled = || {
        served
            .recorded()
            .iter()
            .any(|m| m["method"] == "notifications/cancelled")
    };
    assert!(
        try_within_async(WAIT, async || cancelled()).await.is_some(),
        "{:?}",
        served.recorded()
    );
    // The call in flight at the restart was answered (the stopping daemon says so).
    assert_eq!(seen["interrupted"]["is_error"], true, "{seen}");
    assert!(
        seen["interrupted"]["text"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{seen}"
    );
    assert_eq!(seen["list_changed_on_restart"], 1, "{seen}");
    assert!(
        seen["search_after_restart"]
            .as_str()
            .unwrap()
            .contains("fault__progress")
    );
    // The SDK closed the bridge's stdin on exit: its session on the new daemon was ended.
    within_async(WAIT, "the bridge's session ended", async || {
        bridge_sessions(&served).await.is_empty()
    })
    .await;
}

/// Without a daemon, `initialize` is answered with an error that says how to start one, and
/// the bridge exits 0 when stdin closes.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_daemon_initialize_names_revka_daemon_and_revka_service_start() {
    let home = TestHome::new();
    let mut bridge = BridgeProcess::start(&home, &[], home.path());
    let hello = bridge.handshake().await;
    assert_eq!(hello["error"]["code"], -32000, "{hello}");
    let message = hello["error"]["message"].as_str().unwrap();
    assert!(message.contains("`revka daemon`"), "{message}");
    assert!(message.contains("`revka service start`"), "{message}");
    assert!(
        message.contains(&home.path().display().to_string()),
        "{message}"
    );
    bridge.close().await;
}

/// Stdin closing in the middle of a call: the bridge exits 0 at once, the call is cancelled
/// upstream (the fault server gets `notifications/cancelled`), and the bridge's session is
/// ended; it ran in the bridge's working directory.
#[tokio::test(flavor = "multi_thread")]
async fn stdin_closing_mid_call_cancels_it_upstream_and_ends_the_session() {
    let served = Served::start("").await;
    let workdir = tempfile::tempdir().unwrap();
    let mut bridge = BridgeProcess::start(&served.home, &[], workdir.path());
    bridge.handshake().await;
    let search = json!({ "name": "tool_search", "arguments": { "query": "select:fault__hang" } });
    bridge.request(1, "tools/call", search).await;
    bridge
        .send(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": { "name": "fault__hang", "arguments": {} } }))
        .await;
    let hang_id = || {
        served
            .recorded()
            .iter()
            .find(|m| m["params"]["name"] == "hang")
            .map(|m| m["id"].clone())
    };
    within_async(WAIT, "the call reached the server", async || {
        hang_id().is_some()
    })
    .await;
    let sessions = bridge_sessions(&served).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["label"], "stdio bridge (rust-test)");
    let cwd = workdir.path().canonicalize().unwrap();
    assert_eq!(sessions[0]["cwd"], cwd.display().to_string());
    assert_eq!(sessions[0]["inflight_calls"], 1);

    let pid = bridge.pid();
    bridge.close().await;
    assert!(!crate::harness::process_exists(pid), "the bridge is gone");
    let id = hang_id().unwrap();
    let cancelled = || {
        served
            .recorded()
            .iter()
            .any(|m| m["method"] == "notifications/cancelled" && m["params"]["requestId"] == id)
    };
    assert!(
        try_within_async(WAIT, async || cancelled()).await.is_some(),
        "{:?}",
        served.recorded()
    );
    within_async(WAIT, "the bridge's session ended", async || {
        bridge_sessions(&served).await.is_empty()
    })
    .await;
}

/// `--start-daemon` with no daemon running starts one, in a session of its own with its output
/// in `$REVKA_HOME/logs/`, and the daemon outlives the bridge.
#[tokio::test(flavor = "multi_thread")]
async fn start_daemon_starts_a_detached_daemon_that_outlives_the_bridge() {
    let home = TestHome::new();
    home.write_config("[mcp]\nenabled = true\n");
    let mut bridge = BridgeProcess::start(&home, &["--start-daemon"], home.path());
    /// Kills the started daemon's group if the test fails before stopping it.
    struct Reap(Option<i32>);
    impl Drop for Reap {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    let mut reap = Reap(None);
    let hello = bridge.handshake().await;
    let doc: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("mcp.json")).unwrap()).unwrap();
    let daemon = doc["pid"].as_i64().unwrap() as i32;
    reap.0 = Some(daemon);
    assert_eq!(
        hello["result"]["serverInfo"]["name"], "revka-mcp",
        "{hello}"
    );
    assert_ne!(daemon, bridge.pid());
    let session = nix::unistd::getsid(Some(Pid::from_raw(daemon))).unwrap();
    assert_eq!(
        session.as_raw(),
        daemon,
        "the daemon leads a session of its own"
    );
    bridge.close().await;
    assert!(alive(daemon), "the daemon outlives the bridge");
    let log = std::fs::read_to_string(home.path().join("logs/revka.err.log")).unwrap();
    assert!(
        !log.trim().is_empty(),
        "the daemon logged into logs/revka.err.log"
    );
    kill(Pid::from_raw(daemon), Signal::SIGTERM).unwrap();
    within(WAIT, "the daemon stops on SIGTERM", || !alive(daemon));
    reap.0 = None;
}

/// Whether `pid` is running (a zombie, or no process, is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// A change of the daemon's tools that no request of the bridge caused (a server replaced its
/// tools, asked by another session) reaches the stdio client as
/// `notifications/tools/list_changed`: the daemon queues it on the bridge session's `GET /mcp`
/// stream, and the bridge relays that stream to stdout while the client sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_tool_change_reaches_the_stdio_client_through_the_session_stream() {
    let served = Served::start("").await;
    let workdir = tempfile::tempdir().unwrap();
    let mut bridge = BridgeProcess::start(&served.home, &[], workdir.path());
    bridge.handshake().await;
    let listed = bridge.request(1, "tools/list", json!({})).await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    // The stream is open once the daemon shows it on the bridge's session.
    let opened = async || {
        (bridge_sessions(&served).await)
            .first()
            .is_some_and(|s| s["client_streams"] == 1)
    };
    if try_within_async(WAIT, opened).await.is_none() {
        panic!(
            "the bridge never opened GET /mcp: {:?}",
            bridge_sessions(&served).await
        );
    }

    let other = served.session().await;
    let activated = other
        .call_text("tool_search", json!({ "query": "select:fault__set_tools" }))
        .await;
    assert!(activated.contains("fault__set_tools"), "{activated}");
    let replaced = other
        .call_text("fault__set_tools", json!({ "count": 2 }))
        .await;
    assert_eq!(replaced, "now 2 dynamic tools");

    let note = bridge.next().await;
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    let search = json!({ "name": "tool_search", "arguments": { "query": "dyn" } });
    let found = bridge.request(2, "tools/call", search).await;
    assert!(
        found["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("fault__dyn")),
        "{found}"
    );
    bridge.close().await;
}

/// Sockets open on the daemon's Unix socket in `home`: the listener and every accepted
/// connection show in `/proc/net/unix` with the path it was bound at (a temporary name, before
/// the daemon renamed it `mcp.sock`).
fn daemon_unix_sockets(home: &Path) -> usize {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let bound = format!("{}/.mcp.sock.", home.display());
    table
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .nth(7)
                .is_some_and(|path| path.starts_with(&bound))
        })
        .count()
}

/// The daemon listens on an owner-only Unix socket named in `mcp.json` (removed when it stops),
/// and the bridge sends its messages there; with the socket gone, it uses the TCP port.
#[tokio::test(flavor = "multi_thread")]
async fn the_bridge_uses_the_daemons_unix_socket_and_tcp_without_it() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut served = Served::start("").await;
    let socket = served.home.path().join("mcp.sock");
    let meta = std::fs::symlink_metadata(&socket).expect("the daemon binds mcp.sock");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let doc: Value =
        serde_json::from_slice(&std::fs::read(served.home.path().join("mcp.json")).unwrap())
            .unwrap();
    assert_eq!(doc["socket"], json!(socket), "{doc}");
    let home = served.home.path().to_owned();
    assert_eq!(daemon_unix_sockets(&home), 1, "the listener alone");

    let workdir = tempfile::tempdir().unwrap();
    let mut bridge = BridgeProcess::start(&served.home, &[], workdir.path());
    bridge.handshake().await;
    let listed = bridge.request(1, "tools/list", json!({})).await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    assert!(
        daemon_unix_sockets(&home) > 1,
        "the bridge's connection is on the socket"
    );
    bridge.close().await;

    // Moved away (the same file, kept to be put back): the next bridge goes over TCP.
    let aside = served.home.path().join("mcp.sock.aside");
    std::fs::rename(&socket, &aside).unwrap();
    let mut bridge = BridgeProcess::start(&served.home, &[], workdir.path());
    bridge.handshake().await;
    let echo = json!({ "name": "tool_search", "arguments": { "query": "echo" } });
    let found = bridge.request(2, "tools/call", echo).await;
    assert!(found["result"]["content"].is_array(), "{found}");
    // The first bridge's connections close; this one's, still open, are not on the socket.
    let alone = try_within(WAIT, || daemon_unix_sockets(&home) == 1);
    assert!(alone.is_some(), "the second bridge is on the socket");
    bridge.close().await;

    // A graceful stop removes the socket it bound.
    std::fs::rename(&aside, &socket).unwrap();
    served.daemon.signal(Signal::SIGTERM);
    served.daemon.wait(WAIT);
    assert!(!served.home.path().join("mcp.json").exists());
    assert!(!socket.exists(), "mcp.sock removed on a graceful stop");
}
