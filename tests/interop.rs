//! Interoperability with the official MCP servers, under supervision: server-everything and
//! server-filesystem (npm), mcp-server-time (PyPI), over stdio.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use revka_actors::ActorState;
use revka_actors::mcp::client::CallOptions;
use serde_json::{Value, json};

use crate::mcp_client::{Fleet, policy, stdio, text};
use crate::util::{npm_bin, test_cache, venv_bin};

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_over_stdio_with_progress() {
    let Some(cache) = test_cache() else { return };
    let bin = npm_bin(&cache, "mcp-server-everything");
    let fleet = Fleet::start(vec![(
        stdio("everything", bin.to_str().unwrap(), &["stdio"]),
        policy(2),
    )])
    .await;
    fleet.wait_state("everything", ActorState::Running).await;
    let table = fleet.hub.tools();
    assert!(
        table.tools.contains_key("everything__echo"),
        "{:?}",
        table.tools.keys()
    );
    assert!(table.tools.contains_key("everything__get-sum"));
    let entry = fleet.hub.server("everything").unwrap();
    assert!(entry.hello().unwrap().server_info["name"].is_string());

    let echo = fleet
        .call("everything__echo", json!({ "message": "hi from revka" }))
        .await
        .unwrap();
    assert!(text(&echo).contains("hi from revka"), "{echo}");
    // String-encoded numbers are coerced to the schema's types before zod sees them.
    let sum = fleet
        .call("everything__get-sum", json!({ "a": "2", "b": 3 }))
        .await
        .unwrap();
    assert!(text(&sum).contains('5'), "{sum}");

    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = seen.clone();
    let opts = CallOptions {
        timeout: Duration::from_secs(30),
        progress: Some(Arc::new(move |p| sink.lock().unwrap().push(p.progress))),
        ..Default::default()
    };
    let done = fleet
        .call_with(
            "everything__trigger-long-running-operation",
            json!({ "duration": 0.3, "steps": 3 }),
            &opts,
        )
        .await
        .unwrap();
    assert!(text(&done).contains("completed"), "{done}");
    assert_eq!(*seen.lock().unwrap(), [json!(1), json!(2), json!(3)]);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_filesystem_over_stdio() {
    let Some(cache) = test_cache() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello, revka\n").unwrap();
    let root = dir.path().canonicalize().unwrap();
    let bin = npm_bin(&cache, "mcp-server-filesystem");
    let fleet = Fleet::start(vec![(
        stdio("fs", bin.to_str().unwrap(), &[root.to_str().unwrap()]),
        policy(2),
    )])
    .await;
    fleet.wait_state("fs", ActorState::Running).await;
    let path = root.join("hello.txt");
    let tools = fleet.hub.tools();
    let read = ["fs__read_text_file", "fs__read_file"]
        .into_iter()
        .find(|t| tools.tools.contains_key(*t))
        .expect("a read tool");
    let result = fleet.call(read, json!({ "path": path })).await.unwrap();
    assert!(text(&result).contains("hello, revka"), "{result}");
    // Outside the allowed root: the server refuses, as a tool error, and stays up.
    let denied = fleet
        .call(read, json!({ "path": "/etc/hostname" }))
        .await
        .unwrap();
    assert_eq!(denied["isError"], true, "{denied}");
    assert_eq!(fleet.node("fs").restarts(), 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_server_time_over_stdio() {
    let Some(cache) = test_cache() else { return };
    let bin = venv_bin(&cache, "mcp-server-time");
    let fleet = Fleet::start(vec![(
        stdio("time", bin.to_str().unwrap(), &["--local-timezone", "UTC"]),
        policy(2),
    )])
    .await;
    fleet.wait_state("time", ActorState::Running).await;
    let result = fleet
        .call(
            "time__get_current_time",
            json!({ "timezone": "Europe/Paris" }),
        )
        .await
        .unwrap();
    assert_eq!(result["isError"], false, "{result}");
    assert!(text(&result).contains("Europe/Paris"), "{result}");
    fleet.stop().await;
}
