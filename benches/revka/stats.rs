//! Latency samples and their percentiles.

use std::time::Duration;

/// Call latencies, in nanoseconds.
#[derive(Default, Clone)]
pub struct Latencies {
    samples: Vec<u64>,
}

/// Percentiles of a [`Latencies`], in microseconds.
#[derive(Clone, Copy, Default)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.samples.push(d.as_nanos() as u64);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn summary(&self) -> Summary {
        let mut s = self.samples.clone();
        s.sort_unstable();
        let at = |q: f64| -> f64 {
            if s.is_empty() {
                return 0.0;
            }
            let i = ((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1;
            s[i] as f64 / 1000.0
        };
        Summary {
            n: s.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Formats microseconds compactly (`12.3`, `1 234`, `12.3 ms`).
pub fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}
