//! Per-session operator processes end to end, with the reference operator of
//! `sidecars/operator` on the test venv's Python (`mcp` 2.x): started lazily on the session's
//! first operator call, restarted after a crash or after output the client cannot frame (the
//! session survives both), garbage lines skipped without a restart, and stopped with its
//! session.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Served, Session, process_exists, test_cache, try_within_async, venv_bin, within_async,
};
use crate::reload::call;

/// A launcher that runs the checkout's operator package on the interpreter it is started with
/// (the daemon's `[operator] python`), instead of the installed venv.
fn write_launcher(home: &Path) -> std::path::PathBuf {
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecars/operator");
    let path = home.join("run_operator_from_checkout.py");
    std::fs::write(
        &path,
        format!(
            "import sys\nsys.path.insert(0, {package:?})\nfrom revka_operator.server import main\nsys.exit(main())\n",
            package = package.display().to_string()
        ),
    )
    .unwrap();
    path
}

struct Operated {
    served: Served,
    gateway: String,
    token: String,
    /// Holds the launcher; dropped after the daemon.
    _launcher: tempfile::TempDir,
}

impl Operated {
    async fn start() -> Option<Self> {
        let cache = test_cache()?;
        let python = venv_bin(&cache, "python");
        // The launcher must exist before the daemon reads the config: write it into a scratch
        // dir first, then point the config at it.
        let scratch = tempfile::tempdir().unwrap();
        let launcher = write_launcher(scratch.path());
        let extra = format!(
            "\n[operator]\nenabled = true\npython = {python:?}\nmcp_path = {launcher:?}\n",
            python = python.display().to_string(),
            launcher = launcher.display().to_string(),
        );
        let served = Served::start(&extra).await;
        // The daemon learns the operator's tools from a handshake in the background.
        served
            .wait_for_tool("revka-operator__operator_status")
            .await;
        let (gateway, token) = served.gateway();
        Some(Self {
            served,
            gateway,
            token,
            _launcher: scratch,
        })
    }

    async fn node(&self, path: &str) -> (StatusCode, Value) {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/actors/{path}", self.gateway))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The pid the operator of `session` reports, through a real tool call.
    async fn operator_pid(&self, session: &Session) -> i32 {
        let (is_error, text) = call(session, "revka-operator__operator_status", json!({})).await;
        assert!(!is_error, "operator_status failed: {text}");
        let status: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        status["pid"].as_i64().unwrap() as i32
    }
}

fn operator_path(session: &Session) -> String {
    format!("root/sessions/session:{}/operator", session.id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_operator_is_lazy_restarted_after_a_crash_and_stopped_with_its_session() {
    let Some(op) = Operated::start().await else {
        return;
    };
    let session = op.served.session().await;
    let other = op.served.session().await;

    // Lazy: no operator under the session before its first operator call.
    let (status, _) = op.node(&operator_path(&session)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no operator before the first call"
    );

    let pid = op.operator_pid(&session).await;
    let process = format!("{}/mcp:revka-operator/process", operator_path(&session));
    let (status, node) = op.node(&process).await;
    assert_eq!(status, StatusCode::OK, "{node}");
    assert_eq!(node["details"]["pid"].as_i64(), Some(i64::from(pid)));
    // One operator per session: the other session has none until it asks.
    let (status, _) = op.node(&operator_path(&other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A plan saved through the operator, then the operator killed: it is restarted by policy,
    // the session carries on, and the plan (persisted under REVKA_HOME) is still there.
    let (is_error, text) = call(
        &session,
        "revka-operator__save_plan",
        json!({ "title": "ship reload", "steps": ["write", "test"] }),
    )
    .await;
    assert!(!is_error, "{text}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let answered = within_async(
        Duration::from_secs(10),
        "the operator answering again after its crash",
        async || {
            let (is_error, text) =
                call(&session, "revka-operator__operator_status", json!({})).await;
            (!is_error).then(|| serde_json::from_str::<Value>(&text).unwrap())
        },
    )
    .await;
    let restarted = answered["pid"].as_i64().map(|p| p as i32);
    let restarted = restarted.expect("the operator answered again after its crash");
    assert_ne!(restarted, pid);
    let conn = format!("{}/mcp:revka-operator", operator_path(&session));
    let (_, node) = op.node(&conn).await;
    assert_eq!(node["restarts"], 1, "{node}");
    let (is_error, text) = call(
        &session,
        "revka-operator__recall_plans",
        json!({ "query": "reload" }),
    )
    .await;
    assert!(!is_error && text.contains("ship reload"), "{text}");

    // Ending the session stops its operator process; the other session is unaffected.
    let resp = reqwest::Client::new()
        .delete(format!("{}/session/{}", op.served.base, session.id))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    within_async(
        Duration::from_secs(20),
        "the ended session's operator process is gone",
        async || !process_exists(restarted),
    )
    .await;
    let (status, _) = op.node(&operator_path(&session)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other_pid = op.operator_pid(&other).await;
    assert_ne!(other_pid, restarted);
}

/// The pipe inode an fd of `pid` refers to, if it is a pipe.
fn pipe_inode(pid: u32, fd: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let link = link.to_string_lossy();
    link.starts_with("pipe:").then(|| link.into_owned())
}

/// The operator's fd of its MCP stdout pipe. Not always fd 1: the Python SDK moves the
/// protocol stream to another fd and points fd 1 at stderr, so stray prints cannot corrupt it.
/// It is the write end of a pipe whose read end the daemon holds, other than stderr's.
fn mcp_stdout_fd(pid: u32, daemon: u32) -> String {
    let daemon_pipes: Vec<String> = std::fs::read_dir(format!("/proc/{daemon}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| pipe_inode(daemon, &e.file_name().to_string_lossy()))
        .collect();
    let stderr = pipe_inode(pid, "2");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|fd| {
            let write_only = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("flags:"))
                        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                })
                .is_some_and(|flags| flags & 0o3 == 0o1);
            let inode = pipe_inode(pid, fd);
            write_only
                && inode.is_some()
                && inode != stderr
                && daemon_pipes.contains(inode.as_ref().unwrap())
        })
        .expect("the operator's MCP stdout pipe")
}

/// Writes `bytes` into the operator's MCP stdout pipe, as if the operator had printed them.
fn inject_stdout(
    pid: i32,
    daemon: u32,
    bytes: Vec<u8>,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    let fd = mcp_stdout_fd(pid as u32, daemon);
    std::thread::spawn(move || {
        let mut pipe = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/fd/{fd}"))?;
        pipe.write_all(&bytes)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_operator_output_restarts_its_connection_and_the_session_survives() {
    let Some(op) = Operated::start().await else {
        return;
    };
    let session = op.served.session().await;
    let pid = op.operator_pid(&session).await;
    let daemon = op.served.daemon.child.id();

    // A line that is not JSON-RPC is skipped: same process, still answering.
    inject_stdout(pid, daemon, b"this is not json-rpc\n".to_vec())
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(op.operator_pid(&session).await, pid);
    assert!(
        op.served
            .daemon
            .stderr()
            .contains("server wrote a non-JSON-RPC line; skipped"),
        "{}",
        op.served.daemon.stderr()
    );

    // A line longer than the 4 MiB frame cap cannot be framed: the connection is restarted
    // with a fresh process, and the session goes on with it.
    let mut line = vec![b'x'; 5 << 20];
    line.push(b'\n');
    // The write may fail with EPIPE once the daemon stops reading and the process is killed.
    // It must end before the next call: a pipe write this large is not atomic, so an answer
    // the operator wrote meanwhile would land inside the long line and be lost with it.
    let writer = inject_stdout(pid, daemon, line);
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || writer.join()),
    )
    .await
    .expect("the daemon drains or closes the operator's stdout")
    .unwrap()
    .unwrap()
    .ok();
    let new_pid = try_within_async(Duration::from_secs(10), async || {
        let (is_error, text) = call(&session, "revka-operator__operator_status", json!({})).await;
        if is_error {
            return None;
        }
        let status: Value = serde_json::from_str(&text).unwrap();
        let p = status["pid"].as_i64().unwrap() as i32;
        (p != pid).then_some(p)
    })
    .await;
    assert!(
        new_pid.is_some(),
        "the operator was restarted with a new process; daemon log:\n{}",
        op.served.daemon.stderr()
    );
    let (_, node) = op
        .node(&format!("{}/mcp:revka-operator", operator_path(&session)))
        .await;
    assert_eq!(node["restarts"], 1, "{node}");
    assert!(
        node["last_failure"].to_string().contains("longer than"),
        "{node}"
    );
    let (status, _) = op
        .node(&format!("root/sessions/session:{}", session.id))
        .await;
    assert_eq!(status, StatusCode::OK, "the session survived");
}
