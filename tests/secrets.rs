//! Secrets in a server's URL and arguments, end to end with the real binary: introspection
//! (`/api/actors`), `/api/health`, the daemon log, the run log and `revka config check` show
//! the config's unexpanded form (`${VAR}`) with userinfo, query values and secret-looking
//! argument values masked, never a value.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::harness::{DEADLINE, Served, fixture_server, try_within_async};

/// Values of the variables the config refers to, and a secret written in the config itself:
/// none may appear anywhere the daemon shows.
const SECRETS: [&str; 4] = [
    "env-key-value-AAAA",
    "env-pass-value-BBBB",
    "env-api-value-CCCC",
    "inline-4f9Qz81LmX2pW7vB",
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

/// The node at `path` in an `/api/actors` snapshot.
fn node<'a>(tree: &'a Value, path: &str) -> &'a Value {
    if tree["path"] == path {
        return tree;
    }
    tree["children"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|child| node(child, path))
        .find(|found| !found.is_null())
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_health_and_logs_show_the_config_form_never_a_secret() {
    let server = fixture_server("fault_server");
    // `sh -c 'exec …'` runs the fault server; the arguments after the script only sit on the
    // command line, which is what is shown.
    let extra = format!(
        r#"
[[mcp.servers]]
name = "wrapped"
command = "/bin/sh"
args = ["-c", "exec {server}", "--api-key=${{KEY}}", "--token", "{inline}", "https://u:${{PASS}}@h.example/x?key=${{API}}"]

[[mcp.servers]]
name = "remote"
transport = "http"
url = "http://u:${{PASS}}@127.0.0.1:1/mcp?api_key=${{API}}&mode={inline}"
"#,
        server = server.display(),
        inline = SECRETS[3],
    );
    let env = [
        ("KEY", SECRETS[0]),
        ("PASS", SECRETS[1]),
        ("API", SECRETS[2]),
        ("RUST_LOG", "debug"),
    ];
    let served = Served::start_with_env(&extra, &env).await;
    served.wait_for_tool("wrapped__echo").await;

    let shown_args = [
        "-c",
        &format!("exec {}", server.display()),
        "--api-key=${KEY}",
        "--token",
        "***",
        "https://***@h.example/x?key=${API}",
    ];
    let tree = served.api("/api/actors").await;
    assert_no_secret("/api/actors", &tree.to_string());
    let wrapped = node(&tree, "root/mcp_servers/mcp:wrapped");
    assert_eq!(
        wrapped["details"]["target"]["args"],
        serde_json::json!(shown_args),
        "{wrapped}"
    );
    let process = node(&tree, "root/mcp_servers/mcp:wrapped/process");
    assert_eq!(
        process["details"]["command"],
        format!("/bin/sh {}", shown_args.join(" ")),
        "{process}"
    );
    let shown_url = "http://***@127.0.0.1:1/mcp?api_key=${API}&mode=***";
    let remote = node(&tree, "root/mcp_servers/mcp:remote");
    assert_eq!(remote["details"]["target"]["url"], shown_url, "{remote}");

    // The remote server fails to connect; its failure reason names the URL as shown.
    let mut health = Value::Null;
    let failed = |health: &Value| {
        health["mcp_servers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == "mcp:remote" && s["last_failure"]["reason"].is_string())
    };
    let _ = try_within_async(DEADLINE, async || {
        health = served.api("/api/health").await;
        failed(&health)
    })
    .await;
    assert!(failed(&health), "{health}");
    assert_no_secret("/api/health", &health.to_string());
    assert!(health.to_string().contains(shown_url), "{health}");

    let out = served
        .home
        .command()
        .args(["config", "check"])
        .envs(env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_no_secret("revka config check", &printed);
    assert!(printed.contains("--api-key=${KEY}"), "{printed}");

    served.daemon.signal(Signal::SIGTERM);
    let log = served.daemon.stderr();
    assert!(
        try_within_async(Duration::from_secs(30), async || served
            .daemon
            .stderr()
            .contains("daemon stopped"))
        .await
        .is_some(),
        "{log}"
    );
    let log = served.daemon.stderr();
    assert!(log.contains("--api-key=${KEY}"), "{log}");
    assert!(log.contains(shown_url), "{log}");
    assert_no_secret("the daemon log", &log);
    let run_log = served.home.path().join("operator_mcp/runlogs/run.jsonl");
    let run_log = std::fs::read_to_string(run_log).unwrap();
    assert!(run_log.contains(shown_url), "{run_log}");
    assert_no_secret("the run log", &run_log);
}
