//! The failed-attempt limiter: lockout, window, reset, address grouping, memory bound.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::super::limiter::client_key;
use super::super::{DEFAULT_LOCKOUT, FailedAuthLimiter, MAX_TRACKED_ADDRESSES};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

const MIN: Duration = Duration::from_secs(60);

#[test]
fn ten_failures_in_a_minute_lock_out_for_five_minutes() {
    let mut limiter = FailedAuthLimiter::default();
    let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let t0 = Instant::now();
    for i in 0..9 {
        limiter.record_failure(a, t0 + Duration::from_secs(i));
        assert_eq!(
            limiter.check(a, t0 + Duration::from_secs(i)),
            Ok(()),
            "failure {i}"
        );
    }
    let t10 = t0 + Duration::from_secs(9);
    limiter.record_failure(a, t10);
    let steps = [
        (t10, Err(DEFAULT_LOCKOUT)),
        (t10 + MIN, Err(4 * MIN)),
        (
            t10 + DEFAULT_LOCKOUT - Duration::from_secs(1),
            Err(Duration::from_secs(1)),
        ),
        (t10 + DEFAULT_LOCKOUT, Ok(())),
    ];
    for (now, expected) in steps {
        assert_eq!(limiter.check(a, now), expected);
        assert_eq!(limiter.check(b, now), Ok(()), "other clients unaffected");
    }
    assert_eq!(limiter.tracked(), 0, "the finished lockout is forgotten");
}

#[test]
fn failures_during_a_lockout_do_not_extend_it() {
    let mut limiter = FailedAuthLimiter::new(2, MIN, 5 * MIN);
    let a = ip("192.0.2.1");
    let t0 = Instant::now();
    limiter.record_failure(a, t0);
    limiter.record_failure(a, t0);
    limiter.record_failure(a, t0 + 4 * MIN);
    assert_eq!(limiter.check(a, t0 + 4 * MIN), Err(MIN));
    assert_eq!(limiter.check(a, t0 + 5 * MIN), Ok(()));
}

#[test]
fn failures_are_counted_per_window() {
    let mut limiter = FailedAuthLimiter::default();
    let a = ip("192.0.2.1");
    let t0 = Instant::now();
    for _ in 0..9 {
        limiter.record_failure(a, t0);
    }
    // The window (60 s from the first failure) is over: counting starts again.
    limiter.record_failure(a, t0 + MIN);
    assert_eq!(limiter.check(a, t0 + MIN), Ok(()));
    for _ in 0..8 {
        limiter.record_failure(a, t0 + MIN);
    }
    assert_eq!(limiter.check(a, t0 + MIN), Ok(()));
    limiter.record_failure(a, t0 + MIN);
    assert_eq!(limiter.check(a, t0 + MIN), Err(DEFAULT_LOCKOUT));
}

#[test]
fn success_clears_the_count() {
    let mut limiter = FailedAuthLimiter::default();
    let a = ip("192.0.2.1");
    let t0 = Instant::now();
    for _ in 0..9 {
        limiter.record_failure(a, t0);
    }
    limiter.record_success(a);
    assert_eq!(limiter.tracked(), 0);
    for _ in 0..9 {
        limiter.record_failure(a, t0);
    }
    assert_eq!(limiter.check(a, t0), Ok(()));
}

#[test]
fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
    let cases = [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::"),
        ("2001:db8:1:3::1", "2001:db8:1:3::"),
        ("::1", "::"),
    ];
    for (address, key) in cases {
        assert_eq!(client_key(ip(address)), ip(key), "{address}");
    }

    let mut limiter = FailedAuthLimiter::new(2, MIN, MIN);
    let t0 = Instant::now();
    limiter.record_failure(ip("2001:db8::1"), t0);
    limiter.record_failure(ip("2001:db8::2"), t0);
    assert_eq!(limiter.check(ip("2001:db8::3"), t0), Err(MIN));
    assert_eq!(limiter.check(ip("2001:db8:0:1::1"), t0), Ok(()));
    limiter.record_failure(ip("::ffff:192.0.2.9"), t0);
    limiter.record_failure(ip("192.0.2.9"), t0);
    assert_eq!(limiter.check(ip("192.0.2.9"), t0), Err(MIN));
}

#[test]
fn at_most_10000_addresses_are_tracked() {
    let mut limiter = FailedAuthLimiter::new(1, MIN, 5 * MIN);
    let t0 = Instant::now();
    let nth = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    let total = u32::try_from(MAX_TRACKED_ADDRESSES).expect("fits") + 500;
    for i in 0..total {
        limiter.record_failure(nth(i), t0 + Duration::from_millis(u64::from(i)));
        assert!(limiter.tracked() <= MAX_TRACKED_ADDRESSES);
    }
    let now = t0 + Duration::from_millis(u64::from(total));
    assert_eq!(limiter.tracked(), MAX_TRACKED_ADDRESSES);
    // The oldest were evicted; the newest are still locked out.
    assert_eq!(limiter.check(nth(0), now), Ok(()));
    assert_eq!(limiter.check(nth(499), now), Ok(()));
    assert!(limiter.check(nth(500), now).is_err());
    assert!(limiter.check(nth(total - 1), now).is_err());

    // Expired entries go first, all at once.
    let later = now + 5 * MIN;
    limiter.record_failure(ip("198.51.100.1"), later);
    assert_eq!(limiter.tracked(), 1);
}

#[test]
fn zero_max_failures_means_one() {
    let mut limiter = FailedAuthLimiter::new(0, MIN, MIN);
    let t0 = Instant::now();
    assert_eq!(limiter.check(ip("192.0.2.1"), t0), Ok(()));
    limiter.record_failure(ip("192.0.2.1"), t0);
    assert_eq!(limiter.check(ip("192.0.2.1"), t0), Err(MIN));
}
