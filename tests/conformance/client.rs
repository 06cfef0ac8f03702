//! The conformance suite in client mode, with `revka mcp` as the client: for each scenario the
//! suite starts its own test server and runs a `revka mcp` command with the server's URL
//! appended (and `MCP_CONFORMANCE_SCENARIO` set, which Revka does not need: each scenario has
//! its own command). `REVKA_HOME` is an empty directory, so no configured server is involved:
//! `--url` names the one server.
//!
//! | scenario                              | command                                          |
//! |---------------------------------------|--------------------------------------------------|
//! | `initialize`                          | `revka mcp list --url`                           |
//! | `tools_call`                          | `revka mcp call add_numbers --args … --url`      |
//! | `sse-retry`                           | `revka mcp call test_reconnection --url`         |
//! | `elicitation-sep1034-client-defaults` | `revka mcp call … --elicitation defaults --url`  |
//!
//! `sse-retry` closes the call's event stream after a priming event with `retry: 500` and
//! answers on the GET that resumes it: it checks that the client waits the `retry` and sends
//! `Last-Event-ID`. The elicitation scenario asks for five fields that all have defaults and
//! checks that the accepted content carries each default; `--elicitation defaults` accepts
//! them without asking (the suite's stdin is not a terminal, where the default, `ask`, would
//! decline).
//!
//! A scenario passes when its checks hold at least one SUCCESS and no FAILURE.

use std::path::Path;

use super::suite::{Outcome, Suite};
use crate::harness::revka_bin;

/// Each scenario and the `revka` arguments that play the client in it (the URL is appended).
const CLIENT_SCENARIOS: [(&str, &str); 4] = [
    ("initialize", "mcp list --url"),
    (
        "tools_call",
        r#"mcp call add_numbers --args '{"a":5,"b":3}' --url"#,
    ),
    ("sse-retry", "mcp call test_reconnection --timeout 20 --url"),
    (
        "elicitation-sep1034-client-defaults",
        "mcp call test_client_elicitation_defaults --elicitation defaults --url",
    ),
];

/// Every client scenario above passes with `revka mcp` as the client.
#[tokio::test(flavor = "multi_thread")]
async fn revka_mcp_passes_the_client_scenarios() {
    let Some(suite) = Suite::find() else { return };
    let home = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (scenario, args) in CLIENT_SCENARIOS {
        let command = format!("{} {args}", revka_bin());
        let envs: [(&str, &Path); 1] = [("REVKA_HOME", home.path())];
        let (outcome, output) = suite.run_client(scenario, &command, &envs).await;
        println!("{scenario}: {outcome}");
        if !matches!(outcome, Outcome::Passed) {
            failures.push(format!("{scenario}: {outcome}\n{output}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
