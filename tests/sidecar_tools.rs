//! Every native sidecar and health tool end to end: the real daemon, the real Node session
//! manager on its echo backend, and assertions on what each tool answers — agent lifecycle
//! (create, prompt, wait, activity, cancel, delete), chat rooms (post with an @mention that
//! becomes a prompt, read with `limit`/`since`, long-poll wait, delete), `get_agent_health`,
//! `get_journal_health`, every `system_dashboard` flag, and `reset_circuit_breaker`.

use serde_json::{Value, json};

use crate::harness::{DEADLINE, Served, Session, eventually_async, try_within_async};
use crate::sidecars::{breaker_state, node_command, sidecar_config, text, tool};

/// Polls `list_agents` until the session manager answers.
pub(crate) async fn until_sidecar_answers(session: &Session) {
    let answers = async || tool(session, "list_agents", json!({})).await["isError"] == false;
    if try_within_async(DEADLINE, answers).await.is_none() {
        let last = tool(session, "list_agents", json!({})).await;
        panic!("the session manager never answered: {last}");
    }
}

/// The structured content of a successful tool call.
async fn ok(session: &Session, name: &str, args: Value) -> Value {
    let r = tool(session, name, args.clone()).await;
    assert_eq!(r["isError"], false, "{name}({args}) failed: {r}");
    r["structuredContent"].clone()
}

/// The text of a failed tool call.
async fn err(session: &Session, name: &str, args: Value) -> String {
    let r = tool(session, name, args.clone()).await;
    assert_eq!(r["isError"], true, "{name}({args}) should fail: {r}");
    text(&r)
}

/// The agent's timeline events as (type, text).
async fn timeline(session: &Session, agent: &str) -> Vec<(String, String)> {
    let activity = ok(session, "get_agent_activity", json!({ "agent_id": agent })).await;
    activity["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn has_event(events: &[(String, String)], kind: &str, text: &str) -> bool {
    events.iter().any(|(k, t)| k == kind && t == text)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_agent_and_chat_tool_answers_with_the_sidecars_state() {
    let home = tempfile::tempdir().unwrap();
    let served = Served::start(&sidecar_config(home.path(), &node_command())).await;
    let session = served.session().await;
    until_sidecar_answers(&session).await;

    // create_agent + wait_for_agent: the echo backend answers the first prompt.
    let created = ok(
        &session,
        "create_agent",
        json!({ "backend": "echo", "name": "alpha", "prompt": "hello" }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "alpha");
    let waited = ok(
        &session,
        "wait_for_agent",
        json!({ "agent_id": id, "timeout_secs": 60 }),
    )
    .await;
    assert_eq!(waited["agent"]["status"], "idle", "{waited}");
    assert_eq!(waited["agent"]["runs"], 1);
    let recent: Vec<&str> = waited["recent_events"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(recent.contains(&"echo: hello"), "{waited}");

    // send_agent_prompt: a long run; a second prompt is refused while busy unless queued.
    let sent = ok(
        &session,
        "send_agent_prompt",
        json!({ "agent_id": id, "prompt": "sleep:600000" }),
    )
    .await;
    assert_eq!(sent["queued"], false, "{sent}");
    assert_eq!(sent["agent"]["status"], "running");
    let busy = err(
        &session,
        "send_agent_prompt",
        json!({ "agent_id": id, "prompt": "again" }),
    )
    .await;
    assert!(
        busy.contains("409") && busy.contains("is busy; retry later or pass queue: true"),
        "{busy}"
    );
    let queued = ok(
        &session,
        "send_agent_prompt",
        json!({ "agent_id": id, "prompt": "after", "queue": true }),
    )
    .await;
    assert_eq!(
        (queued["queued"].as_bool(), queued["position"].as_u64()),
        (Some(true), Some(1))
    );

    // wait_for_agent with a short timeout: timed out, still running, with progress on the way.
    let events = session
        .call(
            json!(7),
            "wait_for_agent",
            json!({ "agent_id": id, "timeout_secs": 1 }),
            Some(json!("wait-1")),
        )
        .await;
    let messages: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str(&e.data).ok())
        .collect();
    let result = messages
        .iter()
        .find(|m| m.get("result").is_some())
        .expect("a result");
    let timed_out = &result["result"]["structuredContent"];
    assert_eq!(timed_out["timed_out"], true, "{result}");
    assert_eq!(timed_out["agent"]["status"], "running");
    assert!(
        messages
            .iter()
            .any(|m| m["method"] == "notifications/progress"
                && m["params"]["progressToken"] == "wait-1"
                && m["params"]["message"] == format!("agent {id} is running").as_str()),
        "no progress: {messages:?}"
    );

    // get_agent_health: a running agent with no event for longer than the threshold is stuck.
    let healthy = ok(&session, "get_agent_health", json!({})).await;
    assert_eq!(
        (healthy["agents"].as_u64(), healthy["running"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(healthy["stuck_after_secs"], 300);
    assert_eq!(healthy["stuck"], json!([]), "{healthy}");
    let stuck = eventually_async("a stuck agent reported", async || {
        let stuck = ok(
            &session,
            "get_agent_health",
            json!({ "stuck_after_secs": 0 }),
        )
        .await;
        (!stuck["stuck"].as_array().unwrap().is_empty()).then_some(stuck)
    })
    .await;
    let entry = &stuck["stuck"][0];
    assert_eq!(
        (entry["id"].as_str(), entry["name"].as_str()),
        (Some(id.as_str()), Some("alpha")),
        "{stuck}"
    );
    assert!(entry["quiet_secs"].as_u64().unwrap() >= 1, "{stuck}");

    // cancel_agent: interrupts the run and clears the queued prompt; the agent goes idle.
    let cancelled = ok(&session, "cancel_agent", json!({ "agent_id": id })).await;
    assert_eq!(
        (
            cancelled["interrupted"].as_bool(),
            cancelled["cleared_queue"].as_u64()
        ),
        (Some(true), Some(1)),
        "{cancelled}"
    );
    let idle = ok(
        &session,
        "wait_for_agent",
        json!({ "agent_id": id, "timeout_secs": 60 }),
    )
    .await;
    assert_eq!(idle["agent"]["status"], "idle");
    assert_eq!(idle["agent"]["runs"], 2, "the queued prompt never ran");

    // get_agent_activity: the whole timeline, then `since` and `limit`.
    let events = timeline(&session, &id).await;
    for (kind, text) in [
        ("prompt", "hello"),
        ("output", "echo: hello"),
        ("prompt", "sleep:600000"),
        ("status", "queued"),
        ("interrupt", "interrupt requested"),
    ] {
        assert!(
            has_event(&events, kind, text),
            "no {kind} `{text}` in {events:?}"
        );
    }
    assert!(!has_event(&events, "prompt", "after"), "{events:?}");
    let page = ok(
        &session,
        "get_agent_activity",
        json!({ "agent_id": id, "since": 1, "limit": 2 }),
    )
    .await;
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3], "{page}");
    assert_eq!(page["has_more"], true);
    let missing = err(&session, "get_agent_activity", json!({})).await;
    assert_eq!(missing, "`agent_id` is required (a non-empty string)");

    // Chat: a room with alpha; an @mention of the idle agent becomes its next prompt.
    let room = ok(
        &session,
        "create_chat_room",
        json!({ "name": "team", "members": ["alpha"] }),
    )
    .await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    assert_eq!(room["members"], json!([id]));
    let posted = ok(
        &session,
        "post_chat_message",
        json!({ "room_id": room_id, "text": "hi @alpha", "from": "lead" }),
    )
    .await;
    assert_eq!(posted["id"], 1);
    assert_eq!(posted["mentions"], json!(["alpha"]));
    assert_eq!(
        posted["delivered"],
        json!([{ "agent": id, "injected": true }])
    );
    let waited = ok(
        &session,
        "wait_for_agent",
        json!({ "agent_id": id, "timeout_secs": 60 }),
    )
    .await;
    assert_eq!(waited["agent"]["runs"], 3, "{waited}");
    let events = timeline(&session, &id).await;
    assert!(
        has_event(&events, "output", "echo: [room team] lead: hi @alpha"),
        "{events:?}"
    );
    let second = ok(
        &session,
        "post_chat_message",
        json!({ "room_id": room_id, "text": "second" }),
    )
    .await;
    assert_eq!(
        (second["id"].as_u64(), second["from"].as_str()),
        (Some(2), Some("operator"))
    );

    // read_chat_messages: all, `since`, `limit`.
    let texts = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = ok(
        &session,
        "read_chat_messages",
        json!({ "room_id": room_id }),
    )
    .await;
    assert_eq!(texts(&all), ["hi @alpha", "second"]);
    assert_eq!(all["last_id"], 2);
    let after = ok(
        &session,
        "read_chat_messages",
        json!({ "room_id": room_id, "since": 1 }),
    )
    .await;
    assert_eq!(texts(&after), ["second"]);
    let first = ok(
        &session,
        "read_chat_messages",
        json!({ "room_id": room_id, "limit": 1 }),
    )
    .await;
    assert_eq!(texts(&first), ["hi @alpha"]);
    assert_eq!(first["has_more"], true);

    // wait_for_chat_message: answered by a message posted while it waits (or just before it
    // starts waiting: `since` makes either order give the same answer), or times out.
    let waiter = {
        let session = session.clone();
        let room_id = room_id.clone();
        tokio::spawn(async move {
            tool(
                &session,
                "wait_for_chat_message",
                json!({ "room_id": room_id, "since": 2, "timeout_secs": 60 }),
            )
            .await
        })
    };
    ok(
        &session,
        "post_chat_message",
        json!({ "room_id": room_id, "text": "third", "from": "lead" }),
    )
    .await;
    let woke = waiter.await.unwrap();
    assert_eq!(woke["isError"], false, "{woke}");
    assert_eq!(woke["structuredContent"]["timeout"], false);
    assert_eq!(texts(&woke["structuredContent"]), ["third"]);
    let quiet = ok(
        &session,
        "wait_for_chat_message",
        json!({ "room_id": room_id, "since": 3, "timeout_secs": 1 }),
    )
    .await;
    assert_eq!(quiet["timeout"], true, "{quiet}");
    assert_eq!(quiet["messages"], json!([]));

    let rooms = ok(&session, "list_chat_rooms", json!({})).await;
    assert_eq!(rooms["rooms"][0]["message_count"], 3, "{rooms}");

    // delete_chat_room, then the room is gone.
    let deleted = ok(&session, "delete_chat_room", json!({ "room_id": room_id })).await;
    assert_eq!(deleted["deleted"], true);
    let gone = err(
        &session,
        "read_chat_messages",
        json!({ "room_id": room_id }),
    )
    .await;
    assert_eq!(
        gone,
        format!(
            "the session manager answered 404 to GET /chat/rooms/{room_id}/messages?limit=50&since=0: no chat room with id \"{room_id}\""
        )
    );
    assert_eq!(
        ok(&session, "list_chat_rooms", json!({})).await["rooms"],
        json!([])
    );

    // cancel_agent with delete: the agent is closed and removed.
    let closed = ok(
        &session,
        "cancel_agent",
        json!({ "agent_id": id, "delete": true }),
    )
    .await;
    assert_eq!(
        (
            closed["deleted"].as_bool(),
            closed["agent"]["status"].as_str()
        ),
        (Some(true), Some("exited"))
    );
    assert_eq!(
        ok(&session, "list_agents", json!({})).await["agents"],
        json!([])
    );
    let unknown = err(&session, "get_agent_activity", json!({ "agent_id": id })).await;
    assert!(
        unknown.contains("404") && unknown.contains("no agent with id"),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_journal_health_and_breaker_reset_report_the_daemons_state() {
    let home = tempfile::tempdir().unwrap();
    let served = Served::start(&sidecar_config(home.path(), &node_command())).await;
    let session = served.session().await;
    until_sidecar_answers(&session).await;
    ok(
        &session,
        "create_agent",
        json!({ "backend": "echo", "name": "dash" }),
    )
    .await;

    // system_dashboard: every section by default, each one left out by its flag.
    let full = ok(&session, "system_dashboard", json!({})).await;
    assert!(full["generated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(full["health"]["status"], "healthy", "{full}");
    let sidecars = full["health"]["sidecars"].as_array().unwrap();
    let names: Vec<&str> = sidecars
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "session_manager",
            "breaker:session_manager",
            "retry:session_manager"
        ]
    );
    assert!(sidecars.iter().all(|s| s["state"] == "running"), "{full}");
    assert_eq!(full["health"]["mcp_servers"][0]["name"], "mcp:fault");
    assert_eq!(full["health"]["circuit_breaker"]["state"], "closed");
    assert_eq!(full["health"]["journal"]["run_log"]["status"], "ok");
    assert_eq!(full["health"]["journal"]["retry_queue"]["pending"], 0);
    assert_eq!(full["agents"]["count"], 1);
    assert_eq!(full["agents"]["agents"][0]["name"], "dash");
    assert_eq!(full["workflows"]["active"], json!([]));
    assert_eq!(full["costs"]["tracked"], true);
    assert_eq!(
        full["costs"]["per_agent"][0]["tokens"], 0,
        "echo agents report no usage"
    );
    let sections = ["health", "agents", "workflows", "costs"];
    for (flag, section) in [
        ("include_health", "health"),
        ("include_agents", "agents"),
        ("include_workflows", "workflows"),
        ("include_costs", "costs"),
    ] {
        let partial = ok(&session, "system_dashboard", json!({ flag: false })).await;
        for other in sections {
            assert_eq!(
                partial.get(other).is_some(),
                other != section,
                "{flag}: false → {other}: {partial}"
            );
        }
    }
    let none = ok(
        &session,
        "system_dashboard",
        json!({ "include_health": false, "include_agents": false, "include_workflows": false, "include_costs": false }),
    )
    .await;
    let keys: Vec<&String> = none.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["generated_at"]);

    // get_journal_health: the run log (with the calls above in it) and the queue's journal.
    let journal = ok(&session, "get_journal_health", json!({})).await;
    let run_log = &journal["run_log"];
    assert_eq!(run_log["status"], "ok", "{journal}");
    assert!(run_log["size_bytes"].as_u64().unwrap() > 0, "{journal}");
    assert!(run_log["writes"].as_u64().unwrap() >= 5, "{journal}");
    assert_eq!(
        (
            run_log["warn_bytes"].as_u64(),
            run_log["rotate_bytes"].as_u64(),
            run_log["keep"].as_u64()
        ),
        (Some(5 << 20), Some(20 << 20), Some(3))
    );
    assert_eq!(run_log["rotations"], 0);
    assert_eq!(journal["retry_queue"]["capacity"], 1000);
    let queue_journal = &journal["retry_queue"]["journal"];
    assert!(
        queue_journal["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("operator_mcp/retry_queue.jsonl")),
        "{journal}"
    );
    for key in [
        "bytes",
        "records",
        "syncs",
        "max_sync_us",
        "mean_sync_us",
        "compactions",
    ] {
        assert!(queue_journal[key].is_u64(), "{key}: {journal}");
    }

    // reset_circuit_breaker: open it by killing the sidecar, then force it closed.
    crate::sidecars::kill_sidecar_until_the_breaker_opens(&served, &session).await;
    let before = ok(&session, "get_circuit_breaker_status", json!({})).await;
    assert!(before["next_probe_in_ms"].is_u64(), "{before}");
    assert!(before["total_opens"].as_u64().unwrap() >= 1);
    let reset = ok(&session, "reset_circuit_breaker", json!({})).await;
    assert_eq!(reset["state"], "closed", "{reset}");
    assert_eq!(reset["consecutive_failures"], 0);
    assert_eq!(reset["next_probe_in_ms"], Value::Null);
    assert_eq!(
        reset["last_transition"]["reason"], "manual_reset",
        "{reset}"
    );
    assert_eq!(reset["last_transition"]["to"], "closed");
    // The restarted sidecar answers through the closed breaker.
    until_sidecar_answers(&session).await;
    assert_eq!(breaker_state(&session).await, "closed");
}

/// The dashboard's Sidecars view: `GET /api/sidecars` shows the process, breaker, queue,
/// agents and rooms; an agent's timeline is readable page by page and live (the session
/// manager's SSE stream relayed by the gateway); the breaker's reset needs the operator role;
/// bad ids and unknown agents get precise answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_sidecars_view_reads_the_session_manager_through_the_gateway() {
    use futures::StreamExt;
    let home = tempfile::tempdir().unwrap();
    let served = Served::start(&sidecar_config(home.path(), &node_command())).await;
    let session = served.session().await;
    until_sidecar_answers(&session).await;
    let created = ok(
        &session,
        "create_agent",
        json!({ "backend": "echo", "name": "viewed", "prompt": "first" }),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    ok(
        &session,
        "wait_for_agent",
        json!({ "agent_id": id, "timeout_secs": 60 }),
    )
    .await;

    let view = served.api("/api/sidecars").await;
    assert_eq!(view["session_manager"]["enabled"], true, "{view}");
    assert_eq!(
        view["session_manager"]["process"]["state"], "running",
        "{view}"
    );
    assert_eq!(view["breaker"]["state"], "closed", "{view}");
    assert!(view["queue"]["pending"].is_u64(), "{view}");
    assert!(view["queue"]["dead_letter_list"].is_array(), "{view}");
    let agents = view["agents"].as_array().expect("agents listed");
    assert!(agents.iter().any(|a| a["id"] == id.as_str()), "{view}");
    assert!(view["rooms"].is_array(), "{view}");

    let page = served
        .api(&format!("/api/sidecars/agents/{id}/events?since=0"))
        .await;
    let texts: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(texts.contains(&"echo: first"), "{page}");

    // Live: the stream relays what the agent does after it was opened.
    let (gateway, owner) = served.gateway();
    let http = reqwest::Client::new();
    let last = page["last_seq"].as_u64().unwrap();
    let resp = http
        .get(format!("{gateway}/api/sidecars/agents/{id}/stream"))
        .header("Last-Event-ID", last.to_string())
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    ok(
        &session,
        "send_agent_prompt",
        json!({ "agent_id": id, "prompt": "second" }),
    )
    .await;
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let relayed = tokio::time::timeout(crate::harness::DEADLINE, async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("echo: second") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(relayed, Ok(true), "relayed so far: {seen}");
    assert!(
        !seen.contains("echo: first"),
        "resumed after {last}: {seen}"
    );

    // A chat room, live: the gateway turns the room's long polls into a stream.
    let room = ok(
        &session,
        "create_chat_room",
        json!({ "name": "watched", "members": [] }),
    )
    .await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    let resp = http
        .get(format!("{gateway}/api/sidecars/rooms/{room_id}/stream"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    for text in ["first words", "second words"] {
        ok(
            &session,
            "post_chat_message",
            json!({ "room_id": room_id, "text": text, "from": "lead" }),
        )
        .await;
        let relayed = tokio::time::timeout(crate::harness::DEADLINE, async {
            while let Some(chunk) = body.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                if seen.contains(text) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(relayed, Ok(true), "relayed so far: {seen}");
    }
    assert!(seen.contains("id: 1\nevent: message\ndata: {"), "{seen}");
    // Its deletion ends the stream with `gone`.
    ok(&session, "delete_chat_room", json!({ "room_id": room_id })).await;
    let ended = tokio::time::timeout(crate::harness::DEADLINE, async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ends: {seen}");
    assert!(seen.contains("event: gone"), "{seen}");

    // Precise answers for bad input.
    let get = |path: String| http.get(format!("{gateway}{path}")).bearer_auth(&owner);
    let resp = get("/api/sidecars/agents/no-such-agent/events".into())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "{}", resp.text().await.unwrap());
    let resp = get("/api/sidecars/agents/a%20b/stream".into())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = get("/api/sidecars/agents/x/events?since=minus".into())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The breaker's reset: operator and up.
    let reset = http
        .post(format!("{gateway}/api/sidecars/breaker/reset"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let body: Value = reset.json().await.unwrap();
    assert_eq!(body["breaker"]["state"], "closed", "{body}");
}
