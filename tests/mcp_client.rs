//! The MCP client under supervision, in-process: real `mcp_servers` supervisors, connection
//! actors and the hub, against the fault-injection fixture and the official servers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use revka_actors::mcp::connection::{connection_spec, probe};
use revka_actors::mcp::hub::{HubError, McpHub};
use revka_actors::supervisor::{
    Backoff, Intensity, RestartPolicy, RestartType, Shutdown, Strategy, SupervisorActor,
    SupervisorArguments, SupervisorMessage,
};
use revka_actors::{ActorState, StatusNode};
use revka_mcp::client::CallOptions;
use revka_mcp::protocol::Root;
use revka_mcp::spec::{ServerSpec, TransportSpec};
use serde_json::{Value, json};

use crate::harness::{eventually_async, fixture_server, try_within_async, within_async};

/// A running `mcp_servers` supervisor with its hub.
pub struct Fleet {
    pub hub: Arc<McpHub>,
    pub root: StatusNode,
    pub sup: ActorRef<SupervisorMessage>,
}

impl Fleet {
    pub async fn start(servers: Vec<(ServerSpec, RestartPolicy)>) -> Self {
        let hub = McpHub::new();
        let http = reqwest::Client::new();
        let root = StatusNode::root("mcp_servers", "supervisor");
        let children = servers
            .into_iter()
            .map(|(spec, policy)| {
                connection_spec(Arc::new(spec), policy, hub.clone(), http.clone())
            })
            .collect();
        let args = SupervisorArguments {
            node: root.clone(),
            strategy: Strategy::OneForOne,
            intensity: Intensity {
                max_restarts: 1000,
                period: Duration::from_secs(60),
            },
            children,
        };
        let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
            .await
            .unwrap();
        Self { hub, root, sup }
    }

    pub fn node(&self, server: &str) -> StatusNode {
        self.root
            .find(&format!("mcp:{server}"))
            .expect("server node")
    }

    pub async fn wait_state(&self, server: &str, state: ActorState) {
        let node = self.node(server);
        if try_within_async(Duration::from_secs(60), async || node.state() == state)
            .await
            .is_none()
        {
            panic!("{server} never reached {state}: {:?}", node.snapshot());
        }
    }

    /// Waits until `server` has been restarted `restarts` times and is running again. (Right
    /// after a crash its state may still read `running`: the supervisor has not seen the exit
    /// yet, so waiting for the state alone can return before the restart.)
    pub async fn wait_restarted(&self, server: &str, restarts: u64) {
        let node = self.node(server);
        let restarted = async || node.restarts() >= restarts && node.state() == ActorState::Running;
        if try_within_async(Duration::from_secs(60), restarted)
            .await
            .is_none()
        {
            panic!(
                "{server} was never restarted {restarts} times: {:?}",
                node.snapshot()
            );
        }
    }

    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, HubError> {
        self.call_with(tool, args, &opts(30)).await
    }

    pub async fn call_with(
        &self,
        tool: &str,
        args: Value,
        opts: &CallOptions,
    ) -> Result<Value, HubError> {
        let raw = self.hub.call(tool, args, opts).await?;
        Ok(serde_json::from_str(raw.get()).unwrap())
    }

    pub async fn stop(self) {
        self.sup
            .stop_and_wait(None, Some(Duration::from_secs(30)))
            .await
            .unwrap();
    }
}

pub fn opts(timeout_secs: u64) -> CallOptions {
    CallOptions {
        timeout: Duration::from_secs(timeout_secs),
        ..Default::default()
    }
}

pub fn policy(max_restarts: u32) -> RestartPolicy {
    RestartPolicy {
        restart: RestartType::Permanent,
        max_restarts,
        window: Duration::from_secs(60),
        backoff: Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(500),
            reset_after: Duration::from_secs(300),
        },
        shutdown: Shutdown::Timeout(Duration::from_secs(2)),
    }
}

pub fn stdio(name: &str, command: &str, args: &[&str]) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        transport: TransportSpec::Stdio {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            cwd: None,
        },
        tool_timeout: Duration::from_secs(30),
        ping: revka_mcp::spec::PingPolicy::OFF,
        handshake_timeout: Duration::from_secs(30),
        roots: Vec::new(),
        reset_timeout_on_progress: false,
        shown: None,
        oauth: None,
    }
}

pub fn fault(name: &str, knobs: &[&str]) -> ServerSpec {
    stdio(
        name,
        fixture_server("fault_server").to_str().unwrap(),
        knobs,
    )
}

pub fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// ==== Faults ====

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_call_fails_in_flight_calls_at_once_restarts_and_keeps_tools() {
    let fleet = Fleet::start(vec![(
        fault("f", &["--crash-after", "2", "--exit-code", "7"]),
        policy(5),
    )])
    .await;
    fleet.wait_state("f", ActorState::Running).await;
    let tools_before: Vec<String> = fleet.hub.tools().tools.keys().cloned().collect();
    assert!(tools_before.contains(&"f__echo".to_string()));

    // Two answered calls, with two `hang`s in flight, then the crash.
    let hangs: Vec<_> = (0..2)
        .map(|_| {
            let hub = fleet.hub.clone();
            tokio::spawn(async move { hub.call("f__hang", json!({}), &opts(60)).await })
        })
        .collect();
    // Both hangs must reach the server before the echoes: one arriving after them would be
    // the call that crashes it.
    let node = fleet.node("f");
    eventually_async("the hangs at the server", async || {
        node.snapshot().details.map(|d| d["pending_calls"].clone()) == Some(json!(2))
    })
    .await;
    for i in 0..2 {
        fleet.call("f__echo", json!({ "i": i })).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let err = fleet
        .call("f__echo", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("server `f` failed") && err.contains("exited with status 7"),
        "{err}"
    );
    for hang in hangs {
        let err = hang.await.unwrap().unwrap_err().to_string();
        assert!(
            err.contains("exited with status 7"),
            "in-flight call resolved with the exit: {err}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "in-flight calls resolved at once"
    );

    // Tools stay listed while it restarts, and calls work again afterwards.
    assert_eq!(
        fleet.hub.tools().tools.keys().cloned().collect::<Vec<_>>(),
        tools_before
    );
    fleet.wait_restarted("f", 1).await;
    let result = fleet
        .call("f__echo", json!({ "again": true }))
        .await
        .unwrap();
    assert!(text(&result).contains("again"));
    let snap = fleet.node("f").snapshot();
    assert_eq!(snap.restarts, 1);
    assert!(
        snap.last_failure
            .unwrap()
            .reason
            .contains("exited with status 7")
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_looping_server_is_marked_failed_and_its_sibling_keeps_serving() {
    let fleet = Fleet::start(vec![
        (fault("loop", &["--exit-on-start", "3"]), policy(3)),
        (fault("ok", &[]), policy(3)),
    ])
    .await;
    fleet.wait_state("loop", ActorState::Failed).await;
    let snap = fleet.node("loop").snapshot();
    assert_eq!(snap.restarts, 3);
    let reason = snap.last_failure.unwrap().reason;
    assert!(reason.contains("exited with status 3"), "{reason}");
    assert!(fleet.call("ok__echo", json!({"x": 1})).await.is_ok());
    assert_eq!(fleet.node("ok").restarts(), 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_to_a_restarting_or_failed_server_fail_fast_with_its_state() {
    let mut slow_policy = policy(2);
    slow_policy.backoff.min = Duration::from_secs(5);
    slow_policy.backoff.max = Duration::from_secs(5);
    let fleet = Fleet::start(vec![(fault("f", &["--crash-after", "0"]), slow_policy)]).await;
    fleet.wait_state("f", ActorState::Running).await;
    // Crash #1 restarts immediately; crash #2 backs off 5 s.
    let _ = fleet.call("f__echo", json!({})).await;
    fleet.wait_restarted("f", 1).await;
    let _ = fleet.call("f__echo", json!({})).await;
    fleet.wait_state("f", ActorState::BackingOff).await;
    let t = Instant::now();
    let err = fleet
        .call("f__echo", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "failed fast, well inside the 5 s backoff"
    );
    assert!(
        err.starts_with("server `f` is restarting, next attempt in "),
        "{err}"
    );
    // Crash #3 exceeds the limit of 2 restarts.
    fleet.wait_restarted("f", 2).await;
    let _ = fleet.call("f__echo", json!({})).await;
    fleet.wait_state("f", ActorState::Failed).await;
    let err = fleet
        .call("f__echo", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("server `f` failed: "), "{err}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_call_times_out_and_the_server_is_told_to_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let fleet = Fleet::start(vec![(
        fault("f", &["--record", record.to_str().unwrap()]),
        policy(3),
    )])
    .await;
    fleet.wait_state("f", ActorState::Running).await;
    let err = fleet
        .call_with("f__hang", json!({}), &opts(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not answer tools/call within"), "{err}");
    let cancelled = within_async(
        Duration::from_secs(10),
        "notifications/cancelled at the server",
        async || {
            let text = std::fs::read_to_string(&record).unwrap_or_default();
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .find(|m| m["method"] == "notifications/cancelled")
        },
    )
    .await;
    assert_eq!(cancelled["params"]["reason"], "timeout");
    // The server is still healthy.
    assert!(fleet.call("f__echo", json!({})).await.is_ok());
    assert_eq!(fleet.node("f").restarts(), 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_line_fails_the_connection_cleanly() {
    let fleet = Fleet::start(vec![(fault("f", &[]), policy(3))]).await;
    fleet.wait_state("f", ActorState::Running).await;
    let err = fleet
        .call("f__oversized", json!({ "bytes": 6_000_000 }))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("longer than 4194304 bytes"), "{err}");
    fleet.wait_restarted("f", 1).await;
    assert!(fleet.call("f__echo", json!({})).await.is_ok());
    assert!(
        fleet
            .node("f")
            .last_failure()
            .unwrap()
            .contains("longer than")
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_invalid_utf8_on_stdout_are_skipped() {
    let fleet = Fleet::start(vec![(fault("f", &["--garbage-stdout"]), policy(3))]).await;
    fleet.wait_state("f", ActorState::Running).await;
    assert!(fleet.call("f__invalid_utf8", json!({})).await.is_ok());
    assert!(fleet.call("f__echo", json!({"x": 1})).await.is_ok());
    assert_eq!(fleet.node("f").restarts(), 0);
    // The skipped lines are counted in the connection's introspection, with the last one.
    let details = fleet.node("f").snapshot().details.unwrap();
    let skipped = details["invalid_lines"].as_u64().unwrap();
    assert!(skipped >= 3, "a garbage line before each answer: {details}");
    assert_eq!(
        details["last_invalid_line"], "this is not json",
        "{details}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_writes_only_garbage_fails_its_handshake_naming_the_garbage() {
    // Not an MCP server at all: it prints a usage line and never answers `initialize`.
    let script = "echo 'usage: tool [--flag]'; echo 'try --help'; exec sleep 600";
    let mut garbage = stdio("garbage", "/bin/sh", &["-c", script]);
    garbage.handshake_timeout = Duration::from_secs(5);
    let fleet = Fleet::start(vec![(garbage, policy(0)), (fault("good", &[]), policy(0))]).await;
    fleet.wait_state("garbage", ActorState::Failed).await;
    let reason = fleet.node("garbage").last_failure().unwrap();
    assert!(
        reason.contains("server `garbage`: handshake failed:")
            && (reason.contains("no answer within 5s")
                || reason.contains("did not answer initialize within")),
        "{reason}"
    );
    assert!(
        reason
            .contains(r#"the server wrote 2 lines that are not JSON-RPC, the last: "try --help""#),
        "{reason}"
    );
    fleet.wait_state("good", ActorState::Running).await;
    assert!(fleet.call("good__echo", json!({})).await.is_ok());
    fleet.stop().await;
}

// ==== Tools ====

#[tokio::test(flavor = "multi_thread")]
async fn paged_tool_lists_are_read_to_the_end_and_list_changed_updates_the_registry() {
    let fleet = Fleet::start(vec![(
        fault("f", &["--tools", "250", "--page-size", "40"]),
        policy(3),
    )])
    .await;
    fleet.wait_state("f", ActorState::Running).await;
    let table = fleet.hub.tools();
    assert!(table.tools.contains_key("f__tool_000") && table.tools.contains_key("f__tool_249"));
    let names: Vec<&String> = table.tools.keys().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "listing order is sorted");

    let mut changes = fleet.hub.subscribe();
    fleet
        .call("f__set_tools", json!({ "count": 3 }))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a change")
        .unwrap();
    let _ = try_within_async(Duration::from_secs(10), async || {
        fleet.hub.tools().tools.contains_key("f__dyn_002")
    })
    .await;
    let table = fleet.hub.tools();
    assert!(table.tools.contains_key("f__dyn_002"));
    assert!(
        !table.tools.contains_key("f__tool_000"),
        "replaced tools are gone"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn string_encoded_arguments_are_coerced_and_bare_names_resolve() {
    let fleet = Fleet::start(vec![(fault("f", &[]), policy(3))]).await;
    fleet.wait_state("f", ActorState::Running).await;
    let result = fleet
        .call("f__add", json!({ "a": "2", "b": "40", "approved": true }))
        .await
        .unwrap();
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(text(&result), "42");
    let result = fleet
        .call("add", json!({ "a": 1, "b": "2" }))
        .await
        .expect("the bare suffix resolves when unique");
    assert_eq!(text(&result), "3");
    assert!(matches!(
        fleet.call("nope", json!({})).await,
        Err(HubError::UnknownTool(_))
    ));
    fleet.stop().await;
}

// ==== Concurrency and progress ====

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_calls_on_one_server_run_concurrently() {
    let fleet = Fleet::start(vec![(fault("f", &[]), policy(3))]).await;
    fleet.wait_state("f", ActorState::Running).await;
    let start = Instant::now();
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let hub = fleet.hub.clone();
            tokio::spawn(async move {
                hub.call(
                    "f__slow_echo",
                    json!({ "text": format!("n{i}"), "ms": 300 }),
                    &opts(60),
                )
                .await
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let raw = call.await.unwrap().unwrap();
        let v: Value = serde_json::from_str(raw.get()).unwrap();
        assert_eq!(text(&v), format!("n{i}"));
    }
    // Serialised they would take 30 s; concurrently about 0.3 s. Generous bound for slow CI.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_progress_reaches_the_callers_sink_in_order() {
    let fleet = Fleet::start(vec![(fault("f", &[]), policy(3))]).await;
    fleet.wait_state("f", ActorState::Running).await;
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink_seen = seen.clone();
    let caller_token = json!("caller-7");
    let o = CallOptions {
        timeout: Duration::from_secs(30),
        progress: Some(Arc::new(move |p| {
            // Re-keyed to the caller's token, as the MCP server layer does.
            sink_seen.lock().unwrap().push(json!({ "progressToken": caller_token, "progress": p.progress, "message": p.message }));
        })),
        ..Default::default()
    };
    let result = fleet
        .call_with("f__progress", json!({ "steps": 4, "interval_ms": 5 }), &o)
        .await
        .unwrap();
    assert_eq!(text(&result), "done");
    let seen = seen.lock().unwrap().clone();
    let progress: Vec<i64> = seen
        .iter()
        .map(|p| p["progress"].as_i64().unwrap())
        .collect();
    assert_eq!(progress, [1, 2, 3, 4]);
    assert!(seen.iter().all(|p| p["progressToken"] == "caller-7"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_requests_get_roots_and_refusals() {
    let mut spec = fault("f", &[]);
    spec.roots = vec![Root::from_path(std::path::Path::new("/srv/project"))];
    let fleet = Fleet::start(vec![(spec, policy(3))]).await;
    fleet.wait_state("f", ActorState::Running).await;
    let roots = fleet.call("f__roots", json!({})).await.unwrap();
    assert!(text(&roots).contains("file:///srv/project"), "{roots}");
    let sample = fleet.call("f__sample", json!({})).await.unwrap();
    assert!(
        text(&sample).contains("sampling/createMessage is not available"),
        "{sample}"
    );
    let elicit = fleet.call("f__elicit", json!({})).await.unwrap();
    assert!(text(&elicit).contains("elicitation/create"), "{elicit}");
    let ping = fleet.call("f__ping_client", json!({})).await.unwrap();
    assert!(!text(&ping).contains("error"), "{ping}");
    fleet.stop().await;
}

// ==== Bad input ====

#[tokio::test(flavor = "multi_thread")]
async fn bad_servers_get_precise_reasons_and_the_others_carry_on() {
    let fleet = Fleet::start(vec![
        (
            fault("oldver", &["--protocol-version", "1999-01-01"]),
            policy(0),
        ),
        (stdio("missing", "/nonexistent/mcp-server", &[]), policy(0)),
        (fault("good", &[]), policy(0)),
    ])
    .await;
    fleet.wait_state("oldver", ActorState::Failed).await;
    fleet.wait_state("missing", ActorState::Failed).await;
    let oldver = fleet.node("oldver").last_failure().unwrap();
    assert!(
        oldver.contains("unsupported protocol version `1999-01-01`"),
        "{oldver}"
    );
    let missing = fleet.node("missing").last_failure().unwrap();
    assert!(
        missing.contains("cannot start `/nonexistent/mcp-server`")
            && missing.contains("No such file"),
        "{missing}"
    );
    fleet.wait_state("good", ActorState::Running).await;
    assert!(fleet.call("good__echo", json!({})).await.is_ok());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_connect_in_parallel_a_slow_or_hung_one_delays_no_sibling() {
    // Started before `good`, in order: one takes 10 min to answer `initialize`, the other is
    // not an MCP server and never answers at all.
    let mut slow = fault("slow", &["--slow-init", "600000"]);
    slow.handshake_timeout = Duration::from_secs(600);
    let mut hung = stdio("hung", "/bin/sh", &["-c", "exec sleep 600"]);
    hung.handshake_timeout = Duration::from_secs(600);
    let fleet = Fleet::start(vec![
        (slow, policy(0)),
        (hung, policy(0)),
        (fault("good", &[]), policy(0)),
    ])
    .await;
    fleet.wait_state("good", ActorState::Running).await;
    let result = fleet
        .call("good__echo", json!({ "text": "hi" }))
        .await
        .unwrap();
    assert!(text(&result).contains("hi"), "{result}");
    let mut pids = Vec::new();
    for server in ["slow", "hung"] {
        let node = fleet.node(server);
        assert_eq!(node.state(), ActorState::Starting, "{:?}", node.snapshot());
        // Their processes run: they are handshaking, not waiting for a turn.
        let pid = async || {
            node.find("process")
                .and_then(|p| p.snapshot().details)
                .and_then(|d| d["pid"].as_u64())
        };
        match try_within_async(Duration::from_secs(60), pid).await {
            Some(pid) => pids.push(pid),
            None => panic!("{:?}", node.snapshot()),
        }
    }
    assert_eq!(fleet.node("slow").state(), ActorState::Starting);
    // Stopping mid-handshake leaves no process behind.
    fleet.stop().await;
    for pid in pids {
        assert!(
            try_within_async(Duration::from_secs(30), async || {
                !crate::harness::process_exists(pid as i32)
            })
            .await
            .is_some(),
            "process {pid} left behind"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_reports_success_and_failure_without_leaving_processes() {
    let http = reqwest::Client::new();
    let report = probe(&fault("p", &["--tools", "3"]), &http).await;
    assert!(report.ok, "{report:?}");
    assert!(
        report
            .tools
            .as_ref()
            .unwrap()
            .contains(&"tool_002".to_string())
    );
    let report = probe(&fault("p", &["--exit-on-start", "2"]), &http).await;
    assert!(!report.ok);
    assert!(
        report.error.as_ref().unwrap().contains("status 2"),
        "{report:?}"
    );
    let mut slow = fault("p", &["--slow-init", "5000"]);
    slow.handshake_timeout = Duration::from_millis(500);
    let report = probe(&slow, &http).await;
    // The request's own timeout and the handshake's share a deadline: either may report.
    let error = report.error.as_deref().unwrap_or_default();
    assert!(
        !report.ok
            && (error.contains("no answer within")
                || error.contains("did not answer initialize within")),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_for_a_reconnect_comes_out_of_the_call_timeout() {
    // The server takes 1.5 s to answer `initialize`: a call made while it restarts waits for
    // the handshake, then has only what is left of its 3 s for the call itself.
    let fleet = Fleet::start(vec![(fault("f", &["--slow-init", "1500"]), policy(3))]).await;
    fleet.wait_state("f", ActorState::Running).await;
    let _ = fleet.call("f__crash", json!({})).await;
    let err = fleet
        .call_with("f__hang", json!({}), &opts(3))
        .await
        .unwrap_err()
        .to_string();
    let within: f64 = err
        .split("within ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("a timeout error: {err}"));
    assert!(
        within < 2.9,
        "the call got {within}s after the reconnect wait, not its whole 3s again: {err}"
    );
    fleet.stop().await;
}
