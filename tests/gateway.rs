//! The gateway end to end: pairing and bearer auth, token roles, failure throttling,
//! introspection and restarts, health, metrics, the `/api/mcp/*` proxy (streaming, ceilings,
//! session ownership), the server-config test, Origin checks, and bad input.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    DEADLINE, Served, eventually_async, fixture_server, parse_sse, try_within_async,
};

struct Gw {
    served: Served,
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Gw {
    async fn start(extra: &str) -> Self {
        let served = Served::start(extra).await;
        let (url, token) = served.gateway();
        Self {
            served,
            url,
            token,
            http: reqwest::Client::new(),
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_auth_pairing_revocation_and_rate_limiting() {
    let gw = Gw::start("").await;
    assert!(std::fs::metadata(gw.served.home.path().join("gateway.token")).is_ok());
    let (status, _) = gw.json(gw.http.get(format!("{}/api/actors", gw.url))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = gw
        .json(
            gw.http
                .get(format!("{}/api/actors", gw.url))
                .bearer_auth("rvk_wrong"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Pairing: a fresh code from the owner, traded for a token on /pair.
    let (status, body) = gw.json(gw.post("/api/pair/code")).await;
    assert_eq!(status, StatusCode::OK);
    let code = body["code"].as_str().unwrap().to_owned();
    let pair = |code: &str| {
        gw.http
            .post(format!("{}/pair", gw.url))
            .header("X-Pairing-Code", code.to_owned())
            .header("X-Pairing-Label", "laptop")
    };
    let (status, body) = gw.json(pair(&code)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["role"], "viewer", "the default role");
    let paired = body["token"].as_str().unwrap().to_owned();
    assert!(paired.starts_with("rvk_"));
    let (status, _) = gw.json(pair(&code)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a code is good once");
    let (status, _) = gw
        .json(
            gw.http
                .get(format!("{}/api/actors", gw.url))
                .bearer_auth(&paired),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A paired token may not mint pairing codes nor manage tokens: the owner's only.
    let owner_id = {
        let (_, list) = gw.json(gw.get("/api/tokens")).await;
        let owner = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["file_token"] == true);
        assert_eq!(owner.unwrap()["role"], "owner");
        owner.unwrap()["id"].as_str().unwrap().to_owned()
    };
    for (method, path) in [
        (reqwest::Method::POST, "/api/pair/code".to_owned()),
        (reqwest::Method::GET, "/api/tokens".to_owned()),
        (reqwest::Method::DELETE, format!("/api/tokens/{owner_id}")),
    ] {
        let (status, body) = gw
            .json(
                gw.http
                    .request(method.clone(), format!("{}{path}", gw.url))
                    .bearer_auth(&paired),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("needs the owner role; this token has the viewer role"),
            "{body}"
        );
    }
    let (status, _) = gw.json(gw.get("/api/actors")).await;
    assert_eq!(status, StatusCode::OK, "the owner was not revoked");

    // Tokens are listed without secrets and revocable.
    let (_, list) = gw.json(gw.get("/api/tokens")).await;
    let laptop = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "laptop")
        .unwrap()
        .clone();
    assert!(
        !list.to_string().contains(&paired[4..]),
        "no secret in the listing"
    );
    let (status, _) = gw
        .json(
            gw.http
                .delete(format!(
                    "{}/api/tokens/{}",
                    gw.url,
                    laptop["id"].as_str().unwrap()
                ))
                .bearer_auth(&gw.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = gw
        .json(
            gw.http
                .get(format!("{}/api/actors", gw.url))
                .bearer_auth(&paired),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");
    let (status, _) = gw
        .json(
            gw.http
                .delete(format!("{}/api/tokens/ffffffff", gw.url))
                .bearer_auth(&gw.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_restarts_and_their_errors() {
    let gw = Gw::start("").await;
    let (_, tree) = gw.json(gw.get("/api/actors")).await;
    assert_eq!(tree["path"], "root");
    let ids: Vec<&str> = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "progress",
            "mcp_servers",
            "sidecars",
            "sessions",
            "scheduler",
            "agents",
            "terminals",
            "mcp_http",
            "gateway"
        ]
    );
    let (status, fault) = gw
        .json(gw.get("/api/actors/root/mcp_servers/mcp:fault"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fault["kind"], "mcp_connection");
    let process = &fault["children"][0];
    assert!(process["details"]["pid"].as_u64().unwrap() > 0);
    assert!(process["details"]["stderr_tail"].is_string());
    let (status, _) = gw.json(gw.get("/api/actors/root/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = gw
        .json(gw.post("/api/actors/root/mcp_servers/mcp:fault/restart"))
        .await;
    assert_eq!(
        (status, &body["restarted"]),
        (StatusCode::OK, &json!("root/mcp_servers/mcp:fault"))
    );
    let (_, fault) = gw
        .json(gw.get("/api/actors/root/mcp_servers/mcp:fault"))
        .await;
    assert_eq!(fault["restarts"], 1);
    let (status, _) = gw.json(gw.post("/api/actors/root/nope/restart")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A session is a temporary child: 409 with the reason.
    let session = gw.served.session().await;
    let path = format!("/api/actors/root/sessions/session:{}/restart", session.id);
    let (status, body) = gw.json(gw.post(&path)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"].as_str().unwrap().contains("temporary"),
        "{body}"
    );
    let (status, _) = gw.json(gw.post("/api/actors/root/restart")).await;
    assert_eq!(status, StatusCode::CONFLICT, "the root cannot be restarted");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_turns_degraded_when_a_server_is_down_and_healthy_after_its_restart() {
    let gw = Gw::start("[mcp.servers.restart]\nmax_restarts = 0\n").await;
    let (status, health) = gw.json(gw.get("/api/health")).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("healthy")),
        "{health}"
    );
    // Kill the server: with no restarts allowed it is marked failed.
    let (_, fault) = gw
        .json(gw.get("/api/actors/root/mcp_servers/mcp:fault/process"))
        .await;
    let pid = fault["details"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut health = Value::Null;
    let _ = try_within_async(Duration::from_secs(10), async || {
        health = gw.json(gw.get("/api/health")).await.1;
        health["status"] == "degraded"
    })
    .await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["mcp_servers"][0]["state"], "failed");
    gw.json(gw.post("/api/actors/root/mcp_servers/mcp:fault/restart"))
        .await;
    let _ = try_within_async(Duration::from_secs(10), async || {
        health = gw.json(gw.get("/api/health")).await.1;
        health["status"] == "healthy"
    })
    .await;
    assert_eq!(health["status"], "healthy", "{health}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_valid_prometheus_exposition_with_calls_restarts_and_sessions() {
    let gw = Gw::start("").await;
    let session = gw.served.session().await;
    session
        .call_text(
            "tool_search",
            json!({ "query": "select:fault__echo,fault__typed" }),
        )
        .await;
    session.call_text("fault__echo", json!({ "x": 1 })).await;
    // An error result, a built-in tool's call, and a restart, so the scrape holds every kind of
    // series the daemon writes.
    session
        .call_text("fault__typed", json!({ "n": "one" }))
        .await;
    gw.json(gw.post("/api/actors/root/mcp_servers/mcp:fault/restart"))
        .await;
    let resp = gw.get("/metrics").send().await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    // The daemon's real output, through the exposition-format validator, until the restarted
    // server is running again (each scrape validated).
    let running = [("path", "root/mcp_servers/mcp:fault"), ("state", "running")];
    let mut text = resp.text().await.unwrap();
    let mut first = true;
    let running_again = try_within_async(DEADLINE, async || {
        if !std::mem::take(&mut first) {
            text = gw
                .get("/metrics")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
        }
        let samples = revka_actors::metrics::parse_exposition(&text)
            .unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"));
        (value_of(&samples, "revka_actor_state", &running) == Some(1.0)).then_some(samples)
    })
    .await;
    let samples = running_again.unwrap_or_else(|| panic!("mcp:fault never running again:\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| value_of(&samples, name, labels);
    let calls = |tool: &str, outcome: &str| {
        value(
            "revka_tool_calls_total",
            &[("server", "fault"), ("tool", tool), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("fault__echo", "ok"), Some(1.0), "{text}");
    assert_eq!(calls("fault__typed", "error"), Some(1.0), "{text}");
    assert_eq!(
        value(
            "revka_tool_call_duration_seconds_count",
            &[("server", "fault")]
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        value(
            "revka_tool_calls_total",
            &[
                ("server", "builtin"),
                ("tool", "tool_search"),
                ("outcome", "ok")
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        value(
            "revka_actor_restarts_total",
            &[("path", "root/mcp_servers/mcp:fault")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value("revka_sessions", &[]), Some(2.0), "{text}");
    for state in ["pending", "in_flight", "inbox", "dead"] {
        let labels = [("queue", "session_manager"), ("state", state)];
        assert!(
            value("revka_retry_queue_depth", &labels).is_some(),
            "{state}: {text}"
        );
    }
    for family in [
        "revka_session_events_total",
        "revka_progress_subscribers",
        "revka_breaker_state",
        "revka_retry_queue_depth",
    ] {
        assert!(
            samples.iter().any(|s| s.name == family),
            "{family} missing:\n{text}"
        );
    }
}

/// Subscribers of every session's event stream, as the gateway's `/metrics` counts them.
async fn progress_subscribers(gw: &Gw) -> f64 {
    let text = gw
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = revka_actors::metrics::parse_exposition(&text)
        .unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"));
    value_of(&samples, "revka_progress_subscribers", &[]).unwrap_or(0.0)
}

/// The value of the first sample named `name` that has every one of `labels`.
fn value_of(
    samples: &[revka_actors::metrics::Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|&(l, v)| s.label(l) == Some(v)))
        .map(|s| s.value)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mcp_proxy_passes_through_and_streams_calls_as_they_run() {
    let gw = Gw::start("[gateway]\ncall_timeout_secs = 3\n").await;
    let (_, discovery) = gw.json(gw.get("/api/mcp/discovery")).await;
    assert_eq!(discovery["available"], true);
    assert_eq!(discovery["health"]["status"], "ok");
    let (status, health) = gw.json(gw.get("/api/mcp/health")).await;
    assert_eq!((status, &health["status"]), (StatusCode::OK, &json!("ok")));
    let (status, session) = gw
        .json(
            gw.post("/api/mcp/session")
                .header("content-type", "application/json")
                .body(r#"{"label":"dash"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let sid = session["session_id"].as_str().unwrap().to_owned();
    let call = |body: Value| {
        gw.post("/api/mcp/call")
            .header("X-Revka-Session", sid.clone())
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let (_, listed) = gw
        .json(call(
            json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }),
        ))
        .await;
    let names = crate::harness::served_only(
        listed["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned()),
    );
    assert_eq!(names, ["tool_search"], "{listed}");

    // No session header: 400. An unknown session: 401, the gateway's own when it cannot lend
    // the session's token, the MCP server's (a JSON-RPC body) passed through when the caller
    // brings a token.
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }).to_string();
    let (status, body) = gw
        .json(
            gw.post("/api/mcp/call")
                .header("content-type", "application/json")
                .body(ping.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "missing X-Revka-Session header");
    let unknown = "f".repeat(32);
    let (status, body) = gw
        .json(
            gw.post("/api/mcp/call")
                .header("X-Revka-Session", &unknown)
                .header("content-type", "application/json")
                .body(ping.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "unknown or expired MCP session");
    let (status, body) = gw
        .json(
            gw.post("/api/mcp/call")
                .header("X-Revka-Session", &unknown)
                .header("X-Revka-Mcp-Token", "0".repeat(64))
                .header("content-type", "application/json")
                .body(ping),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["jsonrpc"], "2.0", "the MCP server's answer: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("unauthorized")),
        "{body}"
    );

    call(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "tool_search", "arguments": { "query": "select:fault__progress,fault__hang" } } }))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // Streaming: the first progress event arrives while the tool is still running.
    let started = Instant::now();
    let mut resp = call(json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": { "name": "fault__progress", "arguments": { "steps": 3, "interval_ms": 400 }, "_meta": { "progressToken": 1 } } }))
    .send()
    .await
    .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = resp.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(
        first.contains("notifications/progress") && !first.contains("\"result\""),
        "{first}"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    let total = started.elapsed();
    assert!(
        total > first_at,
        "more arrived after the first progress event"
    );
    assert!(
        parse_sse(&rest)
            .iter()
            .any(|e| e.data.contains("\"result\"")),
        "the result came later"
    );

    // The call ceiling cuts a hung call's stream.
    let started = Instant::now();
    let resp = call(json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": { "name": "fault__hang", "arguments": {} } }))
        .send()
        .await
        .unwrap();
    let body = resp.bytes().await.unwrap_or_default();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "bounded by call_timeout_secs = 3: {took:?}"
    );
    // It ends with an error for the call's id, then `done`; no result.
    let events = parse_sse(&body);
    assert!(!events.iter().any(|e| e.data.contains("\"result\"")));
    let error = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find(|m| m.get("error").is_some())
        .expect("an error response");
    assert_eq!(error["id"], 4, "{error}");
    assert_eq!(error["error"]["code"], -32001, "{error}");
    assert_eq!(events.last().unwrap().event.as_deref(), Some("done"));

    // The events passthrough keeps the stream headers.
    let resp = gw
        .get(&format!("/api/mcp/session/{sid}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_config_test_validates_probes_and_is_bounded() {
    let gw = Gw::start("").await;
    let test = |body: Value| {
        gw.post("/api/mcp/servers/test")
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let server = fixture_server("fault_server").display().to_string();
    let (status, ok) = gw.json(test(json!({ "name": "t", "transport": "stdio", "command": server, "args": ["--tools", "2"], "timeout_ms": 500 }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["tool_count"], crate::harness::BUILTIN_TOOLS.len() + 2);
    // With a tool filter, as in the config: `tools` are those the daemon would register.
    let (_, filtered) = gw
        .json(test(json!({
            "name": "t", "command": server, "args": ["--tools", "2"],
            "allowed_tools": ["tool_*", "echo"], "denied_tools": ["tool_001"],
        })))
        .await;
    assert_eq!(filtered["ok"], true, "{filtered}");
    assert_eq!(filtered["tools"], json!(["echo", "tool_000"]), "{filtered}");
    assert_eq!(filtered["tool_count"], 2);
    let out = filtered["filtered"].as_array().unwrap();
    assert_eq!(out.len(), crate::harness::BUILTIN_TOOLS.len(), "{filtered}");
    assert!(out.contains(&json!("tool_001")) && out.contains(&json!("sleep")));
    for (body, error) in [
        (json!({ "name": "", "command": "x" }), "name is required"),
        (
            json!({ "name": "t", "transport": "stdio" }),
            "command is required for stdio transport",
        ),
        (
            json!({ "name": "t", "transport": "http" }),
            "url is required for http transport",
        ),
        (
            json!({ "name": "t", "transport": "carrier-pigeon", "command": "x" }),
            "unknown transport",
        ),
        (
            json!({ "name": "t", "command": "x", "denied_tools": ["a*b"] }),
            "denied_tools: invalid pattern \"a*b\": `*` is only allowed once, at the end",
        ),
    ] {
        let (status, report) = gw.json(test(body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "validation errors are ok:false with 200"
        );
        assert_eq!(report["ok"], false);
        assert!(
            report["error"].as_str().unwrap().contains(error),
            "{report}"
        );
        assert_eq!(report["latency_ms"], 0);
    }
    // A server that never answers: the 10 s ceiling.
    let started = Instant::now();
    let (_, report) = gw
        .json(test(
            json!({ "name": "t", "command": "sleep", "args": ["100"] }),
        ))
        .await;
    assert_eq!(report["ok"], false);
    assert!(started.elapsed() < Duration::from_secs(30), "hard ceiling");
    assert!(report["latency_ms"].as_u64().unwrap() >= 9_000, "{report}");
    let (status, _) = gw.json(test(json!("not an object"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = gw
        .json(
            gw.post("/api/mcp/servers/test")
                .header("content-type", "application/json")
                .body("{oops"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "malformed JSON");
    let (status, body) = gw
        .json(gw.post("/api/mcp/session").body(vec![b'x'; 65 * 1024]))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_origin_or_host_is_refused() {
    let gw = Gw::start("").await;
    let (status, _) = gw
        .json(
            gw.get("/api/health")
                .header("Origin", "http://evil.example"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = gw
        .json(gw.get("/api/health").header("Host", "evil.example"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let same = gw.url.clone();
    let (status, _) = gw.json(gw.get("/api/health").header("Origin", same)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_websocket_relays_progress_with_every_token_carrier_and_checks_the_origin() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let gw = Gw::start("").await;
    let session = gw.served.session().await;
    session
        .call_text("tool_search", json!({ "query": "select:fault__progress" }))
        .await;
    let ws_base = gw.url.replace("http://", "ws://");
    let query = format!(
        "/ws/mcp/events?session_id={}&mcp_token={}",
        session.id, session.token
    );

    // (carrier, request): Authorization header, bearer.<token> subprotocol (offered with the
    // fixed `revka` one, which the gateway selects), ?token=.
    let mut header = format!("{ws_base}{query}").into_client_request().unwrap();
    header.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", gw.token)).unwrap(),
    );
    let mut subprotocol = format!("{ws_base}{query}").into_client_request().unwrap();
    subprotocol.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("revka, bearer.{}", gw.token)).unwrap(),
    );
    let param = format!("{ws_base}{query}&token={}", gw.token)
        .into_client_request()
        .unwrap();
    for (carrier, request) in [
        ("header", header),
        ("subprotocol", subprotocol),
        ("query", param),
    ] {
        // The previous carrier's relay has let go of the session's stream.
        eventually_async("no subscriber left", async || {
            progress_subscribers(&gw).await == 0.0
        })
        .await;
        let (mut socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("{carrier}: {e}"));
        if carrier == "subprotocol" {
            assert_eq!(
                response.headers()["sec-websocket-protocol"],
                "revka",
                "the fixed protocol, never the token"
            );
        }
        // Once the relay has subscribed, make progress.
        eventually_async(format!("{carrier}: the relay subscribed"), async || {
            progress_subscribers(&gw).await == 1.0
        })
        .await;
        session
            .call(
                json!(1),
                "fault__progress",
                json!({ "steps": 2, "interval_ms": 1 }),
                Some(json!(9)),
            )
            .await;
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        assert_eq!(event["token"], 9, "{carrier}: {event}");
        assert_eq!(event["tool"], "fault__progress");
    }

    // A foreign Origin is refused before the upgrade; no token is a 401.
    let mut foreign = format!("{ws_base}{query}&token={}", gw.token)
        .into_client_request()
        .unwrap();
    foreign
        .headers_mut()
        .insert("origin", HeaderValue::from_static("http://evil.example"));
    match tokio_tungstenite::connect_async(foreign).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    match tokio_tungstenite::connect_async(format!("{ws_base}{query}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

/// Pairs a device through `POST /api/pair/code` (`{"role": role}`, or no body) and `/pair`:
/// its token.
async fn paired(gw: &Gw, role: Option<&str>) -> String {
    let mut request = gw.post("/api/pair/code");
    if let Some(role) = role {
        request = request
            .header("content-type", "application/json")
            .body(json!({ "role": role }).to_string());
    }
    let (status, body) = gw.json(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code = body["code"].as_str().unwrap().to_owned();
    let (status, body) = gw
        .json(
            gw.http
                .post(format!("{}/pair", gw.url))
                .header("X-Pairing-Code", code)
                .header("X-Pairing-Label", role.unwrap_or("default")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Finding 1: a paired token used to run any command as the daemon's user through the stdio
/// server test. Now a pairing code carries a role: spawning needs the owner; an operator
/// may restart actors and test http configs; a viewer only reads.
#[tokio::test(flavor = "multi_thread")]
async fn a_paired_token_cannot_spawn_a_process_unless_paired_as_owner() {
    let gw = Gw::start("").await;
    let viewer = paired(&gw, None).await;
    let operator = paired(&gw, Some("operator")).await;
    let owner = paired(&gw, Some("owner")).await;
    let as_token = |token: &str, method: reqwest::Method, path: &str| {
        gw.http
            .request(method, format!("{}{path}", gw.url))
            .bearer_auth(token.to_owned())
    };
    let marker = gw.served.home.path().join("spawned-by-a-paired-token");
    let stdio = json!({
        "name": "t", "transport": "stdio", "command": "sh",
        "args": ["-c", format!("touch '{}'", marker.display())],
    })
    .to_string();
    for token in [&viewer, &operator] {
        let (status, body) = gw
            .json(
                as_token(token, reqwest::Method::POST, "/api/mcp/servers/test")
                    .header("content-type", "application/json")
                    .body(stdio.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("forbidden: "),
            "{body}"
        );
    }
    assert!(!marker.exists(), "a paired token spawned a process");
    // Nor may they reload, pair or manage tokens.
    for (method, path) in [
        (reqwest::Method::POST, "/api/reload"),
        (reqwest::Method::POST, "/api/pair/code"),
        (reqwest::Method::GET, "/api/tokens"),
    ] {
        let (status, body) = gw.json(as_token(&operator, method.clone(), path)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }
    // A viewer reads; an operator also restarts.
    let restart = "/api/actors/root/mcp_servers/mcp:fault/restart";
    let (status, _) = gw
        .json(as_token(&viewer, reqwest::Method::GET, "/api/actors"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = gw
        .json(as_token(&viewer, reqwest::Method::POST, restart))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("needs the operator role; this token has the viewer role"),
        "{body}"
    );
    let (status, body) = gw
        .json(as_token(&operator, reqwest::Method::POST, restart))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An owner paired on purpose may spawn, as the file's owner token may.
    let (status, body) = gw
        .json(
            as_token(&owner, reqwest::Method::POST, "/api/mcp/servers/test")
                .header("content-type", "application/json")
                .body(stdio),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(marker.exists(), "the owner's test ran its command");
    // The roles of the gateway tokens are listed; the harness's client token has none.
    let (_, list) = gw.json(gw.get("/api/tokens")).await;
    let (gateway, client): (Vec<&Value>, Vec<&Value>) = list
        .as_array()
        .unwrap()
        .iter()
        .partition(|t| t["kind"] == "gateway");
    assert!(
        client.len() == 1 && client[0]["kind"] == "client" && client[0].get("role").is_none(),
        "{list}"
    );
    let roles: Vec<(&str, &str)> = gateway
        .iter()
        .map(|t| (t["label"].as_str().unwrap(), t["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [
            ("owner", "owner"),
            ("default", "viewer"),
            ("operator", "operator"),
            ("owner", "owner")
        ]
    );
}

/// Finding 2: any gateway token could use any MCP session by its id alone. Now a session is
/// usable through the gateway without its own token only by the gateway token that created it
/// there (the owner may watch its progress, not call in it), and other roles than owner never
/// see session ids.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_is_usable_through_the_gateway_only_by_its_creator_or_with_its_token() {
    let gw = Gw::start("").await;
    let alice = paired(&gw, Some("operator")).await;
    let bob = paired(&gw, Some("operator")).await;
    let post = |token: &str, path: &str| {
        gw.http
            .post(format!("{}{path}", gw.url))
            .bearer_auth(token.to_owned())
    };
    let (status, session) = gw
        .json(
            post(&alice, "/api/mcp/session")
                .header("content-type", "application/json")
                .body(r#"{"label":"alice-secret-work"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let sid = session["session_id"].as_str().unwrap().to_owned();
    let mcp_token = session["token"].as_str().unwrap().to_owned();
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }).to_string();
    let call = |token: &str, sid: &str, mcp: Option<&str>| {
        let mut request = post(token, "/api/mcp/call")
            .header("X-Revka-Session", sid.to_owned())
            .header("content-type", "application/json")
            .body(list.clone());
        if let Some(mcp) = mcp {
            request = request.header("X-Revka-Mcp-Token", mcp.to_owned());
        }
        request
    };
    let (status, body) = gw.json(call(&alice, &sid, None)).await;
    assert_eq!(status, StatusCode::OK, "the creator: {body}");
    assert!(body["result"]["tools"].is_array(), "{body}");
    // Anyone else without the session's token: the answer for an unknown session.
    let unknown = "f".repeat(32);
    let (status, unknown_body) = gw.json(call(&bob, &unknown, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The owner may watch any session's progress (the dashboard's Sessions view), but calls in
    // it only with its token, as anyone else.
    for (token, watches) in [(&bob, false), (&gw.token, true)] {
        let (status, body) = gw.json(call(token, &sid, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body, unknown_body);
        let resp = gw
            .http
            .get(format!("{}/api/mcp/session/{sid}/events", gw.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let expected = if watches {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(resp.status(), expected);
    }
    // With the session's own token, anyone may (the MCP server checks it); a wrong one fails.
    let (status, body) = gw.json(call(&bob, &sid, Some(&mcp_token))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = gw.json(call(&bob, &sid, Some(&"0".repeat(64)))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The WebSocket relay: the same rule.
    let ws = format!(
        "{}/ws/mcp/events?session_id={sid}&token={bob}",
        gw.url.replace("http://", "ws://")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    use futures::StreamExt;
    let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let frame: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(
        frame,
        json!({ "error": "daemon-unreachable", "detail": "unknown or expired MCP session" })
    );
    // Session ids and labels: for the owner only.
    for (token, shown) in [(&bob, false), (&alice, false), (&gw.token, true)] {
        let (_, tree) = gw
            .json(
                gw.http
                    .get(format!("{}/api/actors", gw.url))
                    .bearer_auth(token),
            )
            .await;
        let text = tree.to_string();
        assert_eq!(text.contains(&sid), shown, "{text}");
        assert_eq!(text.contains("alice-secret-work"), shown, "{text}");
    }
}

/// Finding 3: ten bad tokens from any local process locked the owner out for five minutes
/// (every local process is 127.0.0.1). Now failures only slow themselves down, and the owner's
/// `revka status` works throughout.
#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_from_any_local_process_never_lock_the_owner_out() {
    let gw = Gw::start("").await;
    let bad = |from: [u8; 4]| {
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(from))
            .build()
            .unwrap();
        let url = format!("{}/api/actors", gw.url);
        async move {
            client
                .get(url)
                .bearer_auth("rvk_wrong")
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Twelve from the address every local process has, four more from elsewhere in 127/8.
    let attempts: Vec<_> = (0..16u8)
        .map(|i| bad([127, 0, 0, if i < 12 { 1 } else { i - 10 }]))
        .collect();
    for status in futures::future::join_all(attempts).await {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let out = gw
        .served
        .home
        .command()
        .env("RUST_LOG", "off")
        .env("NO_COLOR", "1")
        .args(["status"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("mcp_servers"));
    let (status, _) = gw.json(gw.get("/api/actors")).await;
    assert_eq!(status, StatusCode::OK);
}

/// Finding 5: any loopback origin (a dev server on `localhost:3000`) used to pass. Now only the
/// gateway's own origin and `[gateway] allowed_origins` do, WebSocket upgrades included.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_gateways_own_origin_and_the_configured_ones_are_accepted() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let gw = Gw::start("[gateway]\nallowed_origins = [\"http://localhost:5173\"]\n").await;
    let with_origin = |origin: &str| gw.get("/api/health").header("Origin", origin.to_owned());
    for (origin, expected) in [
        ("http://localhost:3000", StatusCode::FORBIDDEN),
        ("http://127.0.0.1:3000", StatusCode::FORBIDDEN),
        (gw.url.as_str(), StatusCode::OK),
        ("http://localhost:5173", StatusCode::OK),
    ] {
        let (status, body) = gw.json(with_origin(origin)).await;
        assert_eq!(status, expected, "{origin}: {body}");
    }
    let session = gw.served.session().await;
    let ws = format!(
        "{}/ws/mcp/events?session_id={}&mcp_token={}&token={}",
        gw.url.replace("http://", "ws://"),
        session.id,
        session.token,
        gw.token
    );
    let upgrade = |origin: &'static str| {
        let mut request = ws.clone().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_static(origin));
        tokio_tungstenite::connect_async(request)
    };
    match upgrade("http://localhost:3000").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        Err(other) => panic!("expected 403, got {other}"),
        Ok((_, resp)) => panic!("expected 403, got {}", resp.status()),
    }
    upgrade("http://localhost:5173").await.expect("allowed");
}

/// Finding 9 (part): `/api/reload` ignored the 64 KiB body cap, and the WebSocket echoed the
/// `bearer.<token>` subprotocol, token and all. Now the reload is refused with 413, and the
/// WebSocket selects the fixed `revka` subprotocol (400 if the client did not offer it).
#[tokio::test(flavor = "multi_thread")]
async fn reload_caps_its_body_and_the_websocket_never_echoes_the_token() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let gw = Gw::start("").await;
    let (status, body) = gw
        .json(gw.post("/api/reload").body(vec![b'x'; 65 * 1024]))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (_, root) = gw.json(gw.get("/api/actors/root")).await;
    assert_eq!(
        root["details"]["reloads"],
        json!([]),
        "nothing was reloaded"
    );

    let session = gw.served.session().await;
    let ws = format!(
        "{}/ws/mcp/events?session_id={}&mcp_token={}",
        gw.url.replace("http://", "ws://"),
        session.id,
        session.token
    );
    let offering = |protocols: String| {
        let mut request = ws.clone().into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&protocols).unwrap(),
        );
        tokio_tungstenite::connect_async(request)
    };
    let (_, response) = offering(format!("revka, bearer.{}", gw.token))
        .await
        .expect("upgraded");
    let selected = response.headers()["sec-websocket-protocol"]
        .to_str()
        .unwrap();
    assert_eq!(selected, "revka");
    match offering(format!("bearer.{}", gw.token)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            let error = body["error"].as_str().unwrap();
            assert!(error.contains("\"revka\" subprotocol"), "{error}");
            assert!(!error.contains(&gw.token), "{error}");
        }
        Err(other) => panic!("expected 400, got {other}"),
        Ok((_, resp)) => panic!("expected 400, got {:?}", resp.headers()),
    }
}
