//! A session opened with a scoped client token: it lists, searches, activates and calls only
//! the tools of its scope (built-in, external and operator alike, `tool_search` excepted), and
//! every other tool is, to it, exactly an unknown one.

use revka_actors::session::ToolScope;

use super::*;

/// A built-in tool that answers an empty result.
struct Named(&'static str);

impl BuiltinTool for Named {
    fn definition(&self) -> Value {
        json!({ "name": self.0, "description": "test", "inputSchema": { "type": "object" } })
    }

    fn call(&self, _: ToolContext, _: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        Box::pin(async { Ok(json!({ "content": [] })) })
    }
}

/// Servers `fs` (two tools), `backup` (a `read_file` too), `time`, `ops` (an eager tool),
/// built-ins `health` and `echo`, and one operator tool.
fn registry(deferred_loading: bool) -> Arc<ToolRegistry> {
    let hub = McpHub::new();
    add_server(
        &hub,
        "fs",
        Some("Files."),
        &[("read_file", "Read a file"), ("write_file", "Write a file")],
    );
    add_server(
        &hub,
        "backup",
        Some("Backups."),
        &[("read_file", "Read a backup")],
    );
    add_server(&hub, "time", None, &[("get_current_time", "The time")]);
    add_server(
        &hub,
        "ops",
        Some("Operate agents."),
        &[("create_agent", "Start an agent")],
    );
    let mut registry = ToolRegistry::new(hub, deferred_loading);
    registry.register(Arc::new(Named("health")));
    registry.register(Arc::new(Named("echo")));
    registry.set_operator_catalog(vec![
        json!({ "name": "list_files", "description": "List", "inputSchema": { "type": "object" } }),
    ]);
    Arc::new(registry)
}

fn scope() -> ToolScope {
    ToolScope::new(["fs__read*", "health", "revka-operator__*"]).unwrap()
}

fn names(tools: &[Value]) -> Vec<&str> {
    tools.iter().map(|t| t["name"].as_str().unwrap()).collect()
}

/// The unknown-tool error of `name`, as a caller sees it: its message.
fn error_of(result: Result<Resolved, ToolError>) -> String {
    match result {
        Ok(_) => "resolved".to_owned(),
        Err(e) => e.to_string(),
    }
}

/// Runs `tool_search` in `session` with `query`; its text.
async fn tool_search(registry: &Arc<ToolRegistry>, session: &Arc<Session>, query: &str) -> String {
    let Ok(Resolved::Builtin(search)) = registry.resolve(session, "tool_search") else {
        panic!("tool_search is always available");
    };
    let ctx = ToolContext {
        session: session.clone(),
        registry: registry.clone(),
        progress: Arc::new(|_| {}),
        relay: None,
    };
    let result = search
        .call(ctx, json!({ "query": query }))
        .await
        .expect("tool_search answers");
    result["content"][0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_scoped_session_lists_and_searches_only_its_tools_under_deferred_loading() {
    let registry = registry(true);
    let scoped = session_with(Some(scope())).await;
    let open = session().await;

    assert_eq!(
        names(&registry.list(&open)),
        ["echo", "health", "ops__create_agent", "tool_search"]
    );
    // `echo` and the eager `ops__create_agent` are out of scope; `tool_search` stays.
    assert_eq!(names(&registry.list(&scoped)), ["health", "tool_search"]);
    let deferred: Vec<String> = registry
        .deferred(&scoped)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(deferred, ["fs__read_file", "revka-operator__list_files"]);
    let searchable: Vec<String> = registry
        .searchable(&scoped)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(searchable, deferred);

    // The instructions name only in-scope tools, and only the servers that offer one.
    let text = registry.instructions(&scoped).unwrap();
    assert!(text.contains("fs__read_file - Read a file"), "{text}");
    assert!(text.contains("revka-operator__list_files - List"), "{text}");
    for hidden in [
        "fs__write_file",
        "backup",
        "Backups.",
        "time__",
        "ops__",
        "Operate agents.",
    ] {
        assert!(!text.contains(hidden), "{hidden} in:\n{text}");
    }
    let full = registry.instructions(&open).unwrap();
    assert!(
        full.contains("Operate agents.") && full.contains("time__get_current_time"),
        "{full}"
    );

    // Keywords rank only in-scope tools.
    let found = tool_search(&registry, &scoped, "read file").await;
    assert!(found.contains("\"name\":\"fs__read_file\""), "{found}");
    assert!(!found.contains("backup__read_file"), "{found}");
    assert!(!found.contains("fs__write_file"), "{found}");
    let found = tool_search(&registry, &scoped, "time").await;
    assert_eq!(found, "No deferred tools matched \"time\".");
}

#[tokio::test]
async fn a_scoped_session_activates_nothing_outside_its_scope() {
    let registry = registry(true);
    let scoped = session_with(Some(scope())).await;

    // `select:` of an out-of-scope tool is answered as for a name that does not exist.
    let outside = tool_search(
        &registry,
        &scoped,
        "select:fs__write_file,time__get_current_time,ops__create_agent,echo",
    )
    .await;
    let unknown = tool_search(&registry, &scoped, "select:a__b,c__d,e__f,g").await;
    assert_eq!(
        outside
            .replace("fs__write_file", "a__b")
            .replace("time__get_current_time", "c__d")
            .replace("ops__create_agent", "e__f")
            .replace("echo", "g"),
        unknown
    );
    assert!(outside.starts_with("Not found: "), "{outside}");
    assert!(scoped.activated().is_empty());
    assert!(!registry.activate(&scoped, ["fs__write_file", "time__get_current_time"]));
    assert!(scoped.activated().is_empty(), "activate() ignores them too");

    // In scope: activated and then listed.
    let selected = tool_search(&registry, &scoped, "select:fs__write_file,fs__read_file").await;
    assert!(
        selected.contains("\"name\":\"fs__read_file\""),
        "{selected}"
    );
    assert!(
        selected.ends_with("Not found: fs__write_file"),
        "{selected}"
    );
    assert_eq!(
        scoped.activated().into_iter().collect::<Vec<_>>(),
        ["fs__read_file"]
    );
    assert_eq!(
        names(&registry.list(&scoped)),
        ["fs__read_file", "health", "tool_search"]
    );
}

#[tokio::test]
async fn a_scoped_session_calls_only_its_tools_and_others_are_unknown() {
    let registry = registry(true);
    let scoped = session_with(Some(scope())).await;

    // Out of scope, whatever the tool is (deferred, eager, built-in, a bare suffix): the
    // error of a tool that does not exist, never "deferred", never "ambiguous".
    for name in [
        "fs__write_file",
        "write_file",
        "time__get_current_time",
        "get_current_time",
        "ops__create_agent",
        "create_agent",
        "backup__read_file",
        "echo",
    ] {
        assert_eq!(
            error_of(registry.resolve(&scoped, name)),
            format!("unknown tool: {name}"),
            "{name}"
        );
    }
    // In scope but deferred: it may be told to activate it (it can see it in the list of
    // deferred tools anyway).
    assert!(matches!(
        registry.resolve(&scoped, "fs__read_file"),
        Err(ToolError::NotActivated(n)) if n == "fs__read_file"
    ));
    assert!(matches!(
        registry.resolve(&scoped, "health"),
        Ok(Resolved::Builtin(_))
    ));

    registry.activate(
        &scoped,
        [
            "fs__read_file",
            "revka-operator__list_files",
            "backup__read_file",
        ],
    );
    assert!(matches!(
        registry.resolve(&scoped, "fs__read_file"),
        Ok(Resolved::External(route)) if route.server.spec().name == "fs"
    ));
    // The bare name is unique in its scope, though another server has a `read_file`.
    assert!(matches!(
        registry.resolve(&scoped, "read_file"),
        Ok(Resolved::External(route)) if route.server.spec().name == "fs"
    ));
    assert!(matches!(
        registry.resolve(&scoped, "revka-operator__list_files"),
        Ok(Resolved::Operator(tool)) if tool == "list_files"
    ));
    assert_eq!(
        error_of(registry.resolve(&scoped, "backup__read_file")),
        "unknown tool: backup__read_file",
        "activation did not let it in"
    );

    // Without a scope, the same names resolve (or are deferred, or ambiguous).
    let open = session().await;
    open.activate(["fs__read_file", "backup__read_file"]);
    assert!(matches!(
        registry.resolve(&open, "read_file"),
        Err(ToolError::Ambiguous { .. })
    ));
    assert!(matches!(
        registry.resolve(&open, "time__get_current_time"),
        Err(ToolError::NotActivated(_))
    ));
    assert!(matches!(
        registry.resolve(&open, "echo"),
        Ok(Resolved::Builtin(_))
    ));
}

#[tokio::test]
async fn a_scoped_session_sees_only_its_tools_without_deferred_loading() {
    let registry = registry(false);
    let scoped = session_with(Some(scope())).await;
    assert_eq!(
        names(&registry.list(&scoped)),
        ["fs__read_file", "health", "revka-operator__list_files"]
    );
    assert!(registry.deferred(&scoped).is_empty());
    for name in ["fs__write_file", "backup__read_file", "echo", "tool_search"] {
        assert_eq!(
            error_of(registry.resolve(&scoped, name)),
            format!("unknown tool: {name}"),
            "{name}"
        );
    }
    assert!(matches!(
        registry.resolve(&scoped, "read_file"),
        Ok(Resolved::External(route)) if route.server.spec().name == "fs"
    ));
    assert!(matches!(
        registry.resolve(&scoped, "list_files"),
        Ok(Resolved::Operator(_))
    ));
    let open = session().await;
    assert_eq!(
        names(&registry.list(&open)),
        [
            "backup__read_file",
            "echo",
            "fs__read_file",
            "fs__write_file",
            "health",
            "ops__create_agent",
            "revka-operator__list_files",
            "time__get_current_time"
        ]
    );
}

/// A federating Revka's session (it declared federation in `initialize`) is served every tool
/// of its scope without deferral and without `tool_search`, callable at once; its scope still
/// holds, and other sessions of the same daemon keep deferred loading.
#[tokio::test]
async fn a_federated_session_gets_every_tool_of_its_scope_without_deferral() {
    let registry = registry(true);
    let federated = session().await;
    federated.set_federated();
    let scoped = session_with(Some(scope())).await;
    scoped.set_federated();
    let plain = session().await;

    assert_eq!(
        names(&registry.list(&federated)),
        [
            "backup__read_file",
            "echo",
            "fs__read_file",
            "fs__write_file",
            "health",
            "ops__create_agent",
            "revka-operator__list_files",
            "time__get_current_time",
        ]
    );
    assert!(registry.deferred(&federated).is_empty());
    assert!(matches!(
        registry.resolve(&federated, "time__get_current_time"),
        Ok(Resolved::External(_))
    ));
    assert_eq!(
        error_of(registry.resolve(&federated, "tool_search")),
        "unknown tool: tool_search"
    );
    let text = registry.instructions(&federated).unwrap_or_default();
    assert!(!text.contains("available-deferred-tools"), "{text}");
    assert!(!text.contains("tool_search"), "{text}");

    // The scope still applies.
    assert_eq!(
        names(&registry.list(&scoped)),
        ["fs__read_file", "health", "revka-operator__list_files"]
    );
    assert_eq!(
        error_of(registry.resolve(&scoped, "fs__write_file")),
        "unknown tool: fs__write_file"
    );

    // The daemon's other sessions still defer.
    assert_eq!(
        names(&registry.list(&plain)),
        ["echo", "health", "ops__create_agent", "tool_search"]
    );
}
