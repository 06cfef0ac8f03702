use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use ractor::{Actor, ActorRef};
use serde_json::json;
use tokio::time::Instant;

use super::journal::{Journal, Record};
use super::*;
use crate::status::StatusNode;
use crate::testing::eventually;

// === A scriptable executor ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Succeed,
    /// Fails the first n attempts of each operation, then succeeds.
    FailFirst(u32),
    FailAlways,
    Hang,
    Sleep(Duration),
}

#[derive(Debug, Clone)]
struct Call {
    id: String,
    attempts: u32,
    payload: serde_json::Value,
    at: Instant,
}

#[derive(Debug)]
struct ExecInner {
    mode: Mutex<Mode>,
    calls: Mutex<Vec<Call>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

#[derive(Debug, Clone)]
struct Exec(Arc<ExecInner>);

/// Counts a running attempt until dropped (a timed-out attempt's future is dropped).
struct Running(Arc<ExecInner>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Exec {
    fn new(mode: Mode) -> Self {
        Self(Arc::new(ExecInner {
            mode: Mutex::new(mode),
            calls: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
        }))
    }

    fn set(&self, mode: Mode) {
        *self.0.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> Vec<Call> {
        self.0.calls.lock().unwrap().clone()
    }

    fn calls_of(&self, id: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.id == id).collect()
    }

    /// Calls per id.
    fn counts(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for c in self.calls() {
            *out.entry(c.id).or_default() += 1;
        }
        out
    }

    fn running(&self) -> usize {
        self.0.running.load(Ordering::SeqCst)
    }

    fn max_running(&self) -> usize {
        self.0.max_running.load(Ordering::SeqCst)
    }
}

impl Executor for Exec {
    fn execute(&self, op: &Operation) -> BoxFuture<'static, Result<(), String>> {
        let inner = self.0.clone();
        let mode = *inner.mode.lock().unwrap();
        let n = {
            let mut calls = inner.calls.lock().unwrap();
            calls.push(Call {
                id: op.id.clone(),
                attempts: op.attempts,
                payload: op.payload.clone(),
                at: Instant::now(),
            });
            calls.iter().filter(|c| c.id == op.id).count() as u32
        };
        let now = inner.running.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_running.fetch_max(now, Ordering::SeqCst);
        let guard = Running(inner);
        Box::pin(async move {
            let _guard = guard;
            match mode {
                Mode::Succeed => Ok(()),
                Mode::FailFirst(k) if n <= k => Err(format!("fail #{n}")),
                Mode::FailFirst(_) => Ok(()),
                Mode::FailAlways => Err(format!("fail #{n}")),
                Mode::Hang => std::future::pending().await,
                Mode::Sleep(d) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
            }
        })
    }
}

// === Helpers ===

const WAIT: Duration = Duration::from_secs(600);

fn config(dir: &Path) -> QueueConfig {
    QueueConfig::new(dir.join("state").join("retry").join("journal.jsonl"))
}

struct TestQueue {
    actor: ActorRef<RetryQueueMessage>,
    task: tokio::task::JoinHandle<()>,
    handle: RetryQueueHandle,
    node: StatusNode,
}

async fn start(config: &QueueConfig, exec: &Exec) -> TestQueue {
    let handle = RetryQueueHandle::new();
    let node = StatusNode::root("retry:test", "retry_queue");
    let args = RetryQueueArguments {
        config: config.clone(),
        executor: Arc::new(exec.clone()),
        node: node.clone(),
        handle: handle.clone(),
    };
    let (actor, task) = Actor::spawn(None, RetryQueueActor, args)
        .await
        .expect("the queue starts");
    TestQueue {
        actor,
        task,
        handle,
        node,
    }
}

/// Simulates `kill -9` of the daemon: the actor is killed (no `post_stop`, no final sync) and
/// everything is dropped.
async fn crash(q: TestQueue) {
    q.actor.kill();
    q.task.await.unwrap();
}

fn op(id: &str) -> Operation {
    Operation::new(id, "post_message", json!({ "n": id }))
}

async fn enqueue_ok(q: &TestQueue, id: &str) -> usize {
    match q.handle.enqueue(op(id)).await {
        Ok(Enqueued::Queued { position, .. }) => position,
        other => panic!("enqueue {id}: {other:?}"),
    }
}

async fn wait_status(q: &TestQueue, what: &str, cond: impl Fn(&QueueStatus) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = q.handle.status().await.unwrap();
        if cond(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn journal_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

// === Behaviour ===

#[tokio::test(start_paused = true)]
async fn success_path_runs_each_operation_once() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::Succeed);
    let q = start(&config(dir.path()), &exec).await;
    for i in 0..3 {
        enqueue_ok(&q, &format!("op{i}")).await;
    }
    wait_status(&q, "all succeeded", |s| s.succeeded == 3).await;
    let s = q.handle.status().await.unwrap();
    assert_eq!(
        (s.pending, s.in_flight, s.dead_letters, s.failed),
        (0, 0, 0, 0)
    );
    assert_eq!(exec.calls().len(), 3);
    assert_eq!(exec.calls()[0].payload, json!({ "n": "op0" }));
    assert_eq!(
        exec.calls()[0].attempts,
        1,
        "the executor sees the attempt number"
    );
    assert_eq!(q.handle.queue_depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn positions_count_the_pending_operations_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::Hang);
    let mut cfg = config(dir.path());
    cfg.concurrency = 1;
    let q = start(&cfg, &exec).await;
    assert_eq!(enqueue_ok(&q, "a").await, 0, "a goes in flight at once");
    assert_eq!(enqueue_ok(&q, "b").await, 0);
    assert_eq!(enqueue_ok(&q, "c").await, 1);
    let s = q.handle.status().await.unwrap();
    assert_eq!((s.pending, s.in_flight), (2, 1));
    let states: Vec<_> = s
        .operations
        .iter()
        .map(|o| (o.id.as_str(), o.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a", OpState::InFlight),
            ("b", OpState::Pending),
            ("c", OpState::Pending)
        ]
    );
    assert_eq!(q.handle.queue_depth(), 3);
}

#[tokio::test(start_paused = true)]
async fn failures_retry_with_growing_delays_then_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::FailAlways);
    let mut cfg = config(dir.path());
    cfg.max_retries = 5;
    cfg.backoff_min = Duration::from_secs(2);
    cfg.backoff_max = Duration::from_secs(5);
    let q = start(&cfg, &exec).await;
    enqueue_ok(&q, "x").await;
    wait_status(&q, "dead-lettered", |s| s.dead_letters == 1).await;
    let calls = exec.calls_of("x");
    assert_eq!(calls.len(), 6, "1 attempt + max_retries retries");
    let attempts: Vec<u32> = calls.iter().map(|c| c.attempts).collect();
    assert_eq!(attempts, [1, 2, 3, 4, 5, 6]);
    // Retry n waits within [min, min·2^(n-1)] capped at max.
    let ceilings = [2000u128, 4000, 5000, 5000, 5000];
    for (n, pair) in calls.windows(2).enumerate() {
        let gap = (pair[1].at - pair[0].at).as_millis();
        assert!(
            (2000..=ceilings[n] + 50).contains(&gap),
            "retry {}: waited {gap} ms",
            n + 1
        );
    }
    let dead = q.handle.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 6);
    assert_eq!(dead[0].last_error.as_deref(), Some("fail #6"));
    let s = q.handle.status().await.unwrap();
    assert_eq!(
        (s.failed, s.dead_lettered, s.succeeded, s.pending),
        (6, 1, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_pending_retry_shows_its_error_and_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::FailFirst(1));
    let q = start(&config(dir.path()), &exec).await;
    enqueue_ok(&q, "x").await;
    wait_status(&q, "first failure", |s| s.failed == 1).await;
    let s = q.handle.status().await.unwrap();
    let o = &s.operations[0];
    assert_eq!((o.state, o.attempts), (OpState::Pending, 1));
    assert_eq!(o.last_error.as_deref(), Some("fail #1"));
    let due = o.next_attempt_in_ms.unwrap();
    assert!((1900..=2000).contains(&due), "due in {due} ms");
    let at = humantime::parse_rfc3339(o.next_attempt_at.as_deref().unwrap()).unwrap();
    let enqueued = humantime::parse_rfc3339(o.enqueued_at.as_deref().unwrap()).unwrap();
    assert!(at >= enqueued, "{o:?}");
    assert_eq!(o.payload_preview, r#"{"n":"x"}"#);
    wait_status(&q, "success", |s| s.succeeded == 1).await;
    assert_eq!(exec.calls_of("x").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_never_returns_times_out_and_counts_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::Hang);
    let mut cfg = config(dir.path());
    cfg.attempt_timeout = Duration::from_secs(30);
    cfg.max_retries = 1;
    let q = start(&cfg, &exec).await;
    let t0 = Instant::now();
    enqueue_ok(&q, "slow").await;
    wait_status(&q, "first timeout", |s| s.failed == 1).await;
    assert!(t0.elapsed() >= Duration::from_secs(30));
    assert_eq!(
        exec.running(),
        0,
        "the timed-out attempt's future was dropped"
    );
    wait_status(&q, "dead-lettered", |s| s.dead_letters == 1).await;
    let dead = q.handle.dead_letters().await.unwrap();
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("timed out"),
        "{dead:?}"
    );
    assert_eq!(exec.calls_of("slow").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_executor_is_a_failed_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_retries = 0;
    let q = start_with(
        &cfg,
        |_: &Operation| -> BoxFuture<'static, Result<(), String>> {
            Box::pin(async { panic!("executor bug") })
        },
    )
    .await;
    enqueue_ok(&q, "p").await;
    wait_status(&q, "dead-lettered", |s| s.dead_letters == 1).await;
    let dead = q.handle.dead_letters().await.unwrap();
    assert_eq!(dead[0].last_error.as_deref(), Some("the executor panicked"));
}

async fn start_with(config: &QueueConfig, executor: impl Executor) -> TestQueue {
    let handle = RetryQueueHandle::new();
    let node = StatusNode::root("retry:test", "retry_queue");
    let args = RetryQueueArguments {
        config: config.clone(),
        executor: Arc::new(executor),
        node: node.clone(),
        handle: handle.clone(),
    };
    let (actor, task) = Actor::spawn(None, RetryQueueActor, args).await.unwrap();
    TestQueue {
        actor,
        task,
        handle,
        node,
    }
}

#[tokio::test(start_paused = true)]
async fn never_more_than_concurrency_attempts_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::Sleep(Duration::from_secs(1)));
    let mut cfg = config(dir.path());
    cfg.concurrency = 3;
    let q = start(&cfg, &exec).await;
    for i in 0..20 {
        enqueue_ok(&q, &format!("op{i}")).await;
    }
    let s = q.handle.status().await.unwrap();
    assert_eq!(s.in_flight, 3);
    wait_status(&q, "all succeeded", |s| s.succeeded == 20).await;
    assert_eq!(exec.max_running(), 3);
    assert!(exec.counts().values().all(|&n| n == 1));
    assert_eq!(exec.counts().len(), 20);
}

#[tokio::test(start_paused = true)]
async fn at_capacity_reject_refuses_the_new_operation() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::Hang);
    let mut cfg = config(dir.path());
    cfg.capacity = 3;
    cfg.concurrency = 1;
    let q = start(&cfg, &exec).await;
    for id in ["a", "b", "c"] {
        enqueue_ok(&q, id).await;
    }
    let err = q.handle.enqueue(op("d")).await.unwrap_err();
    assert_eq!(err, EnqueueError::Full { capacity: 3 });
    assert!(err.to_string().contains("full"), "{err}");
    let s = q.handle.status().await.unwrap();
    assert_eq!(
        (s.pending + s.in_flight, s.rejected, s.dead_letters),
        (3, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn at_capacity_dead_letter_oldest_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::Hang);
    let mut cfg = config(dir.path());
    cfg.capacity = 3;
    cfg.concurrency = 1;
    cfg.on_full = OnFull::DeadLetterOldest;
    let q = start(&cfg, &exec).await;
    for id in ["a", "b", "c"] {
        enqueue_ok(&q, id).await;
    }
    // `a` is in flight: the oldest *pending* operation, `b`, makes room.
    enqueue_ok(&q, "d").await;
    let dead = q.handle.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "b");
    assert!(dead[0].last_error.as_deref().unwrap().contains("full"));
    let s = q.handle.status().await.unwrap();
    let ids: Vec<_> = s.operations.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["a", "c", "d"]);
    assert_eq!(s.dead_lettered, 1);

    // With every live operation in flight there is nothing to move: refused.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.capacity = 1;
    cfg.concurrency = 1;
    cfg.on_full = OnFull::DeadLetterOldest;
    let q = start(&cfg, &Exec::new(Mode::Hang)).await;
    enqueue_ok(&q, "a").await;
    let err = q.handle.enqueue(op("b")).await.unwrap_err();
    assert_eq!(err, EnqueueError::Full { capacity: 1 });
}

#[tokio::test(start_paused = true)]
async fn duplicate_ids_of_live_operations_are_not_queued_twice() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::Hang);
    let mut cfg = config(dir.path());
    cfg.concurrency = 1;
    let q = start(&cfg, &exec).await;
    enqueue_ok(&q, "a").await;
    enqueue_ok(&q, "b").await;
    let dup = |state| Ok(Enqueued::Duplicate { state });
    assert_eq!(q.handle.enqueue(op("a")).await, dup(OpState::InFlight));
    assert_eq!(q.handle.enqueue(op("b")).await, dup(OpState::Pending));
    let s = q.handle.status().await.unwrap();
    assert_eq!(s.pending + s.in_flight, 2);
    assert_eq!(exec.calls().len(), 1);
    let invalid = q.handle.enqueue(op("")).await.unwrap_err();
    assert!(matches!(invalid, EnqueueError::Invalid(_)), "{invalid:?}");
    let huge = Operation::new("huge", "k", json!("x".repeat(MAX_OP_BYTES)));
    let invalid = q.handle.enqueue(huge).await.unwrap_err();
    assert!(matches!(invalid, EnqueueError::Invalid(_)), "{invalid:?}");
}

#[tokio::test(start_paused = true)]
async fn enqueuing_a_dead_id_replaces_the_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::FailAlways);
    let mut cfg = config(dir.path());
    cfg.max_retries = 0;
    let q = start(&cfg, &exec).await;
    enqueue_ok(&q, "x").await;
    wait_status(&q, "dead", |s| s.dead_letters == 1).await;
    exec.set(Mode::Succeed);
    let fresh = Operation::new("x", "post_message", json!({ "v": 2 }));
    let reply = q.handle.enqueue(fresh).await.unwrap();
    assert_eq!(
        reply,
        Enqueued::Queued {
            position: 0,
            replaced_dead_letter: true
        }
    );
    wait_status(&q, "success", |s| s.succeeded == 1).await;
    assert!(q.handle.dead_letters().await.unwrap().is_empty());
    let last = exec.calls_of("x").pop().unwrap();
    assert_eq!((last.attempts, last.payload), (1, json!({ "v": 2 })));
}

#[tokio::test(start_paused = true)]
async fn dead_letters_are_bounded_oldest_discarded_first() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::FailAlways);
    let mut cfg = config(dir.path());
    cfg.max_retries = 0;
    cfg.dead_letter_capacity = 3;
    let q = start(&cfg, &exec).await;
    for i in 0..5 {
        enqueue_ok(&q, &format!("op{i}")).await;
    }
    wait_status(&q, "all dead", |s| s.dead_lettered == 5).await;
    let ids: Vec<String> = q
        .handle
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(ids, ["op2", "op3", "op4"]);
    assert_eq!(q.handle.status().await.unwrap().dead_letters, 3);
}

#[tokio::test(start_paused = true)]
async fn replay_and_drop_one_or_all() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::FailAlways);
    let mut cfg = config(dir.path());
    cfg.max_retries = 1;
    cfg.backoff_min = Duration::from_millis(10);
    let q = start(&cfg, &exec).await;
    for i in 0..4 {
        enqueue_ok(&q, &format!("op{i}")).await;
    }
    wait_status(&q, "all dead", |s| s.dead_letters == 4).await;
    exec.set(Mode::Succeed);

    assert_eq!(q.handle.replay(Some("op1")).await, Ok(1));
    wait_status(&q, "op1 replayed", |s| s.succeeded == 1).await;
    let last = exec.calls_of("op1").pop().unwrap();
    assert_eq!(last.attempts, 1, "attempts reset by the replay");
    assert_eq!(
        q.handle.replay(Some("nope")).await,
        Err(QueueError::NotFound(vec![NotDead {
            id: "nope".into(),
            live: None
        }]))
    );
    assert_eq!(q.handle.drop_dead_letters(Some("op2")).await, Ok(1));
    assert_eq!(
        q.handle.drop_dead_letters(Some("op2")).await,
        Err(QueueError::NotFound(vec![NotDead {
            id: "op2".into(),
            live: None
        }]))
    );
    assert_eq!(q.handle.replay(None).await, Ok(2));
    wait_status(&q, "all replayed", |s| s.succeeded == 3).await;
    assert!(q.handle.dead_letters().await.unwrap().is_empty());
    assert_eq!(
        exec.calls_of("op2").len(),
        2,
        "the dropped one never ran again"
    );
    assert_eq!(q.handle.replay(None).await, Ok(0));

    exec.set(Mode::FailAlways);
    for i in 10..13 {
        enqueue_ok(&q, &format!("op{i}")).await;
    }
    wait_status(&q, "dead again", |s| s.dead_letters == 3).await;
    assert_eq!(q.handle.drop_dead_letters(None).await, Ok(3));
    assert!(q.handle.dead_letters().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn replay_respects_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::FailAlways);
    let mut cfg = config(dir.path());
    cfg.max_retries = 0;
    cfg.capacity = 2;
    cfg.concurrency = 1;
    let q = start(&cfg, &exec).await;
    for id in ["a", "b", "c"] {
        enqueue_ok(&q, id).await;
        wait_status(&q, "dead", |s| s.pending + s.in_flight == 0).await;
    }
    exec.set(Mode::Hang);
    // Room for two: the two oldest dead letters move.
    assert_eq!(q.handle.replay(None).await, Ok(2));
    let dead: Vec<String> = q
        .handle
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(dead, ["c"]);
    assert_eq!(
        q.handle.replay(Some("c")).await,
        Err(QueueError::Full { capacity: 2 })
    );
    let full = Err(QueueError::Full { capacity: 2 });
    assert_eq!(q.handle.replay(None).await, full);
    let missing = Err(QueueError::NotFound(vec![NotDead {
        id: "zz".into(),
        live: None,
    }]));
    assert_eq!(q.handle.replay(Some("zz")).await, missing);
}

fn not_dead(id: &str, live: Option<OpState>) -> NotDead {
    NotDead {
        id: id.into(),
        live,
    }
}

async fn dead_ids(q: &TestQueue) -> Vec<String> {
    let dead = q.handle.dead_letters().await.unwrap();
    dead.into_iter().map(|o| o.id).collect()
}

#[tokio::test(start_paused = true)]
async fn replay_and_drop_by_id_list_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::FailAlways);
    let mut cfg = config(dir.path());
    cfg.max_retries = 0;
    let q = start(&cfg, &exec).await;
    for id in ["a", "b", "c", "d"] {
        enqueue_ok(&q, id).await;
    }
    wait_status(&q, "all dead", |s| s.dead_letters == 4).await;
    exec.set(Mode::Hang);
    enqueue_ok(&q, "live").await;

    // One id that is unknown and one that is live: nothing changes, both are named.
    let err = q
        .handle
        .replay_selected(Selection::Ids(vec!["a".into(), "zz".into(), "live".into()]))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        QueueError::NotFound(vec![
            not_dead("zz", None),
            not_dead("live", Some(OpState::InFlight))
        ])
    );
    assert_eq!(
        err.to_string(),
        "no dead letters `zz`, `live` (in flight, not dead-lettered)"
    );
    assert_eq!(dead_ids(&q).await, ["a", "b", "c", "d"]);
    let err = q
        .handle
        .drop_selected(Selection::Ids(vec!["b".into(), "nope".into()]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no dead letter `nope`");
    assert_eq!(dead_ids(&q).await, ["a", "b", "c", "d"]);

    // Duplicates are ignored; the ids that went are returned.
    let dropped = q
        .handle
        .drop_selected(Selection::Ids(vec!["b".into(), "b".into(), "d".into()]))
        .await;
    assert_eq!(dropped, Ok(vec!["b".to_owned(), "d".to_owned()]));
    assert_eq!(dead_ids(&q).await, ["a", "c"]);
    let replayed = q
        .handle
        .replay_selected(Selection::Ids(vec!["c".into()]))
        .await;
    assert_eq!(replayed, Ok(vec!["c".to_owned()]));
    assert_eq!(dead_ids(&q).await, ["a"]);
    let s = q.handle.status().await.unwrap();
    let live: Vec<(&str, u32)> = s
        .operations
        .iter()
        .map(|o| (o.id.as_str(), o.attempts))
        .collect();
    assert_eq!(
        live,
        [("live", 1), ("c", 1)],
        "c requeued with attempts reset, then started"
    );
    assert_eq!(
        q.handle.drop_selected(Selection::All).await,
        Ok(vec!["a".to_owned()])
    );
    assert_eq!(q.handle.drop_selected(Selection::All).await, Ok(vec![]));
}

#[tokio::test(start_paused = true)]
async fn replaying_more_dead_letters_than_fit_is_refused_with_the_room_left() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::FailAlways);
    let mut cfg = config(dir.path());
    cfg.max_retries = 0;
    cfg.capacity = 2;
    cfg.concurrency = 1;
    let q = start(&cfg, &exec).await;
    for id in ["a", "b", "c"] {
        enqueue_ok(&q, id).await;
        wait_status(&q, "dead", |s| s.pending + s.in_flight == 0).await;
    }
    exec.set(Mode::Hang);
    enqueue_ok(&q, "x").await;
    let err = q
        .handle
        .replay_selected(Selection::Ids(vec!["a".into(), "b".into()]))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        QueueError::NoRoom {
            requested: 2,
            room: 1,
            capacity: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "the retry queue has room for 1 more operations (2 at most); 2 dead letters were asked to replay"
    );
    assert_eq!(dead_ids(&q).await, ["a", "b", "c"], "nothing moved");
    assert_eq!(
        q.handle
            .replay_selected(Selection::Ids(vec!["b".into()]))
            .await,
        Ok(vec!["b".to_owned()])
    );
    assert_eq!(
        q.handle
            .replay_selected(Selection::Ids(vec!["a".into()]))
            .await,
        Err(QueueError::Full { capacity: 2 })
    );
}

#[tokio::test(start_paused = true)]
async fn the_status_lists_dead_letters_bounded_with_a_count_of_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::FailAlways);
    let mut cfg = config(dir.path());
    cfg.max_retries = 1;
    cfg.backoff_min = Duration::from_millis(10);
    let q = start(&cfg, &exec).await;
    let n = STATUS_OPS_LIMIT + 7;
    for i in 0..n {
        enqueue_ok(&q, &format!("op{i:03}")).await;
    }
    wait_status(&q, "all dead", |s| s.dead_letters == n).await;
    let s = q.handle.status().await.unwrap();
    assert_eq!(s.dead_letter_list.len(), STATUS_OPS_LIMIT);
    assert_eq!(s.dead_letters_omitted, 7);
    let first = &s.dead_letter_list[0];
    assert_eq!(first.state, OpState::Dead);
    assert_eq!(first.attempts, 2);
    assert!(
        first.last_error.as_deref().unwrap().starts_with("fail #"),
        "{first:?}"
    );
    assert_eq!(first.payload_preview, r#"{"n":"op000"}"#);
    assert!(first.enqueued_at.is_some() && first.next_attempt_at.is_none());
    let details = q.node.snapshot().details.expect("details are published");
    assert_eq!(
        details["dead_letter_list"].as_array().unwrap().len(),
        DETAILS_OPS_LIMIT
    );
    assert_eq!(details["dead_letters_omitted"], n - DETAILS_OPS_LIMIT);
    assert_eq!(details["dead_letter_list"][0]["state"], "dead");
}

#[test]
fn a_payload_preview_is_cut_at_a_character_boundary() {
    assert_eq!(preview(&json!({ "a": 1 })), r#"{"a":1}"#);
    let exact = json!("x".repeat(PREVIEW_BYTES - 2));
    assert_eq!(
        preview(&exact).len(),
        PREVIEW_BYTES,
        "fits exactly: not cut"
    );
    // `"` then 'é' (2 bytes) repeated: byte PREVIEW_BYTES falls inside a character.
    let cut = preview(&json!("é".repeat(PREVIEW_BYTES)));
    assert!(cut.ends_with('…'), "{cut}");
    let body = cut.trim_end_matches('…');
    assert_eq!(body.len(), PREVIEW_BYTES - 1);
    assert!(body.starts_with("\"é"));
    let big = json!({ "data": "z".repeat(10 << 20) });
    assert_eq!(preview(&big).chars().count(), PREVIEW_BYTES + 1);
}

#[tokio::test(start_paused = true)]
async fn status_node_details_and_queue_depth_need_no_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::Hang);
    let mut cfg = config(dir.path());
    cfg.concurrency = 2;
    let q = start(&cfg, &exec).await;
    for i in 0..12 {
        enqueue_ok(&q, &format!("op{i}")).await;
    }
    let details = q.node.snapshot().details.expect("details are published");
    assert_eq!(details["pending"], 10);
    assert_eq!(details["in_flight"], 2);
    assert_eq!(details["capacity"], 1000);
    assert_eq!(
        details["operations"].as_array().unwrap().len(),
        DETAILS_OPS_LIMIT
    );
    assert_eq!(details["operations_omitted"], 12 - DETAILS_OPS_LIMIT);
    assert_eq!(q.handle.queue_depth(), 12);
    let full = q.handle.status().await.unwrap();
    assert_eq!(full.operations.len(), 12);
}

// === Persistence ===

#[tokio::test(start_paused = true)]
async fn kill_9_loses_no_acknowledged_operation_and_runs_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let hanging = Exec::new(Mode::Hang);
    let q = start(&cfg, &hanging).await;
    for i in 0..100 {
        enqueue_ok(&q, &format!("op{i:03}")).await;
    }
    assert_eq!(hanging.running(), 4);
    crash(q).await;
    eventually("the killed queue's attempts are aborted", WAIT, || {
        hanging.running() == 0
    })
    .await;

    let exec = Exec::new(Mode::Succeed);
    let q = start(&cfg, &exec).await;
    wait_status(&q, "all 100 succeeded", |s| s.succeeded == 100).await;
    let counts = exec.counts();
    assert_eq!(counts.len(), 100);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    // The four attempts in flight at the crash were counted.
    let interrupted: Vec<String> = exec
        .calls()
        .into_iter()
        .filter(|c| c.attempts == 2)
        .map(|c| c.id)
        .collect();
    assert_eq!(interrupted, ["op000", "op001", "op002", "op003"]);
    let s = q.handle.status().await.unwrap();
    assert_eq!((s.pending, s.in_flight, s.dead_letters), (0, 0, 0));
    crash(q).await;

    // And a third start has nothing left to do.
    let exec = Exec::new(Mode::Succeed);
    let q = start(&cfg, &exec).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(exec.calls().is_empty());
    assert_eq!(q.handle.status().await.unwrap().pending, 0);
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_last_attempt_is_dead_lettered_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_retries = 0;
    let hanging = Exec::new(Mode::Hang);
    let q = start(&cfg, &hanging).await;
    enqueue_ok(&q, "poison").await;
    crash(q).await;
    let q = start(&cfg, &Exec::new(Mode::Succeed)).await;
    let dead = q.handle.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("interrupted")
    );
}

#[tokio::test(start_paused = true)]
async fn dead_letters_and_pending_retries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_retries = 0;
    let exec = Exec::new(Mode::FailAlways);
    let q = start(&cfg, &exec).await;
    for id in ["d1", "d2", "d3"] {
        enqueue_ok(&q, id).await;
    }
    wait_status(&q, "dead", |s| s.dead_letters == 3).await;
    crash(q).await;

    let mut cfg2 = cfg.clone();
    cfg2.max_retries = 3;
    let exec = Exec::new(Mode::FailFirst(1));
    let q = start(&cfg2, &exec).await;
    let dead = q.handle.dead_letters().await.unwrap();
    let ids: Vec<_> = dead.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["d1", "d2", "d3"]);
    assert_eq!(dead[0].last_error.as_deref(), Some("fail #1"));
    assert!(
        exec.calls().is_empty(),
        "dead letters are not retried by themselves"
    );
    // A pending retry (failed once, waiting) survives too.
    enqueue_ok(&q, "r").await;
    wait_status(&q, "one failure", |s| s.failed == 1).await;
    crash(q).await;
    let exec = Exec::new(Mode::Succeed);
    let q = start(&cfg2, &exec).await;
    let s = q.handle.status().await.unwrap();
    assert_eq!(s.operations[0].attempts, 1);
    assert_eq!(s.operations[0].last_error.as_deref(), Some("fail #1"));
    wait_status(&q, "retried", |s| s.succeeded == 1).await;
    assert_eq!(exec.calls_of("r")[0].attempts, 2);
    assert_eq!(q.handle.replay(None).await, Ok(3));
    wait_status(&q, "replayed", |s| s.succeeded == 4).await;
}

#[tokio::test(start_paused = true)]
async fn a_torn_last_line_and_garbage_lines_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::create_dir_all(cfg.journal.parent().unwrap()).unwrap();
    let enq = |id: &str| serde_json::to_string(&Record::Enqueued { op: op(id) }).unwrap();
    let text = format!(
        "{}\nnot json {{{{\n\n{}\n{{\"t\":\"ok\",\"id\":\"unknown\"}}\n{{\"t\":\"warp\",\"id\":\"a\"}}\n{}",
        enq("a"),
        enq("b"),
        &enq("c")[..30]
    );
    std::fs::write(&cfg.journal, text).unwrap();
    let exec = Exec::new(Mode::Succeed);
    let q = start(&cfg, &exec).await;
    wait_status(&q, "both ran", |s| s.succeeded == 2).await;
    let mut ids: Vec<_> = exec.counts().into_keys().collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    crash(q).await;
    // The journal was rewritten clean.
    for line in journal_lines(&cfg.journal) {
        serde_json::from_str::<Record>(&line).expect("every line parses");
    }

    // A last line that lost only its newline is a whole record: kept.
    std::fs::write(&cfg.journal, enq("d")).unwrap();
    let exec = Exec::new(Mode::Succeed);
    let q = start(&cfg, &exec).await;
    wait_status(&q, "d ran", |s| s.succeeded == 1).await;
    assert_eq!(exec.calls_of("d").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn compaction_keeps_the_journal_bounded_and_preserves_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_retries = 0;
    let exec = Exec::new(Mode::FailAlways);
    let q = start(&cfg, &exec).await;
    enqueue_ok(&q, "dead1").await;
    enqueue_ok(&q, "dead2").await;
    wait_status(&q, "dead", |s| s.dead_letters == 2).await;
    exec.set(Mode::Succeed);

    let (mut max_lines, mut shrank, mut last) = (0, false, 0);
    for batch in 0..12 {
        for i in 0..50 {
            enqueue_ok(&q, &format!("b{batch}-{i}")).await;
        }
        let want = 50 * (batch + 1);
        wait_status(&q, "batch done", |s| s.succeeded == want as u64).await;
        let size = std::fs::metadata(&cfg.journal).unwrap().len();
        shrank |= size < last;
        last = size;
        max_lines = max_lines.max(journal_lines(&cfg.journal).len());
    }
    // 600 operations wrote 1800 records; compaction kept the file to a few hundred lines.
    assert!(shrank, "the journal never shrank");
    assert!(max_lines <= 400, "the journal grew to {max_lines} lines");
    crash(q).await;

    let exec = Exec::new(Mode::Succeed);
    let q = start(&cfg, &exec).await;
    let dead: Vec<String> = q
        .handle
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(dead, ["dead1", "dead2"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        exec.calls().is_empty(),
        "completed operations stay completed"
    );
    // Right after a start the journal is a snapshot: two dead letters, enq + dead each.
    assert_eq!(journal_lines(&cfg.journal).len(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_journal_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let q = start(&cfg, &Exec::new(Mode::Hang)).await;
    enqueue_ok(&q, "a").await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cfg.journal), 0o600);
    assert_eq!(mode(cfg.journal.parent().unwrap()), 0o700);
}

#[test]
fn journal_record_format() {
    let line = |r: &Record| serde_json::to_string(r).unwrap();
    assert_eq!(
        line(&Record::Started { id: "a".into() }),
        r#"{"t":"try","id":"a"}"#
    );
    assert_eq!(
        line(&Record::Succeeded { id: "a".into() }),
        r#"{"t":"ok","id":"a"}"#
    );
    assert_eq!(
        line(&Record::Failed {
            id: "a".into(),
            err: "boom".into(),
            next_ms: 5
        }),
        r#"{"t":"fail","id":"a","err":"boom","next_ms":5}"#
    );
    assert_eq!(
        line(&Record::Dead {
            id: "a".into(),
            err: "boom".into()
        }),
        r#"{"t":"dead","id":"a","err":"boom"}"#
    );
    assert_eq!(
        line(&Record::Replayed { id: "a".into() }),
        r#"{"t":"replay","id":"a"}"#
    );
    assert_eq!(
        line(&Record::Dropped { id: "a".into() }),
        r#"{"t":"drop","id":"a"}"#
    );
    let mut o = Operation::new("a", "k", json!([1]));
    (o.enqueued_at, o.next_attempt_at) = (1, 2);
    assert_eq!(
        line(&Record::Enqueued { op: o }),
        r#"{"t":"enq","op":{"id":"a","kind":"k","payload":[1],"attempts":0,"enqueued_at":1,"next_attempt_at":2}}"#
    );
}

#[test]
fn journal_append_durable_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.jsonl");
    let (mut j, report) = Journal::open(&path, "retry queue journal", |_| panic!("empty")).unwrap();
    assert_eq!(report.records, 0);
    j.append_durable(&[
        Record::Enqueued { op: op("a") },
        Record::Started { id: "a".into() },
    ])
    .unwrap();
    j.append(&[Record::Succeeded { id: "a".into() }]).unwrap();
    drop(j);
    let mut seen = Vec::new();
    let (_, report) = Journal::open(&path, "retry queue journal", |r| seen.push(r)).unwrap();
    assert_eq!((report.records, report.skipped, report.torn), (3, 0, false));
    assert_eq!(seen[2], Record::Succeeded { id: "a".into() });
}

#[test]
fn retry_delays_follow_the_backoff() {
    let cfg = QueueConfig::new(PathBuf::from("/nonexistent"));
    assert_eq!(cfg.retry_delay(1), Duration::from_secs(2));
    for attempts in 2..10u32 {
        let d = cfg.retry_delay(attempts);
        let ceiling = Duration::from_secs(2 << (attempts - 1)).min(Duration::from_secs(30));
        assert!(d >= cfg.backoff_min && d <= ceiling, "{attempts}: {d:?}");
    }
}

// === A real SIGKILL ===

const CHILD_ENV: &str = "REVKA_RETRY_QUEUE_SIGKILL_JOURNAL";
const CHILD_OPS: usize = 50;

/// The child half of `sigkill_loses_no_acknowledged_operation`: a no-op unless the parent
/// set the environment variable.
#[tokio::test]
async fn sigkill_child() {
    let Some(journal) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut cfg = QueueConfig::new(PathBuf::from(&journal));
    cfg.concurrency = 2;
    let q = start(&cfg, &Exec::new(Mode::Hang)).await;
    for i in 0..CHILD_OPS {
        enqueue_ok(&q, &format!("k{i}")).await;
    }
    std::fs::write(format!("{}.ready", journal.to_string_lossy()), "ok").unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_operation() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("q").join("journal.jsonl");
    let ready = dir.path().join("q").join("journal.jsonl.ready");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "retry_queue::tests::sigkill_child",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &journal)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the child enqueued", Duration::from_secs(60), || {
        ready.exists()
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed: {status:?}");

    let exec = Exec::new(Mode::Succeed);
    let q = start(&QueueConfig::new(&journal), &exec).await;
    wait_status(&q, "all ran", |s| s.succeeded == CHILD_OPS as u64).await;
    let counts = exec.counts();
    assert_eq!(counts.len(), CHILD_OPS);
    assert!(counts.values().all(|&n| n == 1));
}

/// An executor whose target is unavailable until a given instant (an open breaker).
struct PausedUntil(Exec, Instant);

impl Executor for PausedUntil {
    fn execute(&self, op: &Operation) -> BoxFuture<'static, Result<(), String>> {
        self.0.execute(op)
    }

    fn unavailable_for(&self) -> Option<Duration> {
        let left = self.1.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

#[tokio::test(start_paused = true)]
async fn while_the_target_is_unavailable_no_attempt_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let exec = Exec::new(Mode::Succeed);
    let mut cfg = config(dir.path());
    cfg.max_retries = 1;
    let until = Instant::now() + Duration::from_secs(60);
    let q = start_with(&cfg, PausedUntil(exec.clone(), until)).await;
    enqueue_ok(&q, "x").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(exec.calls().is_empty(), "no attempt while unavailable");
    let s = q.handle.status().await.unwrap();
    assert_eq!((s.pending, s.dead_lettered, s.failed), (1, 0, 0));
    wait_status(&q, "succeeded", |s| s.succeeded == 1).await;
    let calls = exec.calls_of("x");
    assert_eq!(calls.len(), 1, "one attempt, after the pause");
    assert_eq!(calls[0].attempts, 1);
    assert!(
        calls[0].at >= until,
        "attempted {:?} before the end of the pause",
        until - calls[0].at
    );
}

// === The inbox: enqueues while the actor is down ===

async fn start_on(handle: &RetryQueueHandle, config: &QueueConfig, exec: &Exec) -> TestQueue {
    start_on_with(handle, config, Arc::new(exec.clone())).await
}

async fn start_on_with(
    handle: &RetryQueueHandle,
    config: &QueueConfig,
    executor: Arc<dyn Executor>,
) -> TestQueue {
    let node = StatusNode::root("retry:test", "retry_queue");
    let args = RetryQueueArguments {
        config: config.clone(),
        executor,
        node: node.clone(),
        handle: handle.clone(),
    };
    let (actor, task) = Actor::spawn(None, RetryQueueActor, args)
        .await
        .expect("the queue starts");
    TestQueue {
        actor,
        task,
        handle: handle.clone(),
        node,
    }
}

/// Stops the actor gracefully; returns its handle, which stays.
async fn stop(q: TestQueue) -> RetryQueueHandle {
    q.actor.stop(None);
    q.task.await.unwrap();
    assert!(q.handle.actor().is_none(), "the stopped actor detached");
    q.handle
}

async fn queued(handle: &RetryQueueHandle, id: &str) -> (usize, bool) {
    match handle.enqueue(op(id)).await {
        Ok(Enqueued::Queued {
            position,
            replaced_dead_letter,
        }) => (position, replaced_dead_letter),
        other => panic!("enqueue {id}: {other:?}"),
    }
}

fn inbox_lines(cfg: &QueueConfig) -> Vec<String> {
    journal_lines(&super::journal::inbox_path(&cfg.journal))
}

#[tokio::test(start_paused = true)]
async fn before_the_first_start_an_enqueue_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let handle = RetryQueueHandle::new();
    assert!(!handle.accepts_while_down());
    let err = handle.enqueue(op("a")).await.unwrap_err();
    assert_eq!(
        err,
        EnqueueError::Unavailable("the retry queue has not started yet".into())
    );
    assert!(!super::journal::inbox_path(&cfg.journal).exists());
}

#[tokio::test(start_paused = true)]
async fn while_the_actor_is_down_enqueues_go_to_the_inbox_and_run_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let exec = Exec::new(Mode::Succeed);
    let q = start(&cfg, &exec).await;
    enqueue_ok(&q, "a").await;
    wait_status(&q, "a succeeded", |s| s.succeeded == 1).await;
    let handle = stop(q).await;
    assert!(handle.accepts_while_down());

    assert_eq!(queued(&handle, "b").await, (0, false));
    assert_eq!(queued(&handle, "c").await, (1, false));
    assert_eq!(inbox_lines(&cfg).len(), 2, "both are on disk");
    assert_eq!(handle.published().inbox, 2);
    assert_eq!(handle.queue_depth(), 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        exec.calls().len(),
        1,
        "nothing runs while the actor is down"
    );

    let q = start_on(&handle, &cfg, &exec).await;
    wait_status(&q, "b and c succeeded", |s| s.succeeded == 3).await;
    assert_eq!(exec.calls_of("b").len(), 1);
    assert_eq!(exec.calls_of("c").len(), 1);
    assert!(!super::journal::inbox_path(&cfg.journal).exists());
    let s = q.handle.status().await.unwrap();
    assert_eq!((s.pending, s.inbox), (0, 0));
    assert_eq!(q.handle.queue_depth(), 0);
    // Once loaded, the inbox is gone for good: a further restart runs nothing again.
    let handle = stop(q).await;
    let q = start_on(&handle, &cfg, &exec).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(exec.calls().len(), 3);
    assert_eq!(q.handle.status().await.unwrap().pending, 0);
}

/// An executor whose target is unavailable until its gate opens (no attempt starts before).
struct Gated(Exec, Arc<std::sync::atomic::AtomicBool>);

impl Executor for Gated {
    fn execute(&self, op: &Operation) -> BoxFuture<'static, Result<(), String>> {
        self.0.execute(op)
    }

    fn unavailable_for(&self) -> Option<Duration> {
        (!self.1.load(Ordering::SeqCst)).then_some(Duration::from_millis(10))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_racing_a_stop_or_a_start_is_queued_exactly_once() {
    const ROUNDS: usize = 24;
    const PER_ROUND: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let exec = Exec::new(Mode::Succeed);
    // No attempt runs during the rounds, so a stop interrupts none (an interrupted attempt
    // runs again: at least once); each operation then runs once exactly if it was queued once.
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let executor: Arc<dyn Executor> = Arc::new(Gated(exec.clone(), gate.clone()));
    let handle = RetryQueueHandle::new();
    let mut q = Some(start_on_with(&handle, &cfg, executor.clone()).await);
    for round in 0..ROUNDS {
        let enqueues: Vec<_> = (0..PER_ROUND)
            .map(|k| {
                let handle = handle.clone();
                tokio::spawn(async move {
                    for _ in 0..fastrand::usize(0..20) {
                        tokio::task::yield_now().await;
                    }
                    let id = format!("r{round}-{k}");
                    (handle.enqueue(op(&id)).await, id)
                })
            })
            .collect();
        // Running: stop it while the enqueues run; down: start it while they run.
        q = match q.take() {
            Some(running) => {
                stop(running).await;
                None
            }
            None => Some(start_on_with(&handle, &cfg, executor.clone()).await),
        };
        for e in enqueues {
            let (result, id) = e.await.unwrap();
            assert!(
                matches!(result, Ok(Enqueued::Queued { .. })),
                "round {round}, {id}: {result:?}"
            );
        }
    }
    let q = match q {
        Some(q) => q,
        None => start_on_with(&handle, &cfg, executor.clone()).await,
    };
    let total = ROUNDS * PER_ROUND;
    let s = q.handle.status().await.unwrap();
    assert_eq!(
        (s.pending, s.in_flight, s.inbox),
        (total, 0, 0),
        "each queued once"
    );
    gate.store(true, Ordering::SeqCst);
    wait_status(&q, "every operation succeeded", |s| {
        s.succeeded == total as u64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counts = exec.counts();
    assert_eq!(counts.len(), total);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_crash_between_an_inbox_append_and_the_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.concurrency = 1;
    let hanging = Exec::new(Mode::Hang);
    let q = start(&cfg, &hanging).await;
    enqueue_ok(&q, "a").await;
    // The actor is killed (no post_stop); the handle takes the next enqueue.
    q.actor.kill();
    q.task.await.unwrap();
    let handle = q.handle;
    assert!(handle.actor().is_none());
    assert_eq!(queued(&handle, "b").await, (1, false));
    assert_eq!(
        handle.enqueue(op("a")).await,
        Ok(Enqueued::Duplicate {
            state: OpState::Pending
        }),
        "a was live when the actor went"
    );
    // Then the daemon dies: handle, actor, everything; a new daemon starts on the same files.
    drop(handle);
    let exec = Exec::new(Mode::Succeed);
    let q = start(&cfg, &exec).await;
    wait_status(&q, "a and b succeeded", |s| s.succeeded == 2).await;
    assert_eq!(exec.calls_of("a").len(), 1);
    assert_eq!(exec.calls_of("b").len(), 1);
    assert!(!super::journal::inbox_path(&cfg.journal).exists());
}

#[tokio::test(start_paused = true)]
async fn an_inbox_left_by_a_crash_after_it_was_queued_is_not_queued_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let q = start(&cfg, &Exec::new(Mode::Hang)).await;
    enqueue_ok(&q, "x").await;
    crash(q).await;
    // As if a start had queued this inbox (x is in the journal) and died before removing it.
    let enq = |id: &str| serde_json::to_string(&Record::Enqueued { op: op(id) }).unwrap();
    let inbox = super::journal::inbox_path(&cfg.journal);
    std::fs::write(&inbox, format!("{}\n{}\n", enq("x"), enq("y"))).unwrap();
    let exec = Exec::new(Mode::Succeed);
    let q = start(&cfg, &exec).await;
    wait_status(&q, "x and y succeeded", |s| s.succeeded == 2).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(exec.calls_of("x").len(), 1);
    assert_eq!(exec.calls_of("y").len(), 1);
    assert!(!inbox.exists());
}

#[tokio::test(start_paused = true)]
async fn the_inbox_respects_capacity_when_rejecting() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    (cfg.capacity, cfg.concurrency) = (3, 1);
    let exec = Exec::new(Mode::Hang);
    let q = start(&cfg, &exec).await;
    enqueue_ok(&q, "a").await;
    enqueue_ok(&q, "b").await;
    let handle = stop(q).await;
    assert_eq!(queued(&handle, "c").await, (2, false));
    let err = handle.enqueue(op("d")).await.unwrap_err();
    assert_eq!(err, EnqueueError::Full { capacity: 3 });
    assert_eq!(err.to_string(), "the retry queue is full (3 operations)");
    assert_eq!(handle.published().rejected, 1);
    assert_eq!(
        inbox_lines(&cfg).len(),
        1,
        "the refused operation is not on disk"
    );

    let q = start_on(&handle, &cfg, &exec).await;
    let s = q.handle.status().await.unwrap();
    assert_eq!(
        (s.pending + s.in_flight, s.inbox, s.dead_letters),
        (3, 0, 0)
    );
    assert_eq!(
        q.handle.enqueue(op("d")).await,
        Err(EnqueueError::Full { capacity: 3 }),
        "the actor refuses the same way"
    );
}

#[tokio::test(start_paused = true)]
async fn the_inbox_respects_capacity_when_dead_lettering_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    (cfg.capacity, cfg.concurrency, cfg.on_full) = (2, 1, OnFull::DeadLetterOldest);
    let exec = Exec::new(Mode::Hang);
    let q = start(&cfg, &exec).await;
    enqueue_ok(&q, "a").await;
    enqueue_ok(&q, "b").await;
    let handle = stop(q).await;
    // The start makes room as the actor does; the inbox itself holds `capacity` at most.
    queued(&handle, "c").await;
    queued(&handle, "d").await;
    assert_eq!(
        handle.enqueue(op("e")).await,
        Err(EnqueueError::Full { capacity: 2 })
    );

    let q = start_on(&handle, &cfg, &exec).await;
    let s = q.handle.status().await.unwrap();
    let live: Vec<_> = s.operations.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(live, ["c", "d"]);
    let dead = dead_ids(&q).await;
    assert_eq!(dead, ["a", "b"]);
    assert!(
        s.dead_letter_list[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("to make room")
    );
}

#[tokio::test(start_paused = true)]
async fn the_inbox_answers_duplicates_and_invalid_operations_like_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_retries = 1;
    let exec = Exec::new(Mode::FailAlways);
    let q = start(&cfg, &exec).await;
    enqueue_ok(&q, "dead").await;
    wait_status(&q, "dead-lettered", |s| s.dead_letters == 1).await;
    exec.set(Mode::Hang);
    enqueue_ok(&q, "live").await;
    let handle = stop(q).await;

    let dup = Ok(Enqueued::Duplicate {
        state: OpState::Pending,
    });
    assert_eq!(
        handle.enqueue(op("live")).await,
        dup,
        "live when the actor went"
    );
    assert_eq!(queued(&handle, "new").await, (1, false));
    assert_eq!(handle.enqueue(op("new")).await, dup, "already in the inbox");
    assert_eq!(
        queued(&handle, "dead").await,
        (2, true),
        "replaces the dead letter"
    );
    assert!(matches!(
        handle.enqueue(op("")).await,
        Err(EnqueueError::Invalid(_))
    ));
    let big = Operation::new("big", "k", json!("x".repeat(MAX_OP_BYTES)));
    assert!(matches!(
        handle.enqueue(big).await,
        Err(EnqueueError::Invalid(_))
    ));
    assert_eq!(inbox_lines(&cfg).len(), 2);

    let exec = Exec::new(Mode::Succeed);
    let q = start_on(&handle, &cfg, &exec).await;
    wait_status(&q, "all three succeeded", |s| s.succeeded == 3).await;
    let counts = exec.counts();
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert_eq!(exec.calls_of("dead")[0].attempts, 1, "a fresh operation");
    let s = q.handle.status().await.unwrap();
    assert_eq!((s.pending, s.dead_letters), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_inbox_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let q = start(&cfg, &Exec::new(Mode::Hang)).await;
    let handle = stop(q).await;
    queued(&handle, "a").await;
    let inbox = super::journal::inbox_path(&cfg.journal);
    assert_eq!(inbox.file_name().unwrap(), "journal.jsonl.inbox");
    let mode = std::fs::metadata(&inbox).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// The status carries the journal's figures: size, records, `fdatasync` count and latency
/// (every acknowledged enqueue is synced), and compactions.
#[tokio::test]
async fn the_status_reports_the_journal_size_and_sync_latency() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let q = start(&cfg, &Exec::new(Mode::Hang)).await;
    for id in ["a", "b", "c"] {
        enqueue_ok(&q, id).await;
    }
    let status = q.handle.status().await.unwrap();
    let journal = status.journal.expect("the journal's figures");
    assert_eq!(journal.path, cfg.journal.display().to_string());
    assert_eq!(
        journal.bytes,
        std::fs::metadata(&cfg.journal).unwrap().len(),
        "{journal:?}"
    );
    assert!(journal.records >= 3, "{journal:?}");
    assert!(
        journal.syncs >= 3,
        "one per acknowledged enqueue: {journal:?}"
    );
    let last = journal.last_sync_us.expect("a latest sync");
    assert!(journal.max_sync_us >= last && journal.max_sync_us >= journal.mean_sync_us);
    // What introspection and get_journal_health show, without a mailbox round trip.
    let published = q.handle.published();
    assert_eq!(published.journal.map(|j| j.path), Some(journal.path));
}

/// A journal sync on the only worker of a multi-thread runtime (the daemon's default on 2
/// cores) lets the runtime's other tasks run meanwhile: the sync below can only finish once
/// another task has run.
#[test]
fn a_sync_on_the_only_worker_does_not_stall_other_tasks() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        tokio::spawn(async move {
            // Spawned onto the runtime, so it can only ever run on the one worker.
            tokio::spawn(async move { ran_tx.send(()).unwrap() });
            crate::fs::off_worker(|| {
                ran_rx
                    .recv_timeout(Duration::from_secs(10))
                    .map_err(|_| std::io::Error::other("no other task ran during the sync"))
            })
        })
        .await
        .unwrap()
        .unwrap();
    });
}

/// Outside a multi-thread runtime (a current-thread runtime, a plain thread) the sync just
/// runs where it is: no panic from `block_in_place`.
#[tokio::test]
async fn a_sync_on_a_current_thread_runtime_runs_in_place() {
    let here = std::thread::current().id();
    let ran_on = crate::fs::off_worker(|| Ok(std::thread::current().id())).unwrap();
    assert_eq!(ran_on, here);
    assert_eq!(crate::fs::off_worker(|| Ok(7)).unwrap(), 7);
}

/// A preview never shows a secret: a create body's injected bearer token, its servers'
/// environments, keys, passwords; what is not secret stays readable.
#[test]
fn a_payload_preview_masks_secrets() {
    let body = json!({
        "method": "POST",
        "path": "/agents",
        "body": {
            "backend": "claude",
            "cwd": "/w",
            "mcp_servers": {
                "revka": { "type": "http", "url": "http://127.0.0.1:1/mcp",
                           "headers": { "Authorization": "Bearer rvks_secret" } },
                "db": { "type": "stdio", "command": "db-mcp", "env": { "PGPASSWORD": "hunter2" } }
            },
            "api_key": "sk-1", "refresh_token": "rt-1", "max_tokens": 5
        }
    });
    let shown = preview(&body);
    for secret in ["rvks_secret", "hunter2", "sk-1", "rt-1"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains(r#""headers":"***""#), "{shown}");
    assert!(shown.contains(r#""backend":"claude""#), "{shown}");
}
