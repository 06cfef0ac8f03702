//! The `cron_*` tools end to end, through the official Python SDK client: a job every second
//! runs and records its results, survives a `kill -9` of the daemon (listed and running again
//! after a restart in the same home), stops when removed; a failing job is recorded as an
//! error once per scheduled time, never retried; the refusals (`cron_recursion`, a bad
//! expression or time zone, an unknown tool, a job id another client cannot see) are precise.
//! The scheduler's timing under paused time is tested in `src/scheduler/tests.rs`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::harness::{Served, Session, TestDaemon, sdk_tool_calls};

/// One call through the SDK client: `(is_error, text, structured)`.
async fn call(served: &Served, session: &Session, tool: &str, args: Value) -> Option<Value> {
    let out = sdk_tool_calls(
        served,
        session,
        json!([{ "tool": tool, "arguments": args }]),
    )
    .await?;
    Some(out["calls"][0].clone())
}

/// The runs of job `id` (newest first), through the SDK client.
async fn runs(served: &Served, session: &Session, id: &str) -> Vec<Value> {
    let out = call(
        served,
        session,
        "cron_runs",
        json!({ "id": id, "limit": 50 }),
    )
    .await
    .expect("the SDK client");
    assert_eq!(out["is_error"], false, "{out}");
    out["structured"]["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (up to 30 s) until job `id` has at least `n` runs; returns them.
async fn wait_runs(served: &Served, session: &Session, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = runs(served, session, id).await;
        if got.len() >= n || Instant::now() > deadline {
            assert!(
                got.len() >= n,
                "job {id}: {} runs, wanted {n}: {got:?}",
                got.len()
            );
            return got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The echo calls the fault server received with `marker` in their arguments.
fn echo_calls(served: &Served, marker: &str) -> usize {
    served
        .recorded()
        .iter()
        .filter(|m| m["method"] == "tools/call" && m["params"]["name"] == "echo")
        .filter(|m| m["params"]["arguments"]["text"] == marker)
        .count()
}

/// Restarts the daemon of `served` in the same home after a `kill -9`, and points `served`
/// at its new address.
async fn kill_and_restart(served: &mut Served) {
    served.daemon.signal(Signal::SIGKILL);
    served.daemon.wait(Duration::from_secs(30));
    let _ = std::fs::remove_file(served.home.path().join("mcp.json"));
    served.daemon = TestDaemon::start(&served.home, &[]);
    let discovery = served.home.path().join("mcp.json");
    crate::harness::eventually_async("mcp.json rewritten", async || discovery.exists()).await;
    let doc: Value = serde_json::from_slice(&std::fs::read(&discovery).unwrap()).unwrap();
    served.url = doc["url"].as_str().unwrap().to_owned();
    served.base = served.url.trim_end_matches("/mcp").to_owned();
    served.wait_for_tool("fault__echo").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_jobs_run_on_schedule_survive_kill_9_and_failures_are_recorded_not_retried() {
    let mut served = Served::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().canonicalize().unwrap();
    let session = served.session_in(&workspace).await;
    let Some(out) = sdk_tool_calls(
        &served,
        &session,
        json!([
            { "tool": "cron_add", "arguments": {
                "schedule": "*/1 * * * * *", "tool": "fault__echo",
                "arguments": { "text": "tick" }, "name": "every second" } },
            { "tool": "cron_add", "arguments": {
                "schedule": "*/1 * * * * *", "tool": "add", "arguments": {} } },
            { "tool": "cron_add", "arguments": {
                "schedule": "* * * * *", "tool": "cron_list" } },
            { "tool": "cron_add", "arguments": { "schedule": "* * *", "tool": "fault__echo" } },
            { "tool": "cron_add", "arguments": {
                "schedule": "* * * * *", "tool": "fault__echo", "tz": "Mars/Olympus" } },
            { "tool": "cron_add", "arguments": { "schedule": "* * * * *", "tool": "no_such_tool" } },
            { "tool": "cron_list", "arguments": {} },
        ]),
    )
    .await
    else {
        return;
    };
    let calls = out["calls"].as_array().unwrap();
    for c in &calls[..2] {
        assert_eq!(c["is_error"], false, "{c}");
    }
    let echo = calls[0]["structured"]["job"].clone();
    let failing = calls[1]["structured"]["job"].clone();
    assert_eq!(echo["tool"], "fault__echo");
    assert_eq!(echo["tz"], "UTC");
    assert_eq!(echo["workspace"], json!(workspace));
    assert_eq!(
        failing["tool"], "fault__add",
        "a bare name is resolved: {failing}"
    );
    let echo_id = echo["id"].as_str().unwrap().to_owned();
    let failing_id = failing["id"].as_str().unwrap().to_owned();
    // The refusals, each precise.
    assert_eq!(calls[2]["is_error"], true);
    assert!(
        calls[2]["text"]
            .as_str()
            .unwrap()
            .contains("cron_recursion"),
        "{}",
        calls[2]
    );
    assert!(
        calls[3]["text"].as_str().unwrap().contains("5 fields"),
        "{}",
        calls[3]
    );
    assert!(
        calls[4]["text"].as_str().unwrap().contains("Mars/Olympus"),
        "{}",
        calls[4]
    );
    assert!(
        calls[5]["text"].as_str().unwrap().contains("unknown tool"),
        "{}",
        calls[5]
    );
    assert_eq!(calls[6]["structured"]["count"], 2, "{}", calls[6]);

    // It runs every second, with its result recorded.
    let started = Instant::now();
    let echo_runs = wait_runs(&served, &session, &echo_id, 3).await;
    for run in &echo_runs {
        assert_eq!(run["outcome"], "ok", "{run}");
        assert!(
            run["result"].as_str().unwrap().contains("tick"),
            "the result is kept: {run}"
        );
    }
    assert!(echo_calls(&served, "tick") >= 3);
    // The failing job: one error per scheduled time, not retried.
    let failed = wait_runs(&served, &session, &failing_id, 2).await;
    let elapsed = started.elapsed().as_secs() + 2;
    assert!(failed.iter().all(|r| r["outcome"] == "error"), "{failed:?}");
    assert!(
        (failed.len() as u64) <= elapsed + 2,
        "{} error runs in about {elapsed} s: retried?",
        failed.len()
    );
    assert!(
        failed[0]["result"]
            .as_str()
            .unwrap()
            .contains("missing argument")
            || failed[0]["result"].as_str().unwrap().contains("required"),
        "{}",
        failed[0]
    );

    // kill -9, then a restart in the same home: the jobs are listed and run again.
    let before = runs(&served, &session, &echo_id).await.len();
    kill_and_restart(&mut served).await;
    let session = served.session_in(&workspace).await;
    let listed = call(&served, &session, "cron_list", json!({}))
        .await
        .unwrap();
    assert_eq!(listed["structured"]["count"], 2, "{listed}");
    let node = served.api("/api/actors/root/scheduler").await;
    assert_eq!(node["kind"], "scheduler", "{node}");
    assert_eq!(node["details"]["jobs"], 2, "{node}");
    let after = wait_runs(&served, &session, &echo_id, before + 2).await;
    assert_eq!(after[0]["outcome"], "ok", "{:?}", &after[..2]);

    // Removed, it stops.
    let removed = call(&served, &session, "cron_remove", json!({ "id": echo_id }))
        .await
        .unwrap();
    assert_eq!(removed["is_error"], false, "{removed}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = echo_calls(&served, "tick");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        echo_calls(&served, "tick"),
        count,
        "no run after cron_remove"
    );
    let gone = call(&served, &session, "cron_runs", json!({ "id": echo_id }))
        .await
        .unwrap();
    assert_eq!(gone["is_error"], true);
    assert!(
        gone["text"].as_str().unwrap().contains("no cron job"),
        "{gone}"
    );

    // A manual run of the failing job answers with its record, as an error; disabled, the
    // job stops running.
    let out = sdk_tool_calls(
        &served,
        &session,
        json!([
            { "tool": "cron_update", "arguments": { "id": failing_id, "enabled": false } },
            { "tool": "cron_run", "arguments": { "id": failing_id } },
        ]),
    )
    .await
    .unwrap();
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(
        calls[0]["structured"]["job"]["enabled"], false,
        "{}",
        calls[0]
    );
    assert_eq!(calls[0]["structured"]["job"]["next_run"], Value::Null);
    assert_eq!(calls[1]["is_error"], true, "{}", calls[1]);
    assert_eq!(calls[1]["structured"]["run"]["trigger"], "manual");
    assert_eq!(calls[1]["structured"]["run"]["outcome"], "error");
    let n = runs(&served, &session, &failing_id).await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        runs(&served, &session, &failing_id).await.len(),
        n,
        "disabled"
    );

    // The journal is private.
    use std::os::unix::fs::PermissionsExt;
    let cron = served.home.path().join("cron");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cron), 0o700);
    assert_eq!(mode(&cron.join("jobs.jsonl")), 0o600);
    // Each run is in the run log.
    let log = std::fs::read_to_string(served.home.path().join("operator_mcp/runlogs/run.jsonl"))
        .unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("\"kind\":\"cron_run\"") && l.contains(&failing_id)),
        "a cron_run line for {failing_id}"
    );
}

/// Under `autonomy = "read_only"` the write tools are refused by the policy; the read ones
/// answer.
#[tokio::test(flavor = "multi_thread")]
async fn read_only_autonomy_refuses_the_cron_write_tools() {
    let served = Served::start("[security]\nautonomy = \"read_only\"\n").await;
    let dir = tempfile::tempdir().unwrap();
    let session = served.session_in(&dir.path().canonicalize().unwrap()).await;
    let Some(out) = sdk_tool_calls(
        &served,
        &session,
        json!([
            { "tool": "cron_add", "arguments": { "schedule": "* * * * *", "tool": "fault__echo" } },
            { "tool": "cron_list", "arguments": {} },
            { "tool": "cron_run", "arguments": { "id": "cron-000000000000" } },
        ]),
    )
    .await
    else {
        return;
    };
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(calls[0]["is_error"], true);
    assert!(
        calls[0]["text"].as_str().unwrap().contains("(autonomy)"),
        "{}",
        calls[0]
    );
    assert_eq!(calls[1]["is_error"], false, "{}", calls[1]);
    assert!(
        calls[2]["text"].as_str().unwrap().contains("(autonomy)"),
        "{}",
        calls[2]
    );
}

/// One `tools/call` on a standard session, its JSON-RPC result.
async fn std_call(
    std: &crate::mcp_standard::StdSession,
    id: u64,
    name: &str,
    args: Value,
) -> Value {
    let body = std
        .send(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": { "name": name, "arguments": args } }))
        .await
        .bytes()
        .await
        .unwrap();
    crate::harness::parse_sse(&body)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .find(|m| m.get("result").is_some() || m.get("error").is_some())
        .unwrap_or(Value::Null)
}

/// A session opened with a scoped client token cannot schedule a tool outside its scope,
/// sees only its own jobs (not the owner's), and cannot change or run the owner's; its job
/// carries the scope it runs under. The owner's session sees every job.
#[tokio::test(flavor = "multi_thread")]
async fn a_scoped_client_cannot_schedule_outside_its_scope_nor_touch_others_jobs() {
    let served = Served::start("").await;
    let (gateway, owner_token) = served.gateway();
    let created: Value = served
        .http
        .post(format!("{gateway}/api/tokens"))
        .bearer_auth(&owner_token)
        .header("content-type", "application/json")
        .body(json!({ "name": "scoped", "tools": ["cron_*", "fault__add"] }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token"]
        .as_str()
        .expect("a client token")
        .to_owned();
    // The owner's job, through a POST /session session.
    let dir = tempfile::tempdir().unwrap();
    let owner = served.session_in(&dir.path().canonicalize().unwrap()).await;
    let owners = owner
        .call_text(
            "tool_search",
            json!({ "query": "select:cron_add,cron_list" }),
        )
        .await;
    assert!(owners.contains("cron_add"), "{owners}");
    let added = owner
        .call_text(
            "cron_add",
            json!({ "schedule": "0 0 1 1 *", "tool": "fault__echo", "arguments": {} }),
        )
        .await;
    let owner_job = added
        .split_whitespace()
        .find(|w| w.starts_with("cron-"))
        .expect("the job's id")
        .to_owned();

    let std = crate::mcp_standard::StdSession::open(&served.url, Some(&token)).await;
    let search = std_call(
        &std,
        2,
        "tool_search",
        json!({ "query": "select:cron_add,cron_list,cron_remove,cron_run,fault__add" }),
    )
    .await;
    assert!(search.get("result").is_some(), "{search}");
    let outside = std_call(
        &std,
        3,
        "cron_add",
        json!({ "schedule": "* * * * *", "tool": "fault__echo" }),
    )
    .await;
    assert_eq!(outside["result"]["isError"], true, "{outside}");
    assert!(
        outside.to_string().contains("unknown tool"),
        "a tool outside the scope does not exist for it: {outside}"
    );
    let inside = std_call(
        &std,
        4,
        "cron_add",
        json!({ "schedule": "0 0 1 1 *", "tool": "fault__add", "arguments": { "a": 1, "b": 2 } }),
    )
    .await;
    let job = &inside["result"]["structuredContent"]["job"];
    assert_eq!(job["scope"], json!(["cron_*", "fault__add"]), "{inside}");
    assert_eq!(job["owner"], created["id"], "{inside}");
    let listed = std_call(&std, 5, "cron_list", json!({})).await;
    assert_eq!(
        listed["result"]["structuredContent"]["count"], 1,
        "{listed}"
    );
    for (id, tool) in [(6, "cron_remove"), (7, "cron_run")] {
        let refused = std_call(&std, id, tool, json!({ "id": owner_job })).await;
        assert_eq!(refused["result"]["isError"], true, "{refused}");
        assert!(refused.to_string().contains("no cron job"), "{refused}");
    }
    // The owner sees both.
    let all = owner.call_text("cron_list", json!({})).await;
    assert_eq!(all.lines().count(), 2, "{all}");
}
