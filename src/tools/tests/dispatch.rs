//! [`ToolRegistry::execute`]: a built-in tool's panic is an error result naming it (and the
//! registry serves the next call), a built-in tool past the per-call ceiling is an error
//! result, and an external tool goes to its server, progress included.

use std::sync::Mutex;

use revka_actors::mcp::hub::MAX_CALL;
use revka_mcp::wrapper::RawArguments;
use serde_json::value::RawValue;

use super::*;

/// A built-in tool that panics with its message.
struct Panics(&'static str);

impl BuiltinTool for Panics {
    fn definition(&self) -> Value {
        json!({ "name": "boom", "inputSchema": { "type": "object" } })
    }

    fn call(&self, _: ToolContext, _: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let message = self.0.to_owned();
        Box::pin(async move { panic!("{message}") })
    }
}

/// A built-in tool that never answers.
struct Forever;

impl BuiltinTool for Forever {
    fn definition(&self) -> Value {
        json!({ "name": "forever", "inputSchema": { "type": "object" } })
    }

    fn call(&self, _: ToolContext, _: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        Box::pin(std::future::pending())
    }
}

/// A built-in tool that answers with its arguments.
struct Echo;

impl BuiltinTool for Echo {
    fn definition(&self) -> Value {
        json!({ "name": "echo", "inputSchema": { "type": "object" } })
    }

    fn call(
        &self,
        _: ToolContext,
        arguments: Value,
    ) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        Box::pin(async move {
            Ok(json!({ "content": [{ "type": "text", "text": arguments.to_string() }] }))
        })
    }
}

fn context(registry: &Arc<ToolRegistry>, session: &Arc<Session>) -> ToolContext {
    ToolContext {
        session: session.clone(),
        registry: registry.clone(),
        progress: Arc::new(|_| {}),
        relay: None,
    }
}

fn arguments(json: &str) -> RawArguments {
    RawArguments::new(&RawValue::from_string(json.to_owned()).unwrap()).unwrap()
}

/// `(isError, text of the first content)` of a tool result.
fn read(result: &RawValue) -> (bool, String) {
    let v: Value = serde_json::from_str(result.get()).unwrap();
    (
        v["isError"].as_bool().unwrap_or(false),
        v["content"][0]["text"].as_str().unwrap_or("").to_owned(),
    )
}

async fn run(registry: &Arc<ToolRegistry>, session: &Arc<Session>, name: &str) -> (bool, String) {
    let resolved = registry.resolve(session, name).unwrap();
    let result = ToolRegistry::execute(
        resolved,
        context(registry, session),
        arguments(r#"{"a":1}"#),
    )
    .await;
    read(&result)
}

#[tokio::test]
async fn a_builtin_panic_is_an_error_result_and_the_registry_carries_on() {
    let mut registry = ToolRegistry::new(McpHub::new(), false);
    registry.register(Arc::new(Panics("kaboom")));
    registry.register(Arc::new(Echo));
    let registry = Arc::new(registry);
    let s = session().await;

    assert_eq!(
        run(&registry, &s, "boom").await,
        (true, "tool `boom` failed internally: kaboom".to_owned())
    );
    assert_eq!(
        run(&registry, &s, "echo").await,
        (false, r#"{"a":1}"#.to_owned()),
        "the next call is served"
    );
    assert_eq!(
        run(&registry, &s, "boom").await.1,
        "tool `boom` failed internally: kaboom",
        "and the same tool again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_builtin_past_the_per_call_ceiling_is_an_error_result() {
    let mut registry = ToolRegistry::new(McpHub::new(), false);
    registry.register(Arc::new(Forever));
    let registry = Arc::new(registry);
    let s = session().await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        run(&registry, &s, "forever").await,
        (true, "tool `forever` did not finish within 600s".to_owned())
    );
    assert_eq!(started.elapsed(), MAX_CALL);
}

/// A server that reports progress on each `tools/call`, then answers with the tool's own name
/// and its arguments.
struct Server {
    inbound: Inbound,
}

impl Transport for Server {
    fn send(&self, msg: Outgoing) -> Result<(), TransportError> {
        let request: Value = serde_json::from_slice(msg.line()).unwrap();
        if request["method"] == "tools/call" {
            let progress = json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": { "progressToken": request["params"]["_meta"]["progressToken"], "progress": 1, "total": 2 },
            });
            self.inbound.dispatch_line(progress.to_string().as_bytes());
            let text = format!(
                "{} {}",
                request["params"]["name"].as_str().unwrap(),
                request["params"]["arguments"]
            );
            let answer = json!({
                "jsonrpc": "2.0",
                "id": request["id"],
                "result": { "content": [{ "type": "text", "text": text }] },
            });
            self.inbound.dispatch_line(answer.to_string().as_bytes());
        }
        Ok(())
    }
    fn close(&self) {}
}

#[tokio::test]
async fn an_external_tool_goes_to_its_server_with_its_progress() {
    let hub = McpHub::new();
    add_server(&hub, "down", None, &[("read", "unreachable")]);
    let spec = Arc::new(ServerSpec {
        name: "fs".into(),
        transport: TransportSpec::Stdio {
            command: "x".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        },
        tool_timeout: Duration::from_secs(5),
        ping: revka_mcp::spec::PingPolicy::OFF,
        handshake_timeout: Duration::from_secs(1),
        roots: vec![],
        reset_timeout_on_progress: false,
        shown: None,
        oauth: None,
    });
    let entry = hub.register(spec, StatusNode::root("fs", "mcp_connection"));
    let inbound = Inbound::new("fs", vec![]).0;
    let client = Arc::new(McpClient::new(
        inbound.clone(),
        Arc::new(Server { inbound }),
    ));
    let defs = vec![json!({ "name": "read_file", "inputSchema": { "type": "object" } })];
    hub.connected(&entry, client, ServerHello::default(), defs);
    let registry = Arc::new(ToolRegistry::new(hub, false));
    let s = session().await;

    let reports: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = reports.clone();
    let ctx = ToolContext {
        progress: Arc::new(move |p: ProgressUpdate| seen.lock().unwrap().push(p.progress)),
        ..context(&registry, &s)
    };
    let resolved = registry.resolve(&s, "fs__read_file").unwrap();
    assert!(matches!(resolved, Resolved::External(_)));
    let result = ToolRegistry::execute(resolved, ctx, arguments(r#"{"path":"/x"}"#)).await;
    assert_eq!(
        read(&result),
        (false, r#"read_file {"path":"/x"}"#.to_owned()),
        "called by the server's own name"
    );
    assert_eq!(*reports.lock().unwrap(), [json!(1)]);

    // A server that cannot be reached: an error result, not an error.
    let resolved = registry.resolve(&s, "down__read").unwrap();
    let (is_error, text) =
        read(&ToolRegistry::execute(resolved, context(&registry, &s), arguments("{}")).await);
    assert!(is_error && text.contains("test"), "{text}");
}
