//! Waiting for an observable state: the integration tests' one poll helper, with the same
//! semantics for sync and async code. A test waits for what it can see (a file, a process, an
//! answer, a recorded message), never for a fixed time.
//!
//! A condition returns `bool` (ready when `true`) or `Option<T>` (ready when `Some`, and the
//! wait returns the `T`). [`eventually`] and [`eventually_async`] wait up to [`DEADLINE`] and
//! panic naming what was awaited; [`within`] and [`within_async`] take the deadline when it is
//! part of what the test asserts (a process gone within its stop timeout); [`try_within`] and
//! [`try_within_async`] return `None` instead of panicking, for a test that reports the failure
//! with its own context (the daemon's stderr, the records seen so far).

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits: generous, so a loaded machine (the suite under CPU hogs) is
/// slow, not red.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a condition is polled.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// What a condition returns: ready or not, and what the wait then returns.
pub trait Ready {
    type Output;
    fn ready(self) -> Option<Self::Output>;
}

impl Ready for bool {
    type Output = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `cond` every [`INTERVAL`] until it is ready; panics naming `what` after [`DEADLINE`].
#[track_caller]
pub fn eventually<R: Ready>(what: impl Display, cond: impl FnMut() -> R) -> R::Output {
    within(DEADLINE, what, cond)
}

/// [`eventually`] with its own deadline.
#[track_caller]
pub fn within<R: Ready>(
    timeout: Duration,
    what: impl Display,
    cond: impl FnMut() -> R,
) -> R::Output {
    match try_within(timeout, cond) {
        Some(output) => output,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Polls `cond` every [`INTERVAL`] until it is ready (`Some` of its output) or `timeout` passes
/// (`None`). It is polled at least once, and once more at the deadline.
pub fn try_within<R: Ready>(timeout: Duration, mut cond: impl FnMut() -> R) -> Option<R::Output> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(output) = cond().ready() {
            return Some(output);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(INTERVAL.min(deadline - now));
    }
}

/// [`eventually`] for async code: the condition is awaited, and the wait sleeps on the runtime
/// instead of blocking its thread.
pub async fn eventually_async<R: Ready>(
    what: impl Display,
    cond: impl AsyncFnMut() -> R,
) -> R::Output {
    within_async(DEADLINE, what, cond).await
}

/// [`within`] for async code.
pub async fn within_async<R: Ready>(
    timeout: Duration,
    what: impl Display,
    cond: impl AsyncFnMut() -> R,
) -> R::Output {
    match try_within_async(timeout, cond).await {
        Some(output) => output,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// [`try_within`] for async code.
pub async fn try_within_async<R: Ready>(
    timeout: Duration,
    mut cond: impl AsyncFnMut() -> R,
) -> Option<R::Output> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(output) = cond().await.ready() {
            return Some(output);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(INTERVAL.min(deadline - now)).await;
    }
}
