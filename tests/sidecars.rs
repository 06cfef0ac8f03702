//! The sidecars under the daemon: native tools through the breaker, restart after a kill
//! with the breaker opening and closing (and all of it in the run log), queued operations
//! surviving a `kill -9` of the daemon, dead letters listed, replayed and dropped through the
//! tools, and `[operator] max_tool_iterations` reaching the operator process.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::harness::{
    DEADLINE, Served, Session, TestDaemon, eventually_async, test_cache, try_within_async,
    venv_bin, within_async,
};

pub(crate) fn sidecar_config(home: &Path, command: &str) -> String {
    sidecar_config_with(home, command, 10)
}

/// The test config with `max_retries` retries per queued operation.
pub(crate) fn sidecar_config_with(home: &Path, command: &str, max_retries: u32) -> String {
    format!(
        r#"
[session_manager]
enabled = true
command = {command}
socket_path = "{sock}"
startup_timeout_secs = 120
liveness_interval_secs = 1
liveness_failures = 3

[session_manager.breaker]
failure_threshold = 1
recovery_timeout_secs = 1
max_recovery_timeout_secs = 2
probe_timeout_secs = 2

[session_manager.retry_queue]
backoff_min_secs = 1
backoff_max_secs = 2
max_retries = {max_retries}
"#,
        sock = home.join("sm.sock").display(),
    )
}

pub(crate) fn node_command() -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecars/session-manager/session-manager.js");
    format!(r#"["node", "{}"]"#, script.display())
}

pub(crate) async fn tool(session: &Session, name: &str, args: Value) -> Value {
    let events = session
        .call(crate::harness::next_id(), name, args, None)
        .await;
    let result = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find(|m| m.get("result").is_some());
    result.map(|r| r["result"].clone()).unwrap_or(Value::Null)
}

/// A node command that waits for `flag` to exist before starting the session manager (the
/// socket arguments Revka appends become the script's positional parameters). A JSON array of
/// strings is a valid TOML array.
pub(crate) fn gated_node_command(flag: &Path) -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecars/session-manager/session-manager.js");
    let gate = format!(
        r#"while [ ! -e "$0" ]; do sleep 0.1; done; exec node '{}' "$@""#,
        script.display()
    );
    serde_json::to_string(&["sh", "-c", &gate, &flag.display().to_string()]).unwrap()
}

pub(crate) fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// SIGKILLs the session manager, then calls a sidecar tool until the breaker is open.
pub(crate) async fn kill_sidecar_until_the_breaker_opens(served: &Served, session: &Session) {
    let sm = served
        .api("/api/actors/root/sidecars/session_manager")
        .await;
    let pid = sm["details"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    eventually_async("the breaker open during the outage", async || {
        let _ = tool(session, "list_agents", json!({})).await;
        breaker_state(session).await == "open"
    })
    .await;
}

pub(crate) async fn breaker_state(session: &Session) -> String {
    let status = tool(session, "get_circuit_breaker_status", json!({})).await;
    status["structuredContent"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_sidecar_is_restarted_and_the_breaker_opens_then_closes() {
    let home = tempfile::tempdir().unwrap();
    let served = Served::start(&sidecar_config(home.path(), &node_command())).await;
    let session = served.session().await;
    // The native tools work through the sidecar (`fail`: not queued while it starts).
    let mut created = Value::Null;
    let _ = try_within_async(Duration::from_secs(10), async || {
        created = tool(
            &session,
            "create_agent",
            json!({ "backend": "echo", "name": "a1", "on_unavailable": "fail" }),
        )
        .await;
        created["isError"] == false
    })
    .await;
    assert_eq!(created["isError"], false, "{created}");
    assert_eq!(created["structuredContent"]["name"], "a1");
    let listed = tool(&session, "list_agents", json!({})).await;
    assert!(text(&listed).contains("a1"), "{listed}");
    assert_eq!(breaker_state(&session).await, "closed");

    // Kill the sidecar; calls during the outage fail and open the breaker.
    kill_sidecar_until_the_breaker_opens(&served, &session).await;
    // After the restart and the recovery timeout, a probe succeeds and the breaker closes.
    within_async(
        Duration::from_secs(20),
        "the breaker closed after the sidecar came back",
        async || {
            let _ = tool(&session, "list_agents", json!({})).await;
            breaker_state(&session).await == "closed"
        },
    )
    .await;
    let sm: Value = served
        .api("/api/actors/root/sidecars/session_manager")
        .await;
    assert_eq!(sm["restarts"], 1);
    assert_eq!(sm["state"], "running");

    // The run log has the tool calls, the restart and the breaker's transitions.
    let health = tool(&session, "get_journal_health", json!({})).await;
    let path = health["structuredContent"]["run_log"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        Path::new(&path),
        served.home.path().join("operator_mcp/runlogs/run.jsonl")
    );
    assert_eq!(
        health["structuredContent"]["run_log"]["status"], "ok",
        "{health}"
    );
    let mut records = Vec::new();
    let complete = |records: &[Value]| {
        let has = |f: &dyn Fn(&Value) -> bool| records.iter().any(f);
        has(&|r| {
            r["kind"] == "tool_call"
                && r["tool"] == "create_agent"
                && r["outcome"] == "ok"
                && r["server"] == "builtin"
                && r["session"] == session.id.as_str()
        }) && has(&|r| {
            r["kind"] == "tool_call"
                && r["tool"] == "list_agents"
                && r["outcome"] == "error"
                && r["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("session manager"))
        }) && has(&|r| {
            r["kind"] == "supervision"
                && r["path"] == "root/sidecars/session_manager"
                && r["message"] == "child exited; restart scheduled"
                && r["level"] == "WARN"
        }) && has(&|r| {
            r["kind"] == "breaker"
                && r["path"] == "root/sidecars/breaker:session_manager"
                && r["from"] == "closed"
                && r["to"] == "open"
                && r["reason"] == "failure_threshold"
        }) && has(&|r| r["kind"] == "breaker" && r["from"] == "half_open" && r["to"] == "closed")
    };
    let _ = try_within_async(DEADLINE, async || {
        records = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        complete(&records)
    })
    .await;
    assert!(complete(&records), "run log lacks records: {records:#?}");
    assert!(
        records
            .iter()
            .all(|r| r["ts"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_operations_survive_a_kill_9_of_the_daemon() {
    // First daemon: the sidecar never becomes ready, so every mutation is queued.
    let home = tempfile::tempdir().unwrap();
    // (The socket arguments Revka appends become the script's positional parameters.)
    let never_ready = r#"["sh", "-c", "exec sleep 1000", "sidecar"]"#;
    let served = Served::start(&sidecar_config(home.path(), never_ready)).await;
    let session = served.session().await;
    for i in 0..100 {
        let r = tool(
            &session,
            "create_chat_room",
            json!({ "name": format!("room-{i:03}"), "queue_if_unavailable": true }),
        )
        .await;
        assert_eq!(r["structuredContent"]["queued"], true, "{r}");
    }
    let status = tool(&session, "get_retry_queue_status", json!({})).await;
    let pending = status["structuredContent"]["pending"].as_u64().unwrap()
        + status["structuredContent"]["in_flight"].as_u64().unwrap();
    assert_eq!(pending, 100, "{status}");
    let mut first = served.daemon;
    first.signal(Signal::SIGKILL);
    first.wait(Duration::from_secs(10));
    drop(first);
    std::fs::remove_file(served.home.path().join("daemon.lock")).ok();

    // Second daemon on the same home, now with a working sidecar: everything is replayed.
    let config = std::fs::read_to_string(served.home.path().join("config.toml")).unwrap();
    served
        .home
        .write_config(&config.replace(never_ready, &node_command()));
    let _second = TestDaemon::start(&served.home, &[]);
    let sock = home.path().join("sm.sock");
    let client = revka_actors::sidecar::SidecarClient::new(&sock, Duration::from_secs(5));
    let mut rooms = 0;
    let _ = try_within_async(Duration::from_secs(60), async || {
        if let Ok(listed) = client.get("/chat/rooms").await {
            rooms = listed["rooms"]
                .as_array()
                .or_else(|| listed.as_array())
                .map_or(0, |r| r.len());
        }
        rooms == 100
    })
    .await;
    assert_eq!(rooms, 100, "every queued operation was replayed, none lost");
    within_async(Duration::from_secs(5), "the sidecar's socket", async || {
        sock.exists()
    })
    .await;
}

/// Polls `get_retry_queue_status` until `cond` holds; returns that status.
async fn queue_status_until(session: &Session, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut status = Value::Null;
    let reached = try_within_async(Duration::from_secs(60), async || {
        status = tool(session, "get_retry_queue_status", json!({ "limit": 100 })).await;
        cond(&status["structuredContent"])
    })
    .await;
    match reached {
        Some(()) => status["structuredContent"].clone(),
        None => panic!("retry queue never reached: {what}; last status: {status}"),
    }
}

async fn room_names(session: &Session) -> Vec<String> {
    let listed = tool(session, "list_chat_rooms", json!({})).await;
    assert_eq!(listed["isError"], false, "{listed}");
    let mut names: Vec<String> = listed["structuredContent"]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_replayed_and_dropped_through_the_tools() {
    let home = tempfile::tempdir().unwrap();
    let flag = home.path().join("sidecar-may-start");
    let config = sidecar_config_with(home.path(), &gated_node_command(&flag), 1);
    let served = Served::start(&config).await;
    let session = served.session().await;

    // The sidecar is held back: three mutations are queued, and with one retry each they are
    // dead-lettered during the outage.
    let mut ids = Vec::new();
    for name in ["r-a", "r-b", "r-c"] {
        let r = tool(
            &session,
            "create_chat_room",
            json!({ "name": name, "queue_if_unavailable": true }),
        )
        .await;
        assert_eq!(r["structuredContent"]["queued"], true, "{r}");
        ids.push(
            r["structuredContent"]["operation_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Every operation is listed, live or dead; with `limit` the rest are counted.
    let status = tool(&session, "get_retry_queue_status", json!({ "limit": 1 })).await;
    let s = &status["structuredContent"];
    let listed =
        s["operations"].as_array().unwrap().len() + s["dead_letter_list"].as_array().unwrap().len();
    assert!(listed <= 2, "{s}");
    let total = listed as u64
        + s["operations_omitted"].as_u64().unwrap()
        + s["dead_letters_omitted"].as_u64().unwrap();
    assert_eq!(total, 3, "{s}");

    let dead = queue_status_until(&session, "three dead letters", |s| s["dead_letters"] == 3).await;
    let list = dead["dead_letter_list"].as_array().unwrap();
    // (In the order they died, which need not be the order they were queued in.)
    let mut listed_ids: Vec<&str> = list.iter().map(|d| d["id"].as_str().unwrap()).collect();
    listed_ids.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed_ids, want);
    for entry in list {
        let name = ["r-a", "r-b", "r-c"][ids.iter().position(|i| *i == entry["id"]).unwrap()];
        assert_eq!(entry["state"], "dead", "{entry}");
        assert_eq!(entry["kind"], "sidecar_request", "{entry}");
        assert_eq!(entry["attempts"], 2, "one attempt and one retry: {entry}");
        let error = entry["last_error"].as_str().unwrap();
        assert!(
            error.contains("session manager") || error.contains("circuit breaker"),
            "{entry}"
        );
        let preview = entry["payload_preview"].as_str().unwrap();
        assert!(
            preview.contains("/chat/rooms") && preview.contains(name) && preview.contains("POST"),
            "{entry}"
        );
        assert!(
            entry["enqueued_at"].as_str().unwrap().ends_with('Z'),
            "{entry}"
        );
        assert!(entry.get("next_attempt_at").is_none(), "{entry}");
    }
    assert_eq!(
        (dead["pending"].as_u64(), dead["in_flight"].as_u64()),
        (Some(0), Some(0))
    );
    let one = tool(&session, "get_retry_queue_status", json!({ "limit": 1 })).await;
    assert_eq!(
        one["structuredContent"]["dead_letter_list"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(one["structuredContent"]["dead_letters_omitted"], 2);
    let bad = tool(&session, "get_retry_queue_status", json!({ "limit": 1000 })).await;
    assert_eq!(bad["isError"], true);
    assert_eq!(
        text(&bad),
        "`limit` must be an integer from 0 to 100, not 1000"
    );

    // An unknown id: a precise error, and nothing changes.
    let r = tool(
        &session,
        "replay_dead_letters",
        json!({ "ids": [ids[0], "op-nope"] }),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    assert_eq!(text(&r), "no dead letter `op-nope`");
    let r = tool(&session, "drop_dead_letters", json!({})).await;
    assert_eq!(r["isError"], true, "{r}");
    assert_eq!(
        text(&r),
        "give `ids` (dead-letter ids, as listed by get_retry_queue_status) or `all: true`"
    );
    let s = tool(&session, "get_retry_queue_status", json!({})).await;
    assert_eq!(s["structuredContent"]["dead_letters"], 3, "{s}");

    // Drop one by id.
    let r = tool(&session, "drop_dead_letters", json!({ "ids": [ids[1]] })).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["dropped"], json!([ids[1]]));
    assert_eq!(r["structuredContent"]["dead_letters_left"], 2);

    // Let the sidecar start; once it answers, a replayed dead letter is delivered.
    std::fs::write(&flag, b"").unwrap();
    eventually_async("the session manager up", async || {
        tool(&session, "list_chat_rooms", json!({})).await["isError"] == false
    })
    .await;
    let r = tool(&session, "replay_dead_letters", json!({ "ids": [ids[0]] })).await;
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["replayed"], json!([ids[0]]));
    assert_eq!(r["structuredContent"]["count"], 1);
    let s = queue_status_until(&session, "the replay delivered", |s| {
        s["succeeded"] == 1 && s["pending"] == 0 && s["in_flight"] == 0
    })
    .await;
    assert_eq!(s["dead_letters"], 1, "{s}");
    assert_eq!(s["dead_letter_list"][0]["id"], ids[2]);
    assert_eq!(
        room_names(&session).await,
        ["r-a"],
        "only the replayed operation ran"
    );

    // Drop the rest with `all`; then there is nothing left to replay.
    let r = tool(&session, "drop_dead_letters", json!({ "all": true })).await;
    assert_eq!(r["structuredContent"]["dropped"], json!([ids[2]]), "{r}");
    assert_eq!(r["structuredContent"]["dead_letters_left"], 0);
    let r = tool(&session, "replay_dead_letters", json!({ "all": true })).await;
    assert_eq!(r["structuredContent"]["replayed"], json!([]), "{r}");
    assert_eq!(r["structuredContent"]["count"], 0);
    assert_eq!(room_names(&session).await, ["r-a"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_process_gets_the_configured_max_tool_iterations() {
    let Some(cache) = test_cache() else { return };
    let python = venv_bin(&cache, "python");
    // A launcher running the checkout's operator package (it must exist before the daemon
    // reads the config).
    let scratch = tempfile::tempdir().unwrap();
    let launcher = scratch.path().join("run_operator_from_checkout.py");
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecars/operator");
    std::fs::write(
        &launcher,
        format!(
            "import sys\nsys.path.insert(0, {:?})\nfrom revka_operator.server import main\nsys.exit(main())\n",
            package.display().to_string()
        ),
    )
    .unwrap();
    let extra = format!(
        "\n[operator]\nenabled = true\npython = {:?}\nmcp_path = {:?}\nmax_tool_iterations = 37\n",
        python.display().to_string(),
        launcher.display().to_string(),
    );
    let served = Served::start(&extra).await;
    served
        .wait_for_tool("revka-operator__operator_status")
        .await;
    let session = served.session().await;
    session
        .call_text(
            "tool_search",
            json!({ "query": "select:revka-operator__operator_status" }),
        )
        .await;
    let status = tool(&session, "revka-operator__operator_status", json!({})).await;
    assert_eq!(status["isError"], false, "{status}");
    let status: Value = serde_json::from_str(&text(&status)).unwrap();
    assert_eq!(status["max_tool_iterations"], 37, "{status}");
    assert_eq!(
        status["max_tool_iterations_source"],
        "REVKA_OPERATOR_MAX_TOOL_ITERATIONS"
    );
}
