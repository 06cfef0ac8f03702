//! The real Node session manager under a supervisor: readiness, the client, restart after a
//! kill, and liveness catching a sidecar that accepts connections but never answers.

use std::path::PathBuf;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use serde_json::json;

use super::*;
use crate::process::child_spec;
use crate::status::{ActorState, StatusNode};
use crate::supervisor::{
    Backoff, Intensity, RestartPolicy, RestartType, Shutdown, Strategy, SupervisorActor,
    SupervisorArguments, SupervisorMessage,
};
use crate::testing::eventually;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sidecars/session-manager/session-manager.js")
}

fn spec(home: &std::path::Path) -> SessionManagerSpec {
    SessionManagerSpec {
        command: vec!["node".into(), script().display().to_string()],
        socket: home.join("sm.sock"),
        home: home.to_owned(),
        startup_timeout: Duration::from_secs(20),
        liveness_interval: Duration::from_millis(300),
        liveness_failures: 3,
    }
}

async fn supervise(home: &std::path::Path) -> (ActorRef<SupervisorMessage>, StatusNode) {
    let node = StatusNode::root("sidecars", "supervisor");
    let policy = RestartPolicy {
        restart: RestartType::Permanent,
        max_restarts: 5,
        window: Duration::from_secs(60),
        backoff: Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(200),
            reset_after: Duration::from_secs(300),
        },
        shutdown: Shutdown::Timeout(Duration::from_secs(3)),
    };
    let child = child_spec(
        "session_manager",
        session_manager_process(&spec(home)),
        policy,
    );
    let args = SupervisorArguments {
        node: node.clone(),
        strategy: Strategy::RestForOne,
        intensity: Intensity::default(),
        children: vec![child],
    };
    let (sup, _) = SupervisorActor::spawn(None, SupervisorActor, args)
        .await
        .unwrap();
    (sup, node)
}

fn pid_of(node: &StatusNode) -> i32 {
    node.find("session_manager")
        .unwrap()
        .snapshot()
        .details
        .unwrap()["pid"]
        .as_i64()
        .unwrap() as i32
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_when_health_answers_and_the_client_speaks_rest() {
    let home = tempfile::tempdir().unwrap();
    let (sup, node) = supervise(home.path()).await;
    let sm = node.find("session_manager").unwrap();
    eventually("ready", Duration::from_secs(30), || {
        sm.state() == ActorState::Running
    })
    .await;
    let client = SidecarClient::new(home.path().join("sm.sock"), Duration::from_secs(5));
    assert_eq!(client.get("/health").await.unwrap()["status"], "ok");
    let agent = client
        .post("/agents", &json!({ "backend": "echo", "name": "a1" }))
        .await
        .unwrap();
    assert_eq!(agent["backend"], "echo");
    let err = client.get("/agents/nope").await.unwrap_err();
    assert!(
        matches!(&err, SidecarError::Status { status: 404, .. }),
        "{err}"
    );
    assert!(!err.is_sidecar_fault(), "a 404 is the caller's problem");
    let err = client
        .post("/agents", &json!({ "backend": "teleport" }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    let missing = SidecarClient::new(home.path().join("absent.sock"), Duration::from_secs(1));
    let err = missing.get("/health").await.unwrap_err();
    assert!(
        matches!(err, SidecarError::Unreachable { .. }) && err.is_sidecar_fault(),
        "{err}"
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_sidecar_is_restarted_and_a_hung_one_fails_its_liveness_checks() {
    let home = tempfile::tempdir().unwrap();
    let (sup, node) = supervise(home.path()).await;
    let sm = node.find("session_manager").unwrap();
    eventually("ready", Duration::from_secs(30), || {
        sm.state() == ActorState::Running
    })
    .await;
    let client = SidecarClient::new(home.path().join("sm.sock"), Duration::from_secs(2));

    // SIGKILL: restarted by policy and serving again.
    let first = pid_of(&node);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("restarted", Duration::from_secs(30), || {
        sm.restarts() == 1 && sm.state() == ActorState::Running
    })
    .await;
    assert_ne!(pid_of(&node), first);
    assert_eq!(client.get("/health").await.unwrap()["status"], "ok");

    // SIGSTOP: the socket still accepts but nothing answers; liveness catches it.
    let second = pid_of(&node);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    eventually(
        "restarted after liveness failures",
        Duration::from_secs(30),
        || sm.restarts() == 2,
    )
    .await;
    let reason = sm.last_failure().unwrap();
    assert!(
        reason.contains("stopped answering its health checks"),
        "{reason}"
    );
    eventually("serving again", Duration::from_secs(30), || {
        sm.state() == ActorState::Running
    })
    .await;
    assert_eq!(client.get("/health").await.unwrap()["status"], "ok");
    eventually("the hung process is gone", Duration::from_secs(10), || {
        !crate::testing::process_exists(second)
    })
    .await;
    sup.stop_and_wait(None, None).await.unwrap();
}
