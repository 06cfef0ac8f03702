//! The daemon's agent layer end to end (issue 27): the real daemon and the real Node session
//! manager of this checkout on its `echo` backend (no npm packages needed). Its agents' events
//! and chat messages reach a `/ws/agents/events` client holding the gateway token (a wrong
//! Origin or no token is refused), `/api/agents` lists them with their path; a `create_agent`
//! made while the session manager is down (its breaker open) is queued by default, replayed
//! when it comes up, and its outcome is visible in `get_retry_queue_status` and as a
//! `queued_outcome` frame, while `on_unavailable: "fail"` errors at once; a per-session token
//! budget (the echo backend's `usage:<in>:<out>:<cost>` prompt reports usage) stops the
//! session's further prompts, and `system_dashboard` shows the sums.

use std::path::Path;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::harness::{DEADLINE, Served, Session, eventually_async};
use crate::sidecar_tools::until_sidecar_answers;
use crate::sidecars::{gated_node_command, node_command, sidecar_config, text, tool};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws/agents/events` with the owner token in `Authorization`.
async fn feed(served: &Served) -> Socket {
    let (gateway, token) = served.gateway();
    let url = format!("{}/ws/agents/events", gateway.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next feed item for which `want` holds (others are skipped), within the deadline.
async fn frame_where(socket: &mut Socket, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(message) = socket.next().await {
            if let Message::Text(text) = message.unwrap() {
                let item: Value = serde_json::from_str(&text).unwrap();
                if want(&item) {
                    return Some(item);
                }
                seen.push(item);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(item)) => item,
        _ => panic!("no feed item {what}; saw {seen:#?}"),
    }
}

/// The structured content of a successful tool call.
async fn ok(session: &Session, name: &str, args: Value) -> Value {
    let r = tool(session, name, args.clone()).await;
    assert_eq!(r["isError"], false, "{name}({args}) failed: {r}");
    r["structuredContent"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_events_and_chat_messages_reach_the_websocket_and_api_agents_lists_them() {
    let home = tempfile::tempdir().unwrap();
    let served = Served::start(&sidecar_config(home.path(), &node_command())).await;
    let session = served.session().await;
    until_sidecar_answers(&session).await;

    // Refused: a foreign Origin (403), no token (401).
    let (gateway, token) = served.gateway();
    let ws_url = format!("{}/ws/agents/events", gateway.replace("http://", "ws://"));
    let mut foreign = ws_url.clone().into_client_request().unwrap();
    foreign.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    foreign
        .headers_mut()
        .insert("origin", HeaderValue::from_static("http://evil.example"));
    match tokio_tungstenite::connect_async(foreign).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    match tokio_tungstenite::connect_async(ws_url.clone()).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // The bearer.<token> subprotocol, offered with `revka` (selected, never the token).
    let mut by_protocol = ws_url.into_client_request().unwrap();
    by_protocol.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("revka, bearer.{token}")).unwrap(),
    );
    let (mut second, response) = tokio_tungstenite::connect_async(by_protocol).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "revka");
    let by_query = format!(
        "{}/ws/agents/events?token={token}",
        gateway.replace("http://", "ws://")
    );
    let (mut third, _) = tokio_tungstenite::connect_async(by_query).await.unwrap();

    let mut socket = feed(&served).await;
    let created = ok(
        &session,
        "create_agent",
        json!({ "backend": "echo", "name": "relayed", "prompt": "hello feed" }),
    )
    .await;
    assert_eq!(created["path"], "sidecar", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    for socket in [&mut socket, &mut second, &mut third] {
        let output = frame_where(socket, "with the echo output", |item| {
            item["kind"] == "agent_event"
                && item["agent"]["id"] == id.as_str()
                && item["event"]["type"] == "output"
        })
        .await;
        assert_eq!(output["source"], "sidecar");
        assert_eq!(output["event"]["text"], "echo: hello feed", "{output}");
        assert_eq!(output["agent"]["name"], "relayed");
        assert!(output["event"]["seq"].as_u64().unwrap() >= 1);
    }

    let room = ok(&session, "create_chat_room", json!({ "name": "lobby" })).await;
    let posted = ok(
        &session,
        "post_chat_message",
        json!({ "room_id": room["id"], "text": "hi all", "from": "tester" }),
    )
    .await;
    assert_eq!(posted["path"], "sidecar");
    let chat = frame_where(&mut socket, "with the chat message", |item| {
        item["kind"] == "chat_message"
    })
    .await;
    assert_eq!(chat["room"]["name"], "lobby", "{chat}");
    assert_eq!(chat["message"]["text"], "hi all");

    // /api/agents: both paths, this one on the sidecar's.
    let listed = served.api("/api/agents").await;
    assert_eq!(listed["sidecar"], "ok", "{listed}");
    let agent = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(agent["path"], "sidecar");
    assert_eq!(agent["owner_session"], session.id.as_str());
    let both = ok(&session, "list_agents", json!({})).await;
    assert_eq!(both["agents"].as_array().unwrap().len(), 1, "{both}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_while_the_sidecar_is_down_is_queued_replayed_and_its_outcome_observable() {
    let home = tempfile::tempdir().unwrap();
    let flag = home.path().join("sidecar-may-start");
    let served = Served::start(&sidecar_config(home.path(), &gated_node_command(&flag))).await;
    let session = served.session().await;
    let mut socket = feed(&served).await;

    // Down: `fail` errors at once, and the breaker opens.
    let r = tool(
        &session,
        "create_agent",
        json!({ "backend": "echo", "prompt": "x", "on_unavailable": "fail" }),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(text(&r).contains("session manager"), "{r}");
    let bad = tool(
        &session,
        "send_agent_prompt",
        json!({ "agent_id": "a", "prompt": "x", "on_unavailable": "fallback" }),
    )
    .await;
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(text(&bad).contains("is for create_agent only"), "{bad}");
    let breaker = ok(&session, "get_circuit_breaker_status", json!({})).await;
    assert_eq!(breaker["state"], "open", "{breaker}");

    // By default the create is queued.
    let queued = ok(
        &session,
        "create_agent",
        json!({ "backend": "echo", "name": "later", "prompt": "queued hello" }),
    )
    .await;
    assert_eq!(queued["path"], "queued", "{queued}");
    assert_eq!(queued["queued"], true);
    let op = queued["operation_id"].as_str().unwrap().to_owned();
    assert!(op.starts_with("op-"), "{queued}");

    // The sidecar comes up; the queue replays the create.
    std::fs::write(&flag, "").unwrap();
    let outcome = frame_where(&mut socket, "with the queued create's outcome", |item| {
        item["kind"] == "queued_outcome" && item["operation_id"] == op.as_str()
    })
    .await;
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(outcome["operation"], "create_agent");
    assert_eq!(outcome["source"], "revka");
    let id = outcome["result"]["id"].as_str().unwrap().to_owned();
    assert_eq!(outcome["result"]["name"], "later");
    let status = ok(&session, "get_retry_queue_status", json!({})).await;
    let recent = status["recent_outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation_id"] == op.as_str())
        .unwrap_or_else(|| panic!("{status}"))
        .clone();
    assert_eq!(recent["ok"], true);
    assert_eq!(recent["result"]["id"], id.as_str());
    // The replayed agent ran its prompt; its events reach the feed too.
    let output = frame_where(&mut socket, "with the replayed agent's output", |item| {
        item["kind"] == "agent_event"
            && item["agent"]["id"] == id.as_str()
            && item["event"]["type"] == "output"
    })
    .await;
    assert_eq!(output["event"]["text"], "echo: queued hello");
    let listed = served.api("/api/agents").await;
    let agent = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(agent["owner_session"], session.id.as_str(), "{agent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_past_its_token_budget_is_stopped_and_the_dashboard_shows_the_sums() {
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[agents]\nmax_tokens_per_session = 100\n",
        sidecar_config(home.path(), &node_command())
    );
    let served = Served::start(&config).await;
    let session = served.session().await;
    let other = served.session().await;
    until_sidecar_answers(&session).await;
    let mut socket = feed(&served).await;

    let created = ok(
        &session,
        "create_agent",
        json!({ "backend": "echo", "name": "spender", "prompt": "usage:80:40:0.01" }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let budget = frame_where(&mut socket, "with the budget notice", |item| {
        item["kind"] == "budget"
    })
    .await;
    assert_eq!(budget["session"], session.id.as_str(), "{budget}");
    assert_eq!(budget["used"]["tokens"], 120);
    assert_eq!(budget["limit"], json!({ "max_tokens": 100 }));
    assert!(
        budget["text"]
            .as_str()
            .unwrap()
            .starts_with("budget exceeded: the session's agents used 120 tokens (limit 100)"),
        "{budget}"
    );

    // Refused from now on, for this session only.
    let refused = tool(
        &session,
        "send_agent_prompt",
        json!({ "agent_id": id, "prompt": "more" }),
    )
    .await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert!(
        text(&refused).starts_with("budget exceeded for this MCP session"),
        "{refused}"
    );
    let again = tool(&session, "create_agent", json!({ "backend": "echo" })).await;
    assert_eq!(again["isError"], true, "{again}");
    ok(
        &other,
        "create_agent",
        json!({ "backend": "echo", "name": "fine" }),
    )
    .await;

    // The dashboard's cost section: per agent and per session, with the limit and what is left.
    let dash = eventually_async("the dashboard's sums", async || {
        let dash = ok(
            &session,
            "system_dashboard",
            json!({ "include_health": false }),
        )
        .await;
        (dash["costs"]["total"]["tokens"] == 120).then_some(dash)
    })
    .await;
    let costs = &dash["costs"];
    assert_eq!(costs["tracked"], true);
    assert_eq!(costs["limits"]["max_tokens_per_session"], 100, "{costs}");
    let agent = costs["per_agent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(agent["tokens"], 120, "{costs}");
    assert_eq!(agent["path"], "sidecar");
    assert!(
        (agent["cost_usd"].as_f64().unwrap() - 0.01).abs() < 1e-9,
        "{agent}"
    );
    let mine = costs["per_session"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"] == session.id.as_str())
        .unwrap();
    assert_eq!(mine["tokens"], 120);
    assert_eq!(mine["tokens_left"], 0);
    assert!(mine["exceeded"].is_string(), "{mine}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_follows_the_session_manager_across_its_restart() {
    let home = tempfile::tempdir().unwrap();
    let served = Served::start(&sidecar_config(home.path(), &node_command())).await;
    let session = served.session().await;
    until_sidecar_answers(&session).await;
    let mut socket = feed(&served).await;
    let up = |item: &Value| item["kind"] == "sidecar_status" && item["status"] == "up";
    crate::sidecars::kill_sidecar_until_the_breaker_opens(&served, &session).await;
    let down = frame_where(&mut socket, "saying the stream was lost", |item| {
        item["kind"] == "sidecar_status" && item["status"] == "down"
    })
    .await;
    assert!(down["reason"].is_string(), "{down}");
    frame_where(&mut socket, "saying the stream is back", up).await;
    // The new process's events arrive (its ids started again from 1).
    let created = eventually_async("a create after the restart", async || {
        let r = tool(
            &session,
            "create_agent",
            json!({ "backend": "echo", "prompt": "after restart", "on_unavailable": "fail" }),
        )
        .await;
        (r["isError"] == false).then(|| r["structuredContent"].clone())
    })
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let output = frame_where(&mut socket, "from the restarted sidecar", |item| {
        item["kind"] == "agent_event"
            && item["agent"]["id"] == id.as_str()
            && item["event"]["type"] == "output"
    })
    .await;
    assert_eq!(output["event"]["text"], "echo: after restart");
}

/// The MCP session a fallback agent was given (Revka's endpoint in its `--mcp-config` file).
fn agent_session(served: &Served, id: &str) -> Session {
    let file = served.home.path().join("agents").join(id).join("mcp.json");
    let mcp: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let revka = &mcp["mcpServers"]["revka"];
    assert_eq!(revka["type"], "http", "{mcp}");
    let header = |name: &str| revka["headers"][name].as_str().unwrap().to_owned();
    Session {
        url: revka["url"].as_str().unwrap().to_owned(),
        id: header("X-Revka-Session"),
        token: header("Authorization")
            .strip_prefix("Bearer ")
            .unwrap()
            .to_owned(),
        http: reqwest::Client::new(),
    }
}

/// The fake claude/codex CLI of the fallback's tests.
fn fake_cli() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fake_agent_cli.py");
    serde_json::to_string(&["python3", &script.display().to_string()]).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_sidecar_down_a_fallback_agent_runs_streams_and_is_stopped_by_the_session_budget()
{
    let home = tempfile::tempdir().unwrap();
    let flag = home.path().join("never");
    let config = format!(
        "{}\n[agents]\nclaude_command = {cli}\ncodex_command = {cli}\nmax_tokens_per_session = 100\n",
        sidecar_config(home.path(), &gated_node_command(&flag)),
        cli = fake_cli(),
    );
    let served = Served::start(&config).await;
    let session = served.session().await;
    let mut socket = feed(&served).await;
    let r = tool(&session, "list_agents", json!({})).await;
    assert_eq!(r["isError"], true, "the sidecar is down: {r}");

    let created = ok(
        &session,
        "create_agent",
        json!({ "backend": "claude", "name": "fb", "prompt": "hello", "on_unavailable": "fallback" }),
    )
    .await;
    assert_eq!(created["path"], "fallback", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("fb_"), "{created}");
    let said = frame_where(
        &mut socket,
        "with the fallback agent's assistant text",
        |item| {
            item["source"] == "fallback"
                && item["agent"]["id"] == id.as_str()
                && item["event"]["type"] == "assistant"
        },
    )
    .await;
    assert!(said["event"]["text"].is_string(), "{said}");
    let waited = ok(
        &session,
        "wait_for_agent",
        json!({ "agent_id": id, "timeout_secs": 60 }),
    )
    .await;
    assert_eq!(waited["path"], "fallback", "{waited}");
    assert_eq!(waited["agent"]["status"], "idle", "{waited}");
    let activity = ok(&session, "get_agent_activity", json!({ "agent_id": id })).await;
    assert_eq!(activity["path"], "fallback");
    let types: Vec<&str> = activity["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.contains(&"result") && types.contains(&"usage"),
        "{activity}"
    );
    // The agent got Revka's own endpoint with an MCP session of its own, which works.
    let own = agent_session(&served, &id);
    assert_ne!(own.id, session.id, "a session of its own");
    let (status, tools) = own
        .rpc(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .await;
    assert_eq!(status, 200, "{tools}");
    assert!(
        tools["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "create_agent"),
        "{tools}"
    );
    // /api/agents: the fallback's agent, and why the sidecar's are missing.
    let listed = served.api("/api/agents").await;
    assert_ne!(listed["sidecar"], "ok", "{listed}");
    assert_eq!(listed["agents"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["agents"][0]["path"], "fallback");

    // A prompt that spends past the session's 100 tokens: stopped, then refused.
    let sent = ok(
        &session,
        "send_agent_prompt",
        json!({ "agent_id": id, "prompt": "usage 500" }),
    )
    .await;
    assert_eq!(sent["path"], "fallback", "{sent}");
    let budget = frame_where(&mut socket, "with the budget notice", |item| {
        item["kind"] == "budget"
    })
    .await;
    assert_eq!(budget["session"], session.id.as_str(), "{budget}");
    eventually_async("the fallback agent stopped", async || {
        let waited = ok(
            &session,
            "wait_for_agent",
            json!({ "agent_id": id, "timeout_secs": 1 }),
        )
        .await;
        waited["agent"]["status"] != "running"
    })
    .await;
    let refused = tool(
        &session,
        "send_agent_prompt",
        json!({ "agent_id": id, "prompt": "more" }),
    )
    .await;
    assert!(
        text(&refused).starts_with("budget exceeded for this MCP session"),
        "{refused}"
    );
    // The agent's own session (its sub-agents) spends its creator's budget: refused too.
    let sub = tool(
        &own,
        "create_agent",
        json!({ "backend": "claude", "prompt": "hi", "on_unavailable": "fallback" }),
    )
    .await;
    assert!(
        text(&sub).starts_with("budget exceeded for this MCP session"),
        "{sub}"
    );
    let dash = ok(
        &session,
        "system_dashboard",
        json!({ "include_health": false }),
    )
    .await;
    assert_eq!(dash["costs"]["per_agent"][0]["path"], "fallback", "{dash}");
    assert!(
        dash["costs"]["per_session"][0]["tokens"].as_u64().unwrap() > 100,
        "{dash}"
    );
    let closed = ok(
        &session,
        "cancel_agent",
        json!({ "agent_id": id, "delete": true }),
    )
    .await;
    assert_eq!(closed["path"], "fallback", "{closed}");
}

/// An agent's own MCP session (its injected Revka endpoint) outlives `[sessions]
/// idle_timeout_secs` while the agent lives, though the agent never uses it, and ends soon
/// after the agent is closed (it would otherwise hold a place under the session cap).
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_s_own_session_lives_as_long_as_its_agent() {
    // No session manager: create_agent runs the CLI fallback.
    let config = format!(
        "[sessions]\nidle_timeout_secs = 3\n\n[agents]\nclaude_command = {cli}\n",
        cli = fake_cli()
    );
    let served = Served::start(&config).await;
    let session = served.session().await;
    let idle = served.session().await;
    let created = ok(
        &session,
        "create_agent",
        json!({ "backend": "claude", "name": "keeper", "prompt": "hello" }),
    )
    .await;
    assert_eq!(created["path"], "fallback", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let own = agent_session(&served, &id);
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    // Three idle timeouts, the test's own session kept busy: an unused session expires, the
    // agent's (unused too) does not.
    let quiet = std::time::Instant::now();
    while quiet.elapsed() < std::time::Duration::from_secs(9) {
        ok(&session, "list_agents", json!({})).await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let (status, _) = idle.rpc(list.clone()).await;
    assert_ne!(status, 200, "an unused session expires after 3 s");
    let (status, tools) = own.rpc(list.clone()).await;
    assert_eq!(status, 200, "the agent's session is kept: {tools}");

    let closed = ok(
        &session,
        "cancel_agent",
        json!({ "agent_id": id, "delete": true }),
    )
    .await;
    assert_eq!(closed["deleted"], true, "{closed}");
    eventually_async("the closed agent's session ended", async || {
        own.rpc(list.clone()).await.0 != 200
    })
    .await;
}
