//! The probe against an in-memory transport where the test plays the server, in paused time:
//! when it pings, what counts as an answer, when it gives up, and live policy changes.

use std::time::Duration;

use revka_mcp::client::{CallOptions, Inbound, McpClient, ProgressSink};
use revka_mcp::spec::{ServerSpec, TransportSpec};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;
use crate::StatusNode;
use crate::mcp::hub::McpHub;
use crate::testing::Wire;

const INTERVAL: Duration = Duration::from_secs(1);

struct Probe {
    hub: Arc<McpHub>,
    entry: Arc<ServerEntry>,
    client: Arc<McpClient>,
    inbound: Inbound,
    sent: mpsc::UnboundedReceiver<Value>,
    status: Arc<ProbeStatus>,
    task: JoinHandle<Option<Unresponsive>>,
}

fn spec(ping: PingPolicy) -> ServerSpec {
    ServerSpec {
        name: "s".into(),
        transport: TransportSpec::Stdio {
            command: "true".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        },
        tool_timeout: Duration::from_secs(60),
        ping,
        handshake_timeout: Duration::from_secs(1),
        roots: vec![],
        reset_timeout_on_progress: false,
        shown: None,
        oauth: None,
    }
}

fn policy(interval: Duration, failures: u32) -> PingPolicy {
    PingPolicy { interval, failures }
}

/// A probe running (its first wait begun) on a fresh connection.
async fn start(ping: PingPolicy) -> Probe {
    let hub = McpHub::new();
    let root = StatusNode::root("mcp_servers", "supervisor");
    let entry = hub.register(
        Arc::new(spec(ping)),
        root.child("mcp:s", "mcp_connection", None),
    );
    let (inbound, _events) = Inbound::new("s", vec![]);
    let (tx, sent) = mpsc::unbounded_channel();
    let client = Arc::new(McpClient::new(inbound.clone(), Arc::new(Wire { sent: tx })));
    // The handshake's answer: heard before the probe starts, so it must not count.
    inbound.dispatch_line(br#"{"jsonrpc":"2.0","id":999,"result":{}}"#);
    let status = Arc::new(ProbeStatus::default());
    let task = tokio::spawn(run(entry.clone(), client.clone(), status.clone()));
    let probe = Probe {
        hub,
        entry,
        client,
        inbound,
        sent,
        status,
        task,
    };
    probe.settle().await;
    probe
}

impl Probe {
    /// Lets the probe task run what is ready without moving the clock.
    async fn settle(&self) {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Moves the clock by `d` and lets the probe act on it.
    async fn advance(&self, d: Duration) {
        tokio::time::advance(d).await;
        self.settle().await;
    }

    /// The ping sent now, if any (anything else sent is a failure).
    fn ping_sent(&mut self) -> Option<Value> {
        let msg = self.sent.try_recv().ok()?;
        assert_eq!(msg["method"], "ping", "only pings are sent: {msg}");
        assert!(msg.get("params").is_none(), "a ping has no params: {msg}");
        Some(msg)
    }

    fn answer(&self, msg: Value) {
        self.inbound.dispatch_line(msg.to_string().as_bytes());
    }

    fn details(&self) -> Value {
        self.status.details(self.entry.spec().ping)
    }
}

/// An idle server is pinged once per interval (its answers do not postpone the next ping); a
/// server answering calls is never pinged.
#[tokio::test(start_paused = true)]
async fn a_silent_server_is_pinged_every_interval_and_a_busy_one_never() {
    let mut p = start(policy(INTERVAL, 3)).await;
    assert!(p.ping_sent().is_none(), "nothing before the first interval");
    for n in 1..=3 {
        p.advance(INTERVAL).await;
        let ping = p.ping_sent().expect("a silent server is pinged");
        p.answer(json!({"jsonrpc": "2.0", "id": ping["id"], "result": {}}));
        p.settle().await;
        assert_eq!(p.details()["pings"], n);
    }
    let last = &p.details()["last_ping"];
    assert_eq!(last["ok"], true, "{last}");
    assert_eq!(last["error"], Value::Null);
    assert!(last["latency_ms"].as_f64().is_some() && last["at"].is_string());

    // Busy: an answer within each interval (a late one counts too), so no ping at all.
    for _ in 0..10 {
        p.advance(INTERVAL / 2).await;
        p.answer(json!({"jsonrpc": "2.0", "id": 12345, "result": {}}));
        p.advance(INTERVAL / 2).await;
        assert!(p.ping_sent().is_none(), "a busy server is never pinged");
    }
    assert_eq!(p.details()["pings"], 3);
    assert!(!p.task.is_finished());
}

/// `failures` failed pings in a row make the server unresponsive, with the last reason; an
/// answer in between starts the count over; a timed-out ping sends no `notifications/cancelled`.
#[tokio::test(start_paused = true)]
async fn failed_pings_in_a_row_make_the_server_unresponsive_and_an_answer_resets_the_count() {
    let mut p = start(policy(INTERVAL, 3)).await;
    // Two failures, then an answer.
    for failures in 1..=2 {
        p.advance(INTERVAL).await;
        assert!(p.ping_sent().is_some());
        p.advance(INTERVAL).await; // the ping's timeout: min(interval, 10 s)
        assert_eq!(p.details()["failures_in_a_row"], failures);
        assert_eq!(p.details()["last_ping"]["ok"], false);
        assert_eq!(p.details()["last_ping"]["error"], "no answer within 1 s");
    }
    p.advance(INTERVAL).await;
    let ping = p.ping_sent().unwrap();
    p.answer(json!({"jsonrpc": "2.0", "id": ping["id"], "result": {}}));
    p.settle().await;
    assert_eq!(p.details()["failures_in_a_row"], 0);

    // Three in a row: unresponsive.
    for _ in 0..3 {
        assert!(!p.task.is_finished());
        p.advance(INTERVAL).await;
        assert!(p.ping_sent().is_some());
        p.advance(INTERVAL).await;
    }
    let found = (&mut p.task).await.unwrap().expect("unresponsive");
    assert_eq!(
        found,
        Unresponsive {
            failures: 3,
            last: "no answer within 1 s".into()
        }
    );
    assert_eq!(
        found.reason(),
        "unresponsive: 3 pings in a row failed, the last: no answer within 1 s"
    );
    assert!(p.sent.try_recv().is_err(), "no cancellation of pings");
    assert_eq!(p.details()["pings"], 6);
}

/// A server without `ping` answers -32601: an answer all the same.
#[tokio::test(start_paused = true)]
async fn an_error_answer_to_a_ping_counts_as_alive() {
    let mut p = start(policy(INTERVAL, 1)).await;
    for _ in 0..3 {
        p.advance(INTERVAL).await;
        let ping = p.ping_sent().unwrap();
        p.answer(json!({"jsonrpc": "2.0", "id": ping["id"],
            "error": {"code": -32601, "message": "Method not found"}}));
        p.settle().await;
        assert_eq!(p.details()["last_ping"]["ok"], true);
    }
    assert!(!p.task.is_finished(), "one failure would have ended it");
}

/// Progress of a pending call is a sign of life (a server busy with a long call that reports
/// progress is never pinged); a log notification is not (a background thread can send it
/// while the request loop is dead).
#[tokio::test(start_paused = true)]
async fn progress_of_a_pending_call_counts_and_other_notifications_do_not() {
    let mut p = start(policy(INTERVAL, 3)).await;
    let sink: ProgressSink = Arc::new(|_| {});
    let opts = CallOptions {
        timeout: Duration::from_secs(600),
        progress: Some(sink),
        ..Default::default()
    };
    let client = p.client.clone();
    let call = tokio::spawn(async move { client.call_tool("long", json!({}), &opts).await });
    p.settle().await;
    let request = p.sent.try_recv().unwrap();
    let token = &request["params"]["_meta"]["progressToken"];
    for i in 0..10 {
        p.advance(INTERVAL / 2).await;
        p.answer(json!({"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": token, "progress": i}}));
        p.advance(INTERVAL / 2).await;
        assert!(p.ping_sent().is_none(), "progress counts as an answer");
    }
    // Progress for a call we do not know, and a log line: not enough.
    p.advance(INTERVAL / 2).await;
    p.answer(json!({"jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": 424242, "progress": 1}}));
    p.answer(json!({"jsonrpc": "2.0", "method": "notifications/message",
        "params": {"level": "info", "data": "still here"}}));
    p.advance(INTERVAL / 2).await;
    assert!(
        p.ping_sent().is_some(),
        "only progress of a pending call counts"
    );
    call.abort();
}

/// Zero turns the probe off; an in-place update turns it on (or off) at once, without waiting
/// for the old interval to end.
#[tokio::test(start_paused = true)]
async fn zero_turns_it_off_and_an_update_of_the_spec_applies_at_once() {
    let mut p = start(PingPolicy::OFF).await;
    p.advance(Duration::from_secs(3600)).await;
    assert!(p.ping_sent().is_none(), "off");
    assert_eq!(p.details()["enabled"], false);

    p.hub.update_spec(Arc::new(spec(policy(INTERVAL, 2))));
    p.settle().await;
    assert_eq!(p.details()["enabled"], true);
    p.advance(INTERVAL).await;
    assert!(p.ping_sent().is_some(), "on at once");
    p.advance(INTERVAL).await; // unanswered: one failure

    // A long interval, then off again, while the probe waits: no ping ever after.
    p.hub
        .update_spec(Arc::new(spec(policy(Duration::from_secs(600), 2))));
    p.settle().await;
    p.hub.update_spec(Arc::new(spec(PingPolicy {
        interval: INTERVAL,
        failures: 0,
    })));
    p.settle().await;
    p.advance(Duration::from_secs(3600)).await;
    assert!(p.ping_sent().is_none(), "off again");
    assert_eq!(p.details()["failures_in_a_row"], 0, "off forgets failures");
    assert!(!p.task.is_finished());
}

/// A closed connection ends the probe without a verdict: the connection actor learns of the
/// close from the client itself.
#[tokio::test(start_paused = true)]
async fn a_closed_connection_ends_the_probe_quietly() {
    let mut p = start(policy(INTERVAL, 1)).await;
    p.advance(INTERVAL).await;
    assert!(p.ping_sent().is_some());
    p.client.close("process exited");
    assert_eq!((&mut p.task).await.unwrap(), None);
}

#[test]
fn the_ping_timeout_is_the_interval_up_to_ten_seconds() {
    let s = Duration::from_secs;
    assert_eq!(policy(s(2), 3).timeout(), s(2));
    assert_eq!(policy(s(30), 3).timeout(), s(10));
    assert_eq!(PingPolicy::standard(), policy(s(30), 3));
    assert!(PingPolicy::OFF.is_off());
    assert!(policy(s(0), 3).is_off() && policy(s(5), 0).is_off());
    assert!(!PingPolicy::standard().is_off());
}
