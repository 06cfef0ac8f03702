//! Integration tests of the fixture servers, `fault_server` and `echo_server` (the binaries
//! cargo builds for the tests, [`fixture_server`]).
//!
//! Each test spawns a server and talks raw JSON lines over its stdin/stdout,
//! asserting on the bytes and JSON the daemon's client would see.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};
use serde_json::{Value, json};

use crate::harness::{BUILTIN_TOOLS, fixture_server, try_within, within};

/// Upper bound for anything the servers should do promptly.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long we wait to conclude that something does *not* happen.
const QUIET: Duration = Duration::from_millis(300);

const VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

// ---------------------------------------------------------------------------
// A spawned server
// ---------------------------------------------------------------------------

/// A running example server with its stdout split into lines and stderr captured.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Stdout lines without their newline; disconnected at EOF.
    lines: Receiver<Vec<u8>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    next_id: i64,
}

impl Server {
    fn start(name: &str, args: &[&str]) -> Self {
        Self::start_with(name, args, &[])
    }

    /// Spawns `name` with flags and env vars, in its own process group so
    /// tests can signal the group without hitting the test runner.
    fn start_with(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(fixture_server(name))
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        // Drained continuously so stderr floods can never block the server.
        thread::spawn(move || {
            let mut buf = [0; 64 * 1024];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take();
        Server {
            child,
            stdin,
            lines,
            stderr,
            next_id: 0,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    fn send_raw(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(line)
            .and_then(|()| stdin.write_all(b"\n"))
            .expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    fn send(&mut self, message: &Value) {
        self.send_raw(message.to_string().as_bytes());
    }

    fn fresh_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn try_line(&self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        self.lines.recv_timeout(timeout)
    }

    fn line(&self) -> Vec<u8> {
        self.try_line(TIMEOUT)
            .unwrap_or_else(|e| panic!("no stdout line: {e:?}; {}", self.stderr_text()))
    }

    /// The next stdout line, which must be JSON.
    fn message(&self) -> Value {
        let line = self.line();
        serde_json::from_slice(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&line)))
    }

    /// Asserts that nothing arrives on stdout for a while.
    fn assert_quiet(&self) {
        if let Ok(line) = self.try_line(QUIET) {
            panic!("unexpected stdout line: {}", String::from_utf8_lossy(&line));
        }
    }

    /// Sends a request and returns the next message, which must be its response.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.fresh_id();
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let response = self.message();
        assert_eq!(
            response["id"],
            json!(id),
            "response to {method}: {response}"
        );
        assert_eq!(response["jsonrpc"], "2.0");
        response
    }

    /// Calls a tool and returns the response's `result`.
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let response = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        response
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{tool}: {response}"))
    }

    fn send_call(&mut self, id: Value, tool: &str, arguments: Value) {
        let params = json!({"name": tool, "arguments": arguments});
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}));
    }

    fn initialize(&mut self) -> Value {
        let params = json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "fixtures-test", "version": "0"},
        });
        let result = self.request("initialize", params)["result"].clone();
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        result
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn try_wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        try_within(timeout, || self.child.try_wait().expect("try_wait"))
    }

    fn wait(&mut self) -> ExitStatus {
        self.try_wait(TIMEOUT).expect("server did not exit")
    }

    /// Asserts stdout ends without another line, then that the exit code is `code`.
    fn assert_exits_silently(&mut self, code: i32) {
        match self.try_line(TIMEOUT) {
            Err(RecvTimeoutError::Disconnected) => {}
            other => panic!("expected stdout EOF, got {other:?}"),
        }
        assert_eq!(
            self.wait().code(),
            Some(code),
            "stderr: {}",
            self.stderr_text()
        );
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn wait_for_stderr(&self, needle: &str) {
        let found = try_within(TIMEOUT, || self.stderr_text().contains(needle)).is_some();
        assert!(
            found,
            "stderr never contained {needle:?}: {}",
            self.stderr_text()
        );
    }
}

impl Drop for Server {
    /// Kills the whole group, so grandchildren don't outlive a failed test.
    fn drop(&mut self) {
        let _ = killpg(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text: {result}"))
}

fn is_error(result: &Value) -> bool {
    result["isError"].as_bool().expect("isError is a bool")
}

fn read_pid(path: &Path) -> Pid {
    let mut text = String::new();
    within(TIMEOUT, format_args!("a pid in {}", path.display()), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n')
    });
    Pid::from_raw(text.trim().parse().expect("pid file holds a number"))
}

/// Alive and not a zombie (PID 1 here may reap orphans lazily).
fn process_alive(pid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

// ---------------------------------------------------------------------------
// Protocol basics shared by both servers
// ---------------------------------------------------------------------------

fn check_protocol_basics(name: &str) {
    let mut server = Server::start(name, &[]);
    for version in VERSIONS {
        let result =
            server.request("initialize", json!({"protocolVersion": version}))["result"].clone();
        assert_eq!(result["protocolVersion"], version);
        assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(result["serverInfo"]["name"], name);
        assert!(result["serverInfo"]["version"].is_string());
    }
    let result =
        server.request("initialize", json!({"protocolVersion": "1999-01-01"}))["result"].clone();
    assert_eq!(result["protocolVersion"], "2025-11-25");

    // Notifications get no response: the next line answers the ping.
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    assert_eq!(server.request("ping", json!({}))["result"], json!({}));

    let error = server.request("resources/list", json!({}))["error"].clone();
    assert_eq!(error["code"], -32601);

    server.send_raw(b"{not json");
    let error = server.message();
    assert_eq!(error["id"], Value::Null);
    assert_eq!(error["error"]["code"], -32700);

    let response = server.request("tools/call", json!({"name": "nope", "arguments": {}}));
    assert_eq!(response["error"]["code"], -32602);
    assert_eq!(response["error"]["message"], "unknown tool: nope");

    // String ids come back as strings.
    server.send(&json!({"jsonrpc": "2.0", "id": "abc", "method": "ping"}));
    assert_eq!(server.message()["id"], "abc");

    let args = json!({"text": "hi", "n": [1, 2]});
    let result = server.call("echo", args.clone());
    assert!(!is_error(&result));
    assert_eq!(result["content"][0]["type"], "text");
    assert_eq!(
        serde_json::from_str::<Value>(text_of(&result)).unwrap(),
        args
    );

    server.close_stdin();
    assert_eq!(server.wait().code(), Some(0));
}

#[test]
fn fault_server_protocol_basics() {
    check_protocol_basics("fault_server");
}

#[test]
fn echo_server_protocol_basics() {
    check_protocol_basics("echo_server");
}

#[test]
fn echo_server_lists_one_tool_and_answers_pipelined_calls_in_order() {
    let mut server = Server::start("echo_server", &[]);
    server.initialize();
    let tools = server.request("tools/list", json!({}))["result"]["tools"].clone();
    assert_eq!(tools.as_array().unwrap().len(), 1);
    assert_eq!(tools[0]["name"], "echo");
    assert_eq!(tools[0]["inputSchema"]["type"], "object");

    // Writes happen on another thread so a full pipe can't deadlock the test.
    let mut stdin = server.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        for i in 0..2000 {
            let call = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"i": i}}});
            writeln!(stdin, "{call}").unwrap();
        }
    });
    for i in 0..2000 {
        let response = server.message();
        assert_eq!(response["id"], i);
        assert_eq!(text_of(&response["result"]), format!(r#"{{"i":{i}}}"#));
    }
    writer.join().unwrap(); // drops stdin: EOF
    assert_eq!(server.wait().code(), Some(0));
}

// ---------------------------------------------------------------------------
// fault_server knobs
// ---------------------------------------------------------------------------

#[test]
fn crash_after_exits_with_code_without_answering() {
    let mut server = Server::start("fault_server", &["--crash-after", "2", "--exit-code", "7"]);
    server.initialize();
    assert_eq!(text_of(&server.call("add", json!({"a": 1, "b": 2}))), "3");
    server.request("ping", json!({})); // not a tools/call: not counted
    assert_eq!(text_of(&server.call("echo", json!({}))), "{}");
    server.send_call(json!(99), "echo", json!({}));
    server.assert_exits_silently(7);
    server.wait_for_stderr("crash-after");

    // The exit code defaults to 1; N = 0 crashes on the first call.
    let mut server = Server::start("fault_server", &["--crash-after", "0"]);
    server.initialize();
    server.send_call(json!(1), "echo", json!({}));
    server.assert_exits_silently(1);
}

#[test]
fn exit_on_start_exits_before_reading() {
    let mut server = Server::start("fault_server", &["--exit-on-start", "3"]);
    server.assert_exits_silently(3);
    server.wait_for_stderr("--exit-on-start");
}

#[test]
fn slow_init_delays_the_initialize_answer() {
    let mut server = Server::start("fault_server", &["--slow-init", "300"]);
    let started = Instant::now();
    server.initialize();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn protocol_version_and_instructions_from_flags_and_env() {
    let mut server = Server::start(
        "fault_server",
        &["--protocol-version", "1.0", "--instructions", "be nice"],
    );
    let result = server.initialize();
    assert_eq!(result["protocolVersion"], "1.0");
    assert_eq!(result["instructions"], "be nice");

    // Env vars configure knobs too; flags win over them.
    let envs = [
        ("FAULT_INSTRUCTIONS", "from env"),
        ("FAULT_PROTOCOL_VERSION", "env-version"),
    ];
    let mut server =
        Server::start_with("fault_server", &["--protocol-version=flag-version"], &envs);
    let result = server.initialize();
    assert_eq!(result["protocolVersion"], "flag-version");
    assert_eq!(result["instructions"], "from env");

    // Without the knob there is no instructions field.
    let mut server = Server::start("fault_server", &[]);
    assert!(server.initialize().get("instructions").is_none());
}

#[test]
fn bad_knobs_are_rejected() {
    let mut server = Server::start("fault_server", &["--no-such-knob"]);
    server.assert_exits_silently(2);
    let mut server = Server::start_with("fault_server", &[], &[("FAULT_CRASH_AFTER", "many")]);
    server.assert_exits_silently(2);
}

#[test]
fn tools_pagination_returns_every_tool_once() {
    let mut server = Server::start("fault_server", &["--tools", "25", "--page-size", "10"]);
    server.initialize();
    let mut names = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let params = if cursor.is_null() {
            json!({})
        } else {
            json!({"cursor": cursor})
        };
        let result = server.request("tools/list", params)["result"].clone();
        let page = result["tools"].as_array().unwrap();
        assert!(page.len() <= 10);
        for tool in page {
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
            assert!(tool["description"].is_string());
            names.push(tool["name"].as_str().unwrap().to_owned());
        }
        pages += 1;
        cursor = result.get("nextCursor").cloned().unwrap_or(Value::Null);
        if cursor.is_null() {
            break;
        }
        assert!(cursor.is_string());
    }
    assert_eq!(pages, 5); // 18 built-in + 25 extra = 43 tools
    let unique: BTreeSet<_> = names.iter().cloned().collect();
    assert_eq!(unique.len(), names.len(), "duplicates: {names:?}");
    let expected: BTreeSet<String> = BUILTIN_TOOLS
        .iter()
        .map(|s| (*s).to_owned())
        .chain((0..25).map(|i| format!("tool_{i:03}")))
        .collect();
    assert_eq!(unique, expected);

    for bad in [
        json!("bogus"),
        json!(42),
        json!("fault-cursor-3"),
        json!("fault-cursor-9999"),
    ] {
        let error = server.request("tools/list", json!({"cursor": bad}))["error"].clone();
        assert_eq!(error["code"], -32602, "cursor {bad}");
    }

    // Extra tools echo like `echo`.
    let result = server.call("tool_024", json!({"text": "x"}));
    assert_eq!(text_of(&result), r#"{"text":"x"}"#);
}

#[test]
fn without_page_size_tools_list_is_one_page() {
    let mut server = Server::start("fault_server", &["--tools", "3"]);
    server.initialize();
    let result = server.request("tools/list", json!({}))["result"].clone();
    assert_eq!(
        result["tools"].as_array().unwrap().len(),
        BUILTIN_TOOLS.len() + 3
    );
    assert!(result.get("nextCursor").is_none());
}

#[test]
fn garbage_stdout_precedes_every_response() {
    let mut server = Server::start("fault_server", &["--garbage-stdout"]);
    server.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}));
    assert_eq!(server.line(), b"this is not json");
    assert_eq!(server.message()["id"], 1);
    server.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    assert_eq!(server.line(), b"this is not json");
    assert_eq!(server.message()["id"], 2);
}

#[test]
fn ignore_sigterm_survives_sigterm_but_children_do_not() {
    let mut server = Server::start("fault_server", &["--ignore-sigterm"]);
    server.initialize();
    let grandchild = Pid::from_raw(
        text_of(&server.call("spawn_grandchild", json!({})))
            .parse()
            .unwrap(),
    );
    kill(server.pid(), Signal::SIGTERM).unwrap();
    server.wait_for_stderr("received SIGTERM");
    assert!(server.try_wait(QUIET).is_none(), "died on SIGTERM");
    assert_eq!(server.request("ping", json!({}))["result"], json!({}));
    // The blocked mask is not inherited by spawned children.
    kill(grandchild, Signal::SIGTERM).unwrap();
    within(TIMEOUT, "the grandchild killed by SIGTERM", || {
        !process_alive(grandchild)
    });
    kill(server.pid(), Signal::SIGKILL).unwrap();
    assert_eq!(server.wait().signal(), Some(Signal::SIGKILL as i32));

    // Control: without the knob SIGTERM kills.
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    kill(server.pid(), Signal::SIGTERM).unwrap();
    assert_eq!(server.wait().signal(), Some(Signal::SIGTERM as i32));
}

#[test]
fn fork_grandchild_and_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let grandchild_file = dir.path().join("grandchild.pid");
    let pid_file = dir.path().join("server.pid");
    let args = [
        "--fork-grandchild",
        grandchild_file.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
    ];
    let mut server = Server::start("fault_server", &args);
    server.initialize();
    assert_eq!(read_pid(&pid_file), server.pid());
    let grandchild = read_pid(&grandchild_file);
    assert_ne!(grandchild, server.pid());
    assert!(process_alive(grandchild));
    // Same process group (the server leads its own group here): not detached.
    assert_eq!(getpgid(Some(grandchild)).unwrap(), server.pid());

    // Killing the group takes the grandchild down too.
    killpg(server.pid(), Signal::SIGKILL).unwrap();
    server.wait();
    within(TIMEOUT, "the grandchild killed with its group", || {
        !process_alive(grandchild)
    });
}

#[test]
fn record_and_hang_cancellation() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let mut server = Server::start("fault_server", &["--record", record.to_str().unwrap()]);
    server.initialize();
    server.send_call(json!(5), "hang", json!({}));
    // Recorded exactly as sent, spacing included.
    let cancel = r#"{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5, "reason": "test"}}"#;
    server.send_raw(cancel.as_bytes());
    server.wait_for_stderr("cancelled 5");
    // `hang` never answers, cancelled or not: the next line is the ping's.
    server.request("ping", json!({}));

    let recorded = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<&str> = recorded.lines().collect();
    assert!(lines.contains(&cancel), "{recorded}");
    let methods: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["method"].clone())
        .collect();
    let expected = [
        "initialize",
        "notifications/initialized",
        "tools/call",
        "notifications/cancelled",
        "ping",
    ];
    assert_eq!(methods, expected.map(Value::from));
}

#[test]
fn hang_without_cancel_never_answers() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    server.send_call(json!("h"), "hang", json!({}));
    server.assert_quiet();
    // A cancel for an unknown id is ignored.
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 77}}));
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "h"}}));
    server.wait_for_stderr(r#"cancelled "h""#);
    server.assert_quiet();
}

/// `hang_stdin` stops the only thread that reads stdin: a ping sent meanwhile is answered only
/// after the call (whose progress keeps coming); without `ms` the server stays alive and never
/// reads again. `--refuse-ping` answers `ping` with -32601.
#[test]
fn hang_stdin_stops_reading_stdin_and_refuse_ping_refuses() {
    let mut server = Server::start("fault_server", &["--refuse-ping"]);
    server.initialize();
    // Bad arguments are a tool error, and the server reads on.
    let bad = server.call("hang_stdin", json!({"ms": "soon"}));
    assert!(is_error(&bad), "{bad}");
    let params = json!({"name": "hang_stdin", "arguments": {"ms": 500, "progress_ms": 50},
        "_meta": {"progressToken": "t"}});
    server.send(&json!({"jsonrpc": "2.0", "id": "h", "method": "tools/call", "params": params}));
    server.send(&json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}));
    let mut progress = 0;
    let answer = loop {
        let message = server.message();
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "t", "{message}");
            progress += 1;
            assert_eq!(message["params"]["progress"], progress, "{message}");
            continue;
        }
        break message;
    };
    assert_eq!(
        answer["id"], "h",
        "the call first: the ping was not read: {answer}"
    );
    assert!(text_of(&answer["result"]).starts_with("read stdin again after"));
    assert!(progress >= 2, "progress while not reading: {progress}");
    let ping = server.message();
    assert_eq!(ping["id"], "p");
    assert_eq!(ping["error"]["code"], -32601, "{ping}");

    // For good: alive, silent, nothing read.
    server.send_call(json!("forever"), "hang_stdin", json!({}));
    server.send(&json!({"jsonrpc": "2.0", "id": "p2", "method": "ping"}));
    server.assert_quiet();
    assert!(server.try_wait(Duration::ZERO).is_none(), "still alive");
}

#[test]
fn flood_stderr_knob_writes_exactly_that_many_flood_bytes() {
    let mut server = Server::start("fault_server", &["--flood-stderr", "300000"]);
    server.initialize(); // answered although nobody read stderr synchronously
    let flood_bytes = |text: &str| -> usize {
        text.split_inclusive('\n')
            .filter(|l| l.starts_with("flood line"))
            .map(str::len)
            .sum()
    };
    assert!(
        try_within(TIMEOUT, || flood_bytes(&server.stderr_text()) == 300_000).is_some(),
        "got {}",
        flood_bytes(&server.stderr_text())
    );
}

// ---------------------------------------------------------------------------
// fault_server tools
// ---------------------------------------------------------------------------

#[test]
fn add_and_typed_are_strict() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    let result = server.call("add", json!({"a": 2, "b": 40}));
    assert!(!is_error(&result));
    assert_eq!(text_of(&result), "42");
    for bad in [
        json!({"a": "2", "b": 3}),
        json!({"a": 2.0, "b": 3}),
        json!({"a": 2}),
    ] {
        let result = server.call("add", bad.clone());
        assert!(is_error(&result), "{bad} → {result}");
    }

    let good =
        json!({"n": 1, "f": 1.5, "flag": true, "list": [1, 2], "obj": {"k": "v"}, "maybe": null});
    let result = server.call("typed", good.clone());
    assert!(!is_error(&result), "{result}");
    assert_eq!(
        serde_json::from_str::<Value>(text_of(&result)).unwrap(),
        good
    );
    assert!(!is_error(
        &server.call("typed", json!({"maybe": 3, "f": 2}))
    ));
    for bad in [
        json!({"n": "1"}),
        json!({"n": 1.5}),
        json!({"f": "1.5"}),
        json!({"flag": "true"}),
        json!({"list": [1, "2"]}),
        json!({"list": "[1]"}),
        json!({"obj": "{}"}),
        json!({"maybe": "null"}),
        json!({"unknown": 1}),
    ] {
        let result = server.call("typed", bad.clone());
        assert!(is_error(&result), "{bad} → {result}");
        assert_eq!(
            serde_json::from_str::<Value>(text_of(&result)).unwrap(),
            bad
        );
    }
}

#[test]
fn sleep_and_slow_echo_run_concurrently() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    server.send_call(json!(1), "sleep", json!({"ms": 400}));
    server.send_call(json!(2), "sleep", json!({"ms": 10}));
    let first = server.message();
    assert_eq!(first["id"], 2);
    assert_eq!(text_of(&first["result"]), "slept 10 ms");
    assert_eq!(text_of(&server.message()["result"]), "slept 400 ms");

    server.send_call(json!(3), "slow_echo", json!({"text": "slow", "ms": 300}));
    server.send_call(json!(4), "slow_echo", json!({"text": "fast", "ms": 0}));
    let first = server.message();
    assert_eq!(
        (first["id"].clone(), text_of(&first["result"])),
        (json!(4), "fast")
    );
    let second = server.message();
    assert_eq!(
        (second["id"].clone(), text_of(&second["result"])),
        (json!(3), "slow")
    );
}

#[test]
fn progress_tokens_keep_their_json_type() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    for (id, token) in [(1, json!(7)), (2, json!("tok-7"))] {
        let params = json!({"name": "progress", "arguments": {"steps": 3, "interval_ms": 1},
            "_meta": {"progressToken": token}});
        server.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}));
        for i in 1..=3 {
            let note = server.message();
            assert_eq!(note["method"], "notifications/progress");
            assert!(note.get("id").is_none());
            let expected = json!({"progressToken": token, "progress": i, "total": 3, "message": format!("step {i}")});
            assert_eq!(note["params"], expected);
        }
        let response = server.message();
        assert_eq!(response["id"], id);
        assert_eq!(text_of(&response["result"]), "done");
    }
    // Without a token: no notifications, just the answer.
    assert_eq!(
        text_of(&server.call("progress", json!({"steps": 2, "interval_ms": 1}))),
        "done"
    );
}

/// With `stamp`, each progress message says when it was sent (Unix µs), for the fan-out
/// benchmark's delivery latency; a `stamp` that is not a boolean is a tool error.
#[test]
fn stamped_progress_says_when_each_step_was_sent() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    let unix_us = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let before = unix_us();
    let params = json!({"name": "progress", "arguments": {"steps": 2, "interval_ms": 1, "stamp": true},
        "_meta": {"progressToken": 1}});
    server.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}));
    let mut last = before;
    for i in 1..=2 {
        let note = server.message();
        let message = note["params"]["message"].as_str().unwrap().to_owned();
        let sent: u64 = message
            .strip_prefix(&format!("step {i} at "))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("a stamped message: {message}"));
        assert!(sent >= last && sent <= unix_us(), "{message}");
        last = sent;
    }
    assert_eq!(text_of(&server.message()["result"]), "done");

    let result = server.call("progress", json!({"steps": 1, "stamp": "yes"}));
    assert_eq!(result["isError"], true);
    assert_eq!(text_of(&result), "stamp must be a boolean, got \"yes\"");
}

#[test]
fn crash_tool_exits_with_code_without_answering() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    server.send_call(json!(1), "crash", json!({"code": 9}));
    server.assert_exits_silently(9);
}

#[test]
fn garbage_invalid_utf8_and_oversized_lines() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();

    server.send_call(json!(1), "garbage", json!({}));
    assert_eq!(server.line(), b"this is not json");
    assert_eq!(server.message()["id"], 1);

    server.send_call(json!(2), "invalid_utf8", json!({}));
    assert!(std::str::from_utf8(&server.line()).is_err());
    assert_eq!(server.message()["id"], 2);

    server.send_call(json!(3), "oversized", json!({"bytes": 200_000}));
    let line = server.line();
    assert_eq!(line.len(), 200_000);
    let response: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(response["id"], 3);
    assert!(text_of(&response["result"]).bytes().all(|b| b == b'x'));
}

#[test]
fn flood_stderr_tool_writes_and_answers() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    let result = server.call("flood_stderr", json!({"bytes": 500_000}));
    assert!(!is_error(&result));
    // 500 000 bytes of ~81-byte lines.
    let floods = || server.stderr_text().matches("flood line").count();
    assert!(
        try_within(TIMEOUT, || floods() > 6000).is_some(),
        "{} flood lines",
        floods()
    );
}

#[test]
fn set_tools_replaces_extra_tools_and_notifies() {
    let mut server = Server::start("fault_server", &["--tools", "2"]);
    server.initialize();
    server.send_call(json!(1), "set_tools", json!({"count": 3}));
    assert_eq!(
        server.message()["method"],
        "notifications/tools/list_changed"
    );
    assert_eq!(server.message()["id"], 1);

    let tools = server.request("tools/list", json!({}))["result"]["tools"].clone();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let extra: Vec<&str> = names[BUILTIN_TOOLS.len()..].to_vec();
    assert_eq!(extra, ["dyn_000", "dyn_001", "dyn_002"]);
    assert_eq!(
        text_of(&server.call("dyn_002", json!({"a": 1}))),
        r#"{"a":1}"#
    );
    let error = server.request("tools/call", json!({"name": "tool_000"}))["error"].clone();
    assert_eq!(error["message"], "unknown tool: tool_000");
}

#[test]
fn spawn_grandchild_tool_shares_the_process_group() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    let pid = Pid::from_raw(
        text_of(&server.call("spawn_grandchild", json!({})))
            .parse()
            .unwrap(),
    );
    assert!(process_alive(pid));
    assert_eq!(getpgid(Some(pid)).unwrap(), server.pid());
    killpg(server.pid(), Signal::SIGKILL).unwrap();
    server.wait();
    within(TIMEOUT, "the grandchild gone", || !process_alive(pid));
}

/// Calls `tool`, answers the server→client request it sends with `reply`
/// (`result` or `error` member), and returns the tool's text.
fn answer_client_request(
    server: &mut Server,
    tool: &str,
    method: &str,
    reply: (&str, Value),
) -> String {
    server.send_call(json!(tool), tool, json!({}));
    let request = server.message();
    assert_eq!(request["method"], method, "{request}");
    let id = request["id"].clone();
    assert!(
        id.as_str().is_some_and(|id| id.starts_with("srv-")),
        "{request}"
    );
    let mut response = json!({"jsonrpc": "2.0", "id": id});
    response[reply.0] = reply.1;
    server.send(&response);
    let response = server.message();
    assert_eq!(response["id"], tool);
    text_of(&response["result"]).to_owned()
}

#[test]
fn server_to_client_requests_return_the_clients_reply() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    let roots = json!({"roots": [{"uri": "file:///tmp", "name": "tmp"}]});
    let text = answer_client_request(
        &mut server,
        "roots",
        "roots/list",
        ("result", roots.clone()),
    );
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), roots);

    let error = json!({"code": -32601, "message": "sampling not supported"});
    for (tool, method) in [
        ("sample", "sampling/createMessage"),
        ("elicit", "elicitation/create"),
    ] {
        let text = answer_client_request(&mut server, tool, method, ("error", error.clone()));
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), error);
    }

    let text = answer_client_request(&mut server, "ping_client", "ping", ("result", json!({})));
    assert_eq!(text, "{}");
}

#[test]
fn bad_tool_arguments_are_tool_errors() {
    let mut server = Server::start("fault_server", &[]);
    server.initialize();
    assert!(is_error(&server.call("sleep", json!({"ms": "10"}))));
    assert!(is_error(&server.call("oversized", json!({}))));
    let response = server.request("tools/call", json!({"name": "echo", "arguments": [1]}));
    assert_eq!(response["error"]["code"], -32602);
    let response = server.request("tools/call", json!({}));
    assert_eq!(response["error"]["code"], -32602);
}
