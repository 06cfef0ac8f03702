//! The liveness probe of a connection: it finds a server whose process (or endpoint) is alive
//! but no longer answers: deadlocked, no longer reading its stdin, a remote endpoint that
//! accepts requests and never replies.
//!
//! One task per connection actor (`root/mcp_servers/mcp:<name>`), started once the handshake
//! has succeeded and aborted with the actor. Every `interval` it asks the client whether the
//! server was heard from since its last look: a response (an error or a late answer included),
//! or progress of a pending call. A busy server always was, so it is never pinged and its calls
//! pay nothing for the probe (the client sets a flag per answer; there is no timer per call).
//! A silent one gets a `ping`, which must be answered within [`PingPolicy::timeout`]; any
//! answer counts, `-32601` (no `ping` method) too. After `failures` failed pings in a row the
//! probe reports the server [`Unresponsive`] to the connection actor, which fails the server's
//! in-flight calls at once with that reason and fails itself, so the supervisor applies the
//! server's restart policy: a stdio server's process group is killed and started again, a
//! remote server is reconnected.
//!
//! A hung server is found about `failures × (interval + timeout)` after it last answered: 120 s
//! at the defaults (30 s, 3 pings, 10 s each).
//!
//! The policy is read from the server's hub entry at every step, and an in-place update of the
//! spec (a reload) wakes the probe, so a new interval, or turning the probe on or off, applies at
//! once, without a reconnect.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use revka_mcp::client::{CallError, McpClient};
use revka_mcp::spec::PingPolicy;
use serde_json::{Value, json};

use crate::mcp::hub::ServerEntry;
use crate::status::rfc3339;

/// What the probe found: the server did not answer `failures` pings in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresponsive {
    /// Failed pings in a row.
    pub failures: u32,
    /// Why the last one failed (`no answer within 10 s`, a transport error).
    pub last: String,
}

impl Unresponsive {
    /// The reason the connection closes with, which in-flight calls fail with too.
    pub fn reason(&self) -> String {
        format!(
            "unresponsive: {} pings in a row failed, the last: {}",
            self.failures, self.last
        )
    }
}

/// The probe's record, shown in the connection's introspection details. Shared between the
/// probe task (the only writer) and the details closure; the lock is held for a copy only.
#[derive(Debug, Default)]
pub(super) struct ProbeStatus(Mutex<Record>);

#[derive(Debug, Default, Clone)]
struct Record {
    /// Pings sent by this connection.
    pings: u64,
    /// Failed pings since the last answer.
    failures_in_a_row: u32,
    /// The last ping: when it was sent, how long it took, and why it failed.
    last: Option<(SystemTime, Duration, Option<String>)>,
}

impl ProbeStatus {
    fn record(&self, at: SystemTime, took: Duration, error: Option<String>, failures: u32) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.pings += 1;
        r.failures_in_a_row = failures;
        r.last = Some((at, took, error));
    }

    fn answered(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failures_in_a_row = 0;
    }

    /// The `liveness` object of the connection's details.
    pub(super) fn details(&self, policy: PingPolicy) -> Value {
        let r = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let ms = |d: Duration| d.as_micros() as f64 / 1000.0;
        json!({
            "enabled": !policy.is_off(),
            "ping_interval_ms": policy.interval.as_millis() as u64,
            "ping_timeout_ms": policy.timeout().as_millis() as u64,
            "ping_failures": policy.failures,
            "pings": r.pings,
            "failures_in_a_row": r.failures_in_a_row,
            "last_ping": r.last.map(|(at, took, error)| json!({
                "at": rfc3339(at),
                "ok": error.is_none(),
                "latency_ms": ms(took),
                "error": error,
            })),
        })
    }
}

/// Probes the server of `entry` through `client` until it is found unresponsive (returned) or
/// the connection closes (`None`). Never returns while the server answers.
pub(super) async fn run(
    entry: Arc<ServerEntry>,
    client: Arc<McpClient>,
    status: Arc<ProbeStatus>,
) -> Option<Unresponsive> {
    let mut updates = entry.spec_updates();
    // The handshake's answers do not count: the first interval starts now.
    client.take_heard();
    let mut failures = 0;
    loop {
        let policy = entry.spec().ping;
        if policy.is_off() {
            failures = 0;
            status.answered();
            // The sender lives in `entry`, which we hold: this returns on an update only.
            let _ = updates.changed().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(policy.interval) => {}
            // A new policy: start the wait over with it.
            _ = updates.changed() => continue,
        }
        if client.take_heard() {
            failures = 0;
            status.answered();
            continue;
        }
        if client.closed_reason().is_some() {
            return None; // the connection actor hears of it through the client's events
        }
        let at = SystemTime::now();
        let started = tokio::time::Instant::now();
        let result = client.ping(policy.timeout()).await;
        // Our own answer, or anything that came meanwhile, is accounted for.
        client.take_heard();
        let error = match result {
            Ok(latency) => {
                failures = 0;
                status.record(at, latency, None, 0);
                continue;
            }
            Err(CallError::Closed { .. }) => return None,
            Err(CallError::Timeout { .. }) => {
                format!("no answer within {}", human(policy.timeout()))
            }
            Err(CallError::Transport { source, .. }) => source.to_string(),
            Err(other) => other.to_string(),
        };
        failures += 1;
        status.record(at, started.elapsed(), Some(error.clone()), failures);
        tracing::warn!(
            server = %entry.spec().name,
            path = %entry.node().path(),
            failures,
            limit = policy.failures,
            error = %error,
            "ping failed"
        );
        if failures >= policy.failures {
            return Some(Unresponsive {
                failures,
                last: error,
            });
        }
    }
}

/// `10 s`, or `250 ms` below a second.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
