//! Built-in tool helpers: a session whose workspace is a directory the test chose
//! ([`Served::session_in`]), and calls of built-in tools through the official Python SDK
//! client ([`sdk_tool_calls`], driving `tests/clients/python_sdk_tools.py`).

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Served, Session, test_cache, venv_bin};

impl Served {
    /// A session minted by `POST /session` with `cwd` as its workspace.
    pub async fn session_in(&self, cwd: &Path) -> Session {
        let resp = self
            .http
            .post(format!("{}/session", self.base))
            .header("content-type", "application/json")
            .body(json!({ "cwd": cwd }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "POST /session in {cwd:?}");
        let body: Value = resp.json().await.unwrap();
        Session {
            url: self.url.clone(),
            id: body["session_id"].as_str().unwrap().to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
            http: self.http.clone(),
        }
    }
}

/// Makes `calls` (`[{"tool", "arguments"}]`) in `session` with the official Python SDK client
/// (after activating every named tool): `{"tools": [...], "calls": [{"tool", "is_error",
/// "text", "structured", "progress", "error"}]}`. `None` when the test dependencies are not
/// installed (the test then returns early, as the other interop tests do).
pub async fn sdk_tool_calls(served: &Served, session: &Session, calls: Value) -> Option<Value> {
    use tokio::io::AsyncWriteExt;
    let cache = test_cache()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_sdk_tools.py");
    let mut child = tokio::process::Command::new(venv_bin(&cache, "python"))
        .arg(script)
        .env("REVKA_URL", &served.url)
        .env("REVKA_SESSION", &session.id)
        .env("REVKA_TOKEN", &session.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(calls.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the SDK client finishes within 180 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python_sdk_tools.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap())
}

/// A canonical temporary directory, for a session's workspace (sessions' workspaces are
/// canonical, so paths in results compare equal).
pub fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().canonicalize().unwrap();
    (dir, path)
}

/// Asserts that a call of [`sdk_tool_calls`] was refused by the security policy's `rule`: an
/// error result whose text names it.
#[track_caller]
pub fn assert_refused(call: &Value, rule: &str) {
    assert_eq!(
        call["is_error"], true,
        "expected a refusal by {rule}: {call}"
    );
    let text = call["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("refused by the security policy ({rule})")),
        "expected the rule {rule}: {call}"
    );
}
