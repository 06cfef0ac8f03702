//! Live reload (`POST /api/reload`, `revka reload`, SIGHUP) against the real daemon: servers are
//! added, removed and restarted by difference, untouched ones keep their process and their
//! in-flight calls, a tool timeout or restart policy changes in place, and an invalid file
//! changes nothing.

use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    DEADLINE, Served, Session, eventually_async, fixture_server, try_within_async, within_async,
};

/// Extra `[[mcp.servers]]` entries using the fault fixture; `fault_keys` lands in the table of
/// `fault` itself (it comes right after its `args`).
fn extra(fault_keys: &str, servers: &[(&str, &str)]) -> String {
    // The marker keeps the block unique in the file, so `rewrite` can swap it.
    let mut out = format!("# -- extra --\n{fault_keys}\n");
    for (name, args) in servers {
        out.push_str(&format!(
            "\n[[mcp.servers]]\nname = \"{name}\"\ncommand = \"{}\"\nargs = {args}\n",
            fixture_server("fault_server").display()
        ));
    }
    out
}

struct Reloading {
    served: Served,
    gateway: String,
    token: String,
    /// The config as first written, to derive the next versions from.
    original: String,
    first_extra: String,
}

impl Reloading {
    async fn start(first_extra: String) -> Self {
        let served = Served::start(&first_extra).await;
        let (gateway, token) = served.gateway();
        let original = std::fs::read_to_string(served.home.path().join("config.toml")).unwrap();
        Self {
            served,
            gateway,
            token,
            original,
            first_extra,
        }
    }

    /// Rewrites the config with `extra` in place of the first one.
    fn rewrite(&self, extra: &str) {
        assert!(self.original.contains(&self.first_extra));
        self.served
            .home
            .write_config(&self.original.replace(&self.first_extra, extra));
    }

    async fn api(&self, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
        let resp = reqwest::Client::new()
            .request(method, format!("{}{path}", self.gateway))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `revka reload` against this daemon.
    fn cli_reload(&self) -> std::process::Output {
        self.served
            .home
            .command()
            .env("RUST_LOG", "off")
            .arg("reload")
            .output()
            .unwrap()
    }

    async fn reload(&self) -> (StatusCode, Value) {
        self.api(reqwest::Method::POST, "/api/reload").await
    }

    /// The pid of server `name`'s process, or `None` if it has none (or no such actor).
    async fn pid(&self, name: &str) -> Option<u64> {
        let path = format!("/api/actors/root/mcp_servers/mcp:{name}/process");
        let (status, node) = self.api(reqwest::Method::GET, &path).await;
        (status == StatusCode::OK)
            .then(|| node["details"]["pid"].as_u64())
            .flatten()
    }

    async fn server_ids(&self) -> Vec<String> {
        let (_, node) = self
            .api(reqwest::Method::GET, "/api/actors/root/mcp_servers")
            .await;
        node["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until server `name`'s actor is in `state` (as the gateway spells it).
    async fn wait_state(&self, name: &str, state: &str) {
        let path = format!("/api/actors/root/mcp_servers/mcp:{name}");
        let node = async || self.api(reqwest::Method::GET, &path).await.1;
        if try_within_async(DEADLINE, async || node().await["state"] == state)
            .await
            .is_none()
        {
            panic!("mcp:{name} never became {state}: {}", node().await);
        }
    }

    async fn wait_for_pid(&self, name: &str) -> u64 {
        within_async(
            Duration::from_secs(15),
            format!("a process of mcp:{name}"),
            async || self.pid(name).await,
        )
        .await
    }

    /// Waits until `n` calls are in flight to server `name` (its connection's pending calls).
    async fn wait_in_flight(&self, name: &str, n: u64) {
        let path = format!("/api/actors/root/mcp_servers/mcp:{name}");
        eventually_async(format!("{n} calls in flight to mcp:{name}"), async || {
            self.api(reqwest::Method::GET, &path).await.1["details"]["pending_calls"] == n
        })
        .await;
    }
}

/// The text of a call's result and whether it is an error (a tool error or a JSON-RPC error).
pub async fn call(session: &Session, name: &str, arguments: Value) -> (bool, String) {
    // Deferred loading: a session activates a server's tool before calling it.
    session
        .call_text("tool_search", json!({ "query": format!("select:{name}") }))
        .await;
    let events = session
        .call(crate::harness::next_id(), name, arguments, None)
        .await;
    let last: Value = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find(|m| m.get("result").is_some() || m.get("error").is_some())
        .expect("a final message");
    if let Some(error) = last.get("error") {
        return (
            true,
            error["message"].as_str().unwrap_or_default().to_owned(),
        );
    }
    let text = last["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (last["result"]["isError"] == json!(true), text)
}

fn applied(report: &Value) -> String {
    report["applied"].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_applies_the_difference_and_restarts_only_what_changed() {
    let first = extra("", &[("keep", "[]"), ("change", "[]"), ("gone", "[]")]);
    let r = Reloading::start(first).await;
    r.served.wait_for_tool("keep__echo").await;
    r.served.wait_for_tool("change__echo").await;
    r.served.wait_for_tool("gone__echo").await;
    let (fault, keep, change) = (
        r.wait_for_pid("fault").await,
        r.wait_for_pid("keep").await,
        r.wait_for_pid("change").await,
    );

    // Calls in flight on an untouched server and on one updated in place.
    let session = r.served.session().await;
    let on_keep = tokio::spawn({
        let session = session.clone();
        async move { call(&session, "keep__sleep", json!({ "ms": 3000 })).await }
    });
    let on_fault = tokio::spawn({
        let session = session.clone();
        async move { call(&session, "fault__sleep", json!({ "ms": 2500 })).await }
    });
    r.wait_in_flight("keep", 1).await;
    r.wait_in_flight("fault", 1).await;

    // fault: tool timeout 1 s (in place); change: new args (restart); gone: removed; added: new.
    r.rewrite(&extra(
        "tool_timeout_secs = 1",
        &[
            ("keep", "[]"),
            ("change", r#"["--instructions", "changed"]"#),
            ("added", "[]"),
        ],
    ));
    let (status, report) = r.reload().await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let lines = applied(&report);
    for want in [
        "stopped mcp:gone",
        "restarted mcp:change",
        "started mcp:added",
        "updated mcp:fault in place",
    ] {
        assert!(lines.contains(want), "{want} in {report}");
    }
    assert!(!lines.contains("mcp:keep"), "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_eq!(report["restart_required"], json!([]), "{report}");

    // The in-flight calls finished normally (the one on fault under its old timeout).
    let (is_error, text) = on_keep.await.unwrap();
    assert!(!is_error && text == "slept 3000 ms", "{text}");
    let (is_error, text) = on_fault.await.unwrap();
    assert!(!is_error && text == "slept 2500 ms", "{text}");

    // Only `change` got a new process; `gone` is gone from the tree; `added` runs.
    assert_eq!(r.pid("fault").await, Some(fault));
    assert_eq!(r.pid("keep").await, Some(keep));
    let changed = r.wait_for_pid("change").await;
    assert_ne!(changed, change, "mcp:change was restarted");
    let added = r.wait_for_pid("added").await;
    assert!(crate::harness::process_exists(added as i32));
    let ids = r.server_ids().await;
    assert!(!ids.contains(&"mcp:gone".to_owned()), "{ids:?}");
    assert!(ids.contains(&"mcp:added".to_owned()), "{ids:?}");
    r.served.wait_for_tool("added__echo").await;
    let fresh = r.served.session().await;
    let found = fresh
        .call_text("tool_search", json!({ "query": "select:gone__echo" }))
        .await;
    assert!(found.contains("Not found"), "{found}");

    // The new tool timeout applies to the next call.
    let (is_error, text) = call(&fresh, "fault__sleep", json!({ "ms": 4000 })).await;
    assert!(
        is_error && text.contains("did not answer tools/call within 1."),
        "{text}"
    );
    let (_, fault_node) = r
        .api(
            reqwest::Method::GET,
            "/api/actors/root/mcp_servers/mcp:fault",
        )
        .await;
    assert_eq!(fault_node["details"]["tool_timeout_secs"], 1);

    // A second reload of the same file changes nothing; both are in the root's details.
    let (status, report) = r.reload().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["applied"], json!([]), "{report}");
    let (_, root) = r.api(reqwest::Method::GET, "/api/actors/root").await;
    assert_eq!(
        root["details"]["reloads"].as_array().unwrap().len(),
        2,
        "{root}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_policy_changes_in_place_and_applies_to_the_next_crash() {
    let r = Reloading::start(extra("", &[])).await;
    let pid = r.wait_for_pid("fault").await;
    r.rewrite(&extra("[mcp.servers.restart]\nmax_restarts = 0", &[]));
    let (status, report) = r.reload().await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(
        applied(&report).contains("updated mcp:fault in place"),
        "{report}"
    );
    assert_eq!(
        r.pid("fault").await,
        Some(pid),
        "not restarted by the reload"
    );

    // With no restarts allowed any more, a crash leaves the server failed.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    r.wait_state("fault", "failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_default_policy_applies_to_servers_that_inherit_it_and_the_rest_is_reported() {
    let r = Reloading::start(extra("", &[("own", "[]")])).await;
    let (fault, own) = (r.wait_for_pid("fault").await, r.wait_for_pid("own").await);
    // `[supervisor]` (which `fault` inherits) allows no restart any more; `own` has its own.
    r.rewrite(&extra(
        "\n[supervisor]\nmax_restarts = 0\n",
        &[("own", "[]\n[mcp.servers.restart]\nmax_restarts = 5")],
    ));
    let (status, report) = r.reload().await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let lines = applied(&report);
    assert!(lines.contains("updated mcp:fault in place"), "{report}");
    // `own`'s effective policy is what it was: 5 restarts, its own override now.
    assert!(!lines.contains("mcp:own"), "{report}");
    let restart = report["restart_required"].to_string();
    assert!(
        restart.contains("[supervisor] default restart policy of sidecars, the operator"),
        "{report}"
    );
    assert_eq!(
        r.pid("fault").await,
        Some(fault),
        "not restarted by the reload"
    );

    // The next crash of `fault` follows the new default; `own` is still restarted.
    for pid in [fault, own] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    }
    r.wait_state("fault", "failed").await;
    eventually_async("mcp:own restarted with a new process", async || {
        r.pid("own").await.is_some_and(|p| p != own)
    })
    .await;
    r.wait_state("own", "running").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_config_changes_nothing_and_sighup_and_the_cli_reload_too() {
    let r = Reloading::start(extra("", &[("keep", "[]")])).await;
    let keep = r.wait_for_pid("keep").await;

    // Broken TOML, then a semantically invalid file: 422, the tree untouched.
    r.served.home.write_config("[mcp\nenabled = true\n");
    let (status, body) = r.reload().await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("nothing changed"),
        "{body}"
    );
    r.served
        .home
        .write_config("[gateway]\nrequest_timeout_secs = \"soon\"\n");
    let (status, body) = r.reload().await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("request_timeout_secs"),
        "{body}"
    );
    assert_eq!(r.pid("keep").await, Some(keep));
    assert!(r.server_ids().await.contains(&"mcp:fault".to_owned()));

    // SIGHUP with the file still invalid: logged, nothing changes, the daemon carries on.
    r.served.daemon.signal(Signal::SIGHUP);
    assert!(
        try_within_async(Duration::from_secs(10), async || r
            .served
            .daemon
            .stderr()
            .contains("reload rejected"))
        .await
        .is_some(),
        "{}",
        r.served.daemon.stderr()
    );
    assert_eq!(r.pid("keep").await, Some(keep));

    // SIGHUP with a valid file: `keep` removed; systemd is told RELOADING=1 then READY=1.
    r.rewrite(&extra("", &[]));
    r.served.daemon.signal(Signal::SIGHUP);
    r.served
        .daemon
        .expect_notification_starting("RELOADING=1\nMONOTONIC_USEC=", Duration::from_secs(10));
    r.served
        .daemon
        .expect_notification_starting("READY=1\nSTATUS=reloaded: ", Duration::from_secs(30));
    assert!(!r.server_ids().await.contains(&"mcp:keep".to_owned()));
    within_async(
        Duration::from_secs(10),
        "the removed server's process is gone",
        async || !crate::harness::process_exists(keep as i32),
    )
    .await;
    let log = r.served.daemon.stderr();
    assert!(
        log.lines().any(|l| l.contains("reload: applied")
            && l.contains("path=root/mcp_servers/mcp:keep ")
            && l.contains("stopped mcp:keep")),
        "{log}"
    );

    // `revka reload`: a change that needs a restart is reported as such; an invalid file is
    // refused with exit 1.
    let fault_before = r.pid("fault").await;
    let config = r.original.replace(&r.first_extra, "")
        + "\n[sessions]\nmax_sessions = 7\n[runtime]\nworker_threads = 5\n";
    r.served.home.write_config(&config);
    let out = r.cli_reload();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("restart required"), "{stdout}");
    assert!(
        stdout.contains("[sessions]") && stdout.contains("[runtime]"),
        "{stdout}"
    );
    assert_eq!(r.pid("fault").await, fault_before);
    // Not applied, so not taken as the running value either: reloading the same file again
    // still says it needs a restart.
    let again = r.cli_reload();
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.contains("[sessions]") && again.contains("[runtime]"),
        "{again}"
    );
    r.served.home.write_config("not toml at all = = =");
    let out = r.cli_reload();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("reload rejected"), "{stderr}");
}

/// `allowed_tools` / `denied_tools` keep a server's tools out of every search, listing and
/// call from the first connect (before `tool_search`'s cut, so a filtered tool never takes a
/// slot), with the reason in `/health`; a reload changes the filter without a reconnect.
#[tokio::test(flavor = "multi_thread")]
async fn a_tool_filter_keeps_tools_out_and_a_reload_changes_it_in_place() {
    let r = Reloading::start(extra(
        "allowed_tools = [\"echo\", \"slow_*\", \"sleep\"]\ndenied_tools = [\"sleep\"]",
        &[],
    ))
    .await;
    let pid = r.wait_for_pid("fault").await;
    let session = r.served.session().await;
    // `sleep` would rank first (its name is the query); filtered, the one slot goes to the
    // next match, `slow_echo` ("Sleeps ms milliseconds…").
    let found = session
        .call_text("tool_search", json!({ "query": "sleep", "max_results": 1 }))
        .await;
    assert!(
        found.contains("fault__slow_echo") && !found.contains("fault__sleep"),
        "{found}"
    );
    for name in ["fault__sleep", "fault__hang"] {
        let found = session
            .call_text("tool_search", json!({ "query": format!("select:{name}") }))
            .await;
        assert!(found.contains(&format!("Not found: {name}")), "{found}");
        assert_unknown(&session, name).await;
    }
    let (is_error, text) = call(&session, "fault__echo", json!({ "text": "hi" })).await;
    assert!(!is_error && text.contains("hi"), "{text}");
    let health = r.served.health().await;
    let skipped = health["skipped_tools"].to_string();
    for want in [
        r#""tool":"fault__sleep""#,
        "denied by denied_tools of server `fault` (matches `sleep`)",
        r#""tool":"fault__hang""#,
        "not in allowed_tools of server `fault`",
    ] {
        assert!(skipped.contains(want), "{want} in {skipped}");
    }

    // Deny `echo` instead: applied to the live connection, no restart.
    r.rewrite(&extra("denied_tools = [\"echo\"]", &[]));
    let (status, report) = r.reload().await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(
        applied(&report).contains("tool filter of mcp:fault changed"),
        "{report}"
    );
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_eq!(r.pid("fault").await, Some(pid), "not restarted");
    let fresh = r.served.session().await;
    let (is_error, text) = call(&fresh, "fault__sleep", json!({ "ms": 10 })).await;
    assert!(!is_error && text == "slept 10 ms", "{text}");
    assert_unknown(&fresh, "fault__echo").await;
}

/// A `tools/call` of `name` is refused as an unknown tool.
async fn assert_unknown(session: &Session, name: &str) {
    let (status, body) = session
        .rpc(json!({
            "jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": { "name": name, "arguments": {} },
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(name),
        "{body}"
    );
}

/// A running server whose entry becomes invalid keeps running on its previous entry (process,
/// tools and in-flight calls), the reason reported under `failed`; fixing the entry later
/// applies as an ordinary change. A new server with an invalid entry is shown as failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_server_whose_entry_turns_invalid_keeps_its_previous_one() {
    let r = Reloading::start(extra("", &[("keep", "[]")])).await;
    r.served.wait_for_tool("keep__echo").await;
    let keep = r.wait_for_pid("keep").await;
    let session = r.served.session().await;
    let in_flight = tokio::spawn({
        let session = session.clone();
        async move { call(&session, "keep__sleep", json!({ "ms": 2000 })).await }
    });
    r.wait_in_flight("keep", 1).await;

    // `keep` gets a zero timeout (invalid); `broken` is new and invalid too.
    let fault = fixture_server("fault_server").display().to_string();
    let invalid = extra("", &[("keep", "[]")])
        .replace("name = \"keep\"", "name = \"keep\"\ntool_timeout_secs = 0")
        + &format!(
            "\n[[mcp.servers]]\nname = \"broken\"\ncommand = \"{fault}\"\nurl = \"::\"\ntransport = \"http\"\n"
        );
    r.rewrite(&invalid);
    let (status, report) = r.reload().await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let failed = report["failed"].to_string();
    assert!(
        failed.contains("kept mcp:keep on its previous configuration")
            && failed.contains("tool_timeout_secs"),
        "{report}"
    );
    assert!(
        applied(&report).contains("marked mcp:broken failed"),
        "{report}"
    );
    assert!(!applied(&report).contains("mcp:keep"), "{report}");
    let (is_error, text) = in_flight.await.unwrap();
    assert!(!is_error && text == "slept 2000 ms", "{text}");
    assert_eq!(r.pid("keep").await, Some(keep), "not restarted");
    let (is_error, text) = call(&session, "keep__echo", json!({ "text": "still" })).await;
    assert!(!is_error && text.contains("still"), "{text}");

    // Fixed with a new timeout: applied in place, against the entry that kept running.
    r.rewrite(
        &extra("", &[("keep", "[]")])
            .replace("name = \"keep\"", "name = \"keep\"\ntool_timeout_secs = 7"),
    );
    let (status, report) = r.reload().await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(
        applied(&report).contains("updated mcp:keep in place"),
        "{report}"
    );
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_eq!(r.pid("keep").await, Some(keep));
}
