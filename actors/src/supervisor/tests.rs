//! Supervisor semantics, one test per rule of `docs/supervision.md`.
//!
//! Children are `Worker` actors driven by messages (panic, fail, stop) or killed; every start
//! and stop is appended to a shared log, so tests assert on what actually happened, in order.
//! Time is paused: backoff delays are exact virtual durations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use super::*;
use crate::testing::eventually;

// ==== Worker: a child whose exits the test controls ====

type Log = Arc<Mutex<Vec<String>>>;
type Refs = Arc<Mutex<HashMap<String, ActorRef<WorkerMsg>>>>;

#[derive(Clone)]
struct WorkerCfg {
    id: String,
    log: Log,
    refs: Refs,
    /// Starts that fail in `post_start` before one succeeds.
    start_failures: Arc<AtomicU32>,
    /// `post_stop` hangs this long.
    stop_hang: Option<Duration>,
}

struct Worker;

enum WorkerMsg {
    Panic,
    Fail,
    /// Fails with a [`NeedsOperator`]: only a person can fix it.
    NeedOperator,
    StopNormally,
    /// Never returns: the worker's mailbox is stuck from now on.
    Wedge,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Exit {
    Normal,
    Panic,
    Error,
    Kill,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = WorkerCfg;
    type Arguments = WorkerCfg;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        cfg: WorkerCfg,
    ) -> Result<WorkerCfg, ActorProcessingErr> {
        cfg.refs.lock().unwrap().insert(cfg.id.clone(), myself);
        Ok(cfg)
    }

    async fn post_start(
        &self,
        _: ActorRef<WorkerMsg>,
        cfg: &mut WorkerCfg,
    ) -> Result<(), ActorProcessingErr> {
        if cfg
            .start_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            cfg.log.lock().unwrap().push(format!("fail:{}", cfg.id));
            return Err("start failure".into());
        }
        cfg.log.lock().unwrap().push(format!("start:{}", cfg.id));
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<WorkerMsg>,
        cfg: &mut WorkerCfg,
    ) -> Result<(), ActorProcessingErr> {
        cfg.log.lock().unwrap().push(format!("stop:{}", cfg.id));
        if let Some(hang) = cfg.stop_hang {
            tokio::time::sleep(hang).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _: &mut WorkerCfg,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Panic => panic!("worker panicked on purpose"),
            WorkerMsg::Fail => Err("worker failed on purpose".into()),
            WorkerMsg::NeedOperator => Err(Box::new(NeedsOperator(
                "token revoked: run `revka mcp login x`".into(),
            ))),
            WorkerMsg::StopNormally => {
                myself.stop(Some("done".into()));
                Ok(())
            }
            WorkerMsg::Wedge => std::future::pending().await,
        }
    }
}

struct Harness {
    log: Log,
    refs: Refs,
    root: StatusNode,
}

impl Harness {
    fn new() -> Self {
        Self {
            log: Arc::default(),
            refs: Arc::default(),
            root: StatusNode::root("root", "supervisor"),
        }
    }

    fn spec(&self, id: &str, policy: RestartPolicy) -> ChildSpec {
        self.spec_with(id, policy, 0, None)
    }

    fn spec_with(
        &self,
        id: &str,
        policy: RestartPolicy,
        start_failures: u32,
        stop_hang: Option<Duration>,
    ) -> ChildSpec {
        let cfg = WorkerCfg {
            id: id.to_owned(),
            log: self.log.clone(),
            refs: self.refs.clone(),
            start_failures: Arc::new(AtomicU32::new(start_failures)),
            stop_hang,
        };
        ChildSpec::new(id, "worker", policy, move |ctx: ChildContext| {
            let cfg = cfg.clone();
            async move {
                let (r, _) = Worker::spawn_linked(None, Worker, cfg, ctx.supervisor).await?;
                Ok(r.get_cell())
            }
        })
    }

    async fn start(
        &self,
        strategy: Strategy,
        intensity: Intensity,
        children: Vec<ChildSpec>,
    ) -> ActorRef<SupervisorMessage> {
        let args = SupervisorArguments {
            node: self.root.clone(),
            strategy,
            intensity,
            children,
        };
        let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
            .await
            .expect("supervisor starts");
        sup
    }

    fn worker(&self, id: &str) -> ActorRef<WorkerMsg> {
        self.refs.lock().unwrap()[id].clone()
    }

    fn exit(&self, id: &str, exit: Exit) {
        let w = self.worker(id);
        match exit {
            Exit::Normal => w.send_message(WorkerMsg::StopNormally).unwrap(),
            Exit::Panic => w.send_message(WorkerMsg::Panic).unwrap(),
            Exit::Error => w.send_message(WorkerMsg::Fail).unwrap(),
            Exit::Kill => w.kill(),
        }
    }

    fn count(&self, entry: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == entry)
            .count()
    }

    fn entries(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn state(&self, id: &str) -> Option<ActorState> {
        self.root.find(id).map(|n| n.state())
    }
}

/// Lets queued messages and zero-delay restarts run.
async fn settle() {
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn policy(restart: RestartType) -> RestartPolicy {
    RestartPolicy {
        restart,
        max_restarts: 10,
        window: Duration::from_secs(60),
        backoff: Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(300),
        },
        shutdown: Shutdown::Timeout(Duration::from_secs(1)),
    }
}

// ==== Strategy × restart type × exit kind ====

#[tokio::test(start_paused = true)]
async fn strategy_restart_type_exit_table() {
    let strategies = [
        Strategy::OneForOne,
        Strategy::OneForAll,
        Strategy::RestForOne,
    ];
    let types = [
        RestartType::Permanent,
        RestartType::Transient,
        RestartType::Temporary,
    ];
    let exits = [Exit::Normal, Exit::Panic, Exit::Error, Exit::Kill];
    for strategy in strategies {
        for rt in types {
            for exit in exits {
                let case = format!("{strategy:?} / {rt} / {exit:?}");
                let h = Harness::new();
                let children = vec![
                    h.spec("a", policy(RestartType::Permanent)),
                    h.spec("b", policy(rt)),
                    h.spec("c", policy(RestartType::Permanent)),
                ];
                let sup = h.start(strategy, Intensity::default(), children).await;
                eventually(&case, Duration::from_secs(5), || h.count("start:c") == 1).await;

                h.exit("b", exit);
                settle().await;

                // The rule under test, spelled out: kills, panics and errors are abnormal.
                let restarted = match rt {
                    RestartType::Permanent => true,
                    RestartType::Transient => exit != Exit::Normal,
                    RestartType::Temporary => false,
                };
                let expect_b = if restarted { 2 } else { 1 };
                assert_eq!(h.count("start:b"), expect_b, "{case}: starts of b");
                let (expect_a, expect_c) = match (restarted, strategy) {
                    (false, _) | (true, Strategy::OneForOne) => (1, 1),
                    (true, Strategy::OneForAll) => (2, 2),
                    (true, Strategy::RestForOne) => (1, 2),
                };
                assert_eq!(h.count("start:a"), expect_a, "{case}: starts of a");
                assert_eq!(h.count("start:c"), expect_c, "{case}: starts of c");
                let b_state = h.state("b");
                match (restarted, rt) {
                    (true, _) => assert_eq!(b_state, Some(ActorState::Running), "{case}"),
                    (false, RestartType::Temporary) => assert_eq!(b_state, None, "{case}: removed"),
                    (false, _) => assert_eq!(b_state, Some(ActorState::Stopped), "{case}"),
                }
                let b_failure = h.root.find("b").and_then(|n| n.last_failure());
                if restarted && exit != Exit::Normal {
                    assert!(b_failure.is_some(), "{case}: abnormal exit recorded");
                }
                sup.stop_and_wait(None, Some(Duration::from_secs(10)))
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_kill_is_abnormal_so_transient_children_restart() {
    let h = Harness::new();
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("t", policy(RestartType::Transient))],
        )
        .await;
    eventually("started", Duration::from_secs(5), || {
        h.count("start:t") == 1
    })
    .await;
    h.exit("t", Exit::Kill);
    eventually("restarted after kill", Duration::from_secs(5), || {
        h.count("start:t") == 2
    })
    .await;
    assert_eq!(
        h.root.find("t").unwrap().last_failure().as_deref(),
        Some("killed")
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

/// As in OTP, a temporary child is never restarted, not even when a sibling's exit makes the
/// group strategies stop it: it is stopped and removed; the permanent ones restart.
#[tokio::test(start_paused = true)]
async fn a_temporary_sibling_is_stopped_with_its_group_and_not_restarted() {
    for (strategy, failing) in [(Strategy::OneForAll, "c"), (Strategy::RestForOne, "a")] {
        let case = format!("{strategy:?}, {failing} fails");
        let h = Harness::new();
        let children = vec![
            h.spec("a", policy(RestartType::Permanent)),
            h.spec("b", policy(RestartType::Temporary)),
            h.spec("c", policy(RestartType::Permanent)),
        ];
        let sup = h.start(strategy, Intensity::default(), children).await;
        eventually(&case, Duration::from_secs(5), || h.count("start:c") == 1).await;
        h.exit(failing, Exit::Panic);
        eventually(&case, Duration::from_secs(5), || {
            h.count("start:a") == 2 && h.count("start:c") == 2
        })
        .await;
        settle().await;
        assert_eq!(h.count("start:b"), 1, "{case}: b not restarted");
        assert_eq!(h.state("b"), None, "{case}: b removed");
        assert!(h.root.find("b").is_none(), "{case}: and out of the tree");
        assert_eq!(h.state("a"), Some(ActorState::Running), "{case}");
        assert_eq!(h.state("c"), Some(ActorState::Running), "{case}");
        sup.stop_and_wait(None, Some(Duration::from_secs(10)))
            .await
            .unwrap();
    }
}

/// A stuck actor is still visible: its handler never returns, yet the tree's snapshot (read
/// without any mailbox) answers at once and shows it `running` since it started; its
/// supervisor still answers, and a stop kills it after its shutdown timeout.
#[tokio::test]
async fn a_stuck_actor_stays_visible_and_its_supervisor_answers() {
    let h = Harness::new();
    let p =
        policy(RestartType::Permanent).with_shutdown(Shutdown::Timeout(Duration::from_millis(200)));
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("w", p)],
        )
        .await;
    eventually("started", Duration::from_secs(5), || {
        h.count("start:w") == 1
    })
    .await;
    let since = h.root.find("w").unwrap().snapshot().state_since;
    h.worker("w").send_message(WorkerMsg::Wedge).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The worker's own mailbox is stuck...
    let stuck = h
        .worker("w")
        .call(|_| WorkerMsg::Wedge, Some(Duration::from_millis(100)))
        .await;
    assert!(
        !matches!(stuck, Ok(ractor::rpc::CallResult::Success(()))),
        "the worker is stuck"
    );
    // ...but the snapshot is read without it, at once.
    let started = std::time::Instant::now();
    let tree = h.root.snapshot();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "read at once"
    );
    let w = tree
        .children
        .iter()
        .find(|c| c.id == "w")
        .expect("w in the tree");
    assert_eq!(w.state, ActorState::Running);
    assert_eq!(w.state_since, since, "running since it started, not reset");
    let listed = get_children(&sup).await.unwrap();
    assert_eq!(listed.len(), 1, "its supervisor answers");
    // A stop does not wait on the stuck handler past the shutdown timeout.
    let started = std::time::Instant::now();
    sup.stop_and_wait(None, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

// ==== Order ====

#[tokio::test(start_paused = true)]
async fn children_start_in_order_and_stop_in_reverse() {
    let h = Harness::new();
    let p = policy(RestartType::Permanent);
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("a", p), h.spec("b", p), h.spec("c", p)],
        )
        .await;
    eventually("all started", Duration::from_secs(5), || {
        h.count("start:c") == 1
    })
    .await;
    sup.stop_and_wait(None, None).await.unwrap();
    assert_eq!(
        h.entries(),
        [
            "start:a", "start:b", "start:c", "stop:c", "stop:b", "stop:a"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn group_restarts_stop_in_reverse_and_start_in_order() {
    let h = Harness::new();
    let p = policy(RestartType::Permanent);
    let children = vec![
        h.spec("a", p),
        h.spec("b", p),
        h.spec("c", p),
        h.spec("d", p),
    ];
    let sup = h
        .start(Strategy::RestForOne, Intensity::default(), children)
        .await;
    eventually("all started", Duration::from_secs(5), || {
        h.count("start:d") == 1
    })
    .await;
    h.log.lock().unwrap().clear();
    h.exit("b", Exit::Error);
    eventually("restarted", Duration::from_secs(5), || {
        h.count("start:d") == 1
    })
    .await;
    assert_eq!(
        h.entries(),
        ["stop:d", "stop:c", "start:b", "start:c", "start:d"]
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

// ==== Limits ====

#[tokio::test(start_paused = true)]
async fn a_child_past_its_limit_is_failed_alone_and_restartable_on_request() {
    let h = Harness::new();
    let mut flaky = policy(RestartType::Permanent);
    flaky.max_restarts = 2;
    // Three failing starts: the first start and two restarts; then it is given up.
    let children = vec![
        h.spec("steady", policy(RestartType::Permanent)),
        h.spec_with("flaky", flaky, 3, None),
    ];
    // one_for_all: each restart takes the sibling along, but the give-up must not.
    let sup = h
        .start(Strategy::OneForAll, Intensity::default(), children)
        .await;
    eventually("flaky failed", Duration::from_secs(30), || {
        h.state("flaky") == Some(ActorState::Failed)
    })
    .await;
    settle().await;
    assert_eq!(h.count("fail:flaky"), 3, "first start + 2 restarts");
    assert_eq!(h.state("steady"), Some(ActorState::Running));
    assert_eq!(
        h.count("start:steady"),
        3,
        "restarted with each one_for_all restart, not after the give-up"
    );

    // A manual restart clears the limit and brings it back; the sibling is left alone.
    restart_child(&sup, "flaky").await.unwrap();
    eventually("flaky back", Duration::from_secs(5), || {
        h.state("flaky") == Some(ActorState::Running)
    })
    .await;
    assert_eq!(h.count("start:flaky"), 1);
    assert_eq!(h.count("start:steady"), 3);
    sup.stop_and_wait(None, None).await.unwrap();
}

/// A `NeedsOperator` failure is fatal: the child is failed at once with its reason and a
/// `gave_up` event, whatever its restart type, without a restart or a backoff; a restart on
/// request brings it back.
#[tokio::test]
async fn a_child_that_needs_an_operator_is_failed_at_once_and_restartable_on_request() {
    let h = Harness::new();
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("x", policy(RestartType::Permanent))],
        )
        .await;
    eventually("x running", Duration::from_secs(5), || {
        h.state("x") == Some(ActorState::Running)
    })
    .await;
    h.worker("x").send_message(WorkerMsg::NeedOperator).unwrap();
    eventually("x failed", Duration::from_secs(5), || {
        h.state("x") == Some(ActorState::Failed)
    })
    .await;
    settle().await;
    assert_eq!(h.count("start:x"), 1, "not restarted");
    let node = h.root.find("x").unwrap();
    let why = "token revoked: run `revka mcp login x`";
    assert_eq!(node.restarts(), 0);
    assert_eq!(node.last_failure().as_deref(), Some(why));
    let page = node.events().page(0, 100, |_| true);
    assert!(
        page.events
            .iter()
            .any(|e| e.kind == EventKind::GaveUp && e.reason.as_deref() == Some(why)),
        "{:?}",
        page.events
    );
    restart_child(&sup, "x").await.unwrap();
    eventually("x back", Duration::from_secs(5), || {
        h.state("x") == Some(ActorState::Running)
    })
    .await;
    assert_eq!(h.count("start:x"), 2);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn intensity_exceeded_stops_children_in_reverse_and_escalates() {
    let h = Harness::new();
    let parent_node = h.root.clone();
    let inner_h = Harness {
        log: h.log.clone(),
        refs: h.refs.clone(),
        root: parent_node.clone(),
    };
    let p = policy(RestartType::Permanent);
    let crashy = inner_h.spec_with("crashy", p, 1000, None);
    let first = inner_h.spec("first", p);
    let last = inner_h.spec("last", p);
    let inner = supervisor_spec(
        "inner",
        policy(RestartType::Permanent),
        Strategy::OneForOne,
        Intensity {
            max_restarts: 3,
            period: Duration::from_secs(60),
        },
        move || vec![first.clone(), crashy.clone(), last.clone()],
    );
    let sup = h
        .start(Strategy::OneForOne, Intensity::default(), vec![inner])
        .await;
    eventually(
        "inner restarted by its parent",
        Duration::from_secs(60),
        || h.root.find("inner").is_some_and(|n| n.restarts() >= 1),
    )
    .await;
    let log = h.entries();
    let first_stop = log.iter().position(|e| e.starts_with("stop:")).unwrap();
    assert_eq!(
        &log[first_stop..first_stop + 2],
        ["stop:last", "stop:first"],
        "reverse order: {log:?}"
    );
    let failure = h.root.find("inner").unwrap().last_failure().unwrap();
    assert!(
        failure.contains("exceeded its restart intensity"),
        "{failure}"
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

// ==== Backoff ====

#[tokio::test(start_paused = true)]
async fn backoff_is_immediate_then_exponential_with_jitter() {
    let h = Harness::new();
    let mut p = policy(RestartType::Permanent);
    p.max_restarts = 100;
    p.backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_millis(800),
        reset_after: Duration::from_secs(300),
    };
    let started = Instant::now();
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity {
                max_restarts: 100,
                period: Duration::from_secs(60),
            },
            vec![h.spec_with("x", p, 7, None)],
        )
        .await;
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = times.clone();
    let log = h.log.clone();
    eventually("8 attempts", Duration::from_secs(60), || {
        let n = log.lock().unwrap().len();
        let mut t = seen.lock().unwrap();
        while t.len() < n {
            t.push(Instant::now());
        }
        n >= 8
    })
    .await;
    let times = times.lock().unwrap().clone();
    let mut prev = started;
    let gaps: Vec<Duration> = times
        .iter()
        .map(|t| {
            let g = t.saturating_duration_since(prev);
            prev = *t;
            g
        })
        .collect();
    // gaps[0] is the initial start; gaps[k] precedes the k-th restart.
    let slack = Duration::from_millis(10); // the polling granularity
    assert!(gaps[1] <= slack, "first restart immediate: {gaps:?}");
    for k in 2..8u32 {
        let g = gaps[k as usize];
        let ceiling = p.backoff.ceiling(k);
        assert!(
            g + slack >= p.backoff.min && g <= ceiling + slack,
            "restart {k}: {g:?} not in [min, {ceiling:?}]: {gaps:?}"
        );
    }
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn backoff_resets_after_a_stable_run() {
    let h = Harness::new();
    let mut p = policy(RestartType::Permanent);
    p.backoff.reset_after = Duration::from_secs(10);
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("x", p)],
        )
        .await;
    eventually("started", Duration::from_secs(5), || {
        h.count("start:x") == 1
    })
    .await;
    h.exit("x", Exit::Error);
    eventually("restart 1", Duration::from_secs(5), || {
        h.count("start:x") == 2
    })
    .await;
    h.exit("x", Exit::Error);
    let t = Instant::now();
    eventually("restart 2 (backs off)", Duration::from_secs(5), || {
        h.count("start:x") == 3
    })
    .await;
    assert!(
        t.elapsed() >= p.backoff.min,
        "second consecutive restart waits"
    );
    tokio::time::sleep(Duration::from_secs(11)).await; // a stable run
    h.exit("x", Exit::Error);
    let t = Instant::now();
    eventually("restart 3 (reset)", Duration::from_secs(5), || {
        h.count("start:x") == 4
    })
    .await;
    assert!(
        t.elapsed() < p.backoff.min,
        "after a stable run the restart is immediate again"
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

// ==== Shutdown ====

#[tokio::test(start_paused = true)]
async fn a_child_that_does_not_stop_in_time_is_killed() {
    let h = Harness::new();
    let p =
        policy(RestartType::Permanent).with_shutdown(Shutdown::Timeout(Duration::from_millis(200)));
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec_with("slow", p, 0, Some(Duration::from_secs(3600)))],
        )
        .await;
    eventually("started", Duration::from_secs(5), || {
        h.count("start:slow") == 1
    })
    .await;
    let t = Instant::now();
    terminate_child(&sup, "slow").await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "did not wait for the hung post_stop"
    );
    assert_eq!(h.count("stop:slow"), 1, "post_stop began (graceful first)");
    assert!(h.root.find("slow").is_none(), "terminated child removed");
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn brutal_kill_skips_post_stop() {
    let h = Harness::new();
    let p = policy(RestartType::Permanent).with_shutdown(Shutdown::BrutalKill);
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("b", p)],
        )
        .await;
    eventually("started", Duration::from_secs(5), || {
        h.count("start:b") == 1
    })
    .await;
    terminate_child(&sup, "b").await.unwrap();
    assert_eq!(h.count("stop:b"), 0);
    sup.stop_and_wait(None, None).await.unwrap();
}

// ==== Dynamic children ====

#[tokio::test(start_paused = true)]
async fn dynamic_children_by_message() {
    let h = Harness::new();
    let sup = h
        .start(Strategy::OneForOne, Intensity::default(), vec![])
        .await;
    start_child(&sup, h.spec("x", policy(RestartType::Permanent)))
        .await
        .unwrap();
    start_child(&sup, h.spec("tmp", policy(RestartType::Temporary)))
        .await
        .unwrap();
    assert!(matches!(
        start_child(&sup, h.spec("x", policy(RestartType::Permanent))).await,
        Err(SupervisorError::AlreadyExists(_))
    ));
    eventually("running", Duration::from_secs(5), || {
        h.state("x") == Some(ActorState::Running)
    })
    .await;
    let ids: Vec<String> = get_children(&sup)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["x", "tmp"]);
    restart_child(&sup, "x").await.unwrap();
    eventually("restarted", Duration::from_secs(5), || {
        h.count("start:x") == 2
    })
    .await;
    assert!(matches!(
        restart_child(&sup, "tmp").await,
        Err(SupervisorError::NotRestartable(_))
    ));
    assert!(matches!(
        restart_child(&sup, "nope").await,
        Err(SupervisorError::NoSuchChild(_))
    ));
    terminate_child(&sup, "x").await.unwrap();
    assert!(matches!(
        terminate_child(&sup, "x").await,
        Err(SupervisorError::NoSuchChild(_))
    ));
    let ids: Vec<String> = get_children(&sup)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["tmp"]);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn start_failures_are_counted_backed_off_and_visible() {
    let h = Harness::new();
    let mut p = policy(RestartType::Permanent);
    p.max_restarts = 3;
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec_with("bad", p, 100, None)],
        )
        .await;
    eventually("given up", Duration::from_secs(30), || {
        h.state("bad") == Some(ActorState::Failed)
    })
    .await;
    let snap = h.root.snapshot();
    let bad = snap.find("root/bad").unwrap();
    assert_eq!(bad.restarts, 3);
    assert!(
        bad.last_failure
            .as_ref()
            .unwrap()
            .reason
            .contains("start failure")
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn manual_children_wait_for_a_restart_request() {
    let h = Harness::new();
    let p = policy(RestartType::Permanent);
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("auto", p), h.spec("later", p).manual()],
        )
        .await;
    eventually("auto started", Duration::from_secs(5), || {
        h.count("start:auto") == 1
    })
    .await;
    settle().await;
    assert_eq!(h.count("start:later"), 0);
    assert_eq!(h.state("later"), Some(ActorState::Stopped));
    restart_child(&sup, "later").await.unwrap();
    eventually("started on request", Duration::from_secs(5), || {
        h.state("later") == Some(ActorState::Running)
    })
    .await;
    sup.stop_and_wait(None, None).await.unwrap();
}

#[test]
fn kill_and_cancel_are_abnormal_stops_are_normal() {
    assert!(classify_termination(Some("killed")).is_abnormal());
    assert!(classify_termination(Some("actor_task_cancelled")).is_abnormal());
    assert!(!classify_termination(None).is_abnormal());
    assert!(!classify_termination(Some("done")).is_abnormal());
}

#[tokio::test(start_paused = true)]
async fn restart_by_path_reaches_the_right_supervisor() {
    let h = Harness::new();
    let p = policy(RestartType::Permanent);
    let inner_spec = h.spec("leaf", p);
    let tmp = h.spec("tmp", policy(RestartType::Temporary));
    let inner = supervisor_spec(
        "inner",
        p,
        Strategy::OneForOne,
        Intensity::default(),
        move || vec![inner_spec.clone(), tmp.clone()],
    );
    let sup = h
        .start(Strategy::OneForOne, Intensity::default(), vec![inner])
        .await;
    eventually("leaf running", Duration::from_secs(5), || {
        h.count("start:leaf") == 1
    })
    .await;
    restart_path(&h.root, "root/inner/leaf").await.unwrap();
    eventually("leaf restarted", Duration::from_secs(5), || {
        h.count("start:leaf") == 2
    })
    .await;
    assert!(matches!(
        restart_path(&h.root, "root/inner/nope").await,
        Err(RestartPathError::NotFound(_))
    ));
    assert!(matches!(
        restart_path(&h.root, "root").await,
        Err(RestartPathError::Refused { .. })
    ));
    let err = restart_path(&h.root, "root/inner/tmp").await.unwrap_err();
    assert!(err.to_string().contains("temporary"), "{err}");
    restart_path(&h.root, "root/inner").await.unwrap();
    eventually("subtree restarted", Duration::from_secs(5), || {
        h.count("start:leaf") == 3
    })
    .await;
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_updated_spec_takes_effect_at_the_next_restart_only() {
    let h = Harness::new();
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("x", policy(RestartType::Permanent))],
        )
        .await;
    eventually("started", Duration::from_secs(5), || {
        h.count("start:x") == 1
    })
    .await;
    let mut stricter = policy(RestartType::Permanent);
    stricter.max_restarts = 0;
    update_child(&sup, h.spec("x", stricter)).await.unwrap();
    assert_eq!(h.count("start:x"), 1, "not restarted by the update");
    h.exit("x", Exit::Error);
    eventually(
        "given up under the new policy",
        Duration::from_secs(5),
        || h.state("x") == Some(ActorState::Failed),
    )
    .await;
    assert!(matches!(
        update_child(&sup, h.spec("nope", stricter)).await,
        Err(SupervisorError::NoSuchChild(_))
    ));
    sup.stop_and_wait(None, None).await.unwrap();
}

// ==== Transition log ====

/// One captured event: when it was emitted (tokio's clock, paused in these tests) and its
/// fields as text, `message` included.
type Event = (Instant, std::collections::BTreeMap<String, String>);

/// A tracing layer that keeps every event of the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<Event>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(std::collections::BTreeMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        let mut fields = Fields(Default::default());
        event.record(&mut fields);
        self.0.lock().unwrap().push((Instant::now(), fields.0));
    }
}

impl Captured {
    fn with_message(&self, message: &str) -> Vec<Event> {
        let events = self.0.lock().unwrap();
        let mine = events.iter().filter(|(_, f)| f["message"] == message);
        mine.cloned().collect()
    }
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_logged_with_path_reason_attempt_and_delay() {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::new();
    let mut p = policy(RestartType::Permanent);
    p.max_restarts = 2;
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("x", p)],
        )
        .await;
    for starts in 1..=3 {
        eventually("started", Duration::from_secs(30), || {
            h.count("start:x") == starts
        })
        .await;
        h.exit("x", Exit::Error);
    }
    eventually("given up", Duration::from_secs(30), || {
        h.state("x") == Some(ActorState::Failed)
    })
    .await;

    // Each start names the child and its attempt.
    let started = captured.with_message("child started");
    let attempts: Vec<&str> = started.iter().map(|(_, f)| f["attempt"].as_str()).collect();
    assert_eq!(attempts, ["0", "1", "2"], "{started:?}");
    assert!(started.iter().all(|(_, f)| f["path"] == "root/x"));

    // Each scheduled restart: path, reason, attempt, and the delay it then actually waited.
    let scheduled = captured.with_message("child exited; restart scheduled");
    assert_eq!(scheduled.len(), 2, "{scheduled:?}");
    for (n, (at, fields)) in scheduled.iter().enumerate() {
        assert_eq!(fields["path"], "root/x");
        assert_eq!(fields["reason"], "worker failed on purpose");
        assert_eq!(fields["attempt"], (n + 1).to_string());
        assert_eq!(fields["restarts"], (n + 1).to_string());
        let delay_ms: u64 = fields["delay_ms"].parse().unwrap();
        // Immediate the first time, then at least the backoff floor, at most its cap.
        let floor = if n == 0 { 0 } else { 100 };
        assert!(
            (floor..=2000).contains(&delay_ms) && (n > 0 || delay_ms == 0),
            "{fields:?}"
        );
        // The next start came exactly that much later (timers have 1 ms resolution).
        let waited = started[n + 1].0.saturating_duration_since(*at).as_millis() as u64;
        assert!(
            (delay_ms..=delay_ms + 1).contains(&waited),
            "logged {delay_ms} ms, waited {waited} ms"
        );
    }

    // The give-up: path, reason and the limit.
    let failed = captured
        .with_message("child exceeded its restart limit; marked failed (restart it on request)");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let fields = &failed[0].1;
    assert_eq!(fields["path"], "root/x");
    assert_eq!(fields["reason"], "worker failed on purpose");
    assert_eq!(fields["max_restarts"], "2");
    assert_eq!(fields["window_secs"], "60");

    sup.stop_and_wait(None, None).await.unwrap();
}

// ==== The supervision event log ====

/// `(kind, state)` of every event at `path`, in order.
fn events_at(root: &StatusNode, path: &str) -> Vec<crate::events::Event> {
    root.events()
        .page(0, crate::events::CAPACITY, |e| e.path == path)
        .events
        .into_iter()
        .map(|e| (*e).clone())
        .collect()
}

fn kinds(events: &[crate::events::Event]) -> Vec<(&'static str, ActorState)> {
    events.iter().map(|e| (e.kind.as_str(), e.state)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_crash_is_logged_as_exited_then_restart_scheduled_then_started() {
    let h = Harness::new();
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![h.spec("x", policy(RestartType::Permanent))],
        )
        .await;
    eventually("started", Duration::from_secs(5), || {
        h.count("start:x") == 1
    })
    .await;
    h.exit("x", Exit::Error);
    eventually("restarted", Duration::from_secs(5), || {
        h.count("start:x") == 2
    })
    .await;
    h.exit("x", Exit::Panic);
    eventually("restarted again", Duration::from_secs(5), || {
        h.state("x") == Some(ActorState::Running) && h.count("start:x") == 3
    })
    .await;

    let events = events_at(&h.root, "root/x");
    use ActorState::{BackingOff, Running, Stopped};
    assert_eq!(
        kinds(&events),
        [
            ("added", Stopped),
            ("started", Running),
            ("exited", BackingOff),
            ("restart_scheduled", BackingOff),
            ("started", Running),
            ("exited", BackingOff),
            ("restart_scheduled", BackingOff),
            ("started", Running),
        ]
    );
    assert!(
        events.windows(2).all(|w| w[1].seq > w[0].seq),
        "sequence order"
    );
    let (first, crash, scheduled, restarted) = (&events[1], &events[2], &events[3], &events[4]);
    assert_eq!((first.restarts, first.after_ms), (0, None), "a first start");
    assert_eq!(crash.reason.as_deref(), Some("worker failed on purpose"));
    assert_eq!(crash.abnormal, Some(true));
    assert_eq!(crash.restarts, 1);
    assert_eq!((scheduled.delay_ms, scheduled.attempt), (Some(0), Some(1)));
    assert_eq!(restarted.restarts, 1);
    assert!(restarted.after_ms.is_some(), "{restarted:?}");
    let panicked = &events[5];
    assert!(
        panicked
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("panicked on purpose")),
        "{panicked:?}"
    );
    // The second restart in a row waits out the backoff, and the start says how long it was down.
    let delay = events[6].delay_ms.unwrap();
    assert_eq!(events[6].attempt, Some(2));
    assert!((100..=2000).contains(&delay), "{delay}");
    let down = events[7].after_ms.unwrap();
    assert!(
        (delay..=delay + 10).contains(&down),
        "down {down} ms, delay {delay} ms"
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn requests_give_ups_temporary_exits_and_removals_are_logged() {
    let h = Harness::new();
    let mut flaky = policy(RestartType::Permanent);
    flaky.max_restarts = 1;
    let sup = h
        .start(
            Strategy::OneForOne,
            Intensity::default(),
            vec![
                h.spec("x", policy(RestartType::Permanent)),
                h.spec_with("flaky", flaky, 2, None),
            ],
        )
        .await;
    eventually("flaky given up", Duration::from_secs(30), || {
        h.state("flaky") == Some(ActorState::Failed)
    })
    .await;
    use ActorState::{BackingOff, Failed, Running, Stopped};
    let flaky_events = events_at(&h.root, "root/flaky");
    assert_eq!(
        kinds(&flaky_events),
        [
            ("added", Stopped),
            ("exited", BackingOff),
            ("restart_scheduled", BackingOff),
            ("exited", Failed),
            ("gave_up", Failed),
        ]
    );
    // A failing `post_start`: the actor failed after it was spawned.
    assert_eq!(flaky_events[1].reason.as_deref(), Some("start failure"));
    assert_eq!(
        flaky_events[4].reason.as_deref(),
        Some("more than 1 restarts within 60 s")
    );

    eventually("x running", Duration::from_secs(5), || {
        h.state("x") == Some(Running)
    })
    .await;
    restart_child(&sup, "x").await.unwrap();
    eventually("x back", Duration::from_secs(5), || h.count("start:x") == 2).await;
    eventually("x running again", Duration::from_secs(5), || {
        h.state("x") == Some(Running)
    })
    .await;
    let x = events_at(&h.root, "root/x");
    assert_eq!(
        kinds(&x)[2..],
        [
            ("restart_requested", Running),
            ("stopped", Stopped),
            ("started", Running),
        ]
    );
    assert_eq!(x[3].reason.as_deref(), Some("restart requested"));
    assert_eq!(x[4].restarts, 1);
    assert!(x[4].after_ms.is_some());

    start_child(&sup, h.spec("tmp", policy(RestartType::Temporary)))
        .await
        .unwrap();
    eventually("tmp running", Duration::from_secs(5), || {
        h.state("tmp") == Some(Running)
    })
    .await;
    h.exit("tmp", Exit::Normal);
    eventually("tmp gone", Duration::from_secs(5), || {
        h.root.find("tmp").is_none()
    })
    .await;
    let tmp = events_at(&h.root, "root/tmp");
    assert_eq!(
        kinds(&tmp),
        [
            ("added", Stopped),
            ("started", Running),
            ("exited", Stopped),
            ("removed", Stopped),
        ]
    );
    assert_eq!(tmp[2].abnormal, Some(false));

    terminate_child(&sup, "x").await.unwrap();
    let x = events_at(&h.root, "root/x");
    assert_eq!(
        kinds(&x)[x.len() - 2..],
        [("stopped", Stopped), ("removed", Stopped)]
    );
    assert_eq!(
        x[x.len() - 2].reason.as_deref(),
        Some("terminated on request")
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_escalation_is_logged_on_the_supervisor() {
    let h = Harness::new();
    let p = policy(RestartType::Permanent);
    let crashy = h.spec_with("crashy", p, 1000, None);
    let inner = supervisor_spec(
        "inner",
        policy(RestartType::Permanent),
        Strategy::OneForOne,
        Intensity {
            max_restarts: 2,
            period: Duration::from_secs(60),
        },
        move || vec![crashy.clone()],
    );
    let sup = h
        .start(Strategy::OneForOne, Intensity::default(), vec![inner])
        .await;
    eventually("inner restarted", Duration::from_secs(60), || {
        h.root.find("inner").is_some_and(|n| n.restarts() >= 1)
    })
    .await;
    let inner = events_at(&h.root, "root/inner");
    let escalated = inner
        .iter()
        .position(|e| e.kind == crate::events::EventKind::Escalated)
        .expect("escalated on the supervisor's node");
    assert!(
        inner[escalated]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("exceeded its restart intensity")),
        "{inner:?}"
    );
    // Then its own supervisor sees it exit and restarts it.
    let after: Vec<_> = kinds(&inner[escalated + 1..])
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(after[..2], ["exited", "restart_scheduled"], "{inner:?}");
    let crashy = events_at(&h.root, "root/inner/crashy");
    assert!(
        crashy
            .iter()
            .any(|e| e.kind == crate::events::EventKind::Exited && e.state == ActorState::Failed),
        "{crashy:?}"
    );
    sup.stop_and_wait(None, None).await.unwrap();
}
