//! Process supervision with real OS processes: exit classification, restart with backoff,
//! SIGTERM-then-SIGKILL, and no orphan or zombie after a stop, a panic or a kill of the owner.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::*;
use crate::status::ActorState;
use crate::supervisor::{
    Backoff, Intensity, RestartType, Strategy, SupervisorActor, SupervisorArguments,
    SupervisorMessage, terminate_child,
};
use crate::testing::{eventually, process_exists, read_pid};

fn sh(script: &str) -> ProcessSpec {
    ProcessSpec::new("sh", ["-c", script])
}

fn policy(restart: RestartType, max_restarts: u32) -> RestartPolicy {
    RestartPolicy {
        restart,
        max_restarts,
        window: Duration::from_secs(60),
        backoff: Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(400),
            reset_after: Duration::from_secs(300),
        },
        shutdown: Shutdown::Timeout(Duration::from_millis(300)),
    }
}

async fn supervise(children: Vec<ChildSpec>) -> (ActorRef<SupervisorMessage>, StatusNode) {
    let node = StatusNode::root("root", "supervisor");
    let args = SupervisorArguments {
        node: node.clone(),
        strategy: Strategy::OneForOne,
        intensity: Intensity::default(),
        children,
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    (sup, node)
}

const GONE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn exit_3_is_abnormal_and_restarted_with_backoff() {
    let (sup, root) = supervise(vec![child_spec(
        "three",
        sh("echo starting up >&2; exit 3"),
        policy(RestartType::Transient, 4),
    )])
    .await;
    let node = root.find("three").unwrap();
    let t0 = Instant::now();
    eventually("given up", Duration::from_secs(20), || {
        node.state() == ActorState::Failed
    })
    .await;
    // 4 restarts: immediate, then ≥ 50 ms, ≥ 50 ms, ≥ 50 ms of backoff (each at least `min`).
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "restarts were backed off"
    );
    let snap = node.snapshot();
    assert_eq!(snap.restarts, 4);
    let reason = snap.last_failure.unwrap().reason;
    assert!(reason.contains("exited with status 3"), "{reason}");
    assert!(
        reason.contains("stderr: starting up"),
        "last stderr line in the reason: {reason}"
    );
    let details = snap.details.unwrap();
    assert_eq!(details["exit"]["code"], 3);
    sup.stop_and_wait(None, None).await.unwrap();
}

/// A process that dies by a signal (here its own SIGKILL, as the OOM killer would) is an
/// abnormal exit: a transient child is restarted, and the reason names the signal.
#[tokio::test]
async fn death_by_a_signal_is_abnormal_so_a_transient_child_restarts() {
    let (sup, root) = supervise(vec![child_spec(
        "signalled",
        sh("kill -KILL $$"),
        policy(RestartType::Transient, 2),
    )])
    .await;
    let node = root.find("signalled").unwrap();
    eventually("given up", Duration::from_secs(20), || {
        node.state() == ActorState::Failed
    })
    .await;
    let snap = node.snapshot();
    assert_eq!(snap.restarts, 2, "restarted each time");
    let reason = snap.last_failure.unwrap().reason;
    assert!(reason.contains("killed by signal 9 (SIGKILL)"), "{reason}");
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn exit_0_is_normal_for_transient_children() {
    let (sup, root) = supervise(vec![child_spec(
        "ok",
        sh("exit 0"),
        policy(RestartType::Transient, 4),
    )])
    .await;
    let node = root.find("ok").unwrap();
    eventually("stopped", Duration::from_secs(10), || {
        node.state() == ActorState::Stopped
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node.restarts(), 0);
    assert!(node.last_failure().is_none());
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_missing_command_is_a_counted_start_failure_with_the_os_error() {
    let (sup, root) = supervise(vec![child_spec(
        "missing",
        ProcessSpec::new("/nonexistent/revka-test-binary", Vec::<String>::new()),
        policy(RestartType::Permanent, 2),
    )])
    .await;
    let node = root.find("missing").unwrap();
    eventually("given up", Duration::from_secs(10), || {
        node.state() == ActorState::Failed
    })
    .await;
    let reason = node.last_failure().unwrap();
    assert!(
        reason.contains("cannot start `/nonexistent/revka-test-binary`"),
        "{reason}"
    );
    assert!(reason.contains("No such file or directory"), "{reason}");
    assert_eq!(node.restarts(), 2);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_child_that_ignores_sigterm_is_killed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!(
        "trap '' TERM; echo $$ > {}; sleep 1000 & wait; sleep 1000",
        pidfile.display()
    );
    let (sup, root) = supervise(vec![child_spec(
        "stubborn",
        sh(&script),
        policy(RestartType::Permanent, 1),
    )])
    .await;
    let pid = read_pid(&pidfile).await;
    let node = root.find("stubborn").unwrap();
    eventually("running", Duration::from_secs(5), || {
        node.state() == ActorState::Running
    })
    .await;

    let t0 = Instant::now();
    terminate_child(&sup, "stubborn").await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "SIGTERM grace was honoured"
    );
    eventually("stubborn process gone and reaped", GONE, || {
        !process_exists(pid)
    })
    .await;
    sup.stop_and_wait(None, None).await.unwrap();
}

// ==== No orphan, no zombie ====

/// A child that forks a grandchild and records both pids.
fn forking_child(dir: &Path) -> ProcessSpec {
    sh(&format!(
        "echo $$ > {p}; sleep 1000 & echo $! > {g}; wait",
        p = dir.join("pid").display(),
        g = dir.join("grandchild").display()
    ))
}

async fn both_pids(dir: &Path) -> (i32, i32) {
    (
        read_pid(&dir.join("pid")).await,
        read_pid(&dir.join("grandchild")).await,
    )
}

async fn assert_gone(pids: (i32, i32)) {
    eventually("child gone (no zombie)", GONE, || !process_exists(pids.0)).await;
    eventually("grandchild gone (no orphan, no zombie)", GONE, || {
        !process_exists(pids.1)
    })
    .await;
}

#[tokio::test]
async fn a_forking_child_leaves_nothing_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (sup, _) = supervise(vec![child_spec(
        "fork",
        forking_child(dir.path()),
        policy(RestartType::Permanent, 1),
    )])
    .await;
    let pids = both_pids(dir.path()).await;
    terminate_child(&sup, "fork").await.unwrap();
    assert_gone(pids).await;
    sup.stop_and_wait(None, None).await.unwrap();
}

/// An actor that owns a process actor (like an MCP connection owns its server process).
struct Owner;

enum OwnerMsg {
    Panic,
}

impl Actor for Owner {
    type Msg = OwnerMsg;
    type State = ();
    type Arguments = ProcessSpec;

    async fn pre_start(
        &self,
        myself: ActorRef<OwnerMsg>,
        spec: ProcessSpec,
    ) -> Result<(), ActorProcessingErr> {
        let args = ProcessArguments {
            spec: Arc::new(spec),
            node: StatusNode::root("owned", "process"),
            io: None,
        };
        ProcessActor::spawn_linked(None, ProcessActor, args, myself.get_cell()).await?;
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<OwnerMsg>,
        msg: OwnerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            OwnerMsg::Panic => panic!("owner panicked on purpose"),
        }
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<OwnerMsg>,
        _: ractor::SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[tokio::test]
async fn a_forking_child_leaves_nothing_after_its_owner_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, handle) = Owner::spawn(None, Owner, forking_child(dir.path()))
        .await
        .unwrap();
    let pids = both_pids(dir.path()).await;
    owner.send_message(OwnerMsg::Panic).unwrap();
    handle.await.unwrap();
    assert_gone(pids).await;
}

#[tokio::test]
async fn a_forking_child_leaves_nothing_after_its_owner_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, handle) = Owner::spawn(None, Owner, forking_child(dir.path()))
        .await
        .unwrap();
    let pids = both_pids(dir.path()).await;
    owner.kill();
    handle.await.unwrap();
    assert_gone(pids).await;
}

#[tokio::test]
async fn a_grandchild_that_leaves_the_group_is_still_stopped() {
    let dir = tempfile::tempdir().unwrap();
    // setsid puts the grandchild in a new session and group: killpg alone would miss it.
    let script = format!(
        "echo $$ > {p}; setsid sleep 1000 & echo $! > {g}; wait",
        p = dir.path().join("pid").display(),
        g = dir.path().join("grandchild").display()
    );
    let (sup, _) = supervise(vec![child_spec(
        "escape",
        sh(&script),
        policy(RestartType::Permanent, 1),
    )])
    .await;
    let pids = both_pids(dir.path()).await;
    terminate_child(&sup, "escape").await.unwrap();
    assert_gone(pids).await;
    sup.stop_and_wait(None, None).await.unwrap();
}

// ==== Orphans: descendants in a session of their own, whose parent died first ====

/// A child that starts a grandchild in a new session (`setsid`: out of the child's group, out
/// of reach of `killpg`) running `grandchild`, which writes its own pid.
fn detaching_child(dir: &Path, grandchild: &str) -> ProcessSpec {
    sh(&format!(
        "echo $$ > {p}; setsid sh -c '{grandchild}' >/dev/null 2>&1 </dev/null & wait",
        p = dir.join("pid").display(),
        grandchild = grandchild.replace("{g}", &dir.join("grandchild").display().to_string()),
    ))
}

fn ppid_of(pid: i32) -> Option<i32> {
    super::reaper::read_stat(pid).map(|s| s.ppid)
}

fn sigkill(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
}

#[tokio::test]
async fn a_detached_grandchild_is_gone_after_its_parent_is_sigkilled() {
    let dir = tempfile::tempdir().unwrap();
    let (sup, _) = supervise(vec![child_spec(
        "detach",
        detaching_child(dir.path(), "echo $$ > {g}; exec sleep 1000"),
        policy(RestartType::Temporary, 0),
    )])
    .await;
    let pids = both_pids(dir.path()).await;
    // The grandchild is in a session of its own, under its parent.
    let stat = super::reaper::read_stat(pids.1).unwrap();
    assert_eq!((stat.pgrp, stat.ppid), (pids.1, pids.0));
    // A kill -9 of the child: no stop, no group kill can reach the grandchild now.
    sigkill(pids.0);
    assert_gone(pids).await;
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_detached_grandchild_that_ignores_sigterm_is_killed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (sup, root) = supervise(vec![child_spec(
        "stubborn",
        detaching_child(dir.path(), "trap \"\" TERM; echo $$ > {g}; exec sleep 1000"),
        policy(RestartType::Temporary, 0),
    )])
    .await;
    let pids = both_pids(dir.path()).await;
    let node = root.find("stubborn").unwrap();
    eventually("running", Duration::from_secs(5), || {
        node.state() == ActorState::Running
    })
    .await;
    // A graceful stop: SIGTERM reaches the grandchild (it ignores it), the child dies; the
    // orphan is SIGKILLed at the stop deadline, and the stop waits for that.
    terminate_child(&sup, "stubborn").await.unwrap();
    assert!(!process_exists(pids.0), "child reaped");
    eventually("grandchild killed and reaped", GONE, || {
        !process_exists(pids.1)
    })
    .await;
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_sweep_spares_strangers_and_the_orphans_of_a_running_tree() {
    let me = std::process::id() as i32;
    // A direct child of ours that no process actor started (other code in the daemon).
    let stranger = Stranger(
        std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let stranger_pid = stranger.0.id() as i32;
    // A running tree whose detached grandchild is orphaned (its parent, an inner shell, exits)
    // while the tree's child keeps running: adopted by us, marked with that tree.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let living = sh(&format!(
        "echo $$ > {p}; sh -c 'setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > {g}'; exec sleep 1000",
        p = a.path().join("pid").display(),
        g = a.path().join("grandchild").display(),
    ));
    let (sup, _) = supervise(vec![
        child_spec("living", living, policy(RestartType::Temporary, 0)),
        child_spec(
            "dying",
            detaching_child(b.path(), "echo $$ > {g}; exec sleep 1000"),
            policy(RestartType::Temporary, 0),
        ),
    ])
    .await;
    let living = both_pids(a.path()).await;
    let dying = both_pids(b.path()).await;
    eventually("the running tree's orphan adopted by us", GONE, || {
        ppid_of(living.1) == Some(me)
    })
    .await;

    sigkill(dying.0);
    assert_gone(dying).await;
    assert!(process_exists(stranger_pid), "a stranger is never swept");
    assert_eq!(
        ppid_of(living.1),
        Some(me),
        "an orphan of a running tree is left alone"
    );
    assert!(process_exists(living.0));

    // Once its tree's child is stopped, that orphan goes too.
    terminate_child(&sup, "living").await.unwrap();
    assert_gone(living).await;
    assert!(process_exists(stranger_pid), "a stranger is never swept");
    drop(stranger);
    assert!(!process_exists(stranger_pid));
    sup.stop_and_wait(None, None).await.unwrap();
}

/// A child the test spawned itself; killed and reaped when dropped, even if the test fails.
struct Stranger(std::process::Child);

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stat_parsing_reads_the_start_time_after_odd_command_names() {
    let stat = "4242 (a) b) S 17 4242 4242 0 -1 4194560 1 0 0 0 5 6 0 0 20 0 1 0 987654 1 2 3";
    let parsed = super::reaper::parse_stat(stat).unwrap();
    assert_eq!(
        (parsed.state, parsed.ppid, parsed.pgrp, parsed.start),
        ('S', 17, 4242, 987654)
    );
    assert!(parsed.alive());
    assert!(super::reaper::parse_stat("4242 (a) S 17 4242").is_none());
    let mine = super::reaper::read_stat(std::process::id() as i32).unwrap();
    assert!(mine.alive() && mine.start > 0);
}

// ==== stdio, stderr, readiness ====

#[tokio::test]
async fn stderr_tail_is_in_the_snapshot() {
    let (sup, root) = supervise(vec![child_spec(
        "talky",
        sh("echo one >&2; echo two >&2; sleep 1000"),
        policy(RestartType::Permanent, 1),
    )])
    .await;
    let node = root.find("talky").unwrap();
    eventually("stderr captured", Duration::from_secs(10), || {
        node.snapshot()
            .details
            .is_some_and(|d| d["stderr_tail"] == "one\ntwo\n")
    })
    .await;
    let details = node.snapshot().details.unwrap();
    assert!(details["pid"].as_u64().is_some_and(|p| p > 0));
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn piped_stdio_is_handed_to_the_owner() {
    let mut spec = ProcessSpec::new("cat", Vec::<String>::new());
    spec.stdio = StdioMode::Piped;
    let (tx, rx) = oneshot::channel();
    let args = ProcessArguments {
        spec: Arc::new(spec),
        node: StatusNode::root("cat", "process"),
        io: Some(tx),
    };
    let (actor, handle) = ProcessActor::spawn(None, ProcessActor, args).await.unwrap();
    let mut io = rx.await.expect("stdio handed over").expect("spawned");
    io.stdin.write_all(b"hello\n").await.unwrap();
    let mut line = String::new();
    BufReader::new(&mut io.stdout)
        .read_line(&mut line)
        .await
        .unwrap();
    assert_eq!(line, "hello\n");
    let pid = io.pid as i32;
    actor.stop(None);
    handle.await.unwrap();
    eventually("cat gone", GONE, || !process_exists(pid)).await;
}

fn file_probe(path: std::path::PathBuf) -> ProbeFn {
    Arc::new(move || {
        let path = path.clone();
        Box::pin(async move { path.exists() })
    })
}

#[tokio::test]
async fn readiness_probe_gates_running_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ready");
    let mut spec = sh(&format!("sleep 0.3; touch {}; sleep 1000", flag.display()));
    spec.readiness = Some(Readiness {
        probe: file_probe(flag),
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(10),
    });
    let mut never = sh("sleep 1000");
    never.readiness = Some(Readiness {
        probe: file_probe(dir.path().join("never")),
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(200),
    });
    let (sup, root) = supervise(vec![
        child_spec("slow", spec, policy(RestartType::Permanent, 1)),
        child_spec("never", never, policy(RestartType::Permanent, 0)),
    ])
    .await;
    let slow = root.find("slow").unwrap();
    eventually("spawned", Duration::from_secs(5), || {
        slow.state() != ActorState::Stopped
    })
    .await;
    let flag_set = dir.path().join("ready").exists();
    let state = slow.state();
    assert!(
        flag_set || state == ActorState::Starting,
        "running before the probe passed: {state}"
    );
    eventually("ready", Duration::from_secs(10), || {
        slow.state() == ActorState::Running
    })
    .await;
    let never = root.find("never").unwrap();
    eventually("not ready in time", Duration::from_secs(10), || {
        never.state() == ActorState::Failed
    })
    .await;
    assert!(never.last_failure().unwrap().contains("not ready within"));
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn every_spawned_child_is_counted_until_reaped() {
    // Other tests in this binary spawn children concurrently, so only this child's own
    // contribution is checked: the count drops back once it is reaped.
    let (sup, root) = supervise(vec![child_spec(
        "counted",
        sh("sleep 1000"),
        policy(RestartType::Permanent, 1),
    )])
    .await;
    let node = root.find("counted").unwrap();
    eventually("running", Duration::from_secs(5), || {
        node.state() == ActorState::Running
    })
    .await;
    assert!(unreaped_children() >= 1);
    sup.stop_and_wait(None, None).await.unwrap();
    eventually("all reaped", Duration::from_secs(30), || {
        unreaped_children() == 0
    })
    .await;
    assert!(wait_all_reaped(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn a_child_that_stops_answering_its_liveness_probe_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let alive = dir.path().join("alive");
    std::fs::write(&alive, "").unwrap();
    let mut spec = sh("sleep 1000");
    spec.liveness = Some(Liveness {
        probe: file_probe(alive.clone()),
        interval: Duration::from_millis(50),
        failures: 3,
    });
    let (sup, root) = supervise(vec![child_spec(
        "hung",
        spec,
        policy(RestartType::Permanent, 5),
    )])
    .await;
    let node = root.find("hung").unwrap();
    eventually("running", Duration::from_secs(5), || {
        node.state() == ActorState::Running
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(node.restarts(), 0, "healthy while the probe passes");
    std::fs::remove_file(&alive).unwrap(); // now it "hangs"
    eventually("restarted", Duration::from_secs(10), || {
        node.restarts() >= 1
    })
    .await;
    let reason = node.last_failure().unwrap();
    assert!(
        reason.contains("stopped answering its health checks (3 failures in a row)"),
        "{reason}"
    );
    sup.stop_and_wait(None, None).await.unwrap();
}
