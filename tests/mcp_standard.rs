//! The standard Streamable HTTP path of the real daemon: `initialize` with a client token,
//! `Mcp-Session-Id` on later requests, `GET /mcp` announcing tool changes, `DELETE /mcp`, what
//! a gateway token gets, and `[mcp_server]`: a fixed port across restarts, a taken port,
//! `require_token = false` on loopback, and its refusal on a public bind.

use std::time::Duration;

use reqwest::StatusCode;
use revka_mcp::sse::{SseEvent, SseParser};
use serde_json::{Value, json};

use crate::harness::{
    Served, TestDaemon, TestHome, eventually_async, fixture_server, next_id, parse_sse,
    served_only, try_within_async,
};

const BOTH: &str = "application/json, text/event-stream";

/// A session opened by a standard `initialize`.
pub struct StdSession {
    pub url: String,
    pub id: String,
    pub token: Option<String>,
    pub http: reqwest::Client,
}

impl StdSession {
    /// `initialize` at `url` with `token`; panics unless a session is created.
    pub async fn open(url: &str, token: Option<&str>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let response = post(&http, url, token, None, initialize()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let id = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["result"]["serverInfo"]["name"], "revka-mcp");
        let session = Self {
            url: url.to_owned(),
            id,
            token: token.map(str::to_owned),
            http,
        };
        let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        assert_eq!(session.send(note).await.status(), StatusCode::ACCEPTED);
        session
    }

    pub async fn send(&self, body: Value) -> reqwest::Response {
        post(
            &self.http,
            &self.url,
            self.token.as_deref(),
            Some(&self.id),
            body,
        )
        .await
    }

    /// A request answered with JSON: (status, body).
    pub async fn rpc(&self, method: &str, params: Value) -> (StatusCode, Value) {
        let response = self
            .send(json!({ "jsonrpc": "2.0", "id": next_id(), "method": method, "params": params }))
            .await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A `tools/call`: its SSE events.
    pub async fn call(&self, name: &str, arguments: Value, token: Option<Value>) -> Vec<SseEvent> {
        let mut params = json!({ "name": name, "arguments": arguments });
        if let Some(token) = token {
            params["_meta"] = json!({ "progressToken": token });
        }
        let response = self
            .send(json!({ "jsonrpc": "2.0", "id": next_id(), "method": "tools/call", "params": params }))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        parse_sse(&response.bytes().await.unwrap())
    }

    /// `GET /mcp`, opened.
    pub async fn stream(&self) -> McpStream {
        let mut request = self
            .http
            .get(&self.url)
            .header("mcp-session-id", &self.id)
            .header("accept", "text/event-stream");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        McpStream {
            response,
            parser: SseParser::new(1 << 20),
        }
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", BOTH)
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25");
    }
    request.send().await.unwrap()
}

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "revka-tests", "version": "1" },
        },
    })
}

/// An open `GET /mcp` stream.
pub struct McpStream {
    response: reqwest::Response,
    parser: SseParser,
}

impl McpStream {
    /// The next event that carries data (generous deadline).
    pub async fn message(&mut self) -> (Option<String>, Value) {
        loop {
            while let Some(event) = self.parser.next_event() {
                let event = event.unwrap();
                if !event.data.is_empty() {
                    return (event.id, serde_json::from_str(&event.data).unwrap());
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .expect("the stream is open");
            self.parser.push(&chunk);
        }
    }
}

pub fn messages(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.event.is_none())
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standard_client_lists_activates_calls_with_progress_and_ends_its_session() {
    let served = Served::start("").await;
    let token = served.client_token();
    let session = StdSession::open(&served.url, Some(&token)).await;
    let (status, listed) = session.rpc("tools/list", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let names = served_only(
        listed["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned()),
    );
    assert_eq!(
        names,
        ["tool_search"],
        "deferred loading, as on the two-header path"
    );

    // The GET stream announces the activation with an id.
    let mut stream = session.stream().await;
    let found = session
        .call(
            "tool_search",
            json!({ "query": "select:fault__progress" }),
            None,
        )
        .await;
    assert!(
        messages(&found)
            .iter()
            .any(|m| m["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("fault__progress"))),
        "{found:?}"
    );
    let (id, note) = stream.message().await;
    assert_eq!(note["method"], "notifications/tools/list_changed");
    assert_eq!(id.as_deref(), Some("1"));

    let events = session
        .call(
            "fault__progress",
            json!({ "steps": 3, "interval_ms": 5 }),
            Some(json!("std-1")),
        )
        .await;
    let all = messages(&events);
    let progress: Vec<&Value> = all
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{all:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "std-1")
    );
    let result = all.iter().find(|m| m.get("result").is_some()).unwrap();
    assert_eq!(result["result"]["content"][0]["text"], "done");

    // The session is the supervised actor of the two-header flow, shown with its client.
    let actor = served
        .api(&format!("/api/actors/root/sessions/session:{}", session.id))
        .await;
    assert_eq!(actor["details"]["label"], "revka-tests", "{actor}");
    assert_eq!(actor["details"]["client_streams"], 1, "{actor}");
    assert!(actor["details"]["client"].is_string(), "{actor}");

    let mut delete = session
        .http
        .delete(&session.url)
        .header("mcp-session-id", &session.id);
    delete = delete.bearer_auth(&token);
    assert_eq!(
        delete.send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (status, body) = session.rpc("tools/list", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// A gateway token of any role is not a client token: 401 on `/mcp`, whether it opens a session
/// or names one.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_token_is_refused_on_the_standard_path() {
    let served = Served::start("").await;
    let (gateway, owner) = served.gateway();
    let session = StdSession::open(&served.url, Some(&served.client_token())).await;
    let refused = |response: reqwest::Response| async move {
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        (status, body)
    };
    let (status, body) =
        refused(post(&served.http, &served.url, Some(&owner), None, initialize()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a client token"),
        "{body}"
    );
    let (status, _) = refused(
        post(
            &served.http,
            &served.url,
            Some(&owner),
            Some(&session.id),
            json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Tokens paired through the gateway, of each role, likewise.
    for role in ["viewer", "operator", "owner"] {
        let code: Value = served
            .http
            .post(format!("{gateway}/api/pair/code"))
            .bearer_auth(&owner)
            .header("content-type", "application/json")
            .body(json!({ "role": role }).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let paired: Value = served
            .http
            .post(format!("{gateway}/pair"))
            .header("X-Pairing-Code", code["code"].as_str().unwrap())
            .header("X-Pairing-Label", role)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = paired["token"].as_str().expect("a paired token");
        let (status, _) =
            refused(post(&served.http, &served.url, Some(token), None, initialize()).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{role}");
    }
    // The client's own session is untouched.
    assert_eq!(session.rpc("ping", json!({})).await.0, StatusCode::OK);
}

/// Starts the daemon in `home` with `config` (it accepts `home.client_token()`).
fn start(home: &TestHome, config: &str) -> TestDaemon {
    home.write_config(config);
    home.client_token();
    TestDaemon::start(home, &[])
}

fn discovery_url(home: &TestHome) -> Option<String> {
    let doc: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("mcp.json")).ok()?).ok()?;
    doc["url"].as_str().map(str::to_owned)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// With a fixed `port`, the URL a client was configured with works after a restart: the old
/// session is 404 (the client initializes again) and a new one is served at the same URL.
#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_port_keeps_the_url_across_restarts() {
    let home = TestHome::new();
    let port = free_port();
    let token = home.client_token();
    let config = format!(
        "[mcp_server]\nport = {port}\n[mcp]\nenabled = true\n[[mcp.servers]]\nname = \"fault\"\ncommand = \"{}\"\n",
        fixture_server("fault_server").display()
    );
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut daemon = start(&home, &config);
    eventually_async("mcp.json names the daemon", async || {
        discovery_url(&home).as_deref() == Some(&url)
    })
    .await;
    let old = StdSession::open(&url, Some(&token)).await;
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(30)).code(), Some(0));
    let _daemon = start(&home, &config);
    eventually_async("mcp.json names the restarted daemon", async || {
        discovery_url(&home).as_deref() == Some(&url)
    })
    .await;
    let (status, body) = old.rpc("tools/list", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let new = StdSession::open(&url, Some(&token)).await;
    assert_eq!(new.rpc("ping", json!({})).await.0, StatusCode::OK);
}

/// A fixed port that is taken: the listener's start fails naming the address, is retried with
/// backoff and shown in the tree; once the port is free, a restart of `root/mcp_http` binds it.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_fails_the_listener_visibly_until_it_is_free() {
    let home = TestHome::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = format!("[mcp_server]\nport = {port}\n[supervisor]\nbackoff_max_ms = 200\n");
    let daemon = start(&home, &config);
    let reason = format!("cannot listen on 127.0.0.1:{port}");
    assert!(
        try_within_async(Duration::from_secs(30), async || daemon
            .stderr()
            .contains(&reason))
        .await
        .is_some(),
        "{}",
        daemon.stderr()
    );
    let status = |args: &[&str]| {
        home.command()
            .env("RUST_LOG", "off")
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .unwrap()
    };
    let tree = String::from_utf8_lossy(&status(&["status", "--path", "root/mcp_http"]).stdout)
        .into_owned();
    assert!(tree.contains(&reason), "{tree}");
    assert!(
        discovery_url(&home).is_none(),
        "no mcp.json while not bound"
    );
    drop(taken);
    let restarted = status(&["restart", "root/mcp_http"]);
    assert!(restarted.status.success(), "{restarted:?}");
    let url = format!("http://127.0.0.1:{port}/mcp");
    assert!(
        try_within_async(Duration::from_secs(30), async || discovery_url(&home)
            .as_deref()
            == Some(&url))
        .await
        .is_some(),
        "{}",
        daemon.stderr()
    );
}

/// `require_token = false` on a loopback bind: a warning at start, sessions without a token,
/// and the DNS-rebinding guard still in force.
#[tokio::test(flavor = "multi_thread")]
async fn without_require_token_a_loopback_endpoint_serves_local_clients_without_a_token() {
    let home = TestHome::new();
    let daemon = start(&home, "[mcp_server]\nrequire_token = false\n");
    eventually_async("mcp.json written", async || discovery_url(&home).is_some()).await;
    assert!(
        daemon
            .stderr()
            .contains("mcp_server.require_token = false: any local process can open a session"),
        "{}",
        daemon.stderr()
    );
    let url = discovery_url(&home).unwrap();
    let session = StdSession::open(&url, None).await;
    assert_eq!(session.rpc("tools/list", json!({})).await.0, StatusCode::OK);
    let rebound = session
        .http
        .post(&url)
        .header("host", "evil.example")
        .header("mcp-session-id", &session.id)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
}

/// `require_token = false` with a public bind is refused before anything starts: exit 64.
#[test]
fn require_token_false_on_a_public_bind_is_a_config_error() {
    let home = TestHome::new();
    home.write_config(
        "[mcp_server]\nhost = \"0.0.0.0\"\nallow_public_bind = true\nrequire_token = false\n",
    );
    for args in [&["daemon"][..], &["config", "check"]] {
        let out = home.command().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("mcp_server.require_token: must be true when mcp_server.host"),
            "{stderr}"
        );
    }
    assert!(!home.path().join("mcp.json").exists(), "nothing was bound");
}

/// A client token created with a tool scope (`revka tokens create --tools`), used by a
/// standard client: `tools/list` and `tool_search` show only its tools, activating or calling
/// another is exactly an unknown tool; revoking the token ends its session at once (404) and
/// the token opens no new one (401).
#[tokio::test(flavor = "multi_thread")]
async fn a_scoped_client_token_on_the_standard_path_sees_and_calls_only_its_tools_and_dies_with_its_revocation()
 {
    let served = Served::start("").await;
    let cli = |args: &[&str]| {
        let out = served
            .home
            .command()
            .env("RUST_LOG", "off")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let created: Value = serde_json::from_str(&cli(&[
        "tokens",
        "create",
        "scoped",
        "--tools",
        "fault__echo",
        "--json",
    ]))
    .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let session = StdSession::open(&served.url, Some(&token)).await;

    let text = |events: &[SseEvent]| {
        let all = messages(events);
        let last = all.last().cloned().unwrap_or(Value::Null);
        last["result"]["content"][0]["text"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| last["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| last.to_string())
    };
    // Activation: another tool is not found, exactly as one that does not exist.
    let other = text(
        &session
            .call(
                "tool_search",
                json!({ "query": "select:fault__sleep" }),
                None,
            )
            .await,
    );
    let missing = text(
        &session
            .call(
                "tool_search",
                json!({ "query": "select:fault__nope" }),
                None,
            )
            .await,
    );
    assert_eq!(
        other.replace("fault__sleep", "X"),
        missing.replace("fault__nope", "X")
    );
    let searched = text(
        &session
            .call("tool_search", json!({ "query": "fault" }), None)
            .await,
    );
    assert!(
        searched.contains("fault__echo") && !searched.contains("fault__sleep"),
        "{searched}"
    );
    let activated = text(
        &session
            .call(
                "tool_search",
                json!({ "query": "select:fault__echo" }),
                None,
            )
            .await,
    );
    assert!(activated.contains("fault__echo"), "{activated}");
    let (_, listed) = session.rpc("tools/list", json!({})).await;
    let mut names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["fault__echo", "tool_search"], "{listed}");

    // Calls: in scope works; out of scope is the unknown-tool error.
    let echoed = text(
        &session
            .call("fault__echo", json!({ "text": "in scope" }), None)
            .await,
    );
    assert!(echoed.contains("in scope"), "{echoed}");
    let call = |name: &'static str| {
        session.rpc(
            "tools/call",
            json!({ "name": name, "arguments": { "ms": 1 } }),
        )
    };
    let (_, outside) = call("fault__sleep").await;
    let (_, unknown) = call("fault__nope").await;
    assert!(outside["error"]["code"].is_i64(), "{outside}");
    assert_eq!(
        outside["error"].to_string().replace("fault__sleep", "X"),
        unknown["error"].to_string().replace("fault__nope", "X")
    );

    // Revoked: the session ends with the token, and the token opens nothing.
    cli(&["tokens", "revoke", &id]);
    let (status, body) = session.rpc("tools/list", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let response = post(
        &session.http,
        &session.url,
        Some(&token),
        None,
        initialize(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let tree = served.api("/api/actors").await.to_string();
    assert!(!tree.contains(&session.id), "the session is gone: {tree}");
}
