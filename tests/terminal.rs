//! The Code tab's terminals: `GET /ws/terminal` on a real daemon, each terminal a PTY and its
//! process under `root/terminals/term:<id>` (src/terminal.rs, src/gateway/terminal.rs).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::harness::{Gateway, Served, TestDaemon, TestHome, eventually_async};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The fake coding CLI (examples/fake_cli.rs).
fn fake_cli() -> &'static str {
    env!("CARGO_BIN_EXE_fake_cli")
}

/// A daemon serving the fault fixture, with a deterministic shell and the fake CLI as the
/// launcher `fake`.
async fn start() -> Served {
    let extra = format!(
        r#"
[terminal]
stop_grace_ms = 1000

[[terminal.launchers]]
name = "fake"
command = "{cli}"
args = ["--mcp-config", "{{mcp_config}}", "--args", "{{\"steps\":3,\"interval_ms\":100}}"]
"#,
        cli = fake_cli()
    );
    Served::start_configured("", &[], &extra, &[("SHELL", "/bin/sh")]).await
}

/// `/ws/terminal?query` with `token` in the subprotocol (and `origin`, if any).
async fn connect(
    gw: &Gateway,
    token: &str,
    query: &str,
    origin: Option<&str>,
) -> Result<(Ws, Value), WsError> {
    let url = format!("{}/ws/terminal?{query}", gw.url.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("revka.terminal.v1, bearer.{token}")).unwrap(),
    );
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "revka.terminal.v1"
    );
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a ready frame")
        .expect("a frame")
        .expect("a good frame");
    let ready: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(ready["type"], "ready", "{ready}");
    Ok((ws, ready))
}

/// Opens a terminal of `launcher` in a temporary directory with the owner token.
async fn open(gw: &Gateway, launcher: &str, cwd: &std::path::Path) -> (Ws, Value) {
    let query = format!("launcher={launcher}&cwd={}&cols=80&rows=24", cwd.display());
    connect(gw, &gw.token, &query, None)
        .await
        .unwrap_or_else(|e| panic!("open {launcher}: {e}"))
}

/// What a terminal sent: its output, and its text frames.
#[derive(Default)]
struct Seen {
    output: String,
    texts: Vec<Value>,
}

/// Reads until `done(seen)` holds, failing after `timeout`.
async fn read_until(ws: &mut Ws, seen: &mut Seen, timeout: Duration, done: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + timeout;
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.output.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Text(t)))) => seen.texts.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!(
                "the terminal ended: {other:?}; output so far:\n{}",
                seen.output
            ),
            Err(_) => panic!(
                "timed out; output so far:\n{}\ntext frames: {:?}",
                seen.output, seen.texts
            ),
        }
    }
}

async fn read_output(ws: &mut Ws, needle: &str) -> String {
    let mut seen = Seen::default();
    read_until(ws, &mut seen, Duration::from_secs(20), |s| {
        s.output.contains(needle)
    })
    .await;
    seen.output
}

async fn input(ws: &mut Ws, data: &str) {
    let frame = json!({ "type": "input", "data": data }).to_string();
    ws.send(Message::Text(frame.into())).await.unwrap();
}

/// The number after `prefix` in `text` (`BG=1234`), from its last mention.
fn number_after(text: &str, prefix: &str) -> i32 {
    text.rmatch_indices(prefix)
        .find_map(|(at, _)| {
            let digits: String = text[at + prefix.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {prefix}<n> in {text:?}"))
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}

/// The terminal's status details.
async fn details(gw: &Gateway, path: &str) -> Value {
    let (status, node) = gw.api(&format!("/api/actors/{path}")).await;
    assert_eq!(status, StatusCode::OK, "{node}");
    node["details"].clone()
}

/// Starts a background job and a grandchild that outlives its parent in the shell of `ws`:
/// their pids.
async fn start_descendants(ws: &mut Ws) -> (i32, i32) {
    input(
        ws,
        "sleep 300 & echo BG=$!; sh -c 'sleep 301 & echo GC=$!'; echo DONE-$((1+1))\n",
    )
    .await;
    let out = read_output(ws, "DONE-2").await;
    (number_after(&out, "BG="), number_after(&out, "GC="))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_echoes_resizes_and_refuses_absurd_sizes() {
    let served = start().await;
    let gw = Gateway::of(served.home.path());
    let dir = tempfile::tempdir().unwrap();
    let (mut ws, ready) = open(&gw, "shell", dir.path()).await;
    assert_eq!(ready["launcher"], "shell");
    assert_eq!(
        ready["session_id"],
        Value::Null,
        "the shell gets no session"
    );
    assert_eq!(ready["command"], json!(["/bin/sh", "-l"]));
    let path = ready["path"].as_str().unwrap().to_owned();
    assert!(path.starts_with("root/terminals/term:"), "{path}");
    assert_eq!(ready["id"], path.rsplit('/').next().unwrap());

    // `echo hi` + Enter: the output shows `hi` (the arithmetic tells it from the echoed input).
    input(&mut ws, "echo hi-$((40+2))\n").await;
    read_output(&mut ws, "hi-42").await;

    // Resize, then ask the terminal its size.
    let resize = json!({ "type": "resize", "cols": 120, "rows": 40 }).to_string();
    ws.send(Message::Text(resize.into())).await.unwrap();
    input(&mut ws, "stty size | sed 's/^/SIZE=/'\n").await;
    read_output(&mut ws, "SIZE=40 120").await;

    // An absurd size is refused with an error frame; the terminal lives on at its size.
    for (cols, rows) in [(0, 24), (80, 100_000), (-1, -1)] {
        let resize = json!({ "type": "resize", "cols": cols, "rows": rows }).to_string();
        ws.send(Message::Text(resize.into())).await.unwrap();
        let mut seen = Seen::default();
        read_until(&mut ws, &mut seen, Duration::from_secs(10), |s| {
            s.texts.iter().any(|t| t["type"] == "error")
        })
        .await;
        let error = seen.texts.iter().find(|t| t["type"] == "error").unwrap();
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("resize refused"),
            "{error}"
        );
    }
    let garbage = json!({ "type": "explode" }).to_string();
    ws.send(Message::Text(garbage.into())).await.unwrap();
    let mut seen = Seen::default();
    read_until(&mut ws, &mut seen, Duration::from_secs(10), |s| {
        s.texts.iter().any(|t| t["type"] == "error")
    })
    .await;
    input(&mut ws, "stty size | sed 's/^/SIZE=/'\n").await;
    read_output(&mut ws, "SIZE=40 120").await;

    // The status node: a temporary child with its details.
    let d = details(&gw, &path).await;
    assert_eq!(d["launcher"], "shell");
    assert_eq!(
        (d["cols"].as_u64(), d["rows"].as_u64()),
        (Some(120), Some(40))
    );
    assert_eq!(
        d["cwd"],
        dir.path().canonicalize().unwrap().display().to_string()
    );
    assert!(d["pid"].as_i64().unwrap() > 0);
    assert!(d["bytes_in"].as_u64().unwrap() > 0 && d["bytes_out"].as_u64().unwrap() > 0);
    assert!(d["started_at"].is_string());
    // Below the owner, terminals are a count (their details name a session and a command).
    let viewer = gw.paired("viewer").await;
    let (status, _) = gw.api_as(&viewer, &format!("/api/actors/{path}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, terminals) = gw.api_as(&viewer, "/api/actors/root/terminals").await;
    assert_eq!(terminals["children"], json!([]), "{terminals}");
    assert_eq!(terminals["details"]["terminals"], 1, "{terminals}");

    // A restart of a terminal is refused: it is temporary.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/actors/{path}/restart", gw.url))
        .bearer_auth(&gw.token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());

    // `exit`: the exit frame, then a close.
    input(&mut ws, "exit 3\n").await;
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        match tokio::time::timeout(deadline - Instant::now(), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "exit" {
                    break v;
                }
                seen.texts.push(v);
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no exit frame: {other:?}"),
        }
    };
    assert_eq!(exit, json!({ "type": "exit", "code": 3, "signal": null }));
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
    eventually_async("the terminal's node is gone", async || {
        gw.api(&format!("/api/actors/{path}")).await.0 == StatusCode::NOT_FOUND
    })
    .await;
}

fn http_status(result: Result<(Ws, Value), WsError>) -> (u16, String) {
    match result {
        Err(WsError::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok((_, ready)) => panic!("expected a refusal, got a terminal: {ready}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_origins_lesser_roles_and_bad_queries_are_refused_before_the_upgrade() {
    let served = start().await;
    let gw = Gateway::of(served.home.path());
    let dir = tempfile::tempdir().unwrap();
    let query = format!("cwd={}", dir.path().display());

    let (status, _) =
        http_status(connect(&gw, &gw.token, &query, Some("http://evil.example")).await);
    assert_eq!(status, 403, "a foreign Origin");
    for role in ["viewer", "operator"] {
        let token = gw.paired(role).await;
        let (status, body) = http_status(connect(&gw, &token, &query, None).await);
        assert_eq!(status, 403, "{role}: {body}");
        assert!(body.contains("needs the owner role"), "{body}");
    }
    for (query, want) in [
        ("cwd=relative".to_owned(), "absolute"),
        ("cwd=/no/such/dir".to_owned(), "No such file"),
        (format!("{query}&cols=0"), "cols must be"),
        (format!("{query}&rows=1001"), "rows must be"),
        (
            format!("{query}&launcher=nope"),
            "unknown launcher \\\"nope\\\"",
        ),
    ] {
        let (status, body) = http_status(connect(&gw, &gw.token, &query, None).await);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(want), "{query}: {body}");
    }
    // The same Origin as the gateway's own is welcome.
    let (ws, _) = connect(&gw, &gw.token, &query, Some(&gw.url))
        .await
        .unwrap();
    drop(ws);

    // The launchers: owner only; built-ins and the configured one.
    let viewer = gw.paired("viewer").await;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/terminal/launchers", gw.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (status, list) = gw.api("/api/terminal/launchers").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<(&str, bool, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["builtin"].as_bool().unwrap(),
                l["available"].as_bool().unwrap(),
            )
        })
        .filter(|(n, ..)| matches!(*n, "shell" | "fake"))
        .collect();
    assert_eq!(names, [("shell", true, true), ("fake", false, true)]);
    assert_eq!(list.as_array().unwrap().len(), 6, "{list}");
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_megabyte_paste_completes_without_the_daemon_buffering_it() {
    let served = start().await;
    let gw = Gateway::of(served.home.path());
    let dir = tempfile::tempdir().unwrap();
    let (mut ws, _) = open(&gw, "shell", dir.path()).await;
    input(
        &mut ws,
        "stty -echo; echo STARTED; wc -c | sed 's/^ */COUNT=/'\n",
    )
    .await;
    read_output(&mut ws, "STARTED\r\n").await;
    let daemon = served.daemon.child.id();
    let before = rss_kib(daemon);
    // 160 frames of 64 KiB: lines of 63 'a's and a newline (the line discipline's lines).
    let line = format!("{}\n", "a".repeat(63));
    let frame = bytes::Bytes::from(line.repeat(1024));
    assert_eq!(frame.len(), 64 * 1024);
    let mut peak = before;
    for i in 0..160 {
        ws.send(Message::Binary(frame.clone())).await.unwrap();
        if i % 16 == 0 {
            peak = peak.max(rss_kib(daemon));
        }
    }
    // ^D at the start of a line: end of input for `wc`.
    ws.send(Message::Binary(bytes::Bytes::from_static(b"\x04")))
        .await
        .unwrap();
    let out = read_output(&mut ws, "COUNT=10485760").await;
    assert!(out.contains("COUNT=10485760"), "{out}");
    peak = peak.max(rss_kib(daemon));
    // Generous: the queues hold well under 1 MiB; allocator noise is allowed for.
    assert!(
        peak < before + 32 * 1024,
        "the daemon's RSS went from {before} KiB to {peak} KiB during a 10 MB paste"
    );
    let path = ws_path(&mut ws, &gw).await;
    let d = details(&gw, &path).await;
    assert!(d["bytes_in"].as_u64().unwrap() >= 10 * 1024 * 1024, "{d}");

    // One frame over 64 KiB is refused: the socket closes (1009), and the terminal ends.
    let big = bytes::Bytes::from(vec![b'a'; 64 * 1024 + 1]);
    let _ = ws.send(Message::Binary(big)).await;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break None,
            Err(_) => panic!("the socket stayed open after an oversized frame"),
        }
    };
    assert!(matches!(closed, Some(1009) | None), "{closed:?}");
    eventually_async("the terminal ended", async || {
        gw.api(&format!("/api/actors/{path}")).await.0 == StatusCode::NOT_FOUND
    })
    .await;
}

/// The path of the only terminal.
async fn ws_path(_ws: &mut Ws, gw: &Gateway) -> String {
    let (_, node) = gw.api("/api/actors/root/terminals").await;
    let children = node["children"].as_array().unwrap();
    assert_eq!(children.len(), 1, "{node}");
    children[0]["path"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_the_socket_kills_the_shell_its_jobs_and_their_orphans() {
    let served = start().await;
    let gw = Gateway::of(served.home.path());
    let dir = tempfile::tempdir().unwrap();
    let (mut ws, path, shell) = open_shell(&gw, dir.path()).await;
    let (job, orphan) = start_descendants(&mut ws).await;
    for pid in [shell, job, orphan] {
        assert!(alive(pid), "{pid} runs");
    }
    ws.close(None).await.unwrap();
    drop(ws);
    for (what, pid) in [("shell", shell), ("job", job), ("orphan", orphan)] {
        eventually_async(format!("the {what} ({pid}) is gone"), async || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .await;
    }
    eventually_async("the terminal's node is gone", async || {
        gw.api(&format!("/api/actors/{path}")).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    let left: Vec<_> = std::fs::read_dir(served.home.path().join("terminals"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "the terminal's directory is removed");
}

/// A daemon of its own (the test stops it) with `/bin/sh` as `$SHELL` and terminals stopped
/// with `grace_ms` between SIGTERM and SIGKILL.
async fn daemon_with_grace(grace_ms: u64) -> (TestHome, TestDaemon, Gateway) {
    let home = TestHome::new();
    home.write_config(&format!("[terminal]\nstop_grace_ms = {grace_ms}\n"));
    let daemon = TestDaemon::start(&home, &[("SHELL", "/bin/sh")]);
    let gw = Gateway::of_started(home.path()).await;
    (home, daemon, gw)
}

/// A shell terminal in `cwd`: its socket, its node's path and the shell's pid.
async fn open_shell(gw: &Gateway, cwd: &std::path::Path) -> (Ws, String, i32) {
    let (ws, ready) = open(gw, "shell", cwd).await;
    let path = ready["path"].as_str().unwrap().to_owned();
    let shell = details(gw, &path).await["pid"].as_i64().unwrap() as i32;
    (ws, path, shell)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_stop_kills_every_terminal() {
    let (_home, mut daemon, gw) = daemon_with_grace(500).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut ws, _, shell) = open_shell(&gw, dir.path()).await;
    let (job, orphan) = start_descendants(&mut ws).await;
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let status = daemon.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", daemon.stderr());
    for (what, pid) in [("shell", shell), ("job", job), ("orphan", orphan)] {
        assert!(!alive(pid), "the {what} ({pid}) outlived the daemon");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_cli_calls_a_tool_through_its_session_and_the_progress_reaches_the_page() {
    let served = start().await;
    let gw = Gateway::of(served.home.path());
    let dir = tempfile::tempdir().unwrap();
    let (mut ws, ready) = open(&gw, "fake", dir.path()).await;
    let session_id = ready["session_id"].as_str().expect("a session").to_owned();
    assert!(
        !ready.to_string().contains(
            &std::fs::read_to_string(served.home.path().join("gateway.token"))
                .unwrap()
                .trim()
                .to_string()
        ),
        "no gateway token in the ready frame"
    );
    let out = read_output(&mut ws, "READY").await;
    // The config it was given names the live session, with both headers.
    let config_line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("CONFIG "))
        .unwrap_or_else(|| panic!("no CONFIG line in {out:?}"));
    let config: Value = serde_json::from_str(config_line).unwrap();
    let revka = &config["mcpServers"]["revka"];
    assert_eq!(revka["type"], "http");
    assert_eq!(revka["url"], served.url);
    assert_eq!(revka["headers"]["X-Revka-Session"], session_id);
    assert!(
        revka["headers"]["Authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    assert!(
        out.contains(&format!("ENV REVKA_SESSION_ID={session_id}")),
        "{out}"
    );
    // The session: labelled, in the terminal's cwd.
    let (_, node) = gw
        .api(&format!("/api/actors/root/sessions/session:{session_id}"))
        .await;
    assert_eq!(node["details"]["label"], "code:fake", "{node}");

    // The page follows the session's progress with the same gateway token, no MCP token.
    let url = format!(
        "{}/ws/mcp/events?session_id={session_id}",
        gw.url.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("revka, bearer.{}", gw.token)).unwrap(),
    );
    let (mut events, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    eventually_async("the relay subscribed", async || {
        served
            .metrics()
            .await
            .iter()
            .any(|s| s.name == "revka_progress_subscribers" && s.value >= 1.0)
    })
    .await;

    input(&mut ws, "call\n").await;
    let out = read_output(&mut ws, "RESULT done").await;
    assert!(out.contains("PROGRESS 3"), "{out}");
    // (The activation's `tools/list_changed` may come first.)
    let event = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("a progress frame")
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        if event.get("token").is_some() {
            break event;
        }
    };
    assert_eq!(event["token"], "fake-cli", "{event}");
    assert_eq!(event["tool"], "fault__progress");

    // Its config files are owner-only while it runs, and go with it; so does the session.
    let terminals = served.home.path().join("terminals");
    let term_dir = std::fs::read_dir(&terminals)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(term_dir.join("mcp.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    input(&mut ws, "quit\n").await;
    let mut seen = Seen::default();
    read_until(&mut ws, &mut seen, Duration::from_secs(10), |s| {
        s.texts.iter().any(|t| t["type"] == "exit")
    })
    .await;
    let exit = seen.texts.iter().find(|t| t["type"] == "exit").unwrap();
    assert_eq!(exit["code"], 0, "{exit}");
    eventually_async("the session ended", async || {
        gw.api(&format!("/api/actors/root/sessions/session:{session_id}"))
            .await
            .0
            == StatusCode::NOT_FOUND
    })
    .await;
    eventually_async("the terminal's files are gone", async || !term_dir.exists()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_exit_kills_terminals_that_ignore_sigterm() {
    // A grace far longer than the test waits: only the forced path can end the terminal.
    let (_home, mut daemon, gw) = daemon_with_grace(60_000).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut ws, _, shell) = open_shell(&gw, dir.path()).await;
    // The shell and what it starts ignore SIGHUP and SIGTERM.
    input(&mut ws, "trap '' HUP TERM\n").await;
    let (job, orphan) = start_descendants(&mut ws).await;
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(alive(shell) && alive(job), "SIGTERM is ignored for now");
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait(Duration::from_secs(30));
    for (what, pid) in [("shell", shell), ("job", job), ("orphan", orphan)] {
        eventually_async(format!("the {what} ({pid}) is dead"), async || !alive(pid)).await;
    }
}
