//! `revka mcp list | test | call` against the fault fixture, with the real binary.

use serde_json::Value;

use crate::harness::{TestHome, fixture_server};

fn home_with_servers() -> TestHome {
    let home = TestHome::new();
    home.write_config(&format!(
        r#"
[mcp]
enabled = true

[[mcp.servers]]
name = "fault"
command = "{server}"

[[mcp.servers]]
name = "broken"
command = "/nonexistent/server"
"#,
        server = fixture_server("fault_server").display()
    ));
    home
}

fn run(home: &TestHome, args: &[&str]) -> (Option<i32>, String, String) {
    let out = home
        .command()
        .env("RUST_LOG", "off")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mcp_test_reports_the_handshake_as_json() {
    let home = home_with_servers();
    let (code, out, _) = run(&home, &["mcp", "test", "fault"]);
    assert_eq!(code, Some(0));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["tool_count"], crate::harness::BUILTIN_TOOLS.len());
    assert!(report["latency_ms"].is_u64());

    let (code, out, _) = run(&home, &["mcp", "test", "broken"]);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("No such file or directory")
    );

    let (code, _, err) = run(&home, &["mcp", "test", "nope"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no server named `nope` (configured: fault, broken)"),
        "{err}"
    );
}

#[test]
fn mcp_list_shows_each_server_with_its_state_and_tools() {
    let home = home_with_servers();
    let (code, out, _) = run(&home, &["mcp", "list", "--json"]);
    assert_eq!(code, Some(1), "one server is broken");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "fault");
    assert!(
        rows[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "echo")
    );
    assert_eq!(rows[1]["ok"], false);
    let (_, text, _) = run(&home, &["mcp", "list"]);
    assert!(
        text.contains("fault__echo") && text.contains("broken  [stdio]  failed: "),
        "{text}"
    );
}

#[test]
fn mcp_call_prints_progress_and_the_result_and_exits_1_on_error_results() {
    let home = home_with_servers();
    let (code, out, err) = run(
        &home,
        &[
            "mcp",
            "call",
            "fault__progress",
            "--args",
            r#"{"steps": 3, "interval_ms": 5}"#,
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["content"][0]["text"], "done");
    assert!(
        err.contains("progress 1/3 step 1") && err.contains("progress 3/3 step 3"),
        "{err}"
    );

    // Arguments are coerced to the schema like the daemon does; a bare name resolves.
    let (code, out, _) = run(
        &home,
        &["mcp", "call", "add", "--args", r#"{"a": "40", "b": 2}"#],
    );
    assert_eq!(code, Some(0));
    assert!(out.contains("\"42\""), "{out}");

    let (code, out, _) = run(
        &home,
        &[
            "mcp",
            "call",
            "fault__add",
            "--args",
            r#"{"a": "x", "b": 1}"#,
        ],
    );
    assert_eq!(code, Some(1), "an error result exits 1");
    assert!(out.contains("\"isError\": true"), "{out}");

    let (code, _, err) = run(&home, &["mcp", "call", "fault__echo", "--args", "[1]"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--args must be a JSON object"));
}
