//! The dashboard's backend for the Servers view against the real daemon: the config editor
//! (`GET /api/config/servers`, `PUT|DELETE /api/config/servers/{name}` with `If-Match`)
//! writes `config.toml` with its comments kept, refuses a stale or invalid edit with the file
//! untouched, and reloads; `GET /api/servers/stats` shows the calls made through the MCP
//! server per server.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Gateway, Served, TestDaemon, TestHome, eventually_async, fixture_server};

/// Comments and keys the editor must keep: one in the fault server's own table (it comes
/// right after its `args`), one in a table of its own.
const EXTRA: &str = "tool_timeout_secs = 60 # the fault server's own timeout
# ---- the rest, by hand ----

[sessions]
idle_timeout_secs = 900 # mine
";

struct Editor {
    served: Served,
    gateway: String,
    token: String,
}

impl Editor {
    async fn start(env: &[(&str, &str)]) -> Self {
        let served = Served::start_with_env(EXTRA, env).await;
        let (gateway, token) = served.gateway();
        Self {
            served,
            gateway,
            token,
        }
    }

    fn config(&self) -> Vec<u8> {
        std::fs::read(self.served.home.path().join("config.toml")).unwrap()
    }

    fn request(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.served
            .http
            .request(method, format!("{}{path}", self.gateway))
            .bearer_auth(token)
    }

    async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = request.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self) -> Value {
        let (status, body) =
            Self::send(self.request(Method::GET, "/api/config/servers", &self.token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// `PUT` (with `body`) or `DELETE` of server `name`, with `If-Match` when `version` is given.
    async fn write(
        &self,
        method: Method,
        name: &str,
        version: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, &format!("/api/config/servers/{name}"), &self.token);
        if let Some(version) = version {
            request = request.header("If-Match", format!("\"{version}\""));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        Self::send(request).await
    }

    async fn actor(&self, name: &str) -> (StatusCode, Value) {
        Self::send(self.request(
            Method::GET,
            &format!("/api/actors/root/mcp_servers/mcp:{name}"),
            &self.token,
        ))
        .await
    }

    /// A token paired with `role` through `POST /api/pair/code` and `POST /pair`.
    async fn paired(&self, role: &str) -> String {
        let (status, body) = Self::send(
            self.request(Method::POST, "/api/pair/code", &self.token)
                .header("content-type", "application/json")
                .body(json!({ "role": role }).to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let code = body["code"].as_str().unwrap().to_owned();
        let (status, body) = Self::send(
            self.served
                .http
                .post(format!("{}/pair", self.gateway))
                .header("X-Pairing-Code", code)
                .header("X-Pairing-Label", role),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_editor_adds_changes_and_removes_servers_keeping_the_files_comments() {
    let e = Editor::start(&[]).await;
    let original = e.config();
    let text = String::from_utf8(original.clone()).unwrap();

    // GET: the entries as written.
    let listed = e.get().await;
    let path = listed["path"].as_str().unwrap();
    assert!(
        path.starts_with('/') && path.ends_with("/config.toml"),
        "{listed}"
    );
    assert_eq!(listed["exists"], true);
    let v0 = listed["version"].as_str().unwrap().to_owned();
    assert_eq!(v0.len(), 64, "{listed}");
    let servers = listed["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{listed}");
    assert_eq!(servers[0]["name"], "fault");
    assert_eq!(servers[0]["args"][0], "--record");
    assert_eq!(servers[0]["tool_timeout_secs"], 60);

    // Without If-Match: 428, nothing written.
    let echo = json!({ "command": fixture_server("echo_server") }).to_string();
    let (status, body) = e.write(Method::PUT, "echo", None, Some(&echo)).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("If-Match"),
        "{body}"
    );
    // A body that is not an entry: 400.
    for bad in ["{", "{\"comand\": \"x\"}", "{\"name\": \"other\"}"] {
        let (status, body) = e.write(Method::PUT, "echo", Some(&v0), Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(e.config(), original);

    // PUT add: written after the last entry, reloaded, running.
    let (status, body) = e.write(Method::PUT, "echo", Some(&v0), Some(&echo)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v1 = body["version"].as_str().unwrap().to_owned();
    assert_ne!(v1, v0);
    let applied = body["reload"]["applied"].as_array().unwrap();
    assert!(
        applied.iter().any(|a| a.as_str().unwrap().contains("echo")),
        "{body}"
    );
    // After the last entry: before the comment that heads the next table.
    let block = format!(
        "\n[[mcp.servers]]\nname = \"echo\"\ncommand = \"{}\"\n",
        fixture_server("echo_server").display()
    );
    let added = text.replacen("# ---- the rest", &format!("{block}# ---- the rest"), 1);
    assert_eq!(String::from_utf8(e.config()).unwrap(), added);
    eventually_async("echo running", async || {
        let (status, node) = e.actor("echo").await;
        status == StatusCode::OK && node["state"] == "running"
    })
    .await;
    assert_eq!(e.get().await["version"], v1.as_str());

    // The second of two tabs, still on the first version: 409 with the current one.
    let (status, body) = e
        .write(
            Method::PUT,
            "echo",
            Some(&v0),
            Some("{\"auto_connect\": false}"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["version"], v1.as_str());
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("changed since you loaded it"),
        "{body}"
    );

    // PUT change in place: only the value changes, its comment and every other byte stay.
    let (status, body) = e
        .write(
            Method::PUT,
            "fault",
            Some(&v1),
            Some("{\"name\": \"fault\", \"tool_timeout_secs\": 90}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v2 = body["version"].as_str().unwrap().to_owned();
    let changed = added.replace(
        "tool_timeout_secs = 60 # the fault server's own timeout",
        "tool_timeout_secs = 90 # the fault server's own timeout",
    );
    assert_ne!(changed, added);
    assert_eq!(String::from_utf8(e.config()).unwrap(), changed);
    assert!(
        body["reload"]["applied"].to_string().contains("fault"),
        "{body}"
    );

    // Invalid entries: 422 located in config.toml, the file byte for byte as it was.
    let before = e.config();
    for (name, entry, key) in [
        ("bad", json!({ "transport": "stdio" }), "mcp.servers[2]"),
        (
            "bad",
            json!({ "transport": "pigeon", "command": "x" }),
            "mcp.servers[2].transport",
        ),
        ("echo", json!({ "command": null }), "mcp.servers[1]"),
    ] {
        let (status, body) = e
            .write(Method::PUT, name, Some(&v2), Some(&entry.to_string()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{entry}: {body}");
        let error = body["error"].as_str().unwrap();
        let (file, rest) = error.split_once("config.toml:").expect(error);
        assert!(file.starts_with('/'), "{error}");
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next().unwrap().parse().expect(error);
        let col: usize = parts.next().unwrap().parse().expect(error);
        assert!(line > 1 && col >= 1, "{error}");
        assert!(
            parts.next().unwrap().trim_start().starts_with(key),
            "{error}"
        );
        assert_eq!(e.config(), before, "{entry}: the file is untouched");
    }

    // DELETE: the rest of the file is back as it was, the server stopped.
    let (status, body) = e.write(Method::DELETE, "echo", None, None).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "{body}");
    let (status, body) = e.write(Method::DELETE, "echo", Some(&v2), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        String::from_utf8(e.config()).unwrap(),
        changed.replace(&block, "")
    );
    eventually_async("echo gone", async || {
        e.actor("echo").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    let v3 = body["version"].as_str().unwrap().to_owned();
    let (status, body) = e.write(Method::DELETE, "echo", Some(&v3), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Only the owner edits (and reads: an entry may hold a secret header).
    let before = e.config();
    for role in ["viewer", "operator"] {
        let token = e.paired(role).await;
        let requests = [
            e.request(Method::GET, "/api/config/servers", &token),
            e.request(Method::PUT, "/api/config/servers/echo", &token)
                .header("If-Match", format!("\"{v3}\""))
                .body(echo.clone()),
            e.request(Method::DELETE, "/api/config/servers/fault", &token)
                .header("If-Match", format!("\"{v3}\"")),
        ];
        for request in requests {
            let (status, body) = Editor::send(request).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
        }
    }
    assert_eq!(e.config(), before);
}

/// Two writers with the same version at the same time: one wins, the other is told the file
/// changed.
#[tokio::test(flavor = "multi_thread")]
async fn of_two_concurrent_edits_of_one_version_one_wins_and_the_other_gets_409() {
    let e = Editor::start(&[]).await;
    let v0 = e.get().await["version"].as_str().unwrap().to_owned();
    let a = json!({ "command": fixture_server("echo_server") }).to_string();
    let b = json!({ "command": fixture_server("echo_server"), "auto_connect": false }).to_string();
    let (first, second) = tokio::join!(
        e.write(Method::PUT, "one", Some(&v0), Some(&a)),
        e.write(Method::PUT, "two", Some(&v0), Some(&b)),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{first:?} {second:?}"
    );
    let names: Vec<Value> = e.get().await["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_server_stats_show_the_calls_made_through_the_mcp_server() {
    let e = Editor::start(&[("REVKA_STATS_INTERVAL_MS", "100")]).await;
    let (status, body) =
        Editor::send(e.request(Method::GET, "/api/servers/stats", &e.paired("viewer").await)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["interval_secs"], 0.1, "{body}");
    assert_eq!(body["window_secs"], 9, "{body}");

    let session = e.served.session().await;
    session
        .call_text(
            "tool_search",
            json!({ "query": "select:fault__echo,fault__typed" }),
        )
        .await;
    for i in 0..4 {
        session.call_text("fault__echo", json!({ "i": i })).await;
    }
    session
        .call_text("fault__typed", json!({ "n": "one" }))
        .await; // an error result
    let stats = eventually_async("the calls in the stats", async || {
        let (status, body) =
            Editor::send(e.request(Method::GET, "/api/servers/stats", &e.token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["servers"]["fault"]["total_calls"] == 5).then_some(body)
    })
    .await;
    let fault = &stats["servers"]["fault"];
    let points = fault["points"].as_array().unwrap();
    assert!(!points.is_empty(), "{stats}");
    let calls: f64 = points
        .iter()
        .map(|p| p["calls_per_sec"].as_f64().unwrap())
        .sum();
    assert!(calls > 0.0, "{stats}");
    let errors = points
        .iter()
        .filter(|p| p["error_rate"].as_f64().unwrap() > 0.0)
        .count();
    assert!(errors >= 1, "{stats}");
    assert!(points.iter().any(|p| p["p50_ms"].is_f64()), "{stats}");
    assert!(points[0]["at"].as_str().unwrap().ends_with('Z'), "{stats}");
    let minute = &fault["last_minute"];
    assert!(minute["calls_per_sec"].as_f64().unwrap() > 0.0, "{stats}");
    let error_rate = minute["error_rate"].as_f64().unwrap();
    assert!((error_rate - 0.2).abs() < 1e-9, "{stats}");
    assert!(minute["p99_ms"].as_f64().unwrap() >= minute["p50_ms"].as_f64().unwrap());
}

/// A daemon on its defaults, without a file: the editor says so, and the first write creates
/// the file from the commented template, with the MCP client turned on.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_config_file_the_first_write_creates_it() {
    let home = TestHome::new();
    let _daemon = TestDaemon::start(&home, &[]);
    let gateway = Gateway::of_started(home.path()).await;
    let (status, listed) = gateway.api("/api/config/servers").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["exists"], false);
    assert_eq!(listed["version"], "absent");
    assert_eq!(listed["servers"], json!([]));
    let path = home.path().join("config.toml");
    assert_eq!(listed["path"], path.to_str().unwrap());
    let resp = reqwest::Client::new()
        .put(format!("{}/api/config/servers/echo", gateway.url))
        .bearer_auth(&gateway.token)
        .header("If-Match", "\"absent\"")
        .body(json!({ "command": fixture_server("echo_server") }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("# "),
        "the commented template first: {text}"
    );
    assert!(
        text.ends_with(&format!(
            "[mcp]\nenabled = true\n\n[[mcp.servers]]\nname = \"echo\"\ncommand = \"{}\"\n",
            fixture_server("echo_server").display()
        )),
        "{text}"
    );
    eventually_async("echo running", async || {
        let (status, node) = gateway.api("/api/actors/root/mcp_servers/mcp:echo").await;
        status == StatusCode::OK && node["state"] == "running"
    })
    .await;
}
