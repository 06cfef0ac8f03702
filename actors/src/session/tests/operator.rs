//! An operator call waits for the operator on watches, not by polling: it wakes when the
//! operator's server is registered, when its client is published and when its supervisor
//! changes its state, and fails with a clear error when the operator does not come within
//! its bound. A call goes to the operator's client by the operator's own tool name, and the
//! tools the operator publishes when it connects reach the table's listener.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use revka_mcp::client::{CallOptions, Inbound, McpClient, Outgoing, Transport, TransportError};
use revka_mcp::protocol::ServerHello;
use revka_mcp::spec::{PingPolicy, ServerSpec, TransportSpec};
use revka_mcp::wrapper::Arguments;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;
use crate::ActorState;
use crate::mcp::hub::{McpHub, ToolsListener};
use crate::session::operator::operator_client;

/// Counts the wake-ups of a future polled by hand: a waiter that polls would be woken by its
/// own timer.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A future polled by hand, counting its wake-ups.
struct Polled<F: Future> {
    future: Pin<Box<F>>,
    wakes: Arc<Wakes>,
}

impl<F: Future> Polled<F> {
    fn new(future: F) -> Self {
        Self {
            future: Box::pin(future),
            wakes: Arc::default(),
        }
    }

    fn poll(&mut self) -> Poll<F::Output> {
        let waker = Waker::from(self.wakes.clone());
        self.future.as_mut().poll(&mut Context::from_waker(&waker))
    }

    fn wakes(&self) -> usize {
        self.wakes.0.load(Ordering::SeqCst)
    }
}

fn operator_spec() -> Arc<ServerSpec> {
    Arc::new(ServerSpec {
        name: OPERATOR_SERVER.into(),
        transport: TransportSpec::Stdio {
            command: "python".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        },
        tool_timeout: Duration::from_secs(30),
        ping: PingPolicy::OFF,
        handshake_timeout: Duration::from_secs(5),
        roots: vec![],
        reset_timeout_on_progress: false,
        shown: None,
        oauth: None,
    })
}

/// A server on the other end of the wire: answers each `tools/call` with the name it was
/// called by and its arguments, and records every request's tool name.
struct Echo {
    inbound: Inbound,
    called: mpsc::UnboundedSender<String>,
}

impl Transport for Echo {
    fn send(&self, msg: Outgoing) -> Result<(), TransportError> {
        let request: Value = serde_json::from_slice(msg.line()).expect("client sends JSON");
        if request["method"] == "tools/call" {
            let name = request["params"]["name"].as_str().unwrap_or("").to_owned();
            let text = format!("{name} {}", request["params"]["arguments"]);
            let answer = json!({
                "jsonrpc": "2.0",
                "id": request["id"],
                "result": { "content": [{ "type": "text", "text": text }], "isError": false },
            });
            let _ = self.called.send(name);
            self.inbound.dispatch_line(answer.to_string().as_bytes());
        }
        Ok(())
    }
    fn close(&self) {}
}

/// An echoing operator client, and the names its tools were called by.
fn echo_client() -> (Arc<McpClient>, mpsc::UnboundedReceiver<String>) {
    let (inbound, _) = Inbound::new(OPERATOR_SERVER, vec![]);
    let (called, calls) = mpsc::unbounded_channel();
    let transport = Echo {
        inbound: inbound.clone(),
        called,
    };
    (
        Arc::new(McpClient::new(inbound, Arc::new(transport))),
        calls,
    )
}

/// A server's name and the tools it published, as the hub's listener heard them.
type Heard = (String, Vec<Value>);

fn operator_tools() -> Vec<Value> {
    vec![
        json!({ "name": "operator_status", "inputSchema": { "type": "object" } }),
        json!({ "name": "save_plan", "inputSchema": { "type": "object" } }),
    ]
}

#[tokio::test(start_paused = true)]
async fn an_operator_call_waits_on_watches_for_the_operator_to_connect() {
    let published: Arc<Mutex<Vec<Heard>>> = Arc::default();
    let seen = published.clone();
    let hub = McpHub::with_tools_listener(ToolsListener::new(move |server, tools| {
        seen.lock()
            .unwrap()
            .push((server.to_owned(), tools.to_vec()));
    }));
    let started = Instant::now();
    let mut waiting = Polled::new(operator_client(&hub, started + OPERATOR_WAIT));
    assert!(waiting.poll().is_pending());

    // Nothing registered yet: time passes, and the waiter is not woken once.
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(
        waiting.wakes(),
        0,
        "no wake-up before the operator registers"
    );

    // The operator's connection registers its server: one wake-up, and it waits for the client.
    let root = StatusNode::root("operator", "supervisor");
    let node = root.child("mcp:revka-operator", "mcp_server", None);
    node.set_state(ActorState::Starting);
    let entry = hub.register(operator_spec(), node.clone());
    assert_eq!(waiting.wakes(), 1);
    assert!(waiting.poll().is_pending());
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(waiting.wakes(), 1, "no wake-up while the operator starts");

    // It connects: the waiter has its client at once, and the listener its tools.
    let (client, _) = echo_client();
    hub.connected(
        &entry,
        client.clone(),
        ServerHello::default(),
        operator_tools(),
    );
    assert_eq!(waiting.wakes(), 2);
    let Poll::Ready(Ok((got, got_client))) = waiting.poll() else {
        panic!("the waiter has the operator's client once it connected");
    };
    assert!(Arc::ptr_eq(&got, &entry) && Arc::ptr_eq(&got_client, &client));
    assert_eq!(started.elapsed(), Duration::from_secs(40));
    assert_eq!(
        *published.lock().unwrap(),
        [(OPERATOR_SERVER.to_owned(), operator_tools())],
        "the catalog is told when the operator connects"
    );

    // Reconnecting with the same tools tells nobody again.
    hub.connected(&entry, client, ServerHello::default(), operator_tools());
    assert_eq!(published.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_operator_that_does_not_come_fails_the_call_within_its_bound() {
    // Never registered.
    let hub = McpHub::new();
    let started = Instant::now();
    let err = operator_client(&hub, started + OPERATOR_WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "the operator did not start in time");
    assert_eq!(started.elapsed(), OPERATOR_WAIT);

    // Registered, but never connected.
    let root = StatusNode::root("operator", "supervisor");
    let node = root.child("mcp:revka-operator", "mcp_server", None);
    node.set_state(ActorState::Starting);
    hub.register(operator_spec(), node.clone());
    let started = Instant::now();
    let err = operator_client(&hub, started + OPERATOR_WAIT)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "server `revka-operator` is not connected yet"
    );
    assert_eq!(started.elapsed(), OPERATOR_WAIT);

    // Backing off while a call waits: the call fails at once, woken by the state change.
    let mut waiting = Polled::new(operator_client(&hub, Instant::now() + OPERATOR_WAIT));
    assert!(waiting.poll().is_pending());
    node.record_restart(Duration::from_secs(5));
    node.set_state(ActorState::BackingOff);
    assert_eq!(waiting.wakes(), 1, "woken by the supervisor, not a timer");
    let Poll::Ready(Err(err)) = waiting.poll() else {
        panic!("the call fails once the operator backs off");
    };
    assert_eq!(
        err.to_string(),
        "server `revka-operator` is restarting, next attempt in 5 s"
    );
}

#[tokio::test(start_paused = true)]
async fn an_operator_call_reaches_the_operators_client_by_its_own_tool_name() {
    let (sessions, _node, sup) = table(SessionLimits::default()).await;
    let (session, _) = sessions
        .create(NewSession::new(std::path::Path::new("/tmp").into()))
        .await
        .unwrap();
    // The session's operator, connected (as its connection actor would leave it).
    let hub = sessions.operator_hub();
    let root = StatusNode::root("operator", "supervisor");
    let entry = hub.register(
        operator_spec(),
        root.child("mcp:revka-operator", "mcp_server", None),
    );
    let (client, mut calls) = echo_client();
    hub.connected(&entry, client, ServerHello::default(), operator_tools());
    session.operator_hub.set(hub).unwrap();

    let result = session
        .call_operator(
            "save_plan",
            Arguments::Value(json!({ "title": "t" })),
            &CallOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        result.get().contains(r#"save_plan {\"title\":\"t\"}"#),
        "{result}"
    );
    assert_eq!(calls.recv().await.unwrap(), "save_plan", "no exposed name");

    // A tool the operator does not have is the hub's unknown-tool error, by its exposed name.
    let err = session
        .call_operator("nope", Arguments::Value(json!({})), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown tool: revka-operator__nope");
    sup.stop(None);
}
