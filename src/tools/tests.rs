//! Tool tiers: the eager subset, per-session visibility and resolution, and the deferred-tools
//! section of the `initialize` instructions; `scope`: a scoped session's view of all of it.

mod dispatch;
mod scope;

use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use revka_actors::StatusNode;
use revka_actors::mcp::hub::McpHub;
use revka_actors::session::{SessionLimits, Sessions};
use revka_actors::supervisor::{Intensity, Strategy, SupervisorActor, SupervisorArguments};
use revka_mcp::client::{Inbound, McpClient, Outgoing, Transport, TransportError};
use revka_mcp::protocol::ServerHello;
use revka_mcp::spec::{ServerSpec, TransportSpec};
use serde_json::json;

use super::*;

struct Nowhere;

impl Transport for Nowhere {
    fn send(&self, _: Outgoing) -> Result<(), TransportError> {
        Err(TransportError::Closed("test".into()))
    }
    fn close(&self) {}
}

fn hub_with(server: &str, instructions: Option<&str>, tools: &[(&str, &str)]) -> Arc<McpHub> {
    let hub = McpHub::new();
    add_server(&hub, server, instructions, tools);
    hub
}

/// Registers `server` in `hub`, connected, with `tools` (`(name, description)`).
fn add_server(hub: &McpHub, server: &str, instructions: Option<&str>, tools: &[(&str, &str)]) {
    let spec = Arc::new(ServerSpec {
        name: server.into(),
        transport: TransportSpec::Stdio {
            command: "x".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        },
        tool_timeout: Duration::from_secs(1),
        ping: revka_mcp::spec::PingPolicy::OFF,
        handshake_timeout: Duration::from_secs(1),
        roots: vec![],
        reset_timeout_on_progress: false,
        shown: None,
        oauth: None,
    });
    let entry = hub.register(spec, StatusNode::root("x", "mcp_connection"));
    let client = Arc::new(McpClient::new(
        Inbound::new(server, vec![]).0,
        Arc::new(Nowhere),
    ));
    let hello = ServerHello {
        instructions: instructions.map(str::to_owned),
        ..Default::default()
    };
    let defs = tools
        .iter()
        .map(|(n, d)| json!({ "name": n, "description": d, "inputSchema": { "type": "object" } }))
        .collect();
    hub.connected(&entry, client, hello, defs);
}

async fn session() -> Arc<Session> {
    session_with(None).await
}

/// A session of its own table, limited to `scope` if given.
async fn session_with(scope: Option<revka_actors::session::ToolScope>) -> Arc<Session> {
    let node = StatusNode::root("sessions", "supervisor");
    let args = SupervisorArguments {
        node,
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: vec![],
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    let sessions = Sessions::new(SessionLimits::default());
    sessions.attach_supervisor(sup);
    sessions
        .create(revka_actors::session::NewSession {
            scope: scope.map(Arc::new),
            ..revka_actors::session::NewSession::new(std::path::Path::new("/").into())
        })
        .await
        .unwrap()
        .0
}

#[test]
fn eager_tools_by_suffix_and_memory_reflexes() {
    for eager in [
        "ops__create_agent",
        "x__wait_for_agent",
        "kumiho-memory__kumiho_memory_engage",
    ] {
        assert!(ToolRegistry::is_eager(eager), "{eager}");
    }
    for deferred in [
        "ops__create_agents",
        "create_agent",
        "other__kumiho_memory_engage",
        "fs__read_file",
    ] {
        assert!(!ToolRegistry::is_eager(deferred), "{deferred}");
    }
}

#[tokio::test]
async fn deferred_tools_are_listed_and_callable_only_once_activated() {
    let hub = hub_with(
        "ops",
        Some("Operate agents."),
        &[
            ("create_agent", "Start an agent"),
            ("read_log", "Read a log\nsecond line"),
        ],
    );
    let registry = ToolRegistry::new(hub, true);
    let s = session().await;
    let names = |r: &ToolRegistry| {
        r.list(&s)
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&registry), ["ops__create_agent", "tool_search"]);
    assert!(matches!(
        registry.resolve(&s, "ops__read_log"),
        Err(ToolError::NotActivated(_))
    ));
    assert!(
        matches!(
            registry.resolve(&s, "read_log"),
            Err(ToolError::NotActivated(_))
        ),
        "bare names too"
    );
    assert!(matches!(
        registry.resolve(&s, "nope"),
        Err(ToolError::Unknown(_))
    ));
    assert!(
        matches!(
            registry.resolve(&s, "create_agent"),
            Ok(Resolved::External(_))
        ),
        "unique bare suffix"
    );
    s.activate(["ops__read_log"]);
    assert_eq!(
        names(&registry),
        ["ops__create_agent", "ops__read_log", "tool_search"]
    );
    assert!(registry.deferred(&s).is_empty());
    // Visible tools stay searchable: a second `select:` returns the schema again, and an eager
    // tool is not "activated" (no spurious list change).
    let searchable: Vec<String> = registry
        .searchable(&s)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(searchable, ["ops__create_agent", "ops__read_log"]);
    assert!(!registry.activate(&s, ["ops__read_log", "ops__create_agent"]));
    assert!(!s.is_activated("ops__create_agent"));

    let text = registry.instructions(&s).unwrap();
    assert!(text.contains("## MCP server `ops`\nOperate agents.\n\n<available-deferred-tools>\nops__read_log - Read a log\n</available-deferred-tools>"), "{text}");
    assert!(
        !text.contains("ops__create_agent -"),
        "eager tools are not deferred"
    );
}

#[tokio::test]
async fn without_deferred_loading_everything_is_listed() {
    let hub = hub_with("fs", None, &[("read", "r"), ("write", "w")]);
    let registry = ToolRegistry::new(hub, false);
    let s = session().await;
    let names: Vec<String> = registry
        .list(&s)
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["fs__read", "fs__write"]);
    assert!(registry.instructions(&s).is_none());
}
