//! The session-manager sidecar under the daemon: native tools through the breaker, restart
//! after a kill with the breaker opening and closing, and queued operations surviving a
//! `kill -9` of the daemon.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::mcp_server::{Served, Session};
use crate::util::{TestDaemon, eventually};

fn sidecar_config(home: &Path, command: &str) -> String {
    format!(
        r#"
[session_manager]
enabled = true
command = {command}
socket_path = "{sock}"
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
max_retries = 10
"#,
        sock = home.join("sm.sock").display(),
    )
}

fn node_command() -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecars/session-manager/session-manager.js");
    format!(r#"["node", "{}"]"#, script.display())
}

async fn tool(session: &Session, name: &str, args: Value) -> Value {
    let events = session.call(json!(1), name, args, None).await;
    let result = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find(|m| m.get("result").is_some());
    result.map(|r| r["result"].clone()).unwrap_or(Value::Null)
}

fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn breaker_state(session: &Session) -> String {
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
    // The native tools work through the sidecar.
    let mut created = Value::Null;
    for _ in 0..100 {
        created = tool(
            &session,
            "create_agent",
            json!({ "backend": "echo", "name": "a1" }),
        )
        .await;
        if created["isError"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(created["isError"], false, "{created}");
    assert_eq!(created["structuredContent"]["name"], "a1");
    let listed = tool(&session, "list_agents", json!({})).await;
    assert!(text(&listed).contains("a1"), "{listed}");
    assert_eq!(breaker_state(&session).await, "closed");

    // Kill the sidecar; calls during the outage fail and open the breaker.
    let (gw, token) = served.gateway();
    let http = reqwest::Client::new();
    let sm: Value = http
        .get(format!("{gw}/api/actors/root/sidecars/session_manager"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = sm["details"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let mut opened = false;
    for _ in 0..200 {
        let _ = tool(&session, "list_agents", json!({})).await;
        if breaker_state(&session).await == "open" {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(opened, "the breaker opened during the outage");
    // After the restart and the recovery timeout, a probe succeeds and the breaker closes.
    let mut closed = false;
    for _ in 0..100 {
        let _ = tool(&session, "list_agents", json!({})).await;
        if breaker_state(&session).await == "closed" {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(closed, "the breaker closed after the sidecar came back");
    let sm: Value = http
        .get(format!("{gw}/api/actors/root/sidecars/session_manager"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sm["restarts"], 1);
    assert_eq!(sm["state"], "running");
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
    for _ in 0..600 {
        if let Ok(listed) = client.get("/chat/rooms").await {
            rooms = listed["rooms"]
                .as_array()
                .or_else(|| listed.as_array())
                .map_or(0, |r| r.len());
            if rooms == 100 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rooms, 100, "every queued operation was replayed, none lost");
    assert!(eventually(Duration::from_secs(5), || sock.exists()));
}
