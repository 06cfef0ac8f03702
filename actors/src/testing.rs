//! Test helpers shared by the actor tests (compiled for tests only).

use std::time::Duration;

use tokio::time::Instant;

/// Polls `cond` every 5 ms until it holds, or panics naming `what` after `timeout`. Works under
/// paused time (virtual time advances) and real time alike.
pub(crate) async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether a process (or its zombie) still exists.
pub(crate) fn process_exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Reads a pid written by a test child into `path`, waiting for it to appear.
pub(crate) async fn read_pid(path: &std::path::Path) -> i32 {
    let mut found = None;
    eventually("pid file", Duration::from_secs(10), || {
        found = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        found.is_some()
    })
    .await;
    found.unwrap()
}
