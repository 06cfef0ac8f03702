//! Two real Revka daemons federated over the standard Streamable HTTP path: the near one names
//! the far one as an `http` server with a client token, and serves the far one's servers'
//! tools as `far__<server>__<tool>`. A kill -9 of a server on the far side fails calls through
//! the near one fast, with the far server's state, until the far supervisor repaired it; a
//! restart of the far daemon is survived by re-initialising; a wrong token shows the far
//! server failed on the near one with the 401, retried with backoff.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Gateway, TestDaemon, TestHome, fixture_server, within, within_async};
use crate::mcp_standard::StdSession;

/// A daemon and its home.
struct Revka {
    home: TestHome,
    daemon: TestDaemon,
}

impl Revka {
    /// Starts a daemon in `home` with `config`.
    fn start(home: TestHome, config: &str) -> Self {
        home.write_config(config);
        // The store is loaded at start: issue the token first.
        home.client_token();
        let daemon = TestDaemon::start(&home, &[]);
        Self { home, daemon }
    }

    /// The URL of its MCP endpoint, once `mcp.json` names it.
    fn mcp_url(&self) -> String {
        let path = self.home.path().join("mcp.json");
        within(Duration::from_secs(30), "mcp.json written", || {
            std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|d| d["url"].as_str().map(str::to_owned))
        })
    }

    /// Its gateway, with the owner token.
    fn gateway(&self) -> Gateway {
        Gateway::of(self.home.path())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The far daemon's config: the fault fixture as `fault` on a fixed port. A restart of `fault`
/// waits `backoff_min_ms` (its runs never count as stable), so calls meet it down.
fn far_config(port: u16) -> String {
    format!(
        r#"
[mcp_server]
port = {port}

[mcp]
enabled = true

[[mcp.servers]]
name = "fault"
command = "{server}"
restart = {{ backoff_min_ms = 4000, backoff_max_ms = 4000, reset_after_secs = 3600, max_restarts = 20 }}
"#,
        server = fixture_server("fault_server").display(),
    )
}

/// The near daemon's config: the far one as server `far`, with `token`.
fn near_config(far_url: &str, token: &str) -> String {
    format!(
        r#"
[mcp]
enabled = true

[[mcp.servers]]
name = "far"
transport = "http"
url = "{far_url}"
headers = {{ Authorization = "Bearer {token}" }}
restart = {{ backoff_min_ms = 200, backoff_max_ms = 2000 }}
"#
    )
}

/// What a call answered: its result, or the JSON-RPC error.
#[derive(Debug)]
enum Answer {
    Result(Value),
    Error(Value),
}

impl Answer {
    /// The result's text, or the error's message (both as one string to assert on).
    fn text(&self) -> String {
        match self {
            Answer::Result(r) => r["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            Answer::Error(e) => e["message"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// Whether it is a successful result (not an error, not `isError`).
    fn ok(&self) -> bool {
        matches!(self, Answer::Result(r) if r["isError"] != true)
    }
}

/// Calls `name` in `session`; its answer and how long it took.
async fn call(session: &StdSession, name: &str, arguments: Value) -> (Answer, Duration) {
    let started = Instant::now();
    let events = session.call(name, arguments, None).await;
    let took = started.elapsed();
    let answer = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find_map(|m| {
            if let Some(r) = m.get("result") {
                Some(Answer::Result(r.clone()))
            } else {
                m.get("error").map(|e| Answer::Error(e.clone()))
            }
        })
        .unwrap_or_else(|| panic!("no answer in {events:?}"));
    (answer, took)
}

/// Activates `tools` with `tool_search` in `session` (the near daemon defers them).
async fn activate(session: &StdSession, tools: &[&str]) -> String {
    let query = format!("select:{}", tools.join(","));
    call(session, "tool_search", json!({ "query": query }))
        .await
        .0
        .text()
}

/// Polls until `far__fault__echo` is activatable and answers in a fresh near session; returns
/// that session.
async fn near_session_with_echo(url: &str, token: &str) -> StdSession {
    within_async(
        Duration::from_secs(60),
        "far__fault__echo to become callable",
        async || {
            let session = StdSession::open(url, Some(token)).await;
            let found = activate(&session, &["far__fault__echo"]).await;
            if found.contains("Not found") || !found.contains("far__fault__echo") {
                return None;
            }
            let (answer, _) = call(&session, "far__fault__echo", json!({ "text": "hi" })).await;
            answer.ok().then_some(session)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn federated_revkas_fail_fast_while_a_far_server_is_down_and_recover_from_a_far_restart() {
    let port = free_port();
    let far_home = TestHome::new();
    let far_token = far_home.client_token();
    let mut far = Revka::start(far_home, &far_config(port));
    let far_url = format!("http://127.0.0.1:{port}/mcp");
    assert_eq!(far.mcp_url(), far_url);

    let near = Revka::start(TestHome::new(), &near_config(&far_url, &far_token));
    let near_url = near.mcp_url();
    let near_token = near.home.client_token();

    // The far's servers' tools, under the near's own deferral: the far served them undeferred
    // (no `far__tool_search`), each named `far__<server>__<tool>`.
    let session = near_session_with_echo(&near_url, &near_token).await;
    let (answer, _) = call(&session, "far__fault__echo", json!({ "text": "hello" })).await;
    assert!(answer.ok(), "{answer:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer.text()).unwrap(),
        json!({ "text": "hello" })
    );
    let found = activate(&session, &["far__tool_search"]).await;
    assert!(found.contains("Not found"), "{found}");
    assert_eq!(near.gateway().server_node("far").await["state"], "running");

    // kill -9 of the far's fault server, twice: the far supervisor restarts it at once after
    // the first (its run was stable), and waits out its 4 s backoff after the second...
    let kill = |pid: i32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap()
    };
    let first = far
        .gateway()
        .server_pid("fault")
        .await
        .expect("fault runs on the far");
    kill(first);
    let pid = within_async(Duration::from_secs(30), "fault to restart", async || {
        far.gateway()
            .server_pid("fault")
            .await
            .filter(|&pid| pid != first)
    })
    .await;
    kill(pid);
    // ...and meanwhile calls through the near fail fast, naming the server and its state.
    let (answer, took) = within_async(
        Duration::from_secs(30),
        "a call to meet the far server down",
        async || {
            let (answer, took) = call(&session, "far__fault__echo", json!({ "text": "x" })).await;
            (!answer.ok()).then_some((answer, took))
        },
    )
    .await;
    assert!(took < Duration::from_secs(10), "took {took:?}: {answer:?}");
    let message = answer.text();
    assert!(message.contains("fault"), "{message}");
    // The near's connection to the far is not what failed.
    assert_eq!(near.gateway().server_node("far").await["state"], "running");

    // ...and work again once the far repaired it.
    within_async(
        Duration::from_secs(60),
        "the far to repair fault",
        async || {
            call(&session, "far__fault__echo", json!({ "text": "back" }))
                .await
                .0
                .ok()
        },
    )
    .await;
    assert_ne!(far.gateway().server_pid("fault").await, Some(pid));

    // A change of the far's tool table reaches the near live, through the far session's
    // GET stream: `set_tools` makes the fault server announce `dyn_*` tools.
    let found = activate(&session, &["far__fault__set_tools"]).await;
    assert!(!found.contains("Not found"), "{found}");
    let (answer, _) = call(&session, "far__fault__set_tools", json!({ "count": 2 })).await;
    assert!(answer.ok(), "{answer:?}");
    // Whether the near's table has `tool` (`select:` finds only tools that exist).
    let probe = StdSession::open(&near_url, Some(&near_token)).await;
    let near_has = async |tool: &str| !activate(&probe, &[tool]).await.contains("Not found");
    within_async(
        Duration::from_secs(30),
        "far__fault__dyn_001 to reach the near",
        async || near_has("far__fault__dyn_001").await,
    )
    .await;

    // A restart of the far daemon: its sessions are gone, the near re-initialises (a 404 on
    // the old session), and calls through the same near session work again.
    far.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(far.daemon.wait(Duration::from_secs(30)).code(), Some(0));
    let far = Revka::start(far.home, &far_config(port));
    assert_eq!(far.mcp_url(), far_url);
    // Without a call through it, the near notices on its GET stream (404), re-initialises and
    // re-reads the tools: the restarted fault server has no `dyn_*` tools.
    within_async(
        Duration::from_secs(60),
        "the near to re-read the far's tools after its restart",
        async || !near_has("far__fault__dyn_001").await,
    )
    .await;
    within_async(
        Duration::from_secs(60),
        "calls to recover after the far restart",
        async || {
            call(&session, "far__fault__echo", json!({ "text": "again" }))
                .await
                .0
                .ok()
        },
    )
    .await;
}

/// A wrong client token in `headers`: the near shows `far` failing with the far's 401, retries
/// it with backoff, and past its restart limit leaves it `failed` with that reason (not a hot
/// loop).
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_federation_token_shows_the_far_server_unauthorized_without_a_hot_loop() {
    let port = free_port();
    let far = Revka::start(TestHome::new(), &far_config(port));
    let far_url = far.mcp_url();
    let near = Revka::start(
        TestHome::new(),
        &near_config(&far_url, "rvkc_not_a_token_of_the_far_daemon"),
    );
    let node = within_async(Duration::from_secs(60), "far to be failed", async || {
        let node = near.gateway().server_node("far").await;
        // Never failing any faster than its backoff allows.
        assert!(node["restarts"].as_u64().unwrap_or(0) <= 5, "{node}");
        (node["state"] == "failed").then_some(node)
    })
    .await;
    let reason = node["last_failure"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("HTTP 401") && reason.contains("unauthorized"),
        "{node}"
    );
    assert!(!reason.contains("rvkc_not_a_token"), "{node}");
    assert_eq!(node["restarts"], 5, "{node}");
}
