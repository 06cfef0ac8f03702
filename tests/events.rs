//! The supervision event log against the real daemon: `GET /api/events` (JSON and its SSE
//! stream) and `revka events`, around a `kill -9` of a real stdio server (the fault fixture).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use revka_mcp::sse::{SseEvent, SseParser};
use serde_json::Value;

use crate::harness::{Gateway, Served, eventually_async};

const SERVER: &str = "root/mcp_servers/mcp:fault";

/// A followed `GET /api/events` stream, read event by event (comments skipped).
struct Follow {
    response: reqwest::Response,
    parser: SseParser,
}

impl Follow {
    async fn open(gateway: &Gateway, token: &str, query: &str) -> Self {
        let response = reqwest::Client::new()
            .get(format!("{}/api/events?{query}", gateway.url))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            parser: SseParser::new(1 << 20),
        }
    }

    /// The next event, or `None` when the stream ended (each within 30 s).
    async fn next(&mut self) -> Option<SseEvent> {
        self.next_within(Duration::from_secs(30))
            .await
            .expect("an event within 30 s")
    }

    /// The next event (`Some(None)`: the stream ended), or `None` if none came within `limit`.
    async fn next_within(&mut self, limit: Duration) -> Option<Option<SseEvent>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(event) = self.parser.next_event() {
                return Some(Some(event.unwrap()));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?;
            // A connection closed by the daemon's exit ends the stream too.
            let Some(chunk) = chunk.ok().flatten() else {
                return Some(None);
            };
            self.parser.push(&chunk);
        }
    }
}

/// `GET /api/events?query` with `token`: (status, body).
async fn events(gateway: &Gateway, token: &str, query: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/events?{query}", gateway.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The next line `revka events -f --json` printed, parsed.
async fn next_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a line within 30 s")
        .expect("revka events -f is running");
    serde_json::from_str(&line).unwrap()
}

/// The kinds of `events` at `path`, in order.
fn kinds_at<'a>(events: impl IntoIterator<Item = &'a Value>, path: &str) -> Vec<String> {
    events
        .into_iter()
        .filter(|e| e["path"] == path)
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// The three events of a kill: exited (abnormal) → restart_scheduled → started (after_ms), in
/// sequence order, with the states each leaves the server in.
fn assert_kill_sequence(events: &[Value], restarts_before: u64) {
    let server: Vec<&Value> = events.iter().filter(|e| e["path"] == SERVER).collect();
    let kinds: Vec<&str> = server.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds[..3],
        ["exited", "restart_scheduled", "started"],
        "{server:#?}"
    );
    let (exited, scheduled, started) = (server[0], server[1], server[2]);
    assert_eq!(exited["abnormal"], true, "{exited}");
    assert_eq!(exited["state"], "backing_off");
    assert!(
        exited["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{exited}"
    );
    assert_eq!(exited["restarts"], restarts_before + 1);
    assert_eq!(scheduled["state"], "backing_off");
    assert!(scheduled["delay_ms"].is_u64(), "{scheduled}");
    assert_eq!(scheduled["attempt"], 1);
    assert_eq!(started["state"], "running");
    assert_eq!(started["restarts"], restarts_before + 1);
    assert!(started["after_ms"].is_u64(), "{started}");
    assert!(
        started.get("reason").is_none(),
        "absent fields are omitted: {started}"
    );
    let seqs: Vec<u64> = server.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_is_logged_as_exited_restart_scheduled_started_in_json_sse_and_the_cli() {
    let served = Served::start("").await;
    let gateway = Gateway::of(served.home.path());
    let owner = gateway.token.clone();

    // Where the log is now, and the server as it runs.
    let (status, page) = events(&gateway, &owner, "limit=4096").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let cursor = page["next"].as_u64().unwrap();
    assert_eq!(page["gap"], false);
    assert_eq!(page["oldest"], 1, "nothing overwritten yet");
    let startup = page["events"].as_array().unwrap();
    assert_eq!(
        kinds_at(startup, SERVER)[..2],
        ["added", "started"],
        "{startup:#?}"
    );
    assert!(
        startup.iter().all(|e| e["seq"].as_u64().unwrap() <= cursor),
        "next is the last seq read"
    );
    let restarts_before = gateway.server_node("fault").await["restarts"]
        .as_u64()
        .unwrap();
    let pid = gateway.server_pid("fault").await.expect("the server's pid");

    let mut stream = Follow::open(&gateway, &owner, &format!("since={cursor}")).await;
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();

    // The stream: the three events, pushed as they happen.
    let mut pushed = Vec::new();
    while kinds_at(&pushed, SERVER).len() < 3 {
        let event = stream.next().await.expect("the stream stays open");
        if event.event.as_deref() == Some("supervision") {
            let value: Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(event.id.as_deref(), Some(value["seq"].to_string().as_str()));
            assert!(value["seq"].as_u64().unwrap() > cursor, "after since");
            pushed.push(value);
        }
    }
    assert_kill_sequence(&pushed, restarts_before);

    // The same by page, for the server's subtree only.
    let (status, page) = events(&gateway, &owner, &format!("since={cursor}&path={SERVER}")).await;
    assert_eq!(status, StatusCode::OK);
    let paged = page["events"].as_array().unwrap();
    assert!(
        paged
            .iter()
            .all(|e| e["path"].as_str().unwrap().starts_with(SERVER)),
        "{paged:#?}"
    );
    assert_kill_sequence(paged, restarts_before);
    // Its process node follows: stopped with the killed process, started with the new one.
    let process = format!("{SERVER}/process");
    assert_eq!(
        kinds_at(paged, &process)[..2],
        ["stopped", "started"],
        "{paged:#?}"
    );

    // `revka events --json`: the same events, one JSON object per line.
    let out = served
        .home
        .command()
        .env("RUST_LOG", "off")
        .args([
            "events",
            "--json",
            "--since",
            &cursor.to_string(),
            "--path",
            SERVER,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_kill_sequence(&printed, restarts_before);
    // And as text.
    let out = served
        .home
        .command()
        .env("RUST_LOG", "off")
        .args(["events", "--since", &cursor.to_string(), "--path", SERVER])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let exited = text
        .lines()
        .find(|l| l.contains("  exited  "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        exited.contains(&format!("{SERVER}  exited  backing_off  restarts="))
            && exited.contains("  abnormal  reason="),
        "{exited}"
    );

    // `revka events -f` follows: what the daemon keeps, then a live restart as it happens.
    let mut follower = served
        .home
        .command()
        .env("RUST_LOG", "off")
        .args(["events", "-f", "--json", "--path", SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rx = line_reader(follower.stdout.take().unwrap());
    let mut said = line_reader(follower.stderr.take().unwrap());
    // The backlog ends with the restart above.
    let mut backlog = Vec::new();
    while kinds_at(&backlog, SERVER)
        .iter()
        .filter(|k| *k == "started")
        .count()
        < 2
    {
        backlog.push(next_line(&mut rx).await);
    }
    let (status, _) = reqwest::Client::new()
        .post(format!("{}/api/actors/{SERVER}/restart", gateway.url))
        .bearer_auth(&owner)
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let mut live = Vec::new();
    while !kinds_at(&live, SERVER).contains(&"started".to_owned()) {
        live.push(next_line(&mut rx).await);
    }
    assert_eq!(
        kinds_at(&live, SERVER),
        ["restart_requested", "stopped", "started"],
        "{live:#?}"
    );

    // The stream ends when the daemon stops (it does not hold up the shutdown).
    let mut served = served;
    served.daemon.signal(Signal::SIGTERM);
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while stream.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended with the daemon");
    let status = served.daemon.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");

    // `revka events -f` says so, waits, and carries on with the next daemon's log from its
    // start (its sequence numbers start over).
    said_line(&mut said, "the daemon's event stream ended; reconnecting").await;
    served.daemon = crate::harness::TestDaemon::start(&served.home, &[]);
    let restarted = said_line(&mut said, "the daemon restarted (pid ").await;
    assert!(
        restarted.ends_with("its event log starts over"),
        "{restarted}"
    );
    said_line(&mut said, "reconnected to the daemon's event stream").await;
    let mut again = Vec::new();
    while !kinds_at(&again, SERVER).contains(&"started".to_owned()) {
        again.push(next_line(&mut rx).await);
    }
    let added = again
        .iter()
        .find(|e| e["path"] == SERVER && e["kind"] == "added")
        .unwrap_or_else(|| panic!("the new daemon's log from its start: {again:#?}"));
    assert!(added["seq"].as_u64().unwrap() < cursor, "{added}");
    let _ = follower.kill();
    let _ = follower.wait();
}

/// Skips what `revka events -f` said on stderr up to a line containing `what` (within 30 s).
async fn said_line(said: &mut tokio::sync::mpsc::UnboundedReceiver<String>, what: &str) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), said.recv())
            .await
            .unwrap_or_else(|_| panic!("`{what}` within 30 s"))
            .expect("revka events -f is running");
        if line.contains(what) {
            return line;
        }
    }
}

/// The lines a child process writes to `pipe`, as they come.
fn line_reader(
    pipe: impl std::io::Read + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread")]
async fn session_events_are_the_owners_and_bad_input_is_a_400() {
    let served = Served::start("").await;
    let gateway = Gateway::of(served.home.path());
    let session = served.session().await;
    let path = format!("root/sessions/session:{}", session.id);
    let owner = gateway.token.clone();
    eventually_async("the session's node is logged", async || {
        let (_, page) = events(&gateway, &owner, "limit=4096").await;
        kinds_at(page["events"].as_array().unwrap(), &path).contains(&"started".to_owned())
    })
    .await;

    let viewer = gateway.paired("viewer").await;
    let (status, page) = events(&gateway, &viewer, "limit=4096").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let seen = page["events"].as_array().unwrap();
    assert!(
        seen.iter()
            .all(|e| !e["path"].as_str().unwrap().starts_with("root/sessions/")),
        "a viewer sees no session: {seen:#?}"
    );
    assert!(
        !kinds_at(seen, "root/mcp_servers").is_empty(),
        "but the rest of the tree"
    );
    // Not by asking for the subtree either.
    let (_, page) = events(&gateway, &viewer, "path=root/sessions").await;
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["path"] == "root/sessions"),
        "{page}"
    );

    // The stream is redacted the same way: its backlog (all the log) without the sessions.
    let mut stream = Follow::open(&gateway, &viewer, "since=0").await;
    let mut streamed = 0;
    while let Some(Some(event)) = stream.next_within(Duration::from_secs(2)).await {
        if event.event.as_deref() != Some("supervision") {
            continue;
        }
        let value: Value = serde_json::from_str(&event.data).unwrap();
        assert!(
            !value["path"]
                .as_str()
                .unwrap()
                .starts_with("root/sessions/"),
            "{value}"
        );
        streamed += 1;
    }
    assert!(
        streamed >= seen.len(),
        "{streamed} streamed, {} paged",
        seen.len()
    );

    for (query, message) in [
        (
            "since=abc",
            "invalid since `abc`: expected a sequence number (an integer >= 0)",
        ),
        (
            "limit=-3",
            "invalid limit `-3`: expected a number from 1 to 4096",
        ),
        (
            "limit=5000",
            "invalid limit `5000`: expected a number from 1 to 4096",
        ),
        (
            "follow=maybe",
            "invalid follow `maybe`: expected true or false",
        ),
    ] {
        let (status, body) = events(&gateway, &owner, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], message, "{query}");
    }
    let (status, body) = events(&gateway, &owner, "sinse=3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `sinse`"),
        "{body}"
    );
    let (status, _) = events(&gateway, "not-a-token", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A live reload is a `reloaded` event on the root, saying what it did.
    let (_, page) = events(&gateway, &owner, "limit=1").await;
    let before = page["oldest"].as_u64().unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/api/reload", gateway.url))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, page) = events(&gateway, &viewer, &format!("since={before}&limit=4096")).await;
    let reloaded: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"] == "root" && e["kind"] == "reloaded")
        .collect();
    assert_eq!(reloaded.len(), 1, "{page}");
    assert_eq!(
        reloaded[0]["detail"],
        "0 applied, 0 need a restart, 0 failed"
    );
    assert_eq!(reloaded[0]["state"], "running");
}
