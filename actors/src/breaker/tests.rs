//! Circuit breaker semantics: the pure core under injected time, the handle under paused time,
//! the actor under a real supervisor (paused time too).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::FutureExt;
use ractor::Actor;
use tokio::time::Instant;

use super::*;
use crate::metrics::Metrics;
use crate::status::StatusNode;
use crate::supervisor::{
    Intensity, RestartPolicy, Strategy, SupervisorActor, SupervisorArguments, get_children,
};
use crate::testing::eventually;

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn config(recovery: u32, max: u32, probes: u32) -> BreakerConfig {
    BreakerConfig {
        recovery_timeout: S * recovery,
        max_recovery_timeout: S * max,
        half_open_max_calls: probes,
        ..BreakerConfig::default()
    }
}

/// A core opened at `t0` by `failure_threshold` failures.
fn opened(config: BreakerConfig, t0: Instant) -> BreakerCore {
    let mut core = BreakerCore::new(config);
    for _ in 0..config.failure_threshold {
        core.record_unpermitted(false, t0);
    }
    assert_eq!(core.state(), BreakerState::Open);
    core
}

fn fail(core: &mut BreakerCore, now: Instant) -> Option<Transition> {
    let permit = core.admit(now).expect("admitted");
    core.record(permit, false, now)
}

/// A handle opened now by `failure_threshold` failures.
fn opened_handle(config: BreakerConfig) -> BreakerHandle {
    let handle = BreakerHandle::new("test", config);
    for _ in 0..config.failure_threshold {
        handle.record_failure();
    }
    assert_eq!(handle.state(), BreakerState::Open);
    handle
}

#[test]
fn defaults_match_the_issue() {
    let c = BreakerConfig::default();
    assert_eq!(c.failure_threshold, 3);
    assert_eq!(c.recovery_timeout, 10 * S);
    assert_eq!(c.max_recovery_timeout, 300 * S);
    assert_eq!(c.half_open_max_calls, 1);
    assert_eq!(c.probe_timeout, 10 * S);
}

#[tokio::test(start_paused = true)]
async fn closed_opens_at_exactly_the_threshold_and_successes_reset_the_count() {
    // (threshold, outcomes (true = success), index of the outcome that opens it)
    let table: [(u32, &str, Option<usize>); 6] = [
        (3, "FFF", Some(2)),
        (3, "FF", None),
        (3, "FFSFFSFF", None),
        (3, "FFSFFF", Some(5)),
        (1, "F", Some(0)),
        (5, "FFFFSFFFFF", Some(9)),
    ];
    let t0 = Instant::now();
    for (threshold, outcomes, opens_at) in table {
        let cfg = BreakerConfig {
            failure_threshold: threshold,
            ..BreakerConfig::default()
        };
        let mut core = BreakerCore::new(cfg);
        let mut opened = None;
        for (i, outcome) in outcomes.chars().enumerate() {
            let permit = core.admit(t0).expect("closed admits");
            assert_eq!(permit.kind(), PermitKind::Normal);
            if let Some(t) = core.record(permit, outcome == 'S', t0) {
                assert!(opened.is_none(), "{outcomes}: opened twice");
                assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
                assert_eq!(t.reason, TransitionReason::FailureThreshold);
                assert_eq!(t.next_probe_in, Some(10 * S));
                opened = Some(i);
            }
        }
        assert_eq!(
            opened, opens_at,
            "threshold {threshold}, outcomes {outcomes}"
        );
        let status = core.status(t0);
        let want = if opens_at.is_some() { "open" } else { "closed" };
        assert_eq!(status.state.as_str(), want, "{outcomes}");
        assert_eq!(status.open_count, u32::from(opens_at.is_some()));
    }
}

#[tokio::test(start_paused = true)]
async fn open_rejects_immediately_with_the_time_until_the_next_probe() {
    let t0 = Instant::now();
    let mut core = opened(BreakerConfig::default(), t0);
    for (after, retry_in) in [(0, 10_000), (5_800, 4_200), (9_999, 1)] {
        let rejected = core.admit(t0 + MS * after).expect_err("open rejects");
        assert_eq!(rejected.state, BreakerState::Open);
        assert_eq!(rejected.retry_in, MS * retry_in, "after {after} ms");
    }
    let rejected = core.admit(t0 + MS * 5_800).unwrap_err();
    assert_eq!(
        rejected.to_string(),
        "circuit breaker open: next probe in 4.2 s"
    );
    assert_eq!(core.status(t0).total_rejections, 4);
    assert_eq!(core.status(t0 + 3 * S).next_probe_in_ms, Some(7_000));

    // Through the handle the call is not even started.
    let handle = opened_handle(BreakerConfig::default());
    let ran = Arc::new(AtomicU32::new(0));
    let r = ran.clone();
    let result = handle
        .call(async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(())
        })
        .await;
    match result {
        Err(BreakerError::Open(rejected)) => assert_eq!(rejected.retry_in, 10 * S),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(handle.status().total_rejections, 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_max_calls_and_rejects_the_rest() {
    let t0 = Instant::now();
    for max in [1u32, 2, 5] {
        let mut core = opened(config(10, 300, max), t0);
        let t1 = t0 + 10 * S;
        let mut permits = Vec::new();
        for i in 0..max {
            let mut permit = core.admit(t1).expect("probe admitted");
            assert!(permit.is_probe());
            assert_eq!(permit.deadline(), Some(t1 + 10 * S));
            let transition = permit.take_transition();
            if i == 0 {
                let t = transition.expect("the first probe carries open → half_open");
                assert_eq!((t.from, t.to), (BreakerState::Open, BreakerState::HalfOpen));
                assert_eq!(t.reason, TransitionReason::RecoveryTimeoutElapsed);
            } else {
                assert!(transition.is_none());
            }
            permits.push(permit);
        }
        for _ in 0..3 {
            let rejected = core.admit(t1 + 2 * S).expect_err("saturated");
            assert_eq!(rejected.state, BreakerState::HalfOpen);
            assert_eq!(
                rejected.retry_in,
                8 * S,
                "until the earliest probe deadline"
            );
        }
        let status = core.status(t1);
        assert_eq!(status.probes_in_flight, max);
        assert_eq!(status.next_probe_in_ms, Some(10_000));
        drop(permits);
    }
}

#[tokio::test(start_paused = true)]
async fn probe_failure_reopens_with_the_recovery_timeout_doubled_up_to_the_cap() {
    let mut now = Instant::now();
    let mut core = opened(config(10, 60, 1), now);
    // (expected recovery of the re-open in seconds, open_count)
    let table = [(20, 2), (40, 3), (60, 4), (60, 5)];
    let mut recovery = 10 * S;
    for (want, open_count) in table {
        assert!(core.admit(now + recovery - MS).is_err(), "still open");
        now += recovery;
        let t = fail(&mut core, now).expect("probe failure re-opens");
        assert_eq!((t.from, t.to), (BreakerState::HalfOpen, BreakerState::Open));
        assert_eq!(t.reason, TransitionReason::ProbeFailed);
        recovery = S * want;
        assert_eq!(t.next_probe_in, Some(recovery));
        let status = core.status(now);
        assert_eq!(status.current_recovery_timeout_ms, want as u64 * 1000);
        assert_eq!(status.open_count, open_count);
        assert_eq!(status.next_probe_in_ms, Some(want as u64 * 1000));
    }
    assert_eq!(core.status(now).total_opens, 5);
}

#[tokio::test(start_paused = true)]
async fn probe_success_closes_and_resets_the_backoff() {
    let mut now = Instant::now();
    let mut core = opened(config(10, 300, 1), now);
    now += 10 * S;
    fail(&mut core, now).expect("re-open at 20 s");
    now += 20 * S;
    let permit = core.admit(now).expect("probe");
    let t = core.record(permit, true, now).expect("closes");
    assert_eq!(
        (t.from, t.to),
        (BreakerState::HalfOpen, BreakerState::Closed)
    );
    assert_eq!(t.reason, TransitionReason::ProbeSucceeded);
    let status = core.status(now);
    assert_eq!(status.state, BreakerState::Closed);
    assert_eq!(
        (status.open_count, status.consecutive_failures),
        (0, 0),
        "counts reset"
    );
    assert_eq!(status.current_recovery_timeout_ms, 10_000, "backoff reset");
    assert_eq!((status.opened_at, status.next_probe_in_ms), (None, None));
    // The next opening starts over from recovery_timeout.
    for _ in 0..2 {
        assert!(fail(&mut core, now).is_none());
    }
    let t = fail(&mut core, now).expect("opens again");
    assert_eq!(t.next_probe_in, Some(10 * S));
}

#[tokio::test(start_paused = true)]
async fn a_lost_probe_is_reaped_at_its_deadline_and_its_late_report_is_ignored() {
    let t0 = Instant::now();
    let mut core = opened(BreakerConfig::default(), t0);
    let t1 = t0 + 10 * S;
    let lost = core.admit(t1).expect("probe");
    assert!(core.expire_probes(t1 + 10 * S - MS).is_none(), "not yet");
    assert!(core.advance(t1 + 10 * S - MS).is_empty());
    let t = core.expire_probes(t1 + 10 * S).expect("expired");
    assert_eq!((t.from, t.to), (BreakerState::HalfOpen, BreakerState::Open));
    assert_eq!(t.reason, TransitionReason::ProbeTimedOut);
    assert_eq!(t.next_probe_in, Some(20 * S));
    // The probe reports much later: counted, but it drives nothing.
    assert!(core.record(lost, true, t1 + 11 * S).is_none());
    let status = core.status(t1 + 11 * S);
    assert_eq!(status.state, BreakerState::Open);
    assert_eq!(status.total_successes, 1);
    // advance() moves the re-opened breaker on once its doubled timeout passes.
    let moved = core.advance(t1 + 30 * S);
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].to, BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_returns_times_out_and_reopens_instead_of_wedging() {
    let handle = opened_handle(BreakerConfig::default());
    tokio::time::advance(10 * S).await;
    let started = Instant::now();
    let result = handle
        .call(std::future::pending::<Result<(), Infallible>>())
        .await;
    assert!(
        matches!(result, Err(BreakerError::ProbeTimeout)),
        "{result:?}"
    );
    assert_eq!(started.elapsed(), 10 * S, "bounded by probe_timeout");
    let status = handle.status();
    assert_eq!(status.state, BreakerState::Open);
    assert_eq!(status.probes_in_flight, 0);
    assert_eq!(status.current_recovery_timeout_ms, 20_000);
    assert_eq!(status.total_failures, 4);
    let last = status.last_transition.expect("transition recorded");
    assert_eq!(last.reason, TransitionReason::ProbeTimedOut);
    // Not wedged: the next probe comes after the doubled timeout, and can close it.
    tokio::time::advance(20 * S).await;
    assert_eq!(
        handle.call(async { Ok::<_, Infallible>(7) }).await.unwrap(),
        7
    );
    assert_eq!(handle.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_releases_its_permit() {
    // A probe dropped mid-way counts as failed: its slot is freed, the breaker re-opens.
    let handle = opened_handle(BreakerConfig::default());
    tokio::time::advance(10 * S).await;
    let pending = std::future::pending::<Result<(), Infallible>>();
    assert!(
        handle.call(pending).now_or_never().is_none(),
        "dropped after one poll"
    );
    let status = handle.status();
    assert_eq!(
        (status.state, status.probes_in_flight),
        (BreakerState::Open, 0)
    );
    let last = status.last_transition.unwrap();
    assert_eq!(last.reason, TransitionReason::ProbeCancelled);
    tokio::time::advance(20 * S).await;
    assert!(handle.call(async { Ok::<_, Infallible>(()) }).await.is_ok());
    assert_eq!(handle.state(), BreakerState::Closed);

    // A normal call dropped by its caller counts as nothing.
    let pending = std::future::pending::<Result<(), Infallible>>();
    assert!(handle.call(pending).now_or_never().is_none());
    let status = handle.status();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!((status.total_failures, status.total_successes), (4, 1));
}

#[tokio::test(start_paused = true)]
async fn manual_reset_closes_from_open_and_half_open() {
    for half_open in [false, true] {
        let handle = opened_handle(config(10, 300, 2));
        if half_open {
            tokio::time::advance(10 * S).await;
            handle.advance();
            assert_eq!(handle.state(), BreakerState::HalfOpen);
        }
        handle.reset();
        let status = handle.status();
        assert_eq!(status.state, BreakerState::Closed, "half_open: {half_open}");
        assert_eq!((status.consecutive_failures, status.open_count), (0, 0));
        assert_eq!(status.probes_in_flight, 0);
        let last = status.last_transition.unwrap();
        assert_eq!(last.reason, TransitionReason::ManualReset);
        assert_eq!(last.to, BreakerState::Closed);
        assert!(handle.call(async { Ok::<_, Infallible>(()) }).await.is_ok());
    }
    // From closed: no transition, but the failure count is cleared.
    let mut core = BreakerCore::new(BreakerConfig::default());
    core.record_unpermitted(false, Instant::now());
    assert!(core.reset(Instant::now()).is_none());
    assert_eq!(core.status(Instant::now()).consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn classified_failures_count_and_unpermitted_outcomes_never_drive_half_open() {
    let handle = BreakerHandle::new("test", BreakerConfig::default());
    for _ in 0..3 {
        let result = handle
            .call_classified(
                async { Ok::<_, Infallible>("malformed") },
                |r| matches!(r, Ok(body) if *body != "malformed"),
            )
            .await;
        assert_eq!(result.unwrap(), "malformed", "the result is returned as is");
    }
    assert_eq!(handle.state(), BreakerState::Open);
    tokio::time::advance(10 * S).await;
    handle.advance();
    handle.record_success();
    handle.record_failure();
    assert_eq!(handle.state(), BreakerState::HalfOpen, "only probes decide");
}

#[tokio::test(start_paused = true)]
async fn status_serialises_with_the_documented_fields() {
    let fields = [
        "consecutive_failures",
        "current_recovery_timeout_ms",
        "failure_threshold",
        "last_transition",
        "next_probe_in_ms",
        "open_count",
        "opened_at",
        "probes_in_flight",
        "state",
        "total_failures",
        "total_opens",
        "total_rejections",
        "total_successes",
    ];
    let closed =
        serde_json::to_value(BreakerHandle::new("t", Default::default()).status()).unwrap();
    let keys: Vec<&str> = closed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, fields);
    assert_eq!(closed["state"], "closed");
    for null in ["opened_at", "next_probe_in_ms", "last_transition"] {
        assert!(closed[null].is_null(), "{null}");
    }

    let handle = opened_handle(BreakerConfig::default());
    let status = handle.status();
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["state"], "open");
    assert_eq!(json["consecutive_failures"], 3);
    assert_eq!(json["failure_threshold"], 3);
    assert_eq!(json["next_probe_in_ms"], 10_000);
    assert_eq!(json["current_recovery_timeout_ms"], 10_000);
    assert_eq!(json["open_count"], 1);
    assert_eq!(json["total_failures"], 3);
    assert!(json["opened_at"].as_str().unwrap().ends_with('Z'));
    let last = &json["last_transition"];
    assert_eq!(last["from"], "closed");
    assert_eq!(last["to"], "open");
    assert_eq!(last["reason"], "failure_threshold");
    assert!(last["at"].as_str().unwrap().ends_with('Z'));
    let back: BreakerStatus = serde_json::from_value(json).unwrap();
    assert_eq!(back, status);
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_never_exceed_half_open_max_calls_in_flight() {
    for max in [1u32, 3] {
        // The sidecar is down: the breaker never closes, so every admitted call is a probe.
        let handle = opened_handle(config(1, 2, max));
        let in_flight = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let end = Instant::now() + 30 * S;
        let tasks: Vec<_> = (0..50u32)
            .map(|i| {
                let (handle, in_flight, peak) = (handle.clone(), in_flight.clone(), peak.clone());
                tokio::spawn(async move {
                    while Instant::now() < end {
                        let call = async {
                            let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            tokio::time::sleep(MS * (100 + i)).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            Err::<(), _>("sidecar down")
                        };
                        if let Err(BreakerError::Open(_)) = handle.call(call).await {
                            tokio::time::sleep(MS * (10 + i)).await;
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), max, "peak in flight");
        let status = handle.status();
        assert!(status.total_rejections > 100, "{status:?}");
        assert!(status.total_opens > 5, "{status:?}");
    }
}

fn details(node: &StatusNode) -> serde_json::Value {
    node.snapshot_shallow().details.unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn the_actor_ticks_open_to_half_open_without_traffic_and_survives_a_restart() {
    let handle = BreakerHandle::new("session_manager", BreakerConfig::default());
    let sidecars = StatusNode::root("root", "supervisor").child("sidecars", "supervisor", None);
    let spec = breaker_spec(
        "breaker:session_manager",
        handle.clone(),
        RestartPolicy::standard(),
    );
    let args = SupervisorArguments {
        node: sidecars.clone(),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children: vec![spec],
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    let node = sidecars.find("breaker:session_manager").unwrap();
    eventually("actor running", 5 * S, || {
        details(&node)["state"] == "closed"
    })
    .await;
    assert_eq!(&*handle.path(), "root/sidecars/breaker:session_manager");
    assert_eq!(node.kind(), "breaker");

    let mut states = handle.subscribe();
    for _ in 0..3 {
        handle.record_failure();
    }
    assert_eq!(details(&node)["state"], "open");
    let opened = Instant::now();
    eventually("half_open without traffic", 11 * S, || {
        details(&node)["state"] == "half_open"
    })
    .await;
    let waited = opened.elapsed();
    assert!(waited >= 10 * S && waited <= 10 * S + TICK, "{waited:?}");
    let last = &details(&node)["last_transition"];
    assert_eq!(last["from"], "open");
    assert_eq!(last["to"], "half_open");
    assert_eq!(last["reason"], "recovery_timeout_elapsed");
    assert_eq!(*states.borrow_and_update(), BreakerState::HalfOpen);

    // A restart of the actor keeps the breaker's state (it lives in the handle).
    let children = get_children(&sup).await.unwrap();
    children[0].cell.as_ref().unwrap().kill();
    eventually("restarted", 5 * S, || {
        node.restarts() == 1 && node.state() == crate::ActorState::Running
    })
    .await;
    assert_eq!(handle.state(), BreakerState::HalfOpen);
    assert_eq!(details(&node)["state"], "half_open");
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_actor_answers_get_status_and_reset() {
    let handle = opened_handle(BreakerConfig::default());
    let node = StatusNode::root("breaker:test", "breaker");
    let (actor, join) = BreakerActor::spawn(
        None,
        BreakerActor,
        BreakerArguments {
            handle: handle.clone(),
            node,
        },
    )
    .await
    .unwrap();
    let status = ractor::call!(actor, BreakerMessage::GetStatus).unwrap();
    assert_eq!(status.state, BreakerState::Open);
    let status = ractor::call!(actor, BreakerMessage::Reset).unwrap();
    assert_eq!(status.state, BreakerState::Closed);
    assert_eq!(
        status.last_transition.unwrap().reason,
        TransitionReason::ManualReset
    );
    assert_eq!(handle.state(), BreakerState::Closed);
    actor.stop(None);
    join.await.unwrap();
}

#[test]
fn all_lists_every_breaker_state_once() {
    // Exhaustive: a new state does not compile here until it is numbered, and then fails until
    // it is in `ALL` (the one-hot `revka_breaker_state` would no longer sum to 1 without it).
    let index = |s: BreakerState| match s {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    };
    let mut seen: Vec<usize> = BreakerState::ALL.iter().map(|&s| index(s)).collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn metrics_read_every_registered_breaker_at_scrape_time() {
    let metrics = Metrics::new();
    let registry = BreakerRegistry::new();
    registry.insert("session_manager", opened_handle(BreakerConfig::default()));
    registry.register_metrics(&metrics).unwrap();
    assert!(
        registry.register_metrics(&metrics).is_err(),
        "once per registry"
    );
    let late = BreakerHandle::new("late", BreakerConfig::default());
    registry.insert("late", late.clone());
    let _ = late.call(async { Err::<(), _>(()) }).await;
    let _ = registry
        .get("session_manager")
        .unwrap()
        .call(async { Ok::<_, Infallible>(()) })
        .await;
    let text = metrics.render();
    for line in [
        "# TYPE revka_breaker_state gauge",
        "revka_breaker_state{breaker=\"session_manager\",state=\"closed\"} 0",
        "revka_breaker_state{breaker=\"session_manager\",state=\"open\"} 1",
        "revka_breaker_state{breaker=\"session_manager\",state=\"half_open\"} 0",
        "revka_breaker_state{breaker=\"late\",state=\"closed\"} 1",
        "revka_breaker_state{breaker=\"late\",state=\"open\"} 0",
        "revka_breaker_state{breaker=\"late\",state=\"half_open\"} 0",
        "# TYPE revka_breaker_rejections_total counter",
        "revka_breaker_rejections_total{breaker=\"session_manager\"} 1",
        "revka_breaker_rejections_total{breaker=\"late\"} 0",
        "# TYPE revka_breaker_opens_total counter",
        "revka_breaker_opens_total{breaker=\"session_manager\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    let samples = crate::metrics::parse_exposition(&text).unwrap();
    let states = samples.iter().filter(|s| s.name == "revka_breaker_state");
    assert_eq!(
        states.clone().count(),
        6,
        "three states per breaker:\n{text}"
    );
    assert_eq!(
        states.map(|s| s.value).sum::<f64>(),
        2.0,
        "one-hot:\n{text}"
    );
    assert_eq!(registry.statuses()["late"].total_failures, 1);
}

/// Captures the formatted log lines of the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_logged_with_path_states_and_reason() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let handle = BreakerHandle::new("session_manager", BreakerConfig::default());
    handle.set_path("root/sidecars/breaker:session_manager");
    for _ in 0..3 {
        handle.record_failure();
    }
    tokio::time::advance(10 * S).await;
    handle.advance();
    assert!(handle.call(async { Ok::<_, Infallible>(()) }).await.is_ok());

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let want = [
        (
            "WARN",
            "circuit breaker opened",
            "closed",
            "open",
            "failure_threshold",
        ),
        (
            "INFO",
            "state changed",
            "open",
            "half_open",
            "recovery_timeout_elapsed",
        ),
        (
            "INFO",
            "state changed",
            "half_open",
            "closed",
            "probe_succeeded",
        ),
    ];
    for (line, (level, message, from, to, reason)) in lines.iter().zip(want) {
        for part in [
            level,
            message,
            "path=\"root/sidecars/breaker:session_manager\"",
            &format!("from=\"{from}\""),
            &format!("to=\"{to}\""),
            &format!("reason=\"{reason}\""),
        ] {
            assert!(line.contains(part), "`{part}` missing from: {line}");
        }
    }
    assert!(lines[0].contains("next_probe_in_ms=10000"), "{}", lines[0]);
}
