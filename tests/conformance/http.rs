//! The fixture over Streamable HTTP (the suite's baseline), and a minimal Streamable HTTP
//! client for `tools/list` (Revka's or the fixture's).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::START_TIMEOUT;
use crate::harness::venv_bin;

pub(super) fn fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/conformance_fixture.py")
}

/// The fixture serving Streamable HTTP on an ephemeral loopback port; killed on drop.
pub(super) struct HttpFixture {
    _child: Child,
    /// Holds the fixture's stderr, shown if it does not start.
    _dir: tempfile::TempDir,
    pub(super) url: String,
}

impl HttpFixture {
    pub(super) async fn start(cache: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("fixture.stderr");
        let mut child = Command::new(venv_bin(cache, "python"))
            .arg(fixture_script())
            .args(["--http", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("url=") {
                    return Some(url.to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(url) = url else {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("the fixture did not serve within {START_TIMEOUT:?}; its stderr:\n{stderr}");
        };
        Self {
            _child: child,
            _dir: dir,
            url,
        }
    }
}

/// `tools/list` over standard Streamable HTTP: `initialize` (the answer's `Mcp-Session-Id`
/// names the session), `notifications/initialized`, `tools/list`, then `DELETE`.
pub(super) async fn list_tools(url: &str) -> Vec<Value> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let post = |body: Value, session: Option<&(String, String)>| {
        let mut request = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some((id, version)) = session {
            request = request
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", version);
        }
        request.send()
    };
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "revka-conformance-test", "version": "1" },
        },
    });
    let resp = post(init, None).await.unwrap();
    let session_id = resp
        .headers()
        .get("mcp-session-id")
        .unwrap_or_else(|| panic!("initialize answered without Mcp-Session-Id: {resp:?}"))
        .to_str()
        .unwrap()
        .to_owned();
    let hello = answer(resp, 1).await;
    let version = hello["result"]["protocolVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = (session_id, version);
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let resp = post(initialized, Some(&session)).await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let listed = answer(post(list, Some(&session)).await.unwrap(), 2).await;
    let _ = http
        .delete(url)
        .header("mcp-session-id", &session.0)
        .header("mcp-protocol-version", &session.1)
        .send()
        .await;
    listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools/list answered {listed}"))
        .clone()
}

/// The JSON-RPC response with `id` of a POST's answer, JSON or an SSE stream.
async fn answer(resp: reqwest::Response, id: u64) -> Value {
    let status = resp.status();
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = resp.bytes().await.unwrap();
    assert!(status.is_success(), "{status}: {body:?}");
    let messages: Vec<Value> = if sse {
        crate::harness::parse_sse(&body)
            .into_iter()
            .filter_map(|e| serde_json::from_str(&e.data).ok())
            .collect()
    } else {
        vec![serde_json::from_slice(&body).unwrap()]
    };
    messages
        .into_iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no response with id {id} in {body:?}"))
}

/// `name`'s input schema in `tools` keeps the fixture's JSON Schema 2020-12 keywords.
pub(super) fn assert_schema_kept(tools: &[Value], name: &str) {
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    let tool = tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {names:?}"));
    let schema = &tool["inputSchema"];
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "{schema}"
    );
    assert_eq!(
        schema["$defs"]["address"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["address"]["$ref"], "#/$defs/address");
}
