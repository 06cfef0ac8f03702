//! The built-in tool tiers as a whole (the tools' own suites are tests/builtin_*.rs): the
//! runtime-tier tools Revka does not provide are in `/health` with their skip reasons; a
//! session can only be opened by the daemon's own user (a session can run `shell`).

use std::process::Command;

use serde_json::Value;

use crate::harness::Served;

/// Every runtime-tier tool of seed 001 that Revka does not provide is listed with its reason,
/// and so is a tool switched off by `[tools.<name>] enabled = false`.
#[tokio::test(flavor = "multi_thread")]
async fn health_lists_the_tools_not_provided_with_their_reasons() {
    let s = Served::start("[tools.shell]\nenabled = false\n").await;
    let health = s.health().await;
    let skipped = health["skipped_tools"].as_array().expect("skipped_tools");
    let reason = |tool: &str| -> String {
        skipped
            .iter()
            .find(|e| e["tool"] == tool)
            .and_then(|e| e["reason"].as_str())
            .unwrap_or_else(|| panic!("{tool} not in skipped_tools: {health}"))
            .to_owned()
    };
    for (tool, words) in [
        ("llm_task", "model provider"),
        ("image_gen", "model provider"),
        ("delegate", "model provider"),
        ("swarm", "model provider"),
        ("workspace", "workspace session store"),
        ("poll", "channel map"),
        ("discord_search", "discord.db"),
        ("sop_execute", "SOP engine"),
        ("shell", "[tools.shell] enabled = false"),
    ] {
        assert!(reason(tool).contains(words), "{tool}: {}", reason(tool));
    }
}

/// `POST /session` from a process of another user of the machine is refused with 403 and the
/// reason, and so is a token-less standard `initialize` (`require_token = false`); the
/// daemon's own user gets its session. (Needs root to run a client as `nobody`;
/// skipped otherwise.)
#[tokio::test(flavor = "multi_thread")]
async fn another_user_of_the_machine_cannot_open_a_session() {
    if !nix::unistd::geteuid().is_root() || Command::new("setpriv").arg("--help").output().is_err()
    {
        eprintln!("note: not root or no setpriv: cannot run a client as another user; skipped");
        return;
    }
    let s = Served::start("").await;
    let curl = |as_nobody: bool, url: &str, body: Option<&str>| -> (String, String) {
        let mut cmd = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl"]);
            c
        } else {
            Command::new("curl")
        };
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-XPOST", url]);
        cmd.args(["-H", "content-type: application/json"]);
        cmd.args(["-H", "accept: application/json, text/event-stream"]);
        if let Some(body) = body {
            cmd.args(["-d", body]);
        }
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (code.to_owned(), body.to_owned())
    };
    let session = format!("{}/session", s.base);
    let (code, body) = curl(true, &session, None);
    assert_eq!(code, "403", "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body.to_string().contains("only for the daemon's own user")
            && body.to_string().contains("uid 65534"),
        "{body}"
    );
    let (code, body) = curl(false, &session, None);
    assert_eq!(code, "200", "{body}");

    // Without tokens on the standard path, the user is the credential there too.
    let open = Served::start("[mcp_server]\nrequire_token = false\n").await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (code, body) = curl(true, &open.url, Some(init));
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("uid 65534"), "{body}");
    let (code, body) = curl(false, &open.url, Some(init));
    assert_eq!(code, "200", "{body}");
}
