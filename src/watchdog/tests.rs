//! The watchdog against a real root supervisor and a real notify socket, under paused time:
//! pings while the root answers, none while it is wedged, pings through a long declared wait,
//! none past it.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use revka_actors::supervisor::{
    ChildContext, ChildSpec, Intensity, RestartPolicy, RestartType, Shutdown, Strategy,
    SupervisorActor, SupervisorArguments, terminate_child,
};
use tokio::net::UnixDatagram;

use super::*;

/// A root supervisor with `children`, its status node, and the notify socket of a watchdog of
/// `timeout` (`WATCHDOG_USEC`) on it.
struct Rig {
    root: ActorRef<SupervisorMessage>,
    node: StatusNode,
    listener: UnixDatagram,
    notifier: Arc<Notifier>,
    _dir: tempfile::TempDir,
}

async fn rig(children: Vec<ChildSpec>, timeout: Duration) -> Rig {
    let node = StatusNode::root("root", "supervisor");
    let args = SupervisorArguments {
        node: node.clone(),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children,
    };
    let (root, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify").display().to_string();
    let listener = UnixDatagram::bind(&path).unwrap();
    let usec = timeout.as_micros().to_string();
    let env = move |key: &str| match key {
        "NOTIFY_SOCKET" => Some(path.clone()),
        "WATCHDOG_USEC" => Some(usec.clone()),
        _ => None,
    };
    Rig {
        root,
        node,
        listener,
        notifier: Arc::new(Notifier::from_env(&env)),
        _dir: dir,
    }
}

impl Rig {
    fn start_watchdog(&self) -> JoinHandle<()> {
        spawn(self.notifier.clone(), self.root.clone(), self.node.clone())
            .expect("WATCHDOG_USEC is set")
    }

    /// The next `WATCHDOG=1` within `within`, and when it came; `None` if none came.
    async fn next_ping(&self, within: Duration) -> Option<Instant> {
        let mut buf = [0u8; 64];
        let len = tokio::time::timeout(within, self.listener.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        Some(Instant::now())
    }

    /// Wedges the root: its handler awaits a start function that takes `wedge`.
    fn wedge_for(
        &self,
        wedge: Duration,
    ) -> oneshot::Receiver<Result<(), revka_actors::supervisor::SupervisorError>> {
        let spec = ChildSpec::new(
            "stuck",
            "test",
            RestartPolicy::standard().with_restart(RestartType::Temporary),
            move |_ctx: ChildContext| async move {
                tokio::time::sleep(wedge).await;
                Err(ractor::SpawnErr::ActorAlreadyStarted)
            },
        );
        let (port, answer) = ractor::concurrency::oneshot();
        self.root
            .cast(SupervisorMessage::StartChild(spec, port.into()))
            .unwrap();
        answer
    }
}

/// An actor whose stop takes `0` (its `post_stop` sleeps).
struct SlowStop(Duration);

impl Actor for SlowStop {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<()>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

fn slow_stopping_child(stop_takes: Duration, shutdown_timeout: Duration) -> ChildSpec {
    ChildSpec::new(
        "slow",
        "test",
        RestartPolicy::standard().with_shutdown(Shutdown::Timeout(shutdown_timeout)),
        move |ctx: ChildContext| async move {
            let (actor, _) =
                Actor::spawn_linked(None, SlowStop(stop_takes), (), ctx.supervisor).await?;
            Ok(actor.get_cell())
        },
    )
}

const TIMEOUT: Duration = Duration::from_secs(4);

#[tokio::test(start_paused = true)]
async fn pings_at_half_the_timeout_while_the_root_answers() {
    let rig = rig(Vec::new(), TIMEOUT).await;
    let watchdog = rig.start_watchdog();
    let mut times = Vec::new();
    for _ in 0..4 {
        times.push(rig.next_ping(TIMEOUT).await.expect("a ping"));
    }
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            TIMEOUT / 2,
            "pinged at half of WATCHDOG_USEC"
        );
    }
    watchdog.abort();
}

#[tokio::test(start_paused = true)]
async fn a_wedged_root_stops_the_pings_until_it_answers_again() {
    let rig = rig(Vec::new(), TIMEOUT).await;
    let watchdog = rig.start_watchdog();
    rig.next_ping(TIMEOUT)
        .await
        .expect("pings while the root answers");

    let wedge = 10 * TIMEOUT;
    let wedged_at = Instant::now();
    let answer = rig.wedge_for(wedge);
    assert_eq!(
        rig.next_ping(wedge - TIMEOUT).await,
        None,
        "no ping while the root's handler is stuck outside any declared wait"
    );
    let resumed = rig.next_ping(2 * TIMEOUT).await.expect("pings resume");
    assert!(
        resumed >= wedged_at + wedge,
        "not before the root answers again"
    );
    answer.await.unwrap().unwrap();
    watchdog.abort();
}

#[tokio::test(start_paused = true)]
async fn a_root_stopping_a_slow_child_keeps_pinging_within_its_declared_wait() {
    let stop_takes = 10 * TIMEOUT;
    let rig = rig(
        vec![slow_stopping_child(stop_takes, 2 * stop_takes)],
        TIMEOUT,
    )
    .await;
    let watchdog = rig.start_watchdog();
    rig.next_ping(TIMEOUT)
        .await
        .expect("pings while the root answers");

    let started = Instant::now();
    let root = rig.root.clone();
    let stop = tokio::spawn(async move { terminate_child(&root, "slow").await });
    let mut last = Instant::now();
    let mut pings = 0;
    while !stop.is_finished() {
        let Some(at) = rig.next_ping(TIMEOUT).await else {
            assert!(
                stop.is_finished(),
                "a ping was missed while the root was busy"
            );
            break;
        };
        assert!(
            at - last <= TIMEOUT * 3 / 4,
            "pings at most 3/4 of the timeout apart"
        );
        last = at;
        pings += 1;
    }
    stop.await.unwrap().unwrap();
    assert!(
        started.elapsed() >= stop_takes,
        "the stop really took its time"
    );
    assert!(pings >= 15, "{pings} pings over a stop of {stop_takes:?}");

    let mut probe = RootProbe::new(rig.root.clone(), rig.node.clone());
    assert_eq!(probe.check(TIMEOUT / 4).await, Liveness::Alive);
    watchdog.abort();
}

#[tokio::test(start_paused = true)]
async fn the_probe_tells_busy_from_wedged_by_the_declared_deadline() {
    let rig = rig(Vec::new(), TIMEOUT).await;
    let mut probe = RootProbe::new(rig.root.clone(), rig.node.clone());
    let bound = Duration::from_secs(1);
    assert_eq!(probe.check(bound).await, Liveness::Alive);

    let _answer = rig.wedge_for(Duration::from_secs(3600));
    let no_wait = probe.check(bound).await;
    assert!(
        matches!(&no_wait, Liveness::Wedged(r) if r.contains("did not answer within 1000 ms")),
        "{no_wait:?}"
    );

    let wait = rig
        .node
        .begin_wait("stopping root/x", Instant::now() + Duration::from_secs(10));
    match probe.check(bound).await {
        Liveness::Busy { what, left } => {
            assert_eq!(what, "stopping root/x");
            assert!(left <= Duration::from_secs(10) - bound, "{left:?}");
        }
        other => panic!("a declared wait is busy, not {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let overrun = probe.check(bound).await;
    assert!(
        matches!(&overrun, Liveness::Wedged(r) if r.contains("overran its wait (stopping root/x)")),
        "{overrun:?}"
    );
    assert!(!overrun.permits_ping());
    drop(wait);

    // A kill interrupts the stuck handler: the owed answer is dropped, then the root is gone.
    rig.root.kill();
    let stopped = probe.check(bound).await;
    assert_eq!(
        stopped,
        Liveness::Wedged("the root supervisor stopped".to_owned())
    );
    let mut gone = Liveness::Alive;
    for _ in 0..100 {
        gone = probe.check(bound).await;
        if gone != Liveness::Alive
            && !matches!(&gone, Liveness::Wedged(r) if r.contains("did not answer"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        matches!(&gone, Liveness::Wedged(r) if r.starts_with("the root supervisor is gone")),
        "{gone:?}"
    );
}
