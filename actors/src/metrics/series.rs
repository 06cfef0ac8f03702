//! The series handles: counters, gauges, histograms and the histogram [`Timer`].
//!
//! Every handle is an `Arc` on its atomics: cloning is a reference-count increment, and updates
//! are relaxed atomic operations, without allocation or lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Default histogram upper bounds, in seconds: 100 µs to 10 minutes (`+Inf` is implied).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// One counter series: a `u64` that only goes up.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One gauge series holding an `f64` (stored as its bits in an `AtomicU64`).
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }

    /// Adds `delta` (negative to subtract), atomically.
    #[inline]
    pub fn add(&self, delta: f64) {
        add_f64(&self.0, delta);
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

/// One gauge series holding an `i64`: cheaper `inc` / `dec` than [`Gauge`] (no CAS loop).
#[derive(Debug, Clone, Default)]
pub struct IntGauge(Arc<AtomicI64>);

impl IntGauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    /// Adds `delta` (negative to subtract).
    #[inline]
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.add(-1);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// One histogram series: fixed upper bounds, an atomic count per bucket (plus `+Inf`), and the
/// sum of observations as `f64` bits. The rendered `_count` is the sum of the bucket counts, so
/// the `+Inf` bucket always equals `_count`.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramCore>);

#[derive(Debug)]
struct HistogramCore {
    bounds: Arc<[f64]>,
    /// Non-cumulative: `counts[i]` holds observations in `(bounds[i-1], bounds[i]]`; the last
    /// slot holds those above every bound.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub(super) fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(HistogramCore {
            bounds,
            counts,
            sum: AtomicU64::new(0),
        }))
    }

    /// Records one observation. `NaN` is ignored (it would poison the sum forever).
    #[inline]
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let core = &*self.0;
        let i = core.bounds.partition_point(|&bound| bound < v);
        core.counts[i].fetch_add(1, Relaxed);
        add_f64(&core.sum, v);
    }

    /// Records a duration, in seconds.
    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Starts a [`Timer`] that records the elapsed seconds into this series when dropped.
    pub fn start_timer(&self) -> Timer {
        Timer {
            histogram: Some(self.clone()),
            start: Instant::now(),
        }
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The sum of observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum.load(Relaxed))
    }

    /// The upper bounds, without the implied `+Inf`.
    pub fn bounds(&self) -> &[f64] {
        &self.0.bounds
    }

    /// The non-cumulative bucket counts: `counts[i]` observations in
    /// `(bounds[i-1], bounds[i]]`, the last one those above every bound (`+Inf`).
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.0.counts.iter().map(|c| c.load(Relaxed)).collect()
    }

    /// The non-cumulative bucket counts (the last one above every bound), and the sum.
    pub(super) fn snapshot(&self) -> (Vec<u64>, f64) {
        let counts = self.0.counts.iter().map(|c| c.load(Relaxed)).collect();
        (counts, self.sum())
    }
}

/// Observes the seconds elapsed since [`Histogram::start_timer`] when dropped (or at
/// [`Timer::observe`]); [`Timer::discard`] drops it without observing.
#[derive(Debug)]
#[must_use = "a timer dropped at once observes about zero seconds"]
pub struct Timer {
    histogram: Option<Histogram>,
    start: Instant,
}

impl Timer {
    /// The time elapsed so far.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Observes the elapsed time now and returns it.
    pub fn observe(mut self) -> Duration {
        let elapsed = self.start.elapsed();
        if let Some(histogram) = self.histogram.take() {
            histogram.observe_duration(elapsed);
        }
        elapsed
    }

    /// Drops the timer without observing anything.
    pub fn discard(mut self) {
        self.histogram = None;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(histogram) = self.histogram.take() {
            histogram.observe_duration(self.start.elapsed());
        }
    }
}

#[inline]
fn add_f64(cell: &AtomicU64, delta: f64) {
    let mut current = cell.load(Relaxed);
    loop {
        let new = (f64::from_bits(current) + delta).to_bits();
        match cell.compare_exchange_weak(current, new, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}
