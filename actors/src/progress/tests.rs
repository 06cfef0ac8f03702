//! The broadcaster under a real supervisor: killed mid-stream, restarted, and its subscribers
//! told exactly what they missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorRef};

use super::*;
use crate::session::{NewSession, ProgressEvent, SessionEvent, SessionLimits, Sessions};
use crate::supervisor::{
    Intensity, Strategy, SupervisorActor, SupervisorArguments, SupervisorMessage,
};
use crate::testing::eventually;

/// A session table under a `sessions` supervisor, and a `root` with the broadcaster.
async fn tree() -> (Arc<Sessions>, StatusNode, Vec<ActorRef<SupervisorMessage>>) {
    let sessions = Sessions::new(SessionLimits::default());
    let root = StatusNode::root("root", "supervisor");
    let args = SupervisorArguments {
        node: root.clone(),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: vec![progress_spec(
            sessions.progress().clone(),
            RestartPolicy::standard(),
        )],
    };
    let (root_sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    let args = SupervisorArguments {
        node: StatusNode::root("sessions", "supervisor"),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: Vec::new(),
    };
    let (sessions_sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    sessions.attach_supervisor(sessions_sup.clone());
    (sessions, root, vec![root_sup, sessions_sup])
}

fn progress(i: u64) -> SessionEvent {
    SessionEvent::Progress(ProgressEvent {
        token: revka_mcp::jsonrpc::Id::from(1u64),
        progress: serde_json::json!(i),
        total: None,
        message: None,
        tool: Some("t".into()),
        timestamp: String::new(),
    })
}

#[tokio::test(start_paused = true)]
async fn a_killed_broadcaster_restarts_and_its_subscribers_see_a_reset_then_later_events() {
    let (sessions, root, sups) = tree().await;
    let (session, token) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    let mut subscription = session.subscribe().await.unwrap();

    // A publisher publishing all along, never waiting on the broadcaster.
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (session, published, stop) = (session.clone(), published.clone(), stop.clone());
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                session.publish(progress(i));
                i += 1;
                published.store(i, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });

    // Mid-stream: the subscriber is reading when the broadcaster is killed.
    let (mut events, mut lagged, mut resets, mut missed) = (0u64, 0u64, 0u64, 0u64);
    while events < 50 {
        match subscription.recv().await.expect("the session lives") {
            Received::Event(_) => events += 1,
            Received::Lagged(n) => lagged += n,
            Received::Reset { .. } => panic!("no restart yet"),
        }
    }
    let first = sessions.progress().actor().expect("running");
    first.kill();

    // The subscriber is told of the gap, then gets later events.
    let mut after_reset = 0;
    while after_reset < 50 {
        match subscription.recv().await.expect("the session lives") {
            Received::Event(_) if resets > 0 => after_reset += 1,
            Received::Event(_) => events += 1,
            Received::Lagged(n) => lagged += n,
            Received::Reset { missed: n } => {
                resets += 1;
                missed += n;
            }
        }
    }
    assert_eq!(resets, 1, "one reset for one restart");
    let second = sessions.progress().actor().expect("restarted");
    assert_ne!(second.get_id(), first.get_id(), "a new incarnation");

    // Stop publishing and account for every event: received, lagged or reported missed.
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    session.publish(SessionEvent::ToolsChanged);
    loop {
        match subscription.recv().await.expect("the session lives") {
            Received::Event(e) if *e.event() == SessionEvent::ToolsChanged => break,
            Received::Event(_) => after_reset += 1,
            Received::Lagged(n) => lagged += n,
            Received::Reset { .. } => panic!("no second restart"),
        }
    }
    assert_eq!(
        events + after_reset + lagged + missed,
        published.load(Ordering::Relaxed),
        "every published event was received, or counted as lagged or missed \
         (events {events}, after the reset {after_reset}, lagged {lagged}, missed {missed})"
    );

    // The supervisor restarted it, and counted it.
    let node = root
        .find("root/progress")
        .expect("root/progress in the tree");
    assert_eq!(node.restarts(), 1);
    assert_eq!(node.kind(), "broadcaster");

    // The session is still usable: auth, calls, a new subscription.
    assert!(sessions.authenticate(session.id(), &token).is_some());
    let call = session.begin_call("1").unwrap();
    assert!(!call.cancelled().is_cancelled());
    let mut late = session.subscribe().await.unwrap();
    session.publish(progress(7));
    assert!(matches!(late.recv().await, Some(Received::Event(_))));
    assert!(matches!(
        subscription.recv().await,
        Some(Received::Event(_))
    ));
    assert_eq!(session.subscribers(), 2);

    for sup in sups {
        sup.stop_and_wait(None, None).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_subscription_waits_for_the_broadcaster_and_is_refused_after_the_wait() {
    let sessions = Sessions::new(SessionLimits::default());
    let args = SupervisorArguments {
        node: StatusNode::root("sessions", "supervisor"),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: Vec::new(),
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    sessions.attach_supervisor(sup.clone());
    let (session, _) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();

    // No broadcaster: refused after the wait, with the session not held in use.
    let refused = session.subscribe().await.unwrap_err();
    assert_eq!(refused, ProgressError::Unavailable(SUBSCRIBE_WAIT));
    assert_eq!(session.subscribers(), 0);

    // One that starts while a subscriber waits serves it.
    let waiting = tokio::spawn({
        let session = session.clone();
        async move { session.subscribe().await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let node = StatusNode::root("progress", "broadcaster");
    let args = ProgressArguments {
        progress: sessions.progress().clone(),
        node: node.clone(),
    };
    let (actor, _) = ProgressActor::spawn(None, ProgressActor, args)
        .await
        .unwrap();
    let mut subscription = waiting.await.unwrap().unwrap();
    session.publish(SessionEvent::ToolsChanged);
    assert!(matches!(
        subscription.recv().await,
        Some(Received::Event(_))
    ));
    let details = node.snapshot().details.unwrap();
    assert_eq!(details["sessions"], 1);
    assert_eq!(details["subscribers"], 1);

    // The last subscriber gone, the channel goes too.
    drop(subscription);
    eventually("the channel dropped", Duration::from_secs(5), || {
        node.snapshot().details.unwrap()["sessions"] == 0
    })
    .await;
    assert_eq!(session.subscribers(), 0);

    actor.stop_and_wait(None, None).await.unwrap();
    sup.stop_and_wait(None, None).await.unwrap();
}
