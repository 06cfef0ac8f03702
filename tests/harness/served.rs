//! The served-session helper: a real daemon serving the fault fixture as server `fault`
//! ([`Served`]), its MCP sessions ([`Session`]) and their event streams ([`EventStream`]), with
//! the SSE and JSON-RPC bits the tests share.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use revka_mcp::sse::{SseEvent, SseParser};
use serde_json::{Value, json};

use super::{Gateway, TestDaemon, TestHome, eventually_async, fixture_server};

/// A running daemon with the fault fixture as server `fault`, and an HTTP client.
pub struct Served {
    pub home: TestHome,
    pub daemon: TestDaemon,
    pub url: String,
    pub base: String,
    pub http: reqwest::Client,
    pub record: PathBuf,
}

impl Served {
    /// Starts the daemon; `extra` is appended to the config (e.g. a `[sessions]` table).
    pub async fn start(extra: &str) -> Self {
        Self::start_with_env(extra, &[]).await
    }

    /// [`Served::start`] with extra environment variables for the daemon (e.g. `RUST_LOG`).
    pub async fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Self {
        Self::start_configured("", &[], extra, env).await
    }

    /// [`Served::start_with_env`] with `mcp` added to the `[mcp]` table (e.g.
    /// `deferred_loading = false`) and `args` to the fault server's own.
    pub async fn start_configured(
        mcp: &str,
        args: &[&str],
        extra: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let home = TestHome::new();
        let record = home.path().join("record.jsonl");
        let args: String = args.iter().map(|a| format!(", {a:?}")).collect();
        home.write_config(&format!(
            r#"
[mcp]
enabled = true
{mcp}

[[mcp.servers]]
name = "fault"
command = "{server}"
args = ["--record", "{record}", "--instructions", "Fault tools for tests."{args}]
{extra}
"#,
            server = fixture_server("fault_server").display(),
            record = record.display(),
        ));
        // A client token for the standard path, in the store the daemon loads at start.
        home.client_token();
        let daemon = TestDaemon::start(&home, env);
        let discovery = home.path().join("mcp.json");
        eventually_async("mcp.json written", async || discovery.exists()).await;
        let doc: Value = serde_json::from_slice(&std::fs::read(&discovery).unwrap()).unwrap();
        let url = doc["url"].as_str().unwrap().to_owned();
        let base = url.trim_end_matches("/mcp").to_owned();
        let served = Self {
            home,
            daemon,
            url,
            base,
            // A generous ceiling, so a lost answer fails its test instead of hanging the suite.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            record,
        };
        served.wait_for_tool("fault__echo").await;
        served
    }

    /// Waits until the daemon has connected `fault` (its tools appear in a fresh session).
    pub async fn wait_for_tool(&self, tool: &str) {
        let session = self.session().await;
        let query = json!({ "query": format!("select:{tool}") });
        eventually_async(format!("{tool} available"), async || {
            let text = session.call_text("tool_search", query.clone()).await;
            !text.contains("Not found") && text.contains(tool)
        })
        .await;
    }

    /// A new session.
    pub async fn session(&self) -> Session {
        self.session_with(None).await
    }

    /// A session minted by `POST /session`, with `label` if one is given.
    pub async fn session_with(&self, label: Option<&str>) -> Session {
        let mut request = self.http.post(format!("{}/session", self.base));
        if let Some(label) = label {
            request = request
                .header("content-type", "application/json")
                .body(json!({ "label": label }).to_string());
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        Session {
            url: self.url.clone(),
            id: body["session_id"].as_str().unwrap().to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
            http: self.http.clone(),
        }
    }

    /// A client token for the standard Streamable HTTP path (`Authorization: Bearer`).
    pub fn client_token(&self) -> String {
        self.home.client_token()
    }

    /// `GET /health` of the MCP server, as JSON.
    pub async fn health(&self) -> Value {
        json_of(self.http.get(format!("{}/health", self.base))).await
    }

    /// The gateway's URL and the owner token.
    pub fn gateway(&self) -> (String, String) {
        let gateway = Gateway::of(self.home.path());
        (gateway.url, gateway.token)
    }

    /// The gateway's `/metrics` exposition text (owner token); panics unless it answers 200.
    pub async fn metrics_text(&self) -> String {
        let (gateway, token) = self.gateway();
        let resp = self
            .http
            .get(format!("{gateway}/metrics"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.unwrap()
    }

    /// The gateway's `/metrics`, parsed.
    pub async fn metrics(&self) -> Vec<revka_actors::metrics::Sample> {
        revka_actors::metrics::parse_exposition(&self.metrics_text().await).unwrap()
    }

    /// `GET path` on the daemon's gateway with the owner token, as JSON.
    pub async fn api(&self, path: &str) -> Value {
        let (gateway, token) = self.gateway();
        json_of(
            self.http
                .get(format!("{gateway}{path}"))
                .bearer_auth(&token),
        )
        .await
    }

    /// Messages the fault server received.
    pub fn recorded(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// A session's credentials and requests.
#[derive(Clone)]
pub struct Session {
    pub url: String,
    pub id: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Session {
    pub fn post(&self) -> reqwest::RequestBuilder {
        self.http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("X-Revka-Session", &self.id)
            .header("content-type", "application/json")
    }

    /// A JSON-RPC request answered with JSON: (status, body).
    pub async fn rpc(&self, body: Value) -> (StatusCode, Value) {
        let resp = self.post().body(body.to_string()).send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Sends JSON-RPC request `id` (`method`, `params`) and returns its final message (the
    /// one with a `result` or an `error` for `id`), whether the daemon answers with JSON or an
    /// SSE stream; never panics: a failed request or a missing answer is the error's text.
    pub async fn final_message(
        &self,
        id: impl Into<Value>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id: Value = id.into();
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let resp = self
            .post()
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        let sse = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let bytes = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        let messages: Vec<Value> = if sse {
            parse_sse(&bytes)
                .iter()
                .filter_map(|e| serde_json::from_str(&e.data).ok())
                .collect()
        } else {
            serde_json::from_slice(&bytes).into_iter().collect()
        };
        messages
            .into_iter()
            .find(|m| m["id"] == id && (m.get("result").is_some() || m.get("error").is_some()))
            .ok_or_else(|| {
                format!(
                    "HTTP {status}: no final message in {:?}",
                    String::from_utf8_lossy(&bytes)
                )
            })
    }

    /// A `tools/call`, its whole SSE stream parsed.
    pub async fn call(
        &self,
        id: Value,
        name: &str,
        arguments: Value,
        progress_token: Option<Value>,
    ) -> Vec<SseEvent> {
        let mut params = json!({ "name": name, "arguments": arguments });
        if let Some(t) = progress_token {
            params["_meta"] = json!({ "progressToken": t });
        }
        let resp = self
            .post()
            .body(
                json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params })
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        parse_sse(&resp.bytes().await.unwrap())
    }

    /// The text of a tool call's result.
    pub async fn call_text(&self, name: &str, arguments: Value) -> String {
        let events = self.call(next_id(), name, arguments, None).await;
        let result = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
            .find(|m| m.get("result").is_some());
        result
            .map(|r| {
                r["result"]["content"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default()
    }

    /// `tool_search` and the external tools listed (the always-listed built-in health and
    /// dashboard tools left out).
    pub async fn served_tool_names(&self) -> Vec<String> {
        served_only(self.tool_names().await)
    }

    pub async fn tool_names(&self) -> Vec<String> {
        let (_, body) = self
            .rpc(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
            .await;
        body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Sends `request` and reads its answer as JSON.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// A JSON-RPC id not used before in this test process: MCP ids must be unique in a session,
/// and Revka refuses one already in flight.
pub fn next_id() -> Value {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000);
    json!(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

pub fn parse_sse(bytes: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new(16 << 20);
    parser.push(bytes);
    let mut out = Vec::new();
    while let Some(e) = parser.next_event() {
        out.push(e.unwrap());
    }
    out
}

/// `tool_search` and external (`server__tool`) names only, in their order.
pub fn served_only(names: impl IntoIterator<Item = String>) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| n == "tool_search" || n.contains("__"))
        .collect()
}

/// A session's `GET /session/{id}/events`, read event by event (comments skipped).
pub struct EventStream {
    resp: reqwest::Response,
    parser: SseParser,
}

impl EventStream {
    pub async fn open(s: &Served, session: &Session) -> Self {
        let mut resp = s
            .http
            .get(format!("{}/session/{}/events", s.base, session.id))
            .bearer_auth(&session.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut parser = SseParser::new(1 << 20);
        // Subscribed once the first bytes (the `connected` comment) are in.
        let first = tokio::time::timeout(Duration::from_secs(30), resp.chunk())
            .await
            .expect("the event stream answers")
            .unwrap()
            .expect("the event stream is open");
        parser.push(&first);
        Self { resp, parser }
    }

    /// The next event (generous deadline).
    pub async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(event) = self.parser.next_event() {
                return event.unwrap();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.resp.chunk())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .expect("the event stream ended");
            self.parser.push(&chunk);
        }
    }
}

/// The value of the sample `name` with `labels` among `samples`, if there is one.
pub fn metric_value(
    samples: &[revka_actors::metrics::Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|&(l, v)| s.label(l) == Some(v)))
        .map(|s| s.value)
}
