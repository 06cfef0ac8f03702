//! The subscription table against a server played by the test over an in-memory transport:
//! sessions that subscribe to the same resource at once share one upstream subscription, and
//! none is left recorded on a subscription the server refused.

use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use revka_mcp::client::{Inbound, McpClient};
use revka_mcp::protocol::ServerHello;
use revka_mcp::spec::{PingPolicy, ServerSpec, TransportSpec};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::super::{Catalog, McpHub, SurfaceError};
use crate::StatusNode;
use crate::session::{NewSession, Session, SessionLimits, Sessions};
use crate::supervisor::{Intensity, Strategy, SupervisorActor, SupervisorArguments};
use crate::testing::Wire;

const URI: &str = "r://x";

/// A hub with server `s` (offering [`URI`]) connected through a client whose server is the
/// test: what the client sends arrives on the receiver, answers go to the `Inbound`.
fn hub() -> (Arc<McpHub>, Inbound, mpsc::UnboundedReceiver<Value>) {
    let hub = McpHub::new();
    let spec = Arc::new(ServerSpec {
        name: "s".into(),
        transport: TransportSpec::Stdio {
            command: "true".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        },
        tool_timeout: Duration::from_secs(30),
        ping: PingPolicy::OFF,
        handshake_timeout: Duration::from_secs(1),
        roots: vec![],
        reset_timeout_on_progress: false,
        shown: None,
        oauth: None,
    });
    let root = StatusNode::root("mcp_servers", "supervisor");
    let entry = hub.register(spec, root.child("mcp:s", "mcp_connection", None));
    let catalog = Catalog {
        resources: vec![json!({ "uri": URI, "name": "x" })],
        ..Catalog::default()
    };
    hub.set_catalog(&entry, catalog, None);
    let (inbound, _events) = Inbound::new("s", vec![]);
    let (tx, sent) = mpsc::unbounded_channel();
    let client = Arc::new(McpClient::new(inbound.clone(), Arc::new(Wire { sent: tx })));
    let hello = ServerHello {
        capabilities: json!({ "resources": { "subscribe": true } }),
        ..ServerHello::default()
    };
    hub.connected(&entry, client, hello, vec![]);
    (hub, inbound, sent)
}

/// Two sessions under a real `sessions` supervisor.
async fn two_sessions() -> (Arc<Session>, Arc<Session>) {
    let args = SupervisorArguments {
        node: StatusNode::root("sessions", "supervisor"),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: Vec::new(),
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    let sessions = Sessions::new(SessionLimits::default());
    sessions.attach_supervisor(sup);
    let new = || NewSession::new(std::path::Path::new("/").into());
    let (a, _) = sessions.create(new()).await.unwrap();
    let (b, _) = sessions.create(new()).await.unwrap();
    (a, b)
}

fn subscribe(hub: &Arc<McpHub>, session: &Arc<Session>) -> JoinHandle<Result<(), SurfaceError>> {
    let (hub, session) = (hub.clone(), session.clone());
    tokio::spawn(async move {
        let route = hub.route_uri(URI)?;
        hub.subscribe_resource(&session, URI, &route).await
    })
}

/// The next request the client sends (within a generous deadline).
async fn next_request(sent: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), sent.recv())
        .await
        .expect("a request within 10 s")
        .expect("the client is open")
}

/// Nothing more is sent once every task that could send has finished.
fn nothing_sent(sent: &mut mpsc::UnboundedReceiver<Value>) {
    if let Ok(extra) = sent.try_recv() {
        panic!("nothing more is sent, but {extra}");
    }
}

fn answer(inbound: &Inbound, request: &Value, outcome: Value) {
    let mut message = json!({ "jsonrpc": "2.0", "id": request["id"] });
    let field = if outcome.get("code").is_some() {
        "error"
    } else {
        "result"
    };
    message[field] = outcome;
    inbound.dispatch_line(message.to_string().as_bytes());
}

/// Two sessions subscribe to a resource nobody followed, at once, and the server refuses:
/// the second waits for the first's `resources/subscribe` and, as it failed, sends its own,
/// so neither is recorded without a subscription on the server. When the server accepts,
/// one request serves both, and only the last to leave sends `resources/unsubscribe`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_subscribing_at_once_while_the_server_refuses_are_not_left_recorded() {
    let (hub, inbound, mut sent) = hub();
    let (a, b) = two_sessions().await;
    let refused = json!({ "code": -32603, "message": "no subscriptions today" });

    let (first, second) = (subscribe(&hub, &a), subscribe(&hub, &b));
    let request = next_request(&mut sent).await;
    assert_eq!(request["method"], "resources/subscribe");
    assert_eq!(request["params"]["uri"], URI);
    answer(&inbound, &request, refused.clone());
    // The other session's own attempt, refused too.
    let request = next_request(&mut sent).await;
    assert_eq!(request["method"], "resources/subscribe", "{request}");
    answer(&inbound, &request, refused);
    for task in [first, second] {
        let outcome = task.await.unwrap();
        assert!(matches!(outcome, Err(SurfaceError::Call(_))), "{outcome:?}");
    }
    assert!(hub.subscribed_uris("s").is_empty());
    let update =
        serde_json::value::RawValue::from_string(json!({ "uri": URI }).to_string()).unwrap();
    assert_eq!(hub.resource_updated("s", Some(&update)), 0);
    nothing_sent(&mut sent);

    // Accepted: one request for both sessions.
    let (first, second) = (subscribe(&hub, &a), subscribe(&hub, &b));
    let request = next_request(&mut sent).await;
    assert_eq!(request["method"], "resources/subscribe");
    answer(&inbound, &request, json!({}));
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    nothing_sent(&mut sent);
    assert_eq!(hub.subscribed_uris("s"), [URI]);
    assert_eq!(hub.resource_updated("s", Some(&update)), 2);

    // The first to leave sends nothing; the last sends `resources/unsubscribe`.
    hub.unsubscribe_resource(&a, &hub.route_uri(URI).unwrap())
        .await
        .unwrap();
    nothing_sent(&mut sent);
    let leaving = {
        let (hub, b) = (hub.clone(), b.clone());
        tokio::spawn(async move {
            let route = hub.route_uri(URI)?;
            hub.unsubscribe_resource(&b, &route).await
        })
    };
    let request = next_request(&mut sent).await;
    assert_eq!(request["method"], "resources/unsubscribe");
    answer(&inbound, &request, json!({}));
    leaving.await.unwrap().unwrap();
    assert!(hub.subscribed_uris("s").is_empty());
}

/// A session follows at most `MAX_SESSION_SUBSCRIPTIONS` resources: one more is refused with
/// the reason, following one it already follows again is not one more, and another session is
/// not held back.
#[tokio::test]
async fn a_session_follows_a_bounded_number_of_resources() {
    use super::super::MAX_SESSION_SUBSCRIPTIONS;
    let (hub, inbound, mut sent) = hub();
    // The server answers every request at once.
    tokio::spawn(async move {
        while let Some(request) = sent.recv().await {
            let answer = json!({ "jsonrpc": "2.0", "id": request["id"], "result": {} });
            inbound.dispatch_line(answer.to_string().as_bytes());
        }
    });
    let (a, b) = two_sessions().await;
    let follow = async |session: &Arc<Session>, n: usize| {
        let uri = format!("revka://s/r://{n}");
        let route = hub.route_uri(&uri)?;
        hub.subscribe_resource(session, &uri, &route).await
    };
    for n in 0..MAX_SESSION_SUBSCRIPTIONS {
        follow(&a, n).await.unwrap();
    }
    let refused = follow(&a, MAX_SESSION_SUBSCRIPTIONS).await.unwrap_err();
    assert!(
        matches!(refused, SurfaceError::TooManySubscriptions(_)),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("unsubscribe from one first"),
        "{refused}"
    );
    follow(&a, 0).await.unwrap();
    follow(&b, MAX_SESSION_SUBSCRIPTIONS).await.unwrap();
}
