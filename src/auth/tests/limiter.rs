//! The failure throttle: growing delays, forgetting, source grouping (loopback as one),
//! memory bound.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::super::limiter::client_key;
use super::super::{FIRST_DELAY, FORGET_AFTER, FailureThrottle, MAX_DELAY, MAX_TRACKED_SOURCES};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn each_failure_of_a_source_waits_twice_as_long_up_to_the_cap() {
    let mut throttle = FailureThrottle::default();
    let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let t0 = Instant::now();
    let delays: Vec<Duration> = (0..9)
        .map(|i| throttle.record_failure(a, t0 + Duration::from_secs(i)))
        .collect();
    assert_eq!(
        delays,
        [100, 200, 400, 800, 1600, 3200, 3200, 3200, 3200].map(|ms| ms * MS)
    );
    assert_eq!(delays[0], FIRST_DELAY);
    assert_eq!(delays[8], MAX_DELAY);
    assert_eq!(throttle.failures(a, t0 + Duration::from_secs(8)), 9);
    // Another source starts at the first delay.
    assert_eq!(throttle.record_failure(b, t0), FIRST_DELAY);
}

#[test]
fn a_source_is_forgotten_a_minute_after_its_latest_failure() {
    let mut throttle = FailureThrottle::default();
    let a = ip("192.0.2.1");
    let t0 = Instant::now();
    for _ in 0..5 {
        throttle.record_failure(a, t0);
    }
    let almost = t0 + FORGET_AFTER - MS;
    assert_eq!(throttle.failures(a, almost), 5);
    // A failure just before the end keeps the count going.
    assert_eq!(throttle.record_failure(a, almost), MAX_DELAY);
    let later = almost + FORGET_AFTER;
    assert_eq!(throttle.failures(a, later), 0);
    assert_eq!(
        throttle.record_failure(a, later),
        FIRST_DELAY,
        "starts over"
    );
}

/// On a loopback bind every local process is one of `127.0.0.0/8` or `::1`: rotating through
/// them must not reset the count, so they are one source.
#[test]
fn every_loopback_address_is_one_source() {
    let cases = [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.1"),
        ("127.255.3.9", "127.0.0.1"),
        ("::1", "127.0.0.1"),
        ("::ffff:127.0.0.5", "127.0.0.1"),
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::"),
        ("2001:db8:1:3::1", "2001:db8:1:3::"),
    ];
    for (address, key) in cases {
        assert_eq!(client_key(ip(address)), ip(key), "{address}");
    }

    let mut throttle = FailureThrottle::default();
    let t0 = Instant::now();
    let rotated = [
        "127.0.0.1",
        "127.0.0.2",
        "127.1.2.3",
        "::1",
        "::ffff:127.9.9.9",
    ];
    let delays: Vec<Duration> = rotated
        .iter()
        .map(|a| throttle.record_failure(ip(a), t0))
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 1600].map(|ms| ms * MS));
    assert_eq!(throttle.tracked(), 1);
    // An IPv6 /64 is one source too.
    throttle.record_failure(ip("2001:db8::1"), t0);
    assert_eq!(throttle.record_failure(ip("2001:db8::2"), t0), 200 * MS);
    assert_eq!(
        throttle.record_failure(ip("2001:db8:0:1::1"), t0),
        FIRST_DELAY
    );
}

#[test]
fn at_most_10000_sources_are_tracked() {
    let mut throttle = FailureThrottle::default();
    let t0 = Instant::now();
    let nth = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    let total = u32::try_from(MAX_TRACKED_SOURCES).expect("fits") + 500;
    for i in 0..total {
        let at = t0 + Duration::from_millis(u64::from(i));
        throttle.record_failure(nth(i), at);
        throttle.record_failure(nth(i), at);
        assert!(throttle.tracked() <= MAX_TRACKED_SOURCES);
    }
    let now = t0 + Duration::from_millis(u64::from(total));
    assert_eq!(throttle.tracked(), MAX_TRACKED_SOURCES);
    // The oldest were evicted; the newest are remembered.
    assert_eq!(throttle.failures(nth(0), now), 0);
    assert_eq!(throttle.failures(nth(499), now), 0);
    assert_eq!(throttle.failures(nth(500), now), 2);
    assert_eq!(throttle.failures(nth(total - 1), now), 2);

    // Forgotten entries go first, all at once.
    let later = now + FORGET_AFTER;
    throttle.record_failure(ip("198.51.100.1"), later);
    assert_eq!(throttle.tracked(), 1);
}

#[test]
fn a_cap_below_the_first_delay_is_the_first_delay() {
    let mut throttle = FailureThrottle::new(100 * MS, 10 * MS, FORGET_AFTER);
    let t0 = Instant::now();
    for _ in 0..40 {
        assert_eq!(throttle.record_failure(ip("192.0.2.1"), t0), 100 * MS);
    }
}
