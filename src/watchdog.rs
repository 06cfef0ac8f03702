//! The systemd watchdog: `WATCHDOG=1` from a task of its own, each ping gated on the root
//! supervisor being alive.
//!
//! [`crate::daemon::run`] calls [`spawn`] once `READY=1` is out, when systemd armed a watchdog
//! (`WATCHDOG_USEC`, `WatchdogSec=` in the unit), and aborts the task when shutdown begins.
//! The task does nothing else, so no other work of the daemon (a reload waiting minutes on
//! slow server stops, a signal handler, a request) can delay a ping.
//!
//! # When it pings
//!
//! Every half of `WATCHDOG_USEC` the task probes the root supervisor's mailbox with a
//! read-only request (`GetChildren`). The ping goes out when:
//! - the root **answers** within a quarter of `WATCHDOG_USEC`: the runtime schedules tasks and
//!   the root's mailbox is served; or
//! - the root is **busy**: it has not answered, but it declared a bounded wait on its status
//!   node ([`StatusNode::begin_wait`]) whose deadline has not passed. A supervisor declares
//!   one for every child it stops (the child's shutdown timeout plus the kill wait), e.g.
//!   while `revka restart root/mcp_servers` waits for a server that ignores SIGTERM.
//!
//! Otherwise the root is **wedged** (no answer and no declared wait, or a wait overrun, or the
//! root is gone) and the ping is withheld: systemd kills and restarts the daemon once
//! `WatchdogSec` passes without one. At most one probe is in flight: a root that is slow to
//! answer gets no second request on top of the first, so a long wait piles nothing up in its
//! mailbox, and a late answer still counts. A wedged runtime (every worker blocked) runs
//! neither the root nor this task, so it sends nothing either.
//!
//! A live reload never makes the root busy: it drives `root/mcp_servers` through that
//! supervisor's own mailbox (`StartChild`, `TerminateChild`, `UpdateChild`), from the task
//! of the reload, and the root handles none of it. So a reload that waits on slow server
//! stops for longer than `WatchdogSec` keeps the pings going.
//!
//! Timing: a ping follows its tick by at most the probe bound, so two pings are at most
//! three quarters of `WATCHDOG_USEC` apart while the root is alive.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use revka_actors::StatusNode;
use revka_actors::supervisor::{ChildInfo, SupervisorMessage};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::notify::Notifier;

#[cfg(test)]
mod tests;

/// What a probe of the root supervisor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// It answered within the bound.
    Alive,
    /// It has not answered, but it is inside a bounded wait it declared.
    Busy {
        /// What it waits for (`stopping root/mcp_servers`).
        what: String,
        /// How long the wait may still last.
        left: Duration,
    },
    /// It has not answered and is inside no declared wait (or overran one), or it is gone.
    Wedged(String),
}

impl Liveness {
    /// Whether this state allows a `WATCHDOG=1`.
    pub fn permits_ping(&self) -> bool {
        !matches!(self, Self::Wedged(_))
    }
}

/// Probes the root supervisor's mailbox, with at most one request in flight.
#[derive(Debug)]
pub struct RootProbe {
    root: ActorRef<SupervisorMessage>,
    node: StatusNode,
    /// The answer the last probe is still owed, when the root was too slow for it: the next
    /// check waits on it instead of queueing another request behind it.
    pending: Option<oneshot::Receiver<Vec<ChildInfo>>>,
}

impl RootProbe {
    /// A probe of `root`, whose status node (where it declares its waits) is `node`.
    pub fn new(root: ActorRef<SupervisorMessage>, node: StatusNode) -> Self {
        Self {
            root,
            node,
            pending: None,
        }
    }

    /// Asks the root for its children and waits up to `bound` for the answer.
    pub async fn check(&mut self, bound: Duration) -> Liveness {
        let mut answer = match self.pending.take() {
            Some(answer) => answer,
            None => {
                let (port, answer) = ractor::concurrency::oneshot();
                if let Err(e) = self.root.cast(SupervisorMessage::GetChildren(port.into())) {
                    return Liveness::Wedged(format!("the root supervisor is gone ({e})"));
                }
                answer
            }
        };
        match tokio::time::timeout(bound, &mut answer).await {
            Ok(Ok(_)) => Liveness::Alive,
            Ok(Err(_)) => Liveness::Wedged("the root supervisor stopped".to_owned()),
            Err(_) => {
                self.pending = Some(answer);
                let now = Instant::now();
                match self.node.waiting() {
                    Some(wait) if wait.deadline > now => Liveness::Busy {
                        what: wait.what,
                        left: wait.deadline - now,
                    },
                    Some(wait) => Liveness::Wedged(format!(
                        "the root supervisor overran its wait ({}) by {} ms",
                        wait.what,
                        (now - wait.deadline).as_millis()
                    )),
                    None => Liveness::Wedged(format!(
                        "the root supervisor did not answer within {} ms",
                        bound.as_millis()
                    )),
                }
            }
        }
    }
}

/// Starts the watchdog task if systemd armed a watchdog for us (`None` otherwise).
pub fn spawn(
    notifier: Arc<Notifier>,
    root: ActorRef<SupervisorMessage>,
    node: StatusNode,
) -> Option<JoinHandle<()>> {
    let interval = notifier.watchdog_interval()?;
    Some(tokio::spawn(run(
        notifier,
        RootProbe::new(root, node),
        interval,
    )))
}

/// Every `interval` (half of `WATCHDOG_USEC`): probe the root with half the interval as the
/// bound, and ping unless it is wedged.
async fn run(notifier: Arc<Notifier>, mut probe: RootProbe, interval: Duration) {
    let bound = interval / 2;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut withheld = 0u64;
    loop {
        ticker.tick().await;
        let liveness = probe.check(bound).await;
        match &liveness {
            Liveness::Wedged(reason) => {
                withheld += 1;
                if withheld == 1 {
                    tracing::error!(
                        %reason,
                        "the root supervisor is unresponsive: withholding WATCHDOG=1 \
                         (systemd restarts the daemon once WatchdogSec passes)"
                    );
                }
                continue;
            }
            Liveness::Busy { what, left } => {
                tracing::debug!(%what, left_ms = left.as_millis() as u64, "root supervisor busy within its declared wait; pinging");
            }
            Liveness::Alive => {}
        }
        if withheld > 0 {
            tracing::warn!(
                withheld,
                "the root supervisor answers again; watchdog pings resumed"
            );
            withheld = 0;
        }
        if let Err(e) = notifier.notify("WATCHDOG=1") {
            tracing::warn!(error = %e, "watchdog notification failed");
        }
    }
}
