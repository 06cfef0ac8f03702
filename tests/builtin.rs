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

/// Revka's own tools follow deferred loading, `tool_search` and client-token scopes like any
/// other: deferred and named in the instructions; found by keyword; a scoped client
/// (`--tools "file_*"`) lists, activates and calls only its file tools, and a call of `shell`
/// is, to it, a tool that does not exist.
#[tokio::test(flavor = "multi_thread")]
async fn built_in_tools_are_deferred_searched_and_scoped_like_any_other() {
    use crate::mcp_standard::{StdSession, messages};
    let s = Served::start("").await;
    // Deferred: not listed until activated, named in the instructions.
    let session = s.session().await;
    let listed = session.tool_names().await;
    assert!(
        !listed.iter().any(|n| n == "shell" || n == "file_read"),
        "{listed:?}"
    );
    let (_, init) = session
        .rpc(
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        )
        .await;
    let instructions = init["result"]["instructions"].as_str().unwrap_or_default();
    assert!(
        instructions.contains("## Revka's own tools") && instructions.contains("\nshell - "),
        "{instructions}"
    );
    // Found by keywords.
    let found = session
        .call_text(
            "tool_search",
            serde_json::json!({"query": "regex search file contents"}),
        )
        .await;
    assert!(found.contains("content_search"), "{found}");

    // A scoped client token.
    let out = s
        .home
        .command()
        .env("RUST_LOG", "off")
        .args([
            "tokens",
            "create",
            "files-only",
            "--tools",
            "file_*",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["token"].as_str().unwrap();
    let scoped = StdSession::open(&s.url, Some(token)).await;
    let text = |events: &[revka_mcp::sse::SseEvent]| {
        let last = messages(events).last().cloned().unwrap_or(Value::Null);
        last["result"]["content"][0]["text"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| last["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| last.to_string())
    };
    let search = text(
        &scoped
            .call(
                "tool_search",
                serde_json::json!({"query": "select:file_read,shell"}),
                None,
            )
            .await,
    );
    assert!(search.contains("file_read"), "{search}");
    let (_, listed) = scoped.rpc("tools/list", serde_json::json!({})).await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"file_read"), "{names:?}");
    assert!(
        !names.contains(&"shell") && !names.contains(&"health"),
        "{names:?}"
    );
    // An unknown tool is a plain JSON-RPC error (seed 001), the same as for a tool that does
    // not exist.
    let (_, refused) = scoped
        .rpc(
            "tools/call",
            serde_json::json!({"name": "shell", "arguments": {"command": "ls"}}),
        )
        .await;
    let (_, missing) = scoped
        .rpc("tools/call", serde_json::json!({"name": "no_such_tool"}))
        .await;
    assert_eq!(
        refused["error"]["code"], missing["error"]["code"],
        "{refused} {missing}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown tool: shell")),
        "{refused}"
    );
}

/// `max_actions_per_hour` is per session: past it a call is refused by that rule (audited
/// and counted), while another session keeps its own budget.
#[tokio::test(flavor = "multi_thread")]
async fn the_hourly_budget_is_per_session_and_names_its_rule() {
    let s = Served::start("[security]\nmax_actions_per_hour = 2\n").await;
    let one = s.session().await;
    let calc = async |session: &crate::harness::Session| {
        session
            .call_text(
                "tool_search",
                serde_json::json!({"query": "select:calculator"}),
            )
            .await;
        session
            .call_text("calculator", serde_json::json!({"expression": "6*7"}))
            .await
    };
    assert!(calc(&one).await.contains("42"));
    assert!(calc(&one).await.contains("42"));
    let third = calc(&one).await;
    assert!(
        third.contains("(max_actions_per_hour)") && third.contains("2 built-in tool calls"),
        "{third}"
    );
    let two = s.session().await;
    assert!(calc(&two).await.contains("42"));
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains(
            "revka_builtin_refusals_total{tool=\"calculator\",rule=\"max_actions_per_hour\"} 1"
        ),
        "{metrics}"
    );
}
