//! [`FailedAuthLimiter`]: locks out client addresses that fail authentication too often.
//!
//! Part of the gateway's auth layer. The gateway listener (`root/gateway`) keeps one behind a
//! mutex: [`FailedAuthLimiter::check`] before looking at any credential (a locked-out client
//! gets `429` with `Retry-After`), then [`FailedAuthLimiter::record_failure`] or
//! [`FailedAuthLimiter::record_success`]. It is a plain data structure: the clock is passed
//! in, so tests step time by hand.
//!
//! Addresses are grouped the way an attacker gets them: an IPv4 address (or IPv4-mapped IPv6
//! address) counts alone, an IPv6 address counts with its whole `/64`. Memory is bounded:
//! expired entries are dropped, and at most [`MAX_TRACKED_ADDRESSES`] are tracked (the one
//! with the oldest failure is evicted).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Failures within a window that cause a lockout, by default.
pub const DEFAULT_MAX_FAILURES: u32 = 10;
/// The window failures are counted in, by default: 60 s from the first failure.
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a lockout lasts, by default: 5 minutes.
pub const DEFAULT_LOCKOUT: Duration = Duration::from_secs(5 * 60);
/// Client addresses tracked at most.
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Failures of one client.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The first failure of the current window.
    window_start: Instant,
    /// Failures since `window_start`.
    failures: u32,
    /// Locked out until then.
    locked_until: Option<Instant>,
    /// The latest failure (eviction order).
    last_failure: Instant,
}

impl Entry {
    /// Whether the entry no longer says anything: its lockout or its window is over.
    fn expired(&self, now: Instant, window: Duration) -> bool {
        match self.locked_until {
            Some(until) => now >= until,
            None => now.duration_since(self.window_start) >= window,
        }
    }
}

/// Failed authentication attempts per client, with lockouts. See the module docs.
#[derive(Debug, Clone)]
pub struct FailedAuthLimiter {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    entries: HashMap<IpAddr, Entry>,
}

impl Default for FailedAuthLimiter {
    /// [`DEFAULT_MAX_FAILURES`] failures per [`DEFAULT_FAILURE_WINDOW`] lock a client out for
    /// [`DEFAULT_LOCKOUT`].
    fn default() -> Self {
        Self::new(
            DEFAULT_MAX_FAILURES,
            DEFAULT_FAILURE_WINDOW,
            DEFAULT_LOCKOUT,
        )
    }
}

impl FailedAuthLimiter {
    /// `max_failures` (at least 1) failures within `window` of the first lock a client out
    /// for `lockout`.
    pub fn new(max_failures: u32, window: Duration, lockout: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            lockout,
            entries: HashMap::new(),
        }
    }

    /// `Ok` if `ip` may try to authenticate at `now`; otherwise how long until it may.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(ip);
        let Some(entry) = self.entries.get(&key) else {
            return Ok(());
        };
        if entry.expired(now, self.window) {
            self.entries.remove(&key);
            return Ok(());
        }
        match entry.locked_until {
            Some(until) => Err(until.duration_since(now)),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt by `ip` at `now`; the one that reaches the limit starts the
    /// lockout. Failures during a lockout do not extend it.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) {
        let key = client_key(ip);
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_TRACKED_ADDRESSES {
            self.make_room(now);
        }
        let fresh = Entry {
            window_start: now,
            failures: 0,
            locked_until: None,
            last_failure: now,
        };
        let entry = self.entries.entry(key).or_insert(fresh);
        if entry.expired(now, self.window) {
            *entry = fresh;
        }
        if entry.locked_until.is_some() {
            return;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        if entry.failures >= self.max_failures {
            entry.locked_until = Some(now + self.lockout);
        }
    }

    /// Forgets `ip`'s failures after it authenticated.
    pub fn record_success(&mut self, ip: IpAddr) {
        self.entries.remove(&client_key(ip));
    }

    /// Client addresses (or IPv6 `/64`s) currently tracked.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Drops expired entries; if none was, evicts the entry with the oldest failure.
    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.entries.retain(|_, e| !e.expired(now, window));
        if self.entries.len() >= MAX_TRACKED_ADDRESSES {
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

/// What failures are counted against: the IPv4 address, or the IPv6 `/64`.
pub(super) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (!0u128 << 64))),
        },
    }
}
