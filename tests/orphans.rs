//! No orphan, ever, end to end with the real daemon: a process that a supervised child started
//! in a session of its own (out of reach of any group kill) is gone after the child is
//! SIGKILLed; the session manager's `command` agents (detached runs) are gone after a `kill -9`
//! of the sidecar, and after the daemon's SIGTERM. Linux: it relies on `/proc` and on the daemon
//! being a child subreaper (see docs/supervision.md).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::harness::{TestDaemon, TestHome, fixture_server, process_exists, try_within, within};

const EXIT: Duration = Duration::from_secs(30);
/// Generous: a sweep needs the stop timeout (1 s here) plus a few scheduling delays.
const GONE: Duration = Duration::from_secs(30);

/// Waits for a pid file written by a test process, and reads it.
fn read_pid(path: &Path) -> i32 {
    let mut pid = None;
    assert!(
        try_within(Duration::from_secs(30), || {
            pid = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            pid.is_some()
        })
        .is_some(),
        "no pid in {}",
        path.display()
    );
    pid.unwrap()
}

/// Waits until `pid` leads a session of its own: `setsid` has run. (Its pid is known as soon as
/// the shell forks it; until `setsid` runs it is still in the server's process group, and a
/// kill of that group would take it with the server, leaving nothing for the sweep to find.)
fn wait_detached(pid: i32) {
    let session = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the `(comm)`: state, ppid, pgrp, session.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        fields.get(3)?.parse::<i32>().ok()
    };
    assert!(
        try_within(Duration::from_secs(30), || session() == Some(pid)).is_some(),
        "pid {pid} never became a session leader (session {:?})",
        session()
    );
}

/// Pids of a test's processes, SIGKILLed when dropped if they still exist: a failing test does
/// not leak them. Only a process whose environment names the test's `REVKA_HOME` is killed (a
/// pid may have been reused since).
struct Cleanup {
    home: PathBuf,
    pids: Vec<i32>,
}

impl Cleanup {
    fn new(home: &TestHome) -> Self {
        Self {
            home: home.path().to_owned(),
            pids: Vec::new(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mark = format!("REVKA_HOME={}", self.home.display());
        for &pid in &self.pids {
            let ours = std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == mark.as_bytes()));
            if ours {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn assert_all_gone(what: &str, pids: &[i32], daemon: &TestDaemon) {
    for &pid in pids {
        assert!(
            try_within(GONE, || !process_exists(pid)).is_some(),
            "{what}: pid {pid} still exists (running or a zombie); daemon stderr:\n{}",
            daemon.stderr()
        );
    }
}

#[test]
fn a_detached_grandchild_of_a_sigkilled_server_is_gone() {
    let home = TestHome::new();
    let (pid_file, grandchild_file) = (home.path().join("server.pid"), home.path().join("gc.pid"));
    // The grandchild is started with setsid: its own session and group, so neither the stop nor
    // the drop of the server's group reaches it once the server itself is dead.
    let script = format!(
        "setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > {g}; exec {server} --pid-file {p}",
        g = grandchild_file.display(),
        server = fixture_server("fault_server").display(),
        p = pid_file.display(),
    );
    home.write_config(&format!(
        r#"
[mcp]
enabled = true

[[mcp.servers]]
name = "detach"
command = "sh"
args = ["-c", {script}]

[mcp.servers.restart]
shutdown_timeout_ms = 1000
"#,
        script = toml_string(&script),
    ));
    let mut daemon = TestDaemon::start(&home, &[]);
    let mut cleanup = Cleanup::new(&home);
    let (server, grandchild) = (read_pid(&pid_file), read_pid(&grandchild_file));
    cleanup.pids.extend([server, grandchild]);
    assert!(process_exists(server) && process_exists(grandchild));
    wait_detached(grandchild);
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&grandchild_file);

    kill(Pid::from_raw(server), Signal::SIGKILL).unwrap();
    assert_all_gone("after the server's kill -9", &[server, grandchild], &daemon);
    let log = daemon.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("processes orphaned by an exited child")
                && l.contains("root/mcp_servers/mcp:detach/process")),
        "the sweep is logged with the child's path:\n{log}"
    );

    // The restarted server has a new detached grandchild; the daemon's SIGTERM takes it too.
    let (server, grandchild) = (read_pid(&pid_file), read_pid(&grandchild_file));
    cleanup.pids.extend([server, grandchild]);
    wait_detached(grandchild);
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(EXIT).code(), Some(0), "{}", daemon.stderr());
    assert_all_gone("after the daemon's SIGTERM", &[server, grandchild], &daemon);
}

// ---------------------------------------------------------------------------
// The session manager and its command agents
// ---------------------------------------------------------------------------

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A daemon running only the session manager, stopped 1 s after SIGTERM at the latest.
fn sidecar_daemon(home: &TestHome) -> (TestDaemon, PathBuf) {
    let socket = home.path().join("sm.sock");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecars/session-manager/session-manager.js");
    home.write_config(&format!(
        r#"
[session_manager]
enabled = true
command = ["node", {script}]
socket_path = {socket}

[session_manager.restart]
shutdown_timeout_ms = 1000
"#,
        script = toml_string(&script.display().to_string()),
        socket = toml_string(&socket.display().to_string()),
    ));
    let daemon = TestDaemon::start(home, &[]);
    assert!(
        try_within(Duration::from_secs(30), || {
            request(&socket, "GET", "/health", None).is_ok_and(|(s, _)| s == 200)
        })
        .is_some(),
        "the sidecar answers /health; daemon stderr:\n{}",
        daemon.stderr()
    );
    (daemon, socket)
}

/// One HTTP/1.1 request on the sidecar's Unix socket: (status, JSON body).
fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: sm\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = || std::io::Error::other(format!("bad response: {response:?}"));
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let (_, json) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    Ok((status, serde_json::from_str(json).map_err(|_| bad())?))
}

/// An agent tree that ignores SIGTERM, so only SIGKILL ends it: the agent's shell, a child in
/// its group, and a grandchild in a session of its own. Returns their pids.
fn start_stubborn_agent(socket: &Path, dir: &Path) -> Vec<i32> {
    let files = ["agent.pid", "child.pid", "escaped.pid"].map(|f| dir.join(f));
    let script = format!(
        "trap '' TERM; echo $$ > {a}; sleep 300 & echo $! > {c}; \
         setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $! > {e}; wait",
        a = files[0].display(),
        c = files[1].display(),
        e = files[2].display(),
    );
    let (status, agent) = request(
        socket,
        "POST",
        "/agents",
        Some(&json!({ "backend": "command", "name": "stubborn", "argv": ["sh", "-c", script], "prompt": "go" })),
    )
    .unwrap();
    assert_eq!(status, 201, "{agent}");
    let pids: Vec<i32> = files.iter().map(|f| read_pid(f)).collect();
    assert_eq!(agent["pid"].as_i64(), Some(i64::from(pids[0])), "{agent}");
    for &pid in &pids {
        assert!(process_exists(pid));
    }
    pids
}

#[test]
fn a_sigkilled_sidecar_leaves_no_agent_behind() {
    let home = TestHome::new();
    let (mut daemon, socket) = sidecar_daemon(&home);
    let mut cleanup = Cleanup::new(&home);
    let agents = start_stubborn_agent(&socket, home.path());
    cleanup.pids.extend(&agents);
    let (_, health) = request(&socket, "GET", "/health", None).unwrap();
    let sidecar = health["pid"].as_i64().unwrap() as i32;

    // No graceful shutdown of the sidecar: only the daemon can end its agents now.
    kill(Pid::from_raw(sidecar), Signal::SIGKILL).unwrap();
    assert_all_gone("after the sidecar's kill -9", &agents, &daemon);
    let log = daemon.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("orphaned processes outlived SIGTERM")
                && l.contains("root/sidecars/session_manager")),
        "the agents ignored SIGTERM and were SIGKILLed at the deadline:\n{log}"
    );

    // The sidecar was restarted and serves again; the daemon still stops cleanly.
    assert!(
        try_within(Duration::from_secs(30), || {
            request(&socket, "GET", "/health", None)
                .is_ok_and(|(s, h)| s == 200 && h["pid"].as_i64() != Some(i64::from(sidecar)))
        })
        .is_some(),
        "the sidecar restarted; daemon stderr:\n{}",
        daemon.stderr()
    );
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(EXIT).code(), Some(0), "{}", daemon.stderr());
}

#[test]
fn the_daemons_sigterm_leaves_no_agent_behind() {
    let home = TestHome::new();
    let (mut daemon, socket) = sidecar_daemon(&home);
    let mut cleanup = Cleanup::new(&home);
    // The sidecar would take 3 s to SIGKILL its stubborn agent; its stop timeout is 1 s, so
    // the daemon SIGKILLs the sidecar's group and the descendants it finds first; anything
    // that escaped that is left to the orphan sweep.
    let agents = start_stubborn_agent(&socket, home.path());
    cleanup.pids.extend(&agents);
    let (_, health) = request(&socket, "GET", "/health", None).unwrap();
    let sidecar = health["pid"].as_i64().unwrap() as i32;
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait(EXIT).code(), Some(0), "{}", daemon.stderr());
    assert_all_gone("after the daemon's SIGTERM", &agents, &daemon);
    within(GONE, "the sidecar process gone", || {
        !process_exists(sidecar)
    });
    let log = daemon.stderr();
    assert!(!log.contains("not reaped"), "{log}");
}
