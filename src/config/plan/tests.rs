//! The plan a config gives: the supervision tree's shape (which actors and supervisors, with
//! which strategies, restart types and children), and the settings each node runs with.

use std::path::Path;
use std::time::Duration;

use revka_actors::supervisor::{Intensity, RestartType, Shutdown, Strategy};
use revka_mcp::spec::{PingPolicy, TransportSpec};

use super::{DaemonPlan, NodeKind, SUPERVISOR_SHUTDOWN};
use crate::config::{Config, parse};

const HOME: &str = "/home/u/.revka";

/// The plan of `text` parsed as `$HOME/config.toml` (`HOME=/home/u`, `REVKA_HOME` unset).
fn plan_of(text: &str) -> DaemonPlan {
    let env = |name: &str| (name == "HOME").then(|| "/home/u".to_owned());
    let loaded = parse(text, &Path::new(HOME).join("config.toml"), &env)
        .unwrap_or_else(|e| panic!("unexpected error: {e}"));
    DaemonPlan::new(&loaded.config, Path::new(HOME))
}

#[test]
fn the_default_config_runs_empty_subtrees_and_both_listeners() {
    let plan = plan_of("");
    assert_eq!(
        plan,
        DaemonPlan::new(&Config::default_in(Path::new(HOME)), Path::new(HOME))
    );
    assert_eq!(
        plan.tree().render(),
        "root (supervisor, one_for_one)
  progress (broadcaster, permanent)
  mcp_servers (supervisor, one_for_one, permanent)
  sidecars (supervisor, rest_for_one, permanent)
  sessions (supervisor, one_for_one, permanent, temporary session children)
  terminals (supervisor, one_for_one, permanent, temporary terminal children)
  mcp_http (listener, permanent)
  gateway (listener, permanent)
"
    );
    let tree = plan.tree();
    let NodeKind::Supervisor { intensity, .. } = &tree.kind else {
        panic!("root is a supervisor");
    };
    assert_eq!(
        *intensity,
        Intensity {
            max_restarts: 30,
            period: Duration::from_secs(60)
        }
    );
    // Nested supervisors get time for their children to stop.
    for id in ["mcp_servers", "sidecars", "sessions"] {
        let node = tree.child(id).unwrap();
        assert_eq!(
            node.policy.shutdown,
            Shutdown::Timeout(SUPERVISOR_SHUTDOWN),
            "{id}"
        );
    }
}

/// Valid servers run in config order, then the invalid ones, each a child that fails to start
/// and is never restarted; a server's `restart` table and `auto_connect` reach its node; the
/// session manager brings its process, breaker and queue; a disabled gateway has no node.
#[test]
fn servers_valid_and_invalid_sidecars_and_no_gateway() {
    let plan = plan_of(
        r#"
[mcp]
enabled = true

[[mcp.servers]]
name = "files"
command = "mcp-files"
args = ["--root", "/srv"]

[[mcp.servers]]
name = "broken"
transport = "carrier-pigeon"

[[mcp.servers]]
name = "web"
transport = "http"
url = "https://example.com/mcp"
auto_connect = false
restart = { restart = "transient", brutal_kill = true, ping_interval_secs = 0 }

[[mcp.servers]]
name = "nourl"
transport = "sse"

[session_manager]
enabled = true
restart = { restart = "transient" }

[gateway]
enabled = false

[supervisor]
restart = "temporary"
intensity = 7
"#,
    );
    assert_eq!(
        plan.tree().render(),
        "root (supervisor, one_for_one)
  progress (broadcaster, permanent)
  mcp_servers (supervisor, one_for_one, permanent)
    mcp:files (mcp_connection, temporary)
    mcp:web (mcp_connection, transient, manual, brutal_kill)
    mcp:broken (mcp_connection, permanent, fails to start)
    mcp:nourl (mcp_connection, permanent, fails to start)
  sidecars (supervisor, rest_for_one, permanent)
    session_manager (process, transient)
    breaker:session_manager (breaker, permanent)
    retry:session_manager (retry_queue, permanent)
  sessions (supervisor, one_for_one, permanent, temporary session children)
  terminals (supervisor, one_for_one, permanent, temporary terminal children)
  mcp_http (listener, permanent)
"
    );
    let tree = plan.tree();
    let servers = tree.child("mcp_servers").unwrap();
    let NodeKind::Supervisor {
        strategy,
        intensity,
        ..
    } = &servers.kind
    else {
        panic!("mcp_servers is a supervisor");
    };
    assert_eq!(
        (*strategy, intensity.max_restarts),
        (Strategy::OneForOne, 7)
    );
    let NodeKind::McpConnection(files) = &servers.child("mcp:files").unwrap().kind else {
        panic!("mcp:files is a connection");
    };
    assert_eq!(
        files.spec.transport,
        TransportSpec::Stdio {
            command: "mcp-files".into(),
            args: vec!["--root".into(), "/srv".into()],
            env: Vec::new(),
            cwd: None,
        }
    );
    assert_eq!(
        files.spec.ping,
        PingPolicy::standard(),
        "[supervisor]'s probe"
    );
    let NodeKind::McpConnection(web) = &servers.child("mcp:web").unwrap().kind else {
        panic!("mcp:web is a connection");
    };
    assert_eq!(
        web.spec.ping.interval,
        Duration::ZERO,
        "its own restart table"
    );
    let NodeKind::InvalidServer(broken) = &servers.child("mcp:broken").unwrap().kind else {
        panic!("mcp:broken is invalid");
    };
    assert!(
        broken.reason.ends_with("mcp.servers[1].transport: unknown transport; expected one of \"stdio\", \"http\", \"sse\", \"url\""),
        "{}",
        broken.reason
    );
    assert_eq!(servers.child("mcp:broken").unwrap().policy.max_restarts, 0);
    let sidecars = tree.child("sidecars").unwrap();
    let NodeKind::RetryQueue(queue) = &sidecars.child("retry:session_manager").unwrap().kind else {
        panic!("a retry queue");
    };
    assert_eq!(
        queue.journal,
        Path::new(HOME).join("operator_mcp/retry_queue.jsonl")
    );
    assert_eq!(plan.operator.policy.restart, RestartType::Temporary);
}

/// With `[mcp] enabled = false` the servers, valid or not, are planned but none runs.
#[test]
fn a_disabled_client_runs_no_server() {
    let plan = plan_of(
        "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\n\n[[mcp.servers]]\nname = \"b\"\n",
    );
    assert_eq!(plan.mcp.servers.len(), 2);
    assert!(plan.mcp.servers[0].is_ok() && plan.mcp.servers[1].is_err());
    assert!(
        plan.tree()
            .child("mcp_servers")
            .unwrap()
            .children()
            .is_empty()
    );
}
