//! The server-to-client queue of a session: event ids, replay from `Last-Event-ID`, the ring's
//! bounds and the gaps they cause, one stream at a time, and the standard path's client binding.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::table;
use crate::session::{
    Batch, ClientBinding, Credential, Gap, MessageTooLarge, NewSession, OUTBOUND_BYTES,
    OUTBOUND_EVENTS, Resume, Session, SessionEvent, SessionLimits, TOOLS_LIST_CHANGED,
};

async fn one_session() -> (Arc<Session>, impl FnOnce()) {
    let (sessions, _node, sup) = table(SessionLimits::default()).await;
    let (session, _) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    (session, move || sup.stop(None))
}

fn note(n: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"n":{n}}}}}"#)
}

fn ids(batch: &Batch) -> Vec<u64> {
    batch.messages.iter().map(|(id, _)| *id).collect()
}

#[tokio::test(start_paused = true)]
async fn messages_queued_without_a_stream_go_out_on_the_next_one_in_order() {
    let (s, stop) = one_session().await;
    assert_eq!(s.send_to_client(note(1)).unwrap(), 1);
    assert_eq!(s.send_to_client(note(2)).unwrap(), 2);
    let mut stream = s.client_stream(Resume::Fresh);
    let batch = stream.take().unwrap();
    assert_eq!(batch.gap, None);
    assert_eq!(ids(&batch), [1, 2]);
    assert_eq!(&*batch.messages[1].1, note(2));
    assert!(stream.take().is_none(), "nothing more");
    // A later message wakes a waiting stream.
    let waiter = tokio::spawn(async move {
        let batch = stream.next().await.unwrap();
        (ids(&batch), stream.cursor())
    });
    tokio::task::yield_now().await;
    assert_eq!(s.send_to_client(note(3)).unwrap(), 3);
    assert_eq!(waiter.await.unwrap(), (vec![3], 3));
    // A fresh stream starts after what a stream took: nothing is sent twice.
    let mut fresh = s.client_stream(Resume::Fresh);
    assert!(fresh.take().is_none());
    stop();
}

#[tokio::test(start_paused = true)]
async fn last_event_id_replays_what_followed_and_reports_what_the_ring_lost() {
    let (s, stop) = one_session().await;
    for n in 1..=5 {
        s.send_to_client(note(n)).unwrap();
    }
    let mut all = s.client_stream(Resume::Fresh);
    assert_eq!(ids(&all.take().unwrap()), [1, 2, 3, 4, 5]);
    drop(all);
    // Resumed after 3: 4 and 5 again, no gap.
    let mut resumed = s.client_stream(Resume::After(3));
    let batch = resumed.take().unwrap();
    assert_eq!((batch.gap, ids(&batch)), (None, vec![4, 5]));
    // Resumed after the last: nothing, no gap.
    let mut current = s.client_stream(Resume::After(5));
    assert!(current.take().is_none());
    // An id never issued, or no id at all: a gap of unknown size, then what no stream took.
    s.send_to_client(note(6)).unwrap();
    // (The second starts after the first, which took 6.)
    for (resume, expected) in [(Resume::After(99), vec![6]), (Resume::Unreadable, vec![])] {
        let mut odd = s.client_stream(resume);
        let batch = odd.take().unwrap();
        assert_eq!(batch.gap, Some(Gap::UnknownId), "{resume:?}");
        assert_eq!(ids(&batch), expected);
    }
    // Push the oldest out of the ring: resuming before them reports how many were lost.
    for n in 7..=(OUTBOUND_EVENTS as u64 + 10) {
        s.send_to_client(note(n)).unwrap();
    }
    let mut old = s.client_stream(Resume::After(2));
    let batch = old.take().unwrap();
    let oldest = 11; // 266 queued, 256 held
    assert_eq!(
        batch.gap,
        Some(Gap::Lost {
            after: 2,
            missed: oldest - 3
        })
    );
    assert_eq!(batch.messages[0].0, oldest);
    stop();
}

#[tokio::test(start_paused = true)]
async fn the_ring_is_bounded_by_bytes_too_and_refuses_a_message_larger_than_itself() {
    let (s, stop) = one_session().await;
    let mut stream = s.client_stream(Resume::Fresh);
    let big = "x".repeat(OUTBOUND_BYTES / 4 + 1);
    for _ in 0..4 {
        s.send_to_client(big.as_str()).unwrap();
    }
    // Four quarters and a bit do not fit: the first left.
    let batch = stream.take().unwrap();
    assert_eq!(
        batch.gap,
        Some(Gap::Lost {
            after: 0,
            missed: 1
        })
    );
    assert_eq!(batch.messages[0].0, 2);
    let huge = "y".repeat(OUTBOUND_BYTES + 1);
    assert_eq!(
        s.send_to_client(huge).unwrap_err(),
        MessageTooLarge {
            size: OUTBOUND_BYTES + 1,
            max: OUTBOUND_BYTES
        }
    );
    stop();
}

/// A stream that does not read while more than the ring holds is queued is told how many it
/// lost, and goes on with the oldest message held: it never holds memory of its own.
#[tokio::test(start_paused = true)]
async fn a_stream_that_falls_behind_the_ring_is_told_of_the_gap() {
    let (s, stop) = one_session().await;
    let mut stream = s.client_stream(Resume::Fresh);
    s.send_to_client(note(1)).unwrap();
    assert_eq!(ids(&stream.take().unwrap()), [1]);
    let total = OUTBOUND_EVENTS as u64 + 50;
    for n in 2..=total + 1 {
        s.send_to_client(note(n)).unwrap();
    }
    let first = stream.take().unwrap();
    assert_eq!(
        first.gap,
        Some(Gap::Lost {
            after: 1,
            missed: 50
        })
    );
    let mut seen = ids(&first);
    while let Some(batch) = stream.take() {
        assert_eq!(batch.gap, None);
        seen.extend(ids(&batch));
    }
    assert_eq!(seen, (52..=total + 1).collect::<Vec<_>>());
    stop();
}

/// Opening a stream ends the one before, so no message goes to two streams.
#[tokio::test(start_paused = true)]
async fn a_newer_stream_replaces_the_older_one() {
    let (s, stop) = one_session().await;
    let mut older = s.client_stream(Resume::Fresh);
    assert_eq!(s.client_streams(), 1);
    let newer = s.client_stream(Resume::Fresh);
    assert!(older.replaced().is_cancelled());
    assert!(older.next().await.is_none(), "the older stream ends");
    assert_eq!(s.client_streams(), 2);
    drop(older);
    assert_eq!(s.client_streams(), 1);
    assert!(!newer.replaced().is_cancelled());
    drop(newer);
    assert_eq!(s.client_streams(), 0);
    stop();
}

/// A tool-list change is queued once until a stream takes it, however many changes come.
#[tokio::test(start_paused = true)]
async fn a_pending_list_changed_is_not_queued_twice() {
    let (s, stop) = one_session().await;
    for _ in 0..5 {
        s.publish(SessionEvent::ToolsChanged);
    }
    let mut stream = s.client_stream(Resume::Fresh);
    let batch = stream.take().unwrap();
    assert_eq!(ids(&batch), [1]);
    assert_eq!(&*batch.messages[0].1, TOOLS_LIST_CHANGED);
    // Taken: the next change is news again.
    s.publish(SessionEvent::ToolsChanged);
    s.publish(SessionEvent::ToolsChanged);
    assert_eq!(ids(&stream.take().unwrap()), [2]);
    // Behind another message, a change is queued again.
    s.send_to_client(note(0)).unwrap();
    s.publish(SessionEvent::ToolsChanged);
    assert_eq!(ids(&stream.take().unwrap()), [3, 4]);
    stop();
}

#[tokio::test(start_paused = true)]
async fn an_open_client_stream_keeps_the_session_from_expiring_and_ends_with_it() {
    let limits = SessionLimits {
        idle_timeout: Duration::from_secs(60),
        ..SessionLimits::default()
    };
    let (sessions, _node, sup) = table(limits).await;
    let (s, _) = sessions
        .create(NewSession::new(std::path::Path::new("/").into()))
        .await
        .unwrap();
    let mut stream = s.client_stream(Resume::Fresh);
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(sessions.get(s.id()).is_some(), "in use: not expired");
    drop(stream);
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert!(sessions.get(s.id()).is_none(), "idle once the stream ended");
    stream = s.client_stream(Resume::Fresh);
    assert!(stream.next().await.is_none(), "the session ended");
    sup.stop(None);
}

#[tokio::test(start_paused = true)]
async fn standard_sessions_admit_only_the_credential_that_created_them() {
    let (sessions, _node, sup) = table(SessionLimits::default()).await;
    let (a, b) = ("rvk_a", "rvk_b");
    let create = |client: Option<ClientBinding>| {
        let new = NewSession {
            client,
            ..NewSession::new(std::path::Path::new("/").into())
        };
        let sessions = sessions.clone();
        async move { sessions.create(new).await.unwrap().0 }
    };
    let binding = |owner: &str, credential: Option<&str>, expires_at| ClientBinding {
        owner: owner.into(),
        credential: credential.map(Credential::new),
        expires_at,
    };
    let minted = create(None).await;
    let bound = create(Some(binding("aaaa", Some(a), None))).await;
    let open = create(Some(binding("local", None, None))).await;
    let later = SystemTime::now() + Duration::from_secs(3600);
    let expiring = create(Some(binding("cccc", Some(a), Some(later)))).await;
    let expired = create(Some(binding("dddd", Some(a), Some(SystemTime::UNIX_EPOCH)))).await;
    assert_eq!(
        format!("{:?}", bound.client_binding().unwrap()),
        r#"ClientBinding { owner: "aaaa", credential: Some(Credential(<redacted>)), expires_at: None }"#,
        "never printed"
    );
    assert!(bound.admits_client(Some(a)));
    assert!(!bound.admits_client(Some(b)));
    assert!(!bound.admits_client(Some("rvk_a ")));
    assert!(!bound.admits_client(None));
    assert!(open.admits_client(None) && open.admits_client(Some(b)));
    assert!(
        !minted.admits_client(Some(a)) && !minted.admits_client(None),
        "a POST /session session is not reachable on the standard path"
    );
    assert!(expiring.admits_client(Some(a)), "before its token's expiry");
    assert!(
        !expired.admits_client(Some(a)),
        "past its token's expiry, the right token is refused"
    );
    assert_eq!(sessions.end_bound_to("aaaa", "token revoked"), 1);
    assert!(sessions.get(bound.id()).is_none());
    assert!(bound.ended().is_cancelled());
    assert_eq!(sessions.len(), 4);
    sup.stop(None);
}
