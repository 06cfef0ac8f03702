//! [`FailureThrottle`]: slows down failed authentication attempts, per source, without ever
//! refusing a valid credential.
//!
//! Part of the daemon's auth layer. The gateway listener (`root/gateway`) keeps one behind a
//! mutex and consults it only *after* a presented credential (a bearer token, a pairing code)
//! turned out to be wrong: [`FailureThrottle::record_failure`] counts the failure and says how
//! long to wait before answering it. A valid token is never looked up here, so no amount of
//! failures from anyone can lock the owner out. The listener also bounds how many failures
//! wait at once ([`MAX_DELAYED_FAILURES`]; past it, an immediate 429), so an attacker cannot
//! tie up more than that many sleeping requests. Pairing codes are additionally protected by a
//! global budget of failed redemptions (see [`PairingCodes`](super::PairingCodes)).
//!
//! The delay doubles with each failure of a source, from [`FIRST_DELAY`] up to [`MAX_DELAY`],
//! and a source's failures are forgotten [`FORGET_AFTER`] after its latest one. It is a plain
//! data structure: the clock is passed in, so tests step time by hand.
//!
//! Sources are grouped the way an attacker gets addresses: every loopback address (all of
//! `127.0.0.0/8`, `::1`, and their IPv4-mapped forms) is one source, since on a loopback bind
//! every local process is one of them; any other IPv4 address (or IPv4-mapped IPv6 address)
//! counts alone; an IPv6 address counts with its whole `/64`. Memory is bounded: at most
//! [`MAX_TRACKED_SOURCES`] are tracked (forgotten ones go first, then the one whose latest
//! failure is oldest).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The wait before answering a source's first failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait before answering a failure (reached at the 6th failure in a row).
pub const MAX_DELAY: Duration = Duration::from_millis(3200);
/// A source's failures are forgotten this long after its latest one.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Sources tracked at most.
pub const MAX_TRACKED_SOURCES: usize = 10_000;
/// Failed attempts waiting out their delay at once, across all sources; past it the gateway
/// answers 429 at once.
pub const MAX_DELAYED_FAILURES: usize = 64;

/// Failures of one source.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures since the source was last forgotten.
    failures: u32,
    /// The latest failure.
    last_failure: Instant,
}

/// Failed attempts per source, and the delay each earns. See the module docs.
#[derive(Debug, Clone)]
pub struct FailureThrottle {
    first: Duration,
    max: Duration,
    forget_after: Duration,
    entries: HashMap<IpAddr, Entry>,
}

impl Default for FailureThrottle {
    /// [`FIRST_DELAY`] doubling to [`MAX_DELAY`], forgotten after [`FORGET_AFTER`].
    fn default() -> Self {
        Self::new(FIRST_DELAY, MAX_DELAY, FORGET_AFTER)
    }
}

impl FailureThrottle {
    /// A source's first failure waits `first`, each further one twice as long as the one
    /// before, up to `max`; `forget_after` without a failure starts it over.
    pub fn new(first: Duration, max: Duration, forget_after: Duration) -> Self {
        Self {
            first,
            max: max.max(first),
            forget_after,
            entries: HashMap::new(),
        }
    }

    /// Counts a failed attempt by `ip` at `now`; how long to wait before answering it.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) -> Duration {
        let key = client_key(ip);
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_TRACKED_SOURCES {
            self.make_room(now);
        }
        let forget_after = self.forget_after;
        let entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
        });
        if now.saturating_duration_since(entry.last_failure) >= forget_after {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = entry.last_failure.max(now);
        let failures = entry.failures;
        self.delay(failures)
    }

    /// The failures `ip`'s source has to its name at `now`.
    pub fn failures(&self, ip: IpAddr, now: Instant) -> u32 {
        self.entries
            .get(&client_key(ip))
            .filter(|e| now.saturating_duration_since(e.last_failure) < self.forget_after)
            .map_or(0, |e| e.failures)
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// The wait for the `n`th failure in a row (`n` ≥ 1).
    fn delay(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(31);
        self.first
            .checked_mul(1 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Drops forgotten entries; if none was, evicts the entry whose latest failure is oldest.
    fn make_room(&mut self, now: Instant) {
        let forget_after = self.forget_after;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_failure) < forget_after);
        if self.entries.len() >= MAX_TRACKED_SOURCES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_failure)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.entries.remove(&ip);
            }
        }
    }
}

/// What failures are counted against: one key for every loopback address, else the IPv4
/// address, or the IPv6 `/64`.
pub(super) fn client_key(ip: IpAddr) -> IpAddr {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    if ip.is_loopback() {
        return IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (!0u128 << 64))),
    }
}
