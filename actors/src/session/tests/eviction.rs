//! The cap and the idle sweeper never end a session in use, and the cap evicts only sessions
//! idle for the eviction floor: otherwise a creation is refused with how long to wait.

use std::time::Duration;

use super::table;
use crate::session::{NewSession, SessionError, SessionLimits};

fn limits(max_sessions: usize, floor_secs: u64) -> SessionLimits {
    SessionLimits {
        idle_timeout: Duration::from_secs(24 * 3600),
        max_sessions,
        evict_idle_floor: Duration::from_secs(floor_secs),
    }
}

fn retry_after(err: SessionError) -> Duration {
    match err {
        SessionError::Full { retry_after, .. } => retry_after,
        other => panic!("expected a full table, got {other}"),
    }
}

/// At the cap, a session used within the floor is not evicted: the creation is refused, with
/// the time until the longest-idle session reaches the floor. Then that one is evicted.
#[tokio::test(start_paused = true)]
async fn at_the_cap_only_a_session_idle_for_the_floor_is_evicted() {
    let (sessions, _node, sup) = table(limits(2, 300)).await;
    let root = || std::path::Path::new("/").into();
    let (first, _) = sessions.create(NewSession::new(root())).await.unwrap();
    tokio::time::advance(Duration::from_secs(20)).await;
    let (second, _) = sessions.create(NewSession::new(root())).await.unwrap();
    tokio::time::advance(Duration::from_secs(100)).await;

    let err = sessions.create(NewSession::new(root())).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the session cap (2) is reached and every session is in use or was used in the last 300s"),
        "{err}"
    );
    let wait = retry_after(err);
    assert_eq!(
        wait.as_secs(),
        180,
        "the first reaches the floor in 300 - 120 s"
    );
    assert_eq!(sessions.len(), 2);
    assert!(!first.ended().is_cancelled() && !second.ended().is_cancelled());
    assert_eq!(sessions.counters().2, 0, "nothing evicted");

    tokio::time::advance(wait).await;
    sessions
        .create(NewSession::new(root()))
        .await
        .expect("room made");
    assert!(
        first.ended().is_cancelled(),
        "the longest idle, past the floor, evicted"
    );
    assert!(!second.ended().is_cancelled());
    assert_eq!(sessions.counters().2, 1);
    sup.stop_and_wait(None, None).await.unwrap();
}

/// A session with a call in flight or an open event stream is never evicted, however long
/// since its last request; once its use ends, it is idle from then, and evictable a floor
/// later.
#[tokio::test(start_paused = true)]
async fn at_the_cap_a_session_in_use_is_never_evicted() {
    let (sessions, _node, sup) = table(limits(2, 60)).await;
    let root = || std::path::Path::new("/").into();
    let (calling, _) = sessions.create(NewSession::new(root())).await.unwrap();
    let (watched, _) = sessions.create(NewSession::new(root())).await.unwrap();
    let call = calling.begin_call("1").unwrap();
    let stream = watched.subscribe().await.unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;

    let wait = retry_after(sessions.create(NewSession::new(root())).await.unwrap_err());
    assert_eq!(
        wait,
        Duration::from_secs(60),
        "a session in use needs the whole floor"
    );
    assert!(!call.cancelled().is_cancelled(), "the call goes on");
    assert!(!watched.ended().is_cancelled(), "the stream goes on");

    drop(call);
    assert!(!calling.in_use());
    let wait = retry_after(sessions.create(NewSession::new(root())).await.unwrap_err());
    assert_eq!(
        wait,
        Duration::from_secs(60),
        "idle from the end of its call"
    );
    tokio::time::advance(wait).await;
    sessions
        .create(NewSession::new(root()))
        .await
        .expect("room made");
    assert!(
        calling.ended().is_cancelled(),
        "evicted once idle for the floor"
    );
    assert!(
        !watched.ended().is_cancelled(),
        "still watched: never evicted"
    );
    drop(stream);
    sup.stop_and_wait(None, None).await.unwrap();
}

/// The idle sweeper leaves a session in use alone however long since its last request, and
/// ends it an idle timeout after its use ended.
#[tokio::test(start_paused = true)]
async fn the_sweeper_never_expires_a_session_in_use() {
    let limits = SessionLimits {
        idle_timeout: Duration::from_secs(60),
        ..limits(10, 300)
    };
    let (sessions, _node, sup) = table(limits).await;
    let root = || std::path::Path::new("/").into();
    let (calling, _) = sessions.create(NewSession::new(root())).await.unwrap();
    let (watched, _) = sessions.create(NewSession::new(root())).await.unwrap();
    let call = calling.begin_call("1").unwrap();
    let stream = watched.subscribe().await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        sessions.len(),
        2,
        "both in use for 10 minutes, neither expired"
    );
    assert!(!call.cancelled().is_cancelled());

    drop(call);
    drop(stream);
    watched.touch(); // what the end of an event stream does (`GET /session/{id}/events`)
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(sessions.len(), 2, "idle for 30 s since their use ended");
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(sessions.len(), 0, "expired a timeout after their use ended");
    assert_eq!(sessions.counters().1, 2);
    sup.stop_and_wait(None, None).await.unwrap();
}
