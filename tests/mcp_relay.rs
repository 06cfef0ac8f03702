//! What upstream servers send to Revka's clients, end to end through the real daemon: the
//! official Python SDK client answers server-everything's sampling and elicitation through
//! Revka (and a client without the capability gets an error at once); a server killed while
//! its sampling request waits for the client ends the call with an error and is restarted;
//! client answers with a wrong id, twice, or after the call are ignored; a server flooding log
//! messages is bounded and counted while other sessions work; `logging/setLevel` reaches the
//! servers as the most verbose level any live session asked for; `roots/list` during a call is
//! the configured roots plus the session's working directory.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use revka::mcp_http::upstream::{LOG_BURST, LOG_PER_SEC};
use revka_mcp::sse::SseParser;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{
    Gateway, Served, Session, TestDaemon, TestHome, eventually_async, metric_value, next_id,
    npm_bin, test_cache, venv_bin,
};
use crate::mcp_standard::StdSession;

const BOTH: &str = "application/json, text/event-stream";

// ==== Helpers ====

/// An SSE response (a call's stream, or `GET /mcp`) read one JSON-RPC message at a time; named
/// events (`done`) and comments are skipped.
struct Messages {
    response: reqwest::Response,
    parser: SseParser,
}

impl Messages {
    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        Self {
            response,
            parser: SseParser::new(16 << 20),
        }
    }

    /// The next message within `wait`; `None` if none comes in time or the stream ends.
    async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(event) = self.parser.next_event() {
                let event = event.unwrap();
                if event.event.is_none() && !event.data.is_empty() {
                    return Some(serde_json::from_str(&event.data).unwrap());
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.parser.push(&chunk);
        }
    }

    /// The next message (generous deadline).
    async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(30))
            .await
            .expect("a message within 30 s")
    }
}

/// A standard session whose client declared `capabilities` in its `initialize`.
async fn open_std(url: &str, token: &str, capabilities: Value) -> StdSession {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": capabilities,
            "clientInfo": { "name": "revka-relay-tests", "version": "1" },
        },
    });
    let response = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", BOTH)
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let session = StdSession {
        url: url.to_owned(),
        id,
        token: Some(token.to_owned()),
        http,
    };
    let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    assert_eq!(session.send(note).await.status(), StatusCode::ACCEPTED);
    session
}

/// Activates the deferred `tools` in a standard session (`tool_search` with `select:`).
async fn activate(session: &StdSession, tools: &[&str]) {
    let query = format!("select:{}", tools.join(","));
    let found = call_text(session, "tool_search", json!({ "query": query })).await;
    for tool in tools {
        assert!(found.contains(tool), "{found}");
    }
}

/// `tools/call` of `name` in a standard session, its stream open.
async fn start_call(session: &StdSession, name: &str, arguments: Value) -> (Value, Messages) {
    let id = next_id();
    let body = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": name, "arguments": arguments },
    });
    (id, Messages::new(session.send(body).await))
}

/// Reads a call's stream up to its response, which is returned.
async fn response_of(id: &Value, stream: &mut Messages) -> Value {
    loop {
        let message = stream.next().await;
        if message.get("method").is_none() && &message["id"] == id {
            return message;
        }
    }
}

/// The first text of a call's result in a standard session.
async fn call_text(session: &StdSession, name: &str, arguments: Value) -> String {
    let (id, mut stream) = start_call(session, name, arguments).await;
    let response = response_of(&id, &mut stream).await;
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{response}"))
        .to_owned()
}

/// The session's `GET /mcp` stream.
async fn open_stream(session: &StdSession) -> Messages {
    let response = session
        .http
        .get(&session.url)
        .bearer_auth(session.token.as_deref().unwrap())
        .header("mcp-session-id", &session.id)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    Messages::new(response)
}

/// `DELETE /mcp` of a standard session.
async fn end(session: &StdSession) {
    let response = session
        .http
        .delete(&session.url)
        .bearer_auth(session.token.as_deref().unwrap())
        .header("mcp-session-id", &session.id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// The gateway's `/metrics`, value of the sample `name` with `labels` (0 when absent).
async fn metric(served: &Served, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&served.metrics().await, name, labels).unwrap_or(0.0)
}

// ==== server-everything and the official Python SDK client ====

/// A daemon serving the official server-everything (stdio) as `everything`, without deferred
/// loading, and a client token for it.
struct Everything {
    home: TestHome,
    _daemon: TestDaemon,
    url: String,
    token: String,
}

impl Everything {
    async fn start(cache: &std::path::Path) -> Self {
        let home = TestHome::new();
        home.write_config(&format!(
            "[mcp]\nenabled = true\ndeferred_loading = false\n\n[[mcp.servers]]\nname = \"everything\"\ncommand = \"{}\"\nargs = [\"stdio\"]\n",
            npm_bin(cache, "mcp-server-everything").display()
        ));
        let token = home.client_token();
        let daemon = TestDaemon::start(&home, &[]);
        let discovery = home.path().join("mcp.json");
        eventually_async("mcp.json written", async || discovery.exists()).await;
        let doc: Value = serde_json::from_slice(&std::fs::read(&discovery).unwrap()).unwrap();
        let url = doc["url"].as_str().unwrap().to_owned();
        let everything = Self {
            home,
            _daemon: daemon,
            url,
            token,
        };
        everything
            .wait_for_tool("everything__trigger-sampling-request")
            .await;
        everything
    }

    /// Waits until `tool` is listed (server-everything registers its client-dependent tools
    /// after the handshake).
    async fn wait_for_tool(&self, tool: &str) {
        let session = open_std(&self.url, &self.token, json!({})).await;
        eventually_async(format!("{tool} listed"), async || {
            let (_, listed) = session.rpc("tools/list", json!({})).await;
            listed["result"]["tools"]
                .as_array()
                .is_some_and(|tools| tools.iter().any(|t| t["name"] == tool))
        })
        .await;
    }

    /// `tests/clients/python_sdk_relay.py` in `mode`, running.
    fn client(&self, cache: &std::path::Path, mode: &str) -> tokio::process::Child {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients/python_sdk_relay.py");
        tokio::process::Command::new(venv_bin(cache, "python"))
            .arg(script)
            .arg(mode)
            .env("REVKA_URL", &self.url)
            .env("REVKA_CLIENT_TOKEN", &self.token)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }
}

/// The official Python SDK client answers server-everything's sampling and elicitation
/// through Revka with its callbacks, gets the server's log messages once it set a level, and a
/// client that declared no sampling gets an error result for the sampling tool at once.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_client_answers_sampling_and_elicitation_of_server_everything() {
    let Some(cache) = test_cache() else { return };
    let everything = Everything::start(&cache).await;
    let child = everything.client(&cache, "relay");
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the Python client finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let out: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    // Sampling: the server's request reached the callback as sent, its answer the server.
    assert_eq!(
        out["sampling_params"],
        json!([{ "text": "Resource trigger-sampling-request context: relay me", "max_tokens": 21 }]),
        "{out}"
    );
    let sampled = out["sampling"]["texts"][0].as_str().unwrap_or_default();
    assert!(
        sampled.contains("python-sdk-relay-model")
            && sampled.contains("sampled by the python client"),
        "{out}"
    );
    assert_eq!(out["sampling"]["is_error"], false, "{out}");

    // Elicitation: accepted with the callback's content.
    assert_eq!(
        out["elicitation_params"].as_array().unwrap().len(),
        1,
        "{out}"
    );
    let elicited = out["elicitation"]["texts"].to_string();
    assert!(
        elicited.contains("Name: Ada Lovelace") && elicited.contains("Agreed to terms: true"),
        "{out}"
    );

    // Logging: at debug, the simulated log messages reach the logging callback.
    assert!(!out["logs"].as_array().unwrap().is_empty(), "{out}");

    // Without the capability: an error, at once (not the call's timeout).
    let refused = &out["without_sampling"];
    assert!(
        refused["is_error"] == true || refused["error"].is_object(),
        "{out}"
    );
    assert!(refused["secs"].as_f64().unwrap() < 10.0, "{out}");
    assert!(refused.to_string().contains("sampling"), "{out}");

    // The relays are counted.
    let metrics_text = gateway_metrics(&Gateway::of(everything.home.path())).await;
    assert!(
        metrics_text
            .lines()
            .any(|l| l.starts_with("revka_relayed_requests_total{")
                && l.contains("server=\"everything\"")
                && l.contains("method=\"sampling/createMessage\"")
                && l.contains("outcome=\"result\"")),
        "{metrics_text}"
    );
}

async fn gateway_metrics(gateway: &Gateway) -> String {
    reqwest::Client::new()
        .get(format!("{}/metrics", gateway.url))
        .bearer_auth(&gateway.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// server-everything killed (SIGKILL) while its sampling request waits for the client, whose
/// callback never answers: the client's call ends with an error, nothing hangs, and the
/// supervisor restarts the server, whose tools work again.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_while_its_sampling_request_waits_fails_the_call_and_is_restarted() {
    let Some(cache) = test_cache() else { return };
    let everything = Everything::start(&cache).await;
    let gateway = Gateway::of(everything.home.path());
    let mut child = everything.client(&cache, "kill");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let next_line = async |lines: &mut tokio::io::Lines<_>| {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the Python client reports within 60 s")
            .unwrap()
            .expect("the Python client reports")
    };
    let phase: Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    assert_eq!(phase["phase"], "sampling");

    let pid = gateway.server_pid("everything").await.expect("a pid");
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let started = Instant::now();
    let out: Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
    let call = &out["call"];
    assert!(
        call["is_error"] == true || call["error"].is_object(),
        "the call fails: {out}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "{out}");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the Python client exits")
        .unwrap();
    assert!(status.success(), "{out}");

    // Restarted by the supervisor: a new process, serving calls.
    eventually_async("everything restarted", async || {
        gateway
            .server_pid("everything")
            .await
            .is_some_and(|new| new != pid)
    })
    .await;
    let session = open_std(&everything.url, &everything.token, json!({})).await;
    let echoed = eventually_async("everything answers again", async || {
        let text = call_text(&session, "everything__echo", json!({ "message": "back" })).await;
        text.contains("back").then_some(text)
    })
    .await;
    assert!(echoed.contains("Echo: back"), "{echoed}");
}

// ==== Bad input ====

/// A client answer to a relayed sampling request with a wrong id, the same answer twice, and
/// an answer after the call ended: each is accepted (202) and ignored; the server gets exactly
/// one answer, and the session keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_repeated_and_late_client_answers_are_accepted_and_ignored() {
    let served = Served::start("").await;
    let session = open_std(
        &served.url,
        &served.client_token(),
        json!({ "sampling": {} }),
    )
    .await;
    activate(&session, &["fault__sample", "fault__echo"]).await;
    let answer = |id: Value, text: &str| {
        json!({
            "jsonrpc": "2.0", "id": id,
            "result": {
                "role": "assistant", "model": "relay-test",
                "content": { "type": "text", "text": text },
            },
        })
    };
    let accepted = async |body: Value| {
        let response = session.send(body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    };

    let (call_id, mut stream) = start_call(&session, "fault__sample", json!({})).await;
    let request = stream.next().await;
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    assert_eq!(request["params"]["maxTokens"], 16, "{request}");
    let rq = request["id"].clone();
    assert!(rq.as_str().unwrap().starts_with("revka-rq-"), "{request}");

    // Wrong ids: Revka's format but never issued, a number, the server's own id.
    for wrong in [json!("revka-rq-999999"), json!(7), json!("srv-1")] {
        accepted(answer(wrong, "wrong id")).await;
    }
    accepted(answer(rq.clone(), "answered once")).await;
    accepted(answer(rq.clone(), "answered twice")).await;
    let response = response_of(&call_id, &mut stream).await;
    let text = response["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("answered once"), "{response}");

    // After the call: the same id, and an error under it.
    accepted(answer(rq.clone(), "too late")).await;
    accepted(json!({ "jsonrpc": "2.0", "id": rq, "error": { "code": -1, "message": "late" } }))
        .await;

    // The server was answered exactly once.
    let answers: Vec<Value> = served
        .recorded()
        .into_iter()
        .filter(|m| m.get("method").is_none() && m["result"]["model"] == "relay-test")
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["result"]["content"]["text"], "answered once");

    // The session works: a new relayed request under a new id, and a plain call.
    let (call_id, mut stream) = start_call(&session, "fault__sample", json!({})).await;
    let request = stream.next().await;
    assert_ne!(request["id"], rq, "{request}");
    accepted(answer(request["id"].clone(), "second sample")).await;
    let response = response_of(&call_id, &mut stream).await;
    assert!(response.to_string().contains("second sample"), "{response}");
    let echoed = call_text(&session, "fault__echo", json!({ "text": "still here" })).await;
    assert!(echoed.contains("still here"), "{echoed}");
    assert_eq!(served.health().await["status"], "ok");
}

/// A server flooding log messages that relate to no call: a session that set a level gets at
/// most the flood bucket's worth, one whose level is above them gets none, the rest are
/// counted as dropped, and another session's calls keep working meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_flooding_log_messages_is_bounded_counted_and_harms_no_other_session() {
    const FLOOD: u64 = 5_000;
    let other = format!(
        "[[mcp.servers]]\nname = \"other\"\ncommand = \"{}\"\n",
        crate::harness::fixture_server("fault_server").display()
    );
    let served = Served::start_configured("", &[], &other, &[]).await;
    served.wait_for_tool("other__echo").await;
    let token = served.client_token();
    let verbose = open_std(&served.url, &token, json!({})).await;
    let quiet = open_std(&served.url, &token, json!({})).await;
    for (session, level) in [(&verbose, "debug"), (&quiet, "error")] {
        let (status, body) = session
            .rpc("logging/setLevel", json!({ "level": level }))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["result"], json!({}), "{body}");
    }
    let mut verbose_stream = open_stream(&verbose).await;
    let mut quiet_stream = open_stream(&quiet).await;
    let busy = open_std(&served.url, &token, json!({})).await;
    activate(&busy, &["other__echo", "fault__echo"]).await;
    let flooder = open_std(&served.url, &token, json!({})).await;
    activate(&flooder, &["fault__flood_logs"]).await;

    let started = Instant::now();
    let answer = call_text(
        &flooder,
        "fault__flood_logs",
        json!({ "count": FLOOD, "level": "warning" }),
    )
    .await;
    assert_eq!(answer, format!("flooding {FLOOD} log messages at warning"));
    // Another session calls meanwhile, until every message is accounted for.
    let labels = |outcome| [("server", "fault"), ("outcome", outcome)];
    let name = "revka_server_log_messages_total";
    let mut calls = 0;
    let (delivered, dropped, took) = loop {
        let text = format!("call {calls}");
        let echoed = tokio::time::timeout(
            Duration::from_secs(10),
            call_text(&busy, "other__echo", json!({ "text": text })),
        )
        .await
        .expect("a call during the flood answers promptly");
        assert!(echoed.contains(&text), "{echoed}");
        calls += 1;
        let delivered = metric(&served, name, &labels("delivered")).await;
        let dropped = metric(&served, name, &labels("dropped")).await;
        if delivered + dropped >= FLOOD as f64 {
            break (delivered, dropped, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{delivered} delivered and {dropped} dropped after a minute"
        );
    };
    assert_eq!(delivered + dropped, FLOOD as f64);
    assert!(dropped > 0.0, "{delivered} delivered");
    let bound = LOG_BURST + LOG_PER_SEC * took.as_secs_f64() + 1.0;
    assert!(
        (LOG_BURST..=bound).contains(&delivered),
        "{delivered} delivered in {took:?}, bound {bound}"
    );

    // The verbose session got exactly the messages let through, in order.
    let mut seen = 0u64;
    while (seen as f64) < delivered {
        let message = verbose_stream.next().await;
        if message["method"] == "notifications/message" {
            assert_eq!(message["params"]["level"], "warning", "{message}");
            seen += 1;
        }
    }
    // Nothing more for it, and nothing for the session that asked for errors only.
    let flood = |m: &Option<Value>| {
        m.as_ref()
            .is_some_and(|m| m["method"] == "notifications/message")
    };
    assert!(!flood(
        &verbose_stream.next_within(Duration::from_millis(500)).await
    ));
    assert!(!flood(
        &quiet_stream.next_within(Duration::from_millis(500)).await
    ));
    // The flooding server itself still serves calls.
    let echoed = call_text(&busy, "fault__echo", json!({ "text": "after" })).await;
    assert!(echoed.contains("after"), "{echoed}");
}

// ==== Logging and roots ====

/// `logging/setLevel` reaches a server that declares `logging` as the most verbose level any
/// live session asked for, lowered when that session ends and back to `info` when none is left;
/// a level that does not exist is an invalid-params error.
#[tokio::test(flavor = "multi_thread")]
async fn set_level_reaches_the_server_as_the_most_verbose_level_of_live_sessions() {
    let served = Served::start_configured("", &["--logging"], "", &[]).await;
    let token = served.client_token();
    let levels = || {
        served
            .recorded()
            .into_iter()
            .filter(|m| m["method"] == "logging/setLevel")
            .map(|m| m["params"]["level"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let debug = open_std(&served.url, &token, json!({})).await;
    let warning = open_std(&served.url, &token, json!({})).await;
    let (_, refused) = debug
        .rpc("logging/setLevel", json!({ "level": "loud" }))
        .await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");

    let set = async |session: &StdSession, level: &str| {
        let (status, body) = session
            .rpc("logging/setLevel", json!({ "level": level }))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["result"], json!({}), "{body}");
    };
    set(&debug, "debug").await;
    eventually_async("debug asked of the server", async || levels() == ["debug"]).await;
    // A quieter session changes nothing while the verbose one lives.
    set(&warning, "warning").await;
    end(&debug).await;
    eventually_async("warning asked once debug's session ended", async || {
        levels() == ["debug", "warning"]
    })
    .await;
    end(&warning).await;
    eventually_async("info once no session asks", async || {
        levels() == ["debug", "warning", "info"]
    })
    .await;
}

/// A server's `roots/list` while serving a call is answered with the configured roots and the
/// calling session's working directory (given at `POST /session`).
#[tokio::test(flavor = "multi_thread")]
async fn roots_list_during_a_call_is_the_configured_roots_and_the_sessions_cwd() {
    let root_dir = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let root = root_dir.path().canonicalize().unwrap();
    let mcp = format!("roots = [{:?}]", root.display().to_string());
    let served = Served::start_configured(&mcp, &[], "", &[]).await;
    let created: Value = served
        .http
        .post(format!("{}/session", served.base))
        .header("content-type", "application/json")
        .body(json!({ "cwd": cwd.path() }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = Session {
        url: served.url.clone(),
        id: created["session_id"].as_str().unwrap().to_owned(),
        token: created["token"].as_str().unwrap().to_owned(),
        http: served.http.clone(),
    };
    let cwd = created["cwd"].as_str().unwrap();
    let found = session
        .call_text("tool_search", json!({ "query": "select:fault__roots" }))
        .await;
    assert!(found.contains("fault__roots"), "{found}");
    let text = session.call_text("fault__roots", json!({})).await;
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
    let uris: Vec<&str> = answer["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        [
            format!("file://{}", root.display()),
            format!("file://{cwd}")
        ],
        "{answer}"
    );
}
