//! The liveness probe of MCP servers: hung servers are found, not just dead ones.
//!
//! In-process (real `mcp_servers` supervisor, connection actors and hub): a stdio server that
//! stops reading its stdin while staying alive is restarted as `unresponsive` and its in-flight
//! call fails at once; one busy with a long call it reports progress for is left alone; an
//! HTTP upstream that accepts requests and never replies is reconnected; an error answer to
//! `ping` counts; `0` turns the probe off, and turning it on in place (a reload) applies at
//! once. Against the real daemon: the config keys (`[supervisor]` and a server's override),
//! the probe's last time and latency in `/api/actors`, and `unresponsive` as the last failure
//! in the status tree and the run log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use revka_actors::ActorState;
use revka_mcp::client::CallOptions;
use revka_mcp::spec::{PingPolicy, ServerSpec, TransportSpec};
use serde_json::{Value, json};

use crate::harness::{
    Served, fixture_server, npm_bin, process_exists, test_cache, venv_bin, within_async,
};
use crate::mcp_client::{Fleet, fault, opts, policy, stdio, text};

/// Ping after a silent second; two failed pings in a row make a server unresponsive.
fn quick() -> PingPolicy {
    PingPolicy {
        interval: Duration::from_secs(1),
        failures: 2,
    }
}

fn probed(mut spec: ServerSpec, ping: PingPolicy) -> ServerSpec {
    spec.ping = ping;
    spec
}

/// The `liveness` details of server `name`.
fn liveness(fleet: &Fleet, name: &str) -> Value {
    fleet
        .node(name)
        .snapshot()
        .details
        .map(|d| d["liveness"].clone())
        .unwrap_or(Value::Null)
}

/// The pid of server `name`'s process.
fn pid(fleet: &Fleet, name: &str) -> Option<i32> {
    let node = fleet.node(name).find("process")?;
    let details = node.snapshot().details?;
    details["pid"].as_i64().map(|p| p as i32)
}

fn last_failure(fleet: &Fleet, name: &str) -> String {
    fleet.node(name).last_failure().unwrap_or_default()
}

/// A stdio server that stops reading its stdin (but lives on) is pinged, found unresponsive
/// after two failed pings, its in-flight call fails at once with that reason (not at its 60 s
/// timeout), and its process is killed and started again.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_stops_reading_stdin_is_restarted_as_unresponsive() {
    let fleet = Fleet::start(vec![(probed(fault("f", &[]), quick()), policy(5))]).await;
    fleet.wait_state("f", ActorState::Running).await;
    let old_pid = pid(&fleet, "f").expect("a pid");

    let started = Instant::now();
    let hub = fleet.hub.clone();
    let hung = tokio::spawn(async move { hub.call("f__hang_stdin", json!({}), &opts(60)).await });
    let err = hung.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains(
            "server `f` failed: unresponsive: 2 pings in a row failed, the last: no \
                      answer within 1 s"
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed fast, not at the call's timeout: {:?}",
        started.elapsed()
    );
    within_async(
        Duration::from_secs(60),
        "the unresponsive failure recorded",
        async || last_failure(&fleet, "f").contains("unresponsive"),
    )
    .await;
    assert_eq!(
        last_failure(&fleet, "f"),
        "server `f`: unresponsive: 2 pings in a row failed, the last: no answer within 1 s"
    );

    fleet.wait_restarted("f", 1).await;
    let new_pid = pid(&fleet, "f").expect("a new pid");
    assert_ne!(new_pid, old_pid, "a new process");
    within_async(
        Duration::from_secs(10),
        "the hung process was killed and reaped",
        async || !process_exists(old_pid),
    )
    .await;
    let result = fleet
        .call("f__echo", json!({ "back": true }))
        .await
        .unwrap();
    assert!(text(&result).contains("back"));
    assert_eq!(fleet.node("f").restarts(), 1);
    fleet.stop().await;
}

/// A server that reads nothing for 6 s while it reports progress for the call it is busy with
/// is alive: no failed ping, never restarted (without progress counting, two failed pings would
/// have restarted it after about 4 s). Once idle, it is pinged and answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_busy_with_a_long_call_it_reports_progress_for_is_not_restarted() {
    let fleet = Fleet::start(vec![(probed(fault("f", &[]), quick()), policy(5))]).await;
    fleet.wait_state("f", ActorState::Running).await;
    let progress = Arc::new(AtomicU64::new(0));
    let seen = progress.clone();
    let o = CallOptions {
        timeout: Duration::from_secs(60),
        progress: Some(Arc::new(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
        })),
        ..Default::default()
    };
    let result = fleet
        .call_with(
            "f__hang_stdin",
            json!({ "ms": 6000, "progress_ms": 200 }),
            &o,
        )
        .await
        .unwrap();
    assert!(
        text(&result).starts_with("read stdin again after"),
        "{result}"
    );
    assert!(progress.load(Ordering::Relaxed) >= 10);
    let node = fleet.node("f");
    assert_eq!(node.restarts(), 0, "{:?}", node.last_failure());
    // No failed ping either (that it is not pinged at all while busy is proved in paused
    // time by `a_silent_server_is_pinged_every_interval_and_a_busy_one_never`).
    let probe = liveness(&fleet, "f");
    assert_eq!(probe["failures_in_a_row"], 0, "{probe}");
    assert_ne!(probe["last_ping"]["ok"], false, "{probe}");
    // Idle now: pinged, and the ping is answered.
    within_async(
        Duration::from_secs(60),
        "a ping of the idle server",
        async || liveness(&fleet, "f")["last_ping"]["ok"] == true,
    )
    .await;
    assert_eq!(node.restarts(), 0);
    fleet.stop().await;
}

/// An error answer to `ping` (-32601 from a server without it) counts as alive; `0` turns the
/// probe off, so a hung server without it stays `running`; turning it on in place (what a
/// reload does) finds that server at once.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_answer_counts_zero_turns_the_probe_off_and_an_update_turns_it_on() {
    let refusing = PingPolicy {
        interval: Duration::from_secs(1),
        failures: 1,
    };
    let fleet = Fleet::start(vec![
        (
            probed(fault("refuse", &["--refuse-ping"]), refusing),
            policy(5),
        ),
        (probed(fault("off", &[]), PingPolicy::OFF), policy(5)),
    ])
    .await;
    fleet.wait_state("refuse", ActorState::Running).await;
    fleet.wait_state("off", ActorState::Running).await;
    let hub = fleet.hub.clone();
    let hung =
        tokio::spawn(async move { hub.call("off__hang_stdin", json!({}), &opts(120)).await });

    // Four pings of `refuse` (each answered -32601; one failure would restart it): the clock
    // for the hung `off`, which has had time to be found four times over, were it probed.
    within_async(
        Duration::from_secs(60),
        "four pings answered with an error",
        async || liveness(&fleet, "refuse")["pings"].as_u64() >= Some(4),
    )
    .await;
    let refuse = liveness(&fleet, "refuse");
    assert_eq!(refuse["last_ping"]["ok"], true, "{refuse}");
    assert_eq!(refuse["failures_in_a_row"], 0);
    assert_eq!(fleet.node("refuse").restarts(), 0);
    let off = liveness(&fleet, "off");
    assert_eq!(off["enabled"], false, "{off}");
    assert_eq!(off["pings"], 0);
    assert_eq!(off["last_ping"], Value::Null);
    assert_eq!(fleet.node("off").restarts(), 0);
    assert_eq!(fleet.node("off").state(), ActorState::Running);
    assert!(
        !hung.is_finished(),
        "the call still waits for the hung server"
    );

    // Turned on in place: the probe wakes and finds it, and the waiting call fails.
    let entry = fleet.hub.server("off").unwrap();
    let mut spec = (*entry.spec()).clone();
    spec.ping = quick();
    assert!(fleet.hub.update_spec(Arc::new(spec)));
    let err = hung.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("unresponsive"), "{err}");
    fleet.wait_restarted("off", 1).await;
    assert!(last_failure(&fleet, "off").contains("unresponsive"));
    fleet.stop().await;
}

/// The official servers (the TypeScript SDK's `server-everything`, the Python SDK's
/// `mcp-server-time`) answer the probe's pings: a real idle server is not mistaken for a
/// hung one. Skipped when the interop dependencies are not installed.
#[tokio::test(flavor = "multi_thread")]
async fn official_servers_answer_the_probes_pings() {
    let Some(cache) = test_cache() else { return };
    let every = npm_bin(&cache, "mcp-server-everything");
    let time = venv_bin(&cache, "mcp-server-time");
    let fleet = Fleet::start(vec![
        (
            probed(
                stdio("everything", every.to_str().unwrap(), &["stdio"]),
                quick(),
            ),
            policy(2),
        ),
        (
            probed(
                stdio("time", time.to_str().unwrap(), &["--local-timezone", "UTC"]),
                quick(),
            ),
            policy(2),
        ),
    ])
    .await;
    for name in ["everything", "time"] {
        fleet.wait_state(name, ActorState::Running).await;
        within_async(
            Duration::from_secs(60),
            "three answered pings",
            async || {
                let probe = liveness(&fleet, name);
                probe["pings"].as_u64() >= Some(3) && probe["last_ping"]["ok"] == true
            },
        )
        .await;
        assert_eq!(liveness(&fleet, name)["failures_in_a_row"], 0);
        assert_eq!(fleet.node(name).restarts(), 0, "{name}");
    }
    fleet.stop().await;
}

// ==== A Streamable HTTP upstream that can hang ====

/// A minimal Streamable HTTP MCP server; while `hung`, it reads each request and never
/// answers (the connection stays open), like an endpoint whose backend is wedged.
#[derive(Default)]
struct Upstream {
    hung: AtomicBool,
    initializes: AtomicU64,
    pings: AtomicU64,
}

async fn upstream_post(State(up): State<Arc<Upstream>>, _: HeaderMap, body: Bytes) -> Response {
    if up.hung.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = msg.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response(); // a notification
    };
    let result = match msg["method"].as_str().unwrap_or("") {
        "initialize" => {
            up.initializes.fetch_add(1, Ordering::SeqCst);
            json!({
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "upstream", "version": "1" },
            })
        }
        "ping" => {
            up.pings.fetch_add(1, Ordering::SeqCst);
            json!({})
        }
        "tools/list" => json!({ "tools": [
            { "name": "echo", "inputSchema": { "type": "object" } },
        ] }),
        "tools/call" => json!({
            "content": [{ "type": "text", "text": msg["params"]["arguments"].to_string() }],
        }),
        other => {
            let error = json!({ "code": -32601, "message": format!("no {other}") });
            return axum::Json(json!({ "jsonrpc": "2.0", "id": id, "error": error }))
                .into_response();
        }
    };
    axum::Json(json!({ "jsonrpc": "2.0", "id": id, "result": result })).into_response()
}

async fn upstream() -> (Arc<Upstream>, String) {
    let up = Arc::new(Upstream::default());
    let router = Router::new()
        .route(
            "/mcp",
            post(upstream_post).get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (up, format!("http://{addr}/mcp"))
}

/// An HTTP upstream that accepts requests and never replies is found by its failed pings:
/// the call waiting on it fails at once as `unresponsive`, and the connection is made anew
/// (no process is involved: a new `initialize`) once the upstream answers again.
#[tokio::test(flavor = "multi_thread")]
async fn an_http_upstream_that_accepts_and_never_replies_is_reconnected() {
    let (up, url) = upstream().await;
    let mut spec = fault("remote", &[]);
    spec.transport = TransportSpec::Http {
        url,
        headers: Vec::new(),
    };
    spec.handshake_timeout = Duration::from_secs(3);
    let fleet = Fleet::start(vec![(probed(spec, quick()), policy(20))]).await;
    fleet.wait_state("remote", ActorState::Running).await;
    assert_eq!(up.initializes.load(Ordering::SeqCst), 1);
    within_async(Duration::from_secs(60), "an answered ping", async || {
        up.pings.load(Ordering::SeqCst) >= 1
    })
    .await;
    let result = fleet.call("remote__echo", json!({ "n": 1 })).await.unwrap();
    assert!(text(&result).contains("\"n\":1"), "{result}");

    up.hung.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let err = fleet
        .call_with("remote__echo", json!({ "n": 2 }), &opts(60))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("server `remote` failed: unresponsive: 2 pings in a row failed"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "failed fast");
    within_async(
        Duration::from_secs(60),
        "the unresponsive failure recorded",
        async || fleet.node("remote").restarts() >= 1,
    )
    .await;
    // The first reconnect is immediate, so the last failure may already be its handshake
    // (the upstream is still hung); the restart was for `unresponsive` (the call's error).

    up.hung.store(false, Ordering::SeqCst);
    within_async(Duration::from_secs(60), "reconnected", async || {
        fleet.node("remote").state() == ActorState::Running
            && up.initializes.load(Ordering::SeqCst) >= 2
    })
    .await;
    let result = fleet.call("remote__echo", json!({ "n": 3 })).await.unwrap();
    assert!(text(&result).contains("\"n\":3"), "{result}");
    fleet.stop().await;
}

// ==== The real daemon ====

/// The node at `path` in a snapshot tree (as `/api/actors` serves it).
fn find<'a>(node: &'a Value, path: &str) -> Option<&'a Value> {
    if node["path"] == path {
        return Some(node);
    }
    node["children"]
        .as_array()?
        .iter()
        .find_map(|child| find(child, path))
}

/// `[supervisor]` sets the probe of every server and a server's `restart` table overrides it
/// (`0`: off); `/api/actors` shows each server's probe, with the last ping's time and latency;
/// a server that stops reading stdin is restarted with `unresponsive` as its last failure, in
/// the status tree and in the run log, and the call waiting on it gets that reason at once; a
/// reload turns a server's probe on in place.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_probes_by_config_shows_the_last_ping_and_records_unresponsive() {
    let extra = format!(
        r#"
[[mcp.servers]]
name = "quiet"
command = "{fault}"
restart = {{ ping_interval_secs = 0 }}

[supervisor]
ping_interval_secs = 1
ping_failures = 2
"#,
        fault = fixture_server("fault_server").display()
    );
    let s = Served::start(&extra).await;
    let (fault, quiet) = ("root/mcp_servers/mcp:fault", "root/mcp_servers/mcp:quiet");
    let tree = within_async(Duration::from_secs(60), "an answered ping", async || {
        let tree = s.api("/api/actors").await;
        let last = &find(&tree, fault).unwrap()["details"]["liveness"]["last_ping"];
        (last["ok"] == true).then_some(tree)
    })
    .await;
    let probe = &find(&tree, fault).unwrap()["details"]["liveness"];
    assert_eq!(probe["enabled"], true, "{probe}");
    assert_eq!(probe["ping_interval_ms"], 1000);
    assert_eq!(probe["ping_timeout_ms"], 1000);
    assert_eq!(probe["ping_failures"], 2);
    assert!(probe["pings"].as_u64() >= Some(1));
    assert!(
        probe["last_ping"]["latency_ms"].as_f64().is_some(),
        "{probe}"
    );
    assert!(
        probe["last_ping"]["at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    let off = &find(&tree, quiet).unwrap()["details"]["liveness"];
    assert_eq!(off["enabled"], false, "{off}");
    assert_eq!(off["ping_interval_ms"], 0);
    assert_eq!(off["last_ping"], Value::Null);
    assert!(
        s.recorded().iter().any(|m| m["method"] == "ping"),
        "the server received the probe's pings"
    );

    // Hung: found, its call fails with the reason, restarted.
    let session = s.session().await;
    session
        .call_text(
            "tool_search",
            json!({ "query": "select:fault__hang_stdin" }),
        )
        .await;
    let started = Instant::now();
    let events = tokio::time::timeout(
        Duration::from_secs(60),
        session.call(json!(7), "fault__hang_stdin", json!({}), None),
    )
    .await
    .expect("the call ended");
    let answer: String = events.iter().map(|e| e.data.clone()).collect();
    assert!(answer.contains("unresponsive"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(30), "failed fast");
    let node = within_async(Duration::from_secs(60), "mcp:fault restarted", async || {
        let node = s.api(&format!("/api/actors/{fault}")).await;
        (node["restarts"] == 1 && node["state"] == "running").then_some(node)
    })
    .await;
    let reason = node["last_failure"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("server `fault`: unresponsive: 2 pings in a row failed"),
        "{node}"
    );
    let runlog = s.home.path().join("operator_mcp/runlogs/run.jsonl");
    within_async(
        Duration::from_secs(10),
        "the run log records the restart's reason",
        async || {
            std::fs::read_to_string(&runlog).is_ok_and(|log| {
                log.lines().any(|line| {
                    line.contains("\"supervision\"")
                        && line.contains("mcp:fault")
                        && line.contains("unresponsive")
                })
            })
        },
    )
    .await;

    // A reload turns the probe on for `quiet` in place: same process, probing at once.
    let quiet_pid =
        |tree: &Value| find(tree, &format!("{quiet}/process")).map(|p| p["details"]["pid"].clone());
    let before = quiet_pid(&s.api("/api/actors").await);
    let config = s.home.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    s.home.write_config(&text.replace(
        "restart = { ping_interval_secs = 0 }",
        "restart = { ping_interval_secs = 2 }",
    ));
    let (gateway, token) = s.gateway();
    let report: Value = reqwest::Client::new()
        .post(format!("{gateway}/api/reload"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        report.to_string().contains("updated mcp:quiet in place"),
        "{report}"
    );
    let tree = within_async(Duration::from_secs(60), "a ping of quiet", async || {
        let tree = s.api("/api/actors").await;
        let probe = &find(&tree, quiet).unwrap()["details"]["liveness"];
        (probe["last_ping"]["ok"] == true).then_some(tree)
    })
    .await;
    let probe = &find(&tree, quiet).unwrap()["details"]["liveness"];
    assert_eq!(probe["ping_interval_ms"], 2000, "{probe}");
    assert_eq!(quiet_pid(&tree), before, "not restarted");
}
