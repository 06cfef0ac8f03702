//! Sessions under a real `sessions` supervisor: auth, expiry, the cap, ending, cancellation.

mod eviction;
mod operator;
mod outbound;

use std::time::Duration;

use ractor::Actor;

use super::*;
use crate::StatusNode;
use crate::supervisor::{Intensity, Strategy, SupervisorActor, SupervisorArguments};
use crate::testing::eventually;

pub(super) async fn table(
    limits: SessionLimits,
) -> (Arc<Sessions>, StatusNode, ActorRef<SupervisorMessage>) {
    let node = StatusNode::root("sessions", "supervisor");
    let args = SupervisorArguments {
        node: node.clone(),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: Vec::new(),
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    let sessions = Sessions::new(limits);
    sessions.attach_supervisor(sup.clone());
    let progress = crate::progress::ProgressArguments {
        progress: sessions.progress().clone(),
        node: StatusNode::root("progress", "broadcaster"),
    };
    crate::progress::ProgressActor::spawn(None, crate::progress::ProgressActor, progress)
        .await
        .unwrap();
    (sessions, node, sup)
}

#[tokio::test(start_paused = true)]
async fn tokens_authenticate_only_their_session() {
    let (sessions, node, sup) = table(SessionLimits::default()).await;
    let (a, token_a) = sessions
        .create(NewSession::new(std::path::Path::new("/tmp").into()).with_label(Some("a".into())))
        .await
        .unwrap();
    let (b, token_b) = sessions
        .create(NewSession::new(std::path::Path::new("/tmp").into()))
        .await
        .unwrap();
    assert_eq!(token_a.len(), 64, "256 bits, hex");
    assert_ne!(token_a, token_b);
    assert!(sessions.authenticate(a.id(), &token_a).is_some());
    assert!(
        sessions.authenticate(a.id(), &token_b).is_none(),
        "another session's token"
    );
    assert!(sessions.authenticate(b.id(), &token_a).is_none());
    assert!(sessions.authenticate("nope", &token_a).is_none());
    for bad in [
        "",
        "x",
        &token_a[..63],
        &token_a.to_uppercase()[..64].replace('A', "G"),
    ] {
        assert!(sessions.authenticate(a.id(), bad).is_none(), "{bad:?}");
    }
    eventually("actors in the tree", Duration::from_secs(5), || {
        node.children().len() == 2
    })
    .await;
    assert_eq!(node.children()[0].snapshot().details.unwrap()["label"], "a");
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_expire_and_used_ones_do_not() {
    let limits = SessionLimits {
        idle_timeout: Duration::from_secs(60),
        max_sessions: 10,
        ..SessionLimits::default()
    };
    let (sessions, node, sup) = table(limits).await;
    let (idle, idle_token) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    let (busy, busy_token) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(
            sessions.authenticate(busy.id(), &busy_token).is_some(),
            "kept alive by use"
        );
    }
    assert!(
        sessions.authenticate(idle.id(), &idle_token).is_none(),
        "expired"
    );
    assert!(idle.ended().is_cancelled());
    assert_eq!(sessions.len(), 1);
    eventually("actor gone", Duration::from_secs(5), || {
        node.children().len() == 1
    })
    .await;
    assert_eq!(sessions.counters().1, 1);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_longest_idle_session_is_evicted_at_the_cap() {
    let limits = SessionLimits {
        idle_timeout: Duration::from_secs(3600),
        max_sessions: 3,
        evict_idle_floor: Duration::ZERO,
    };
    let (sessions, _node, sup) = table(limits).await;
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(
            sessions
                .create(NewSession::new(std::path::Path::new("/").into()))
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Use the first one: the second becomes the longest idle.
    assert!(
        sessions
            .authenticate(created[0].0.id(), &created[0].1)
            .is_some()
    );
    let (_fourth, _) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    assert_eq!(sessions.len(), 3);
    assert!(
        sessions.get(created[1].0.id()).is_none(),
        "longest idle evicted"
    );
    assert!(sessions.get(created[0].0.id()).is_some());
    assert_eq!(sessions.counters().2, 1);
    sup.stop_and_wait(None, None).await.unwrap();
}

/// Creates racing on several threads never take the table past its cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_overshoot_the_cap() {
    let limits = SessionLimits {
        idle_timeout: Duration::from_secs(3600),
        max_sessions: 5,
        evict_idle_floor: Duration::ZERO,
    };
    let (sessions, _node, sup) = table(limits).await;
    let creates: Vec<_> = (0..40)
        .map(|_| {
            let sessions = sessions.clone();
            tokio::spawn(async move {
                sessions
                    .create(NewSession::new(std::path::Path::new("/").into()))
                    .await
                    .unwrap();
                sessions.len()
            })
        })
        .collect();
    for create in creates {
        let seen = create.await.unwrap();
        assert!(seen <= 5, "{seen} sessions live, cap 5");
    }
    assert_eq!(sessions.len(), 5);
    let (created, _, evicted) = sessions.counters();
    assert_eq!((created, evicted), (40, 35));
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn ending_a_session_cancels_its_calls_and_streams() {
    let (sessions, node, sup) = table(SessionLimits::default()).await;
    let (s, token) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    let mut events = s.subscribe().await.unwrap();
    let call = s.begin_call("7").unwrap();
    let other = s.begin_call("\"x\"").unwrap();
    assert_eq!(s.inflight_calls(), 2);
    // An id already in flight is refused, and the first call stays registered.
    assert_eq!(
        s.begin_call("7").unwrap_err().to_string(),
        "request id 7 is already in flight in this session; use a new id"
    );
    assert_eq!(s.inflight_calls(), 2);
    assert!(s.cancel_call("7"));
    assert!(call.cancelled().is_cancelled());
    assert!(!other.cancelled().is_cancelled());
    assert!(!s.cancel_call("8"));
    drop(call);
    assert_eq!(s.inflight_calls(), 1);

    assert!(sessions.end(s.id(), "ended on request"));
    assert!(
        other.cancelled().is_cancelled(),
        "session end cancels in-flight calls"
    );
    let late = s.begin_call("9").unwrap();
    assert!(
        late.cancelled().is_cancelled(),
        "a call registered after the end starts cancelled"
    );
    drop(late);
    assert!(sessions.authenticate(s.id(), &token).is_none());
    eventually("actor gone", Duration::from_secs(5), || {
        node.children().is_empty()
    })
    .await;
    drop(other);
    // The stream ends with the session.
    drop(s);
    assert!(events.recv().await.is_none());
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn events_fan_out_and_slow_subscribers_lag() {
    let (sessions, _node, sup) = table(SessionLimits::default()).await;
    let (s, _) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    s.publish(SessionEvent::ToolsChanged); // nobody listening: dropped, no channel built
    assert_eq!(s.subscribers(), 0);
    let mut fast = s.subscribe().await.unwrap();
    let mut slow = s.subscribe().await.unwrap();
    let total = events::EVENT_BUFFER + 10;
    for i in 0..total {
        s.publish(SessionEvent::Progress(ProgressEvent {
            token: revka_mcp::jsonrpc::Id::from(1u64),
            progress: serde_json::json!(i),
            total: None,
            message: None,
            tool: Some("t".into()),
            timestamp: String::new(),
        }));
        if i < 5 {
            assert!(matches!(
                fast.recv().await,
                Some(crate::progress::Received::Event(_))
            ));
        }
    }
    match slow.recv().await {
        Some(crate::progress::Received::Lagged(n)) => assert_eq!(n, 10),
        other => panic!("expected a lag, got {other:?}"),
    }
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn activation_is_per_session() {
    let (sessions, _node, sup) = table(SessionLimits::default()).await;
    let (a, _) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    let (b, _) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    assert!(a.activate(["fs__read_file"]));
    assert!(!a.activate(["fs__read_file"]), "already active");
    assert!(a.is_activated("fs__read_file"));
    assert!(!b.is_activated("fs__read_file"));
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn creating_without_the_supervisor_fails_clearly() {
    let sessions = Sessions::new(SessionLimits::default());
    let err = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not running"));
}

/// An ended session leaves no task behind (an idle timer task once held each ended session's
/// actor cell for up to the idle timeout: ~6 KiB per ended session under churn).
#[tokio::test]
async fn an_ended_session_leaves_no_task_behind() {
    let (sessions, _node, sup) = table(SessionLimits::default()).await;
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let baseline = alive();
    for _ in 0..20 {
        let (s, _) = sessions
            .create(NewSession::new(std::path::Path::new("/").into()))
            .await
            .unwrap();
        assert!(sessions.end(s.id(), "ended by the test"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive() > baseline && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(alive(), baseline, "tasks left behind by ended sessions");
    assert_eq!(sessions.len(), 0);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[test]
fn the_token_decoder_takes_64_hex_digits_of_either_case_and_nothing_else() {
    let bytes: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
    let text = hex(&bytes);
    assert_eq!(decode_hex32(&text), Some(bytes));
    assert_eq!(decode_hex32(&text.to_uppercase()), Some(bytes));
    assert_eq!(decode_hex32(&text[..62]), None);
    assert_eq!(decode_hex32(&format!("{text}0")), None);
    // Any byte that is not a hex digit, at any place, is refused; the table holds no other
    // value that could pass (a byte like 0x10 would, if the check were a mere mask).
    for at in 0..64 {
        for bad in [b'g', b'G', b' ', b'/', b':', b'@', b'`', 0x10, 0x7f] {
            let mut raw = text.clone().into_bytes();
            raw[at] = bad;
            let candidate = String::from_utf8(raw).unwrap();
            assert_eq!(decode_hex32(&candidate), None, "{bad:#x} at {at}");
        }
    }
    let mut multibyte = text[..62].to_owned();
    multibyte.push('é');
    assert_eq!(decode_hex32(&multibyte), None);
}

/// A session keeps the scope and client token it was created with, for its whole life, and
/// shows them in its details; a session without a scope has every tool in scope.
#[tokio::test(start_paused = true)]
async fn a_session_carries_the_scope_and_client_token_it_was_created_with() {
    let (sessions, node, sup) = table(SessionLimits::default()).await;
    let scope = Arc::new(ToolScope::new(["fs__*", "health"]).unwrap());
    let new = NewSession {
        scope: Some(scope.clone()),
        client: Some(ClientBinding {
            owner: "3f9a0c1e".into(),
            credential: Some(Credential::new("rvkc_secret")),
            expires_at: None,
        }),
        ..NewSession::new(std::path::Path::new("/").into())
    };
    let (scoped, token) = sessions.create(new).await.unwrap();
    let (open, _) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();

    let scoped = sessions.authenticate(scoped.id(), &token).unwrap();
    assert_eq!(scoped.scope(), Some(&*scope));
    assert_eq!(scoped.client(), Some("3f9a0c1e"));
    for (name, allowed) in [
        ("fs__read_file", true),
        ("health", true),
        ("time__get_current_time", false),
        ("tool_search", false),
    ] {
        assert_eq!(scoped.in_scope(name), allowed, "{name}");
        assert!(open.in_scope(name), "{name}: no scope, everything in scope");
    }
    assert_eq!(open.scope(), None);
    assert_eq!(open.client(), None);

    eventually("actors in the tree", Duration::from_secs(5), || {
        node.children().len() == 2
    })
    .await;
    let details: Vec<serde_json::Value> = node
        .children()
        .iter()
        .map(|c| c.snapshot().details.unwrap())
        .collect();
    let shown = details
        .iter()
        .find(|d| d["session_id"] == scoped.id())
        .unwrap();
    assert_eq!(shown["tool_scope"], serde_json::json!(["fs__*", "health"]));
    assert_eq!(shown["client"], "3f9a0c1e");
    assert!(!shown.to_string().contains("rvkc_secret"), "{shown}");
    let unscoped = details
        .iter()
        .find(|d| d["session_id"] == open.id())
        .unwrap();
    assert_eq!(unscoped["tool_scope"], serde_json::Value::Null);
    sup.stop_and_wait(None, None).await.unwrap();
}
