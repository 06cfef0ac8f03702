//! A rate limit per source: a token bucket for each [`Source`], behind the MCP server's
//! `POST /session` (`[sessions] create_burst`, `create_per_minute`).
//!
//! Part of the shared HTTP plumbing (`crate::http`). A source may make `burst` requests at
//! once; the bucket then refills at `per_minute`. A refused request learns how long until its
//! next token, for `Retry-After`. The table of buckets is bounded: past [`MAX_SOURCES`], full
//! buckets (sources that have been quiet) are dropped first, then the stalest.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Source;

/// Sources tracked at most.
pub const MAX_SOURCES: usize = 4096;

/// A burst and a sustained rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests a quiet source may make at once.
    pub burst: u32,
    /// Requests per minute a source may sustain.
    pub per_minute: u32,
}

impl Rate {
    fn per_sec(self) -> f64 {
        f64::from(self.per_minute.max(1)) / 60.0
    }

    fn burst(self) -> f64 {
        f64::from(self.burst.max(1))
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per source.
#[derive(Debug)]
pub struct PerSource {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    rate: Rate,
    buckets: HashMap<Source, Bucket>,
}

impl PerSource {
    /// Buckets at `rate`.
    pub fn new(rate: Rate) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rate,
                buckets: HashMap::new(),
            }),
        }
    }

    /// Changes the rate (buckets keep their tokens, capped at the new burst).
    pub fn set_rate(&self, rate: Rate) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rate = rate;
    }

    /// Takes a token for a request from `source`; `Err` is the time until one is available.
    pub fn take(&self, source: Source) -> Result<(), Duration> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = inner.rate;
        if !inner.buckets.contains_key(&source) && inner.buckets.len() >= MAX_SOURCES {
            inner.make_room(now);
        }
        let bucket = inner.buckets.entry(source).or_insert(Bucket {
            tokens: rate.burst(),
            at: now,
        });
        let refilled = bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate.per_sec();
        bucket.tokens = refilled.min(rate.burst());
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_sec(),
            ))
        }
    }
}

impl Inner {
    /// Drops the buckets that have refilled (their sources are as if new), or else the one
    /// touched longest ago.
    fn make_room(&mut self, now: Instant) {
        let (rate, before) = (self.rate, self.buckets.len());
        self.buckets.retain(|_, b| {
            b.tokens + now.duration_since(b.at).as_secs_f64() * rate.per_sec() < rate.burst()
        });
        if self.buckets.len() == before
            && let Some(stalest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(source, _)| *source)
        {
            self.buckets.remove(&stalest);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_source_gets_its_burst_then_its_rate() {
        let limiter = PerSource::new(Rate {
            burst: 3,
            per_minute: 6,
        });
        for _ in 0..3 {
            limiter.take(Source::Loopback).unwrap();
        }
        let wait = limiter.take(Source::Loopback).unwrap_err();
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "one token every 10 s: {wait:?}"
        );
        limiter
            .take(Source::V4(Ipv4Addr::new(10, 0, 0, 1)))
            .expect("another source has its own bucket");
        tokio::time::advance(Duration::from_secs(10)).await;
        limiter.take(Source::Loopback).expect("refilled one");
        assert!(limiter.take(Source::Loopback).is_err());
        tokio::time::advance(Duration::from_secs(600)).await;
        for _ in 0..3 {
            limiter.take(Source::Loopback).unwrap();
        }
        assert!(
            limiter.take(Source::Loopback).is_err(),
            "never past the burst"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_of_sources_is_bounded() {
        let limiter = PerSource::new(Rate {
            burst: 1,
            per_minute: 1,
        });
        for n in 0..(MAX_SOURCES as u32 + 10) {
            limiter.take(Source::V4(Ipv4Addr::from(n))).unwrap();
        }
        assert_eq!(
            limiter.inner.lock().unwrap().buckets.len(),
            MAX_SOURCES,
            "the stalest sources made room"
        );
    }
}
