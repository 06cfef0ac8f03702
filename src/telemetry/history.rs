//! Per-server call statistics over the last minutes, for the dashboard's Servers view
//! (`GET /api/servers/stats`).
//!
//! Part of the telemetry layer. [`History`] is held by [`Telemetry`] (so it outlives a restart
//! of the gateway); the [`Sampler`] that fills it is a task the gateway's listener
//! (`root/gateway`) spawns when it starts serving and aborts when it stops (the guard's
//! drop), so no task outlives the daemon and nothing is sampled while nobody can ask.
//!
//! Every [`INTERVAL`] the sampler reads the daemon's own counters, the ones `/metrics`
//! exports: `revka_tool_calls_total` summed by server (all outcomes; `outcome="error"` for
//! errors) and the buckets of `revka_tool_call_duration_seconds` by server. Each sample
//! keeps the difference since the previous one, in a ring of [`POINTS`] per server (15 minutes
//! at 10 s), and the figures are computed when asked: calls/s, error rate, and p50/p99 from
//! the bucket differences with linear interpolation inside the bucket, as Prometheus'
//! `histogram_quantile` does. The cost is one pass over two metric families every 10 s and
//! about 2 KiB per server; the servers are the configured ones (plus `builtin`, Revka's own
//! tools), never a name a client chose.
//!
//! [`INTERVAL_ENV`] (`REVKA_STATS_INTERVAL_MS`) shortens the interval: a test knob, not a
//! setting.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use revka_actors::metrics::OVERFLOW_LABEL_VALUE;
use serde_json::{Value, json};

use super::Telemetry;
use crate::tree::ConfigCell;

/// How often the sampler reads the counters.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// The points kept per server: 15 minutes at [`INTERVAL`].
pub const POINTS: usize = 90;
/// The span of `last_minute` in [`History::render`].
const LAST_MINUTE: Duration = Duration::from_secs(60);
/// Test knob: the sampling interval in milliseconds (50 to 60,000) instead of [`INTERVAL`].
pub const INTERVAL_ENV: &str = "REVKA_STATS_INTERVAL_MS";
/// The server label of Revka's built-in tools.
const BUILTIN: &str = "builtin";

/// A server's counters at one instant (cumulative), or their difference over an interval.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    calls: u64,
    errors: u64,
    /// Non-cumulative bucket counts of the latency histogram, `+Inf` last.
    buckets: Vec<u64>,
}

impl Counts {
    /// `self - before`; a counter that went down (its series was removed and created anew)
    /// counts from zero.
    fn since(&self, before: &Self) -> Self {
        let reset = self.calls < before.calls;
        let sub = |now: u64, then: u64| if reset { now } else { now.saturating_sub(then) };
        Self {
            calls: sub(self.calls, before.calls),
            errors: sub(self.errors, before.errors),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, &n)| sub(n, before.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    fn add(&mut self, other: &Self) {
        self.calls += other.calls;
        self.errors += other.errors;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }
}

/// One sample of one server: what happened during the interval that ends at `at`.
#[derive(Debug, Clone)]
struct Point {
    at: SystemTime,
    instant: Instant,
    /// The interval's length in seconds.
    secs: f64,
    delta: Counts,
}

/// The points of one server, oldest first, at most [`POINTS`].
#[derive(Debug, Default)]
struct Ring {
    points: VecDeque<Point>,
}

impl Ring {
    fn push(&mut self, point: Point) {
        if self.points.len() == POINTS {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }
}

#[derive(Debug)]
struct State {
    /// Counters at the last sample, per server.
    last: BTreeMap<String, Counts>,
    /// When the last sample was taken (or the history created: the counters were zero).
    last_at: Instant,
    rings: BTreeMap<String, Ring>,
    bounds: Vec<f64>,
    interval: Duration,
}

/// The per-server history of call statistics (see the module docs).
#[derive(Debug)]
pub struct History {
    state: Mutex<State>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history; the counters are taken to be zero now.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                last: BTreeMap::new(),
                last_at: Instant::now(),
                rings: BTreeMap::new(),
                bounds: revka_actors::metrics::DEFAULT_BUCKETS.to_vec(),
                interval: INTERVAL,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the counters of `telemetry` and records one point per server of `servers` (and
    /// `builtin`) that has had calls; the rings of servers no longer listed are dropped.
    pub fn sample<'a>(&self, telemetry: &Telemetry, servers: impl IntoIterator<Item = &'a str>) {
        let mut now: BTreeMap<String, Counts> = servers
            .into_iter()
            .chain([BUILTIN])
            .map(|s| (s.to_owned(), Counts::default()))
            .collect();
        for (labels, counter) in telemetry.calls.series() {
            let (Some(server), Some(outcome)) = (labels.first(), labels.get(2)) else {
                continue;
            };
            if let Some(counts) = now.get_mut(server.as_str()) {
                let n = counter.get();
                counts.calls += n;
                if outcome == "error" {
                    counts.errors += n;
                }
            }
        }
        let mut bounds = None;
        for (labels, histogram) in telemetry.latency.series() {
            let Some(server) = labels.first().filter(|s| *s != OVERFLOW_LABEL_VALUE) else {
                continue;
            };
            if let Some(counts) = now.get_mut(server.as_str()) {
                counts.buckets = histogram.bucket_counts();
                bounds.get_or_insert_with(|| histogram.bounds().to_vec());
            }
        }
        self.record(now, bounds, Instant::now(), SystemTime::now());
    }

    /// Records the counters `now` read at `instant` (the pure part of [`Self::sample`]).
    fn record(
        &self,
        now: BTreeMap<String, Counts>,
        bounds: Option<Vec<f64>>,
        instant: Instant,
        at: SystemTime,
    ) {
        let mut state = self.lock();
        if let Some(bounds) = bounds {
            state.bounds = bounds;
        }
        let secs = instant.duration_since(state.last_at).as_secs_f64();
        state.last_at = instant;
        state.rings.retain(|name, _| now.contains_key(name));
        for (server, counts) in &now {
            let before = state.last.get(server).cloned().unwrap_or_default();
            if counts.calls == 0 && before.calls == 0 {
                continue; // no calls yet: no points
            }
            let delta = counts.since(&before);
            state.rings.entry(server.clone()).or_default().push(Point {
                at,
                instant,
                secs,
                delta,
            });
        }
        state.last = now;
    }

    /// Sets the interval the sampler runs at (reported by [`Self::render`]).
    fn set_interval(&self, interval: Duration) {
        self.lock().interval = interval;
    }

    /// The `GET /api/servers/stats` body: every server of the last sample with its points,
    /// its figures over the last minute and its total calls.
    pub fn render(&self) -> Value {
        let state = self.lock();
        let now = Instant::now();
        let mut servers = serde_json::Map::new();
        for (server, counts) in &state.last {
            let ring = state.rings.get(server);
            let points: Vec<Value> = ring
                .iter()
                .flat_map(|r| r.points.iter())
                .map(|p| {
                    let mut figures = figures(&p.delta, p.secs, &state.bounds);
                    figures["at"] = revka_actors::status::rfc3339(p.at).into();
                    figures
                })
                .collect();
            let mut minute = Counts::default();
            let mut secs = 0.0;
            for p in ring.iter().flat_map(|r| r.points.iter()) {
                if now.duration_since(p.instant) <= LAST_MINUTE {
                    minute.add(&p.delta);
                    secs += p.secs;
                }
            }
            servers.insert(
                server.clone(),
                json!({
                    "points": points,
                    "last_minute": figures(&minute, secs, &state.bounds),
                    "total_calls": counts.calls,
                }),
            );
        }
        json!({
            "interval_secs": seconds(state.interval),
            "window_secs": seconds(state.interval * POINTS as u32),
            "servers": servers,
        })
    }
}

/// A duration in seconds: a whole number when it is one.
fn seconds(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        d.as_secs().into()
    } else {
        d.as_secs_f64().into()
    }
}

/// The four figures of `delta` over `secs` seconds.
fn figures(delta: &Counts, secs: f64, bounds: &[f64]) -> Value {
    let rate = if secs > 0.0 {
        delta.calls as f64 / secs
    } else {
        0.0
    };
    let error_rate = if delta.calls == 0 {
        0.0
    } else {
        delta.errors as f64 / delta.calls as f64
    };
    let ms = |q| quantile(q, bounds, &delta.buckets).map(|s| s * 1000.0);
    json!({
        "calls_per_sec": rate,
        "error_rate": error_rate,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
    })
}

/// The `q` quantile (0 < q < 1) of a histogram given its upper `bounds` (without `+Inf`) and
/// its non-cumulative `counts` (`+Inf` last), as Prometheus' `histogram_quantile` computes it:
/// the bucket where the rank falls, interpolated linearly between its bounds (the first
/// bucket's lower bound is 0); a rank in `+Inf` gives the highest finite bound. `None` without
/// observations.
pub(crate) fn quantile(q: f64, bounds: &[f64], counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        let cumulative = below + n;
        if n > 0 && cumulative as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().copied(); // the +Inf bucket
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            if i == 0 && upper <= 0.0 {
                return Some(upper);
            }
            let within = (rank - below as f64).max(0.0) / n as f64;
            return Some(lower + (upper - lower) * within);
        }
        below = cumulative;
    }
    bounds.last().copied()
}

/// The running sampler; dropping it stops the task.
#[derive(Debug)]
pub struct Sampler(tokio::task::JoinHandle<()>);

impl Drop for Sampler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts sampling `telemetry`'s counters for the servers `config` lists, at once and then
/// every [`INTERVAL`] (or [`INTERVAL_ENV`]), until the returned guard is dropped.
pub fn spawn_sampler(telemetry: Telemetry, config: Arc<ConfigCell>) -> Sampler {
    let interval = std::env::var(INTERVAL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(INTERVAL, |ms| Duration::from_millis(ms.clamp(50, 60_000)));
    telemetry.history.set_interval(interval);
    Sampler(tokio::spawn(async move {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: the servers are listed from the start.
        loop {
            every.tick().await;
            let config = config.get();
            let mcp = &config.mcp;
            let names = mcp
                .servers
                .iter()
                .map(|s| s.name.as_str())
                .chain(mcp.invalid_servers.iter().map(|s| s.name.as_str()));
            telemetry.history.sample(&telemetry, names);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 3] = [0.1, 0.5, 1.0];

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_prometheus() {
        // 10 in (0, 0.1], 10 in (0.1, 0.5], none above.
        let counts = [10, 10, 0, 0];
        // Rank 10 of 20: the end of the first bucket.
        assert_eq!(quantile(0.5, &BOUNDS, &counts), Some(0.1));
        // Rank 15: halfway through the second.
        let q = quantile(0.75, &BOUNDS, &counts).unwrap();
        assert!((q - 0.3).abs() < 1e-12, "{q}");
        // Rank 2: a fifth of the first, from 0.
        let q = quantile(0.1, &BOUNDS, &counts).unwrap();
        assert!((q - 0.02).abs() < 1e-12, "{q}");
        // Empty buckets between are skipped.
        let q = quantile(0.99, &BOUNDS, &[0, 0, 0, 0]);
        assert_eq!(q, None);
        let q = quantile(0.5, &BOUNDS, &[0, 0, 4, 0]).unwrap();
        assert!((q - 0.75).abs() < 1e-12, "{q}");
        // A rank in +Inf gives the highest bound.
        assert_eq!(quantile(0.99, &BOUNDS, &[1, 0, 0, 9]), Some(1.0));
        assert_eq!(quantile(0.5, &BOUNDS, &[0, 0, 0, 1]), Some(1.0));
    }

    fn counts(calls: u64, errors: u64, buckets: [u64; 4]) -> Counts {
        Counts {
            calls,
            errors,
            buckets: buckets.to_vec(),
        }
    }

    #[test]
    fn the_ring_keeps_the_last_points_of_each_listed_server() {
        let history = History::new();
        let start = history.lock().last_at;
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        history.lock().bounds = BOUNDS.to_vec();
        let step = Duration::from_secs(10);
        for i in 1..=100u64 {
            let now = BTreeMap::from([
                // 2 calls per interval, one error in every other interval, all in (0.1, 0.5].
                ("a".to_owned(), counts(2 * i, i / 2, [0, 2 * i, 0, 0])),
                ("idle".to_owned(), Counts::default()),
            ]);
            let t = step * i as u32;
            history.record(now, None, start + t, wall + t);
        }
        let state = history.lock();
        let ring = &state.rings["a"];
        assert_eq!(ring.points.len(), POINTS, "bounded");
        assert_eq!(
            ring.points.back().unwrap().delta,
            counts(2, 1, [0, 2, 0, 0])
        );
        assert_eq!(ring.points.front().unwrap().at, wall + step * 11);
        assert!(!state.rings.contains_key("idle"), "no calls, no points");
        drop(state);

        let body = history.render();
        let a = &body["servers"]["a"];
        assert_eq!(a["total_calls"], 200);
        assert_eq!(a["points"].as_array().unwrap().len(), POINTS);
        let last = &a["points"][POINTS - 1];
        assert_eq!(last["at"], "2027-01-15T08:16:40Z");
        assert_eq!(last["calls_per_sec"], 0.2);
        assert_eq!(last["error_rate"], 0.5);
        let p50 = last["p50_ms"].as_f64().unwrap();
        assert!((p50 - 300.0).abs() < 1e-9, "{p50}");
        assert_eq!(body["servers"]["idle"]["points"], json!([]));
        assert_eq!(body["servers"]["idle"]["total_calls"], 0);
        assert_eq!(
            body["servers"]["idle"]["last_minute"]["p99_ms"],
            Value::Null
        );
        assert_eq!(
            body["servers"]["builtin"],
            Value::Null,
            "not in this sample"
        );
        assert_eq!(body["interval_secs"], 10);
        assert_eq!(body["window_secs"], 900);

        // A server dropped from the config loses its ring.
        history.record(BTreeMap::new(), None, start + step * 101, wall);
        assert!(history.lock().rings.is_empty());
    }

    #[test]
    fn the_last_minute_sums_the_points_within_it() {
        let history = History::new();
        history.lock().bounds = BOUNDS.to_vec();
        let now = Instant::now();
        let ago = |secs: u64| now - Duration::from_secs(secs);
        // A busy interval just over a minute ago (left out), then 6 intervals of 10 s ending
        // now: 60 calls, 6 errors, half in (0, 0.1], half in (0.5, 1].
        history.lock().last_at = ago(70);
        let mut total = counts(100, 0, [100, 0, 0, 0]);
        let a = |c: &Counts| BTreeMap::from([("a".to_owned(), c.clone())]);
        history.record(a(&total), None, ago(60), SystemTime::now());
        for i in (0..6u64).rev() {
            total.add(&counts(10, 1, [5, 0, 5, 0]));
            history.record(a(&total), None, ago(10 * i), SystemTime::now());
        }
        let minute = &history.render()["servers"]["a"]["last_minute"];
        assert_eq!(minute["calls_per_sec"], 1.0, "{minute}");
        assert_eq!(minute["error_rate"], 0.1);
        assert_eq!(minute["p50_ms"], 100.0);
        let p99 = minute["p99_ms"].as_f64().unwrap();
        assert!((p99 - 990.0).abs() < 1e-9, "{p99}");
    }

    #[tokio::test]
    async fn the_sampler_lists_the_servers_at_once_and_stops_with_its_guard() {
        let home = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::default_in(home.path());
        config.mcp.servers = vec![crate::config::McpServerConfig {
            name: "a".into(),
            command: Some("true".into()),
            ..Default::default()
        }];
        let services = crate::tree::Services::new(config, home.path(), None).unwrap();
        let sampler = spawn_sampler(services.telemetry.clone(), services.config.clone());
        let task = sampler.0.abort_handle();
        let history = services.telemetry.history();
        for _ in 0..200 {
            if history.render()["servers"]["a"].is_object() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let body = history.render();
        assert_eq!(body["servers"]["a"]["points"], json!([]), "{body}");
        assert_eq!(body["servers"]["a"]["total_calls"], 0, "{body}");
        drop(sampler);
        for _ in 0..200 {
            if task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(task.is_finished(), "the task stops with its guard");
    }
}
