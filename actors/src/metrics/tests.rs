//! Metrics: exact rendering, escaping, concurrency, the series bound, validation, and the
//! exposition-format validator, itself checked and then run over a registry holding every kind
//! of metric. `rules` covers the honesty rules: types and names, one-hot states, callback bounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use proptest::prelude::*;

use super::*;

mod rules;

#[test]
fn the_validator_rejects_malformed_exposition() {
    let bad = [
        "x 1",                      // no final newline
        "x{a=\"1\"} 1 2\n",         // extra field
        "x{a=\"\\t\"} 1\n",         // bad escape
        "x{a=\"1\",} 1\n",          // trailing comma
        "x{a=\"1\",a=\"2\"} 1\n",   // repeated label
        "x{1a=\"1\"} 1\n",          // bad label name
        "1x 1\n",                   // bad metric name
        "x one\n",                  // bad value
        "x 1\nx 2\n",               // duplicate series
        "x 1\ny 1\nx{a=\"b\"} 1\n", // family not contiguous
        "# HELP x a\\tb\n",         // bad HELP escape
        "# TYPE x counter\nx -1\n", // negative counter
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ];
    for text in bad {
        assert!(parse_exposition(text).is_err(), "accepted: {text:?}");
    }
    let good = "# HELP x a\\\\b\\nc\n# TYPE x gauge\nx{a=\"\\\"\\\\\\n\"} -1.5e-7\nx NaN\ny +Inf\n";
    parse_exposition(good).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Rendering.
// ---------------------------------------------------------------------------------------------

#[test]
fn counters_render_exactly() {
    let m = Metrics::new();
    let calls = m
        .counter("revka_tool_calls_total", "Tool calls.", &["server", "tool"])
        .unwrap();
    calls.with(&["fs", "read"]).inc_by(3);
    calls.with(&["fs", "list"]).inc();
    calls.with(&["db", "query"]).inc();
    calls.with(&["fs", "read"]).inc();
    m.counter("revka_restarts_total", "Restarts.", &[]).unwrap();
    assert_eq!(
        m.render(),
        "# HELP revka_restarts_total Restarts.\n\
         # TYPE revka_restarts_total counter\n\
         revka_restarts_total 0\n\
         # HELP revka_tool_calls_total Tool calls.\n\
         # TYPE revka_tool_calls_total counter\n\
         revka_tool_calls_total{server=\"db\",tool=\"query\"} 1\n\
         revka_tool_calls_total{server=\"fs\",tool=\"list\"} 1\n\
         revka_tool_calls_total{server=\"fs\",tool=\"read\"} 4\n"
    );
}

#[test]
fn gauges_render_exactly() {
    let m = Metrics::new();
    let g = m.gauge("g", "Float gauge.", &["k"]).unwrap();
    let values = [
        ("a", 1.5),
        ("b", -2.0),
        ("c", 0.0),
        ("d", f64::NAN),
        ("e", f64::INFINITY),
        ("f", f64::NEG_INFINITY),
        ("g", 1e-7),
        ("h", 2.5e20),
        ("i", 0.1 + 0.2),
        ("j", 123456.0),
    ];
    for (k, v) in values {
        g.with(&[k]).set(v);
    }
    g.with(&["a"]).add(1.0);
    let ig = m.int_gauge("ig", "Int gauge.", &[]).unwrap().with(&[]);
    ig.set(-5);
    ig.inc();
    ig.add(10);
    ig.dec();
    assert_eq!(
        m.render(),
        "# HELP g Float gauge.\n# TYPE g gauge\n\
         g{k=\"a\"} 2.5\ng{k=\"b\"} -2\ng{k=\"c\"} 0\ng{k=\"d\"} NaN\ng{k=\"e\"} +Inf\n\
         g{k=\"f\"} -Inf\ng{k=\"g\"} 1e-7\ng{k=\"h\"} 2.5e20\ng{k=\"i\"} 0.30000000000000004\n\
         g{k=\"j\"} 123456\n\
         # HELP ig Int gauge.\n# TYPE ig gauge\nig 5\n"
    );
}

#[test]
fn histograms_render_cumulative_buckets_exactly() {
    let m = Metrics::new();
    let h = m
        .histogram_with_buckets("lat_seconds", "Latency.", &["srv"], &[0.125, 0.5, 1.0])
        .unwrap();
    let b = h.with(&["b"]);
    for v in [0.0625, 0.125, 0.25, 2.0] {
        b.observe(v);
    }
    h.with(&["a"]).observe(0.5);
    b.observe(f64::NAN); // ignored
    assert_eq!((b.count(), b.sum()), (4, 2.4375));
    assert_eq!(
        m.render(),
        "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
         lat_seconds_bucket{srv=\"a\",le=\"0.125\"} 0\n\
         lat_seconds_bucket{srv=\"a\",le=\"0.5\"} 1\n\
         lat_seconds_bucket{srv=\"a\",le=\"1\"} 1\n\
         lat_seconds_bucket{srv=\"a\",le=\"+Inf\"} 1\n\
         lat_seconds_sum{srv=\"a\"} 0.5\n\
         lat_seconds_count{srv=\"a\"} 1\n\
         lat_seconds_bucket{srv=\"b\",le=\"0.125\"} 2\n\
         lat_seconds_bucket{srv=\"b\",le=\"0.5\"} 3\n\
         lat_seconds_bucket{srv=\"b\",le=\"1\"} 3\n\
         lat_seconds_bucket{srv=\"b\",le=\"+Inf\"} 4\n\
         lat_seconds_sum{srv=\"b\"} 2.4375\n\
         lat_seconds_count{srv=\"b\"} 4\n"
    );
}

#[test]
fn default_buckets_render_as_prometheus_writes_them() {
    let m = Metrics::new();
    let h = m.histogram("d", "Default buckets.", &[]).unwrap().with(&[]);
    h.observe(0.003);
    h.observe(1000.0);
    let text = m.render();
    let les: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("d_bucket{le=\""))
        .map(|l| l.split('"').next().unwrap())
        .collect();
    assert_eq!(
        les,
        [
            "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
            "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "300", "600", "+Inf"
        ]
    );
    assert!(text.contains("d_bucket{le=\"0.0025\"} 0\nd_bucket{le=\"0.005\"} 1\n"));
    assert!(
        text.contains(
            "d_bucket{le=\"600\"} 1\nd_bucket{le=\"+Inf\"} 2\nd_sum 1000.003\nd_count 2\n"
        )
    );
}

#[test]
fn floats_are_formatted_for_prometheus() {
    let cases = [
        (0.0, "0"),
        (-0.0, "-0"),
        (1.0, "1"),
        (0.0001, "0.0001"),
        (0.00005, "5e-5"),
        (1e15, "1e15"),
        (999999999999999.0, "999999999999999"),
        (-3.25, "-3.25"),
        (f64::MAX, "1.7976931348623157e308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
    ];
    for (v, s) in cases {
        assert_eq!(text::float(v), s);
        assert_eq!(s.parse::<f64>().unwrap(), v);
    }
}

#[test]
fn help_and_label_values_are_escaped() {
    let m = Metrics::new();
    let c = m
        .counter("esc_total", "a \\ b\nsecond \"line\"", &["v"])
        .unwrap();
    c.with(&["quote \" backslash \\ newline \n end"]).inc();
    c.with(&["tab\tand ünïcödé"]).inc();
    assert_eq!(
        m.render(),
        "# HELP esc_total a \\\\ b\\nsecond \"line\"\n# TYPE esc_total counter\n\
         esc_total{v=\"quote \\\" backslash \\\\ newline \\n end\"} 1\n\
         esc_total{v=\"tab\tand ünïcödé\"} 1\n"
    );
    let samples = parse_exposition(&m.render()).unwrap();
    assert_eq!(
        samples[0].labels[0].1,
        "quote \" backslash \\ newline \n end"
    );
}

#[test]
fn output_is_deterministic_whatever_the_registration_order() {
    let build = |names: &[&str], keys: &[&str]| {
        let m = Metrics::new();
        for name in names {
            let f = m.counter(name, "h", &["k"]).unwrap();
            for k in keys {
                f.with(&[k]).inc();
            }
        }
        m.render()
    };
    let a = build(
        &["zeta_total", "alpha_total", "mid_total"],
        &["b", "a", "c", "aa"],
    );
    let b = build(
        &["mid_total", "zeta_total", "alpha_total"],
        &["c", "aa", "b", "a"],
    );
    assert_eq!(a, b);
    let order: Vec<&str> = a.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        &order[..4],
        [
            "alpha_total{k=\"a\"} 1",
            "alpha_total{k=\"aa\"} 1",
            "alpha_total{k=\"b\"} 1",
            "alpha_total{k=\"c\"} 1"
        ]
    );
    assert!(a.find("# HELP alpha_total").unwrap() < a.find("# HELP mid_total").unwrap());
    assert!(a.find("# HELP mid_total").unwrap() < a.find("# HELP zeta_total").unwrap());
}

#[test]
fn an_empty_registry_and_an_empty_family_render_validly() {
    let m = Metrics::new();
    assert_eq!(m.render(), "");
    m.counter("c_total", "No series yet.", &["k"]).unwrap();
    assert_eq!(
        m.render(),
        "# HELP c_total No series yet.\n# TYPE c_total counter\n"
    );
    parse_exposition(&m.render()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Handles, callbacks, timers.
// ---------------------------------------------------------------------------------------------

#[test]
fn handles_share_their_series() {
    let m = Metrics::new();
    let f = m.counter("c_total", "h", &["k"]).unwrap();
    let (a, b) = (f.with(&["x"]), f.with(&["x"]));
    a.inc();
    b.inc_by(2);
    assert_eq!(f.with(&["x"]).get(), 3);
    assert_eq!(f.series_count(), 1);
    assert_eq!(
        (f.name(), f.help(), f.label_names()),
        ("c_total", "h", &["k".to_owned()][..])
    );
}

#[test]
fn callback_gauges_are_evaluated_at_scrape_time() {
    let m = Metrics::new();
    let depth = Arc::new(AtomicU64::new(3));
    let d = Arc::clone(&depth);
    m.register_gauge_fn(
        "revka_children",
        "Children by state.",
        &["server", "state"],
        Box::new(move || {
            vec![
                (vec!["fs".into(), "running".into()], 1.0),
                (
                    vec!["db".into(), "backing_off".into()],
                    d.load(Ordering::Relaxed) as f64,
                ),
                (vec!["wrong arity".into()], 9.0),
                (vec!["fs".into(), "running".into()], 7.0), // duplicate: the first row is kept
            ]
        }),
    )
    .unwrap();
    m.register_gauge_fn(
        "a_panics",
        "Broken.",
        &[],
        Box::new(|| panic!("broken callback")),
    )
    .unwrap();
    let expected = |d: u64| {
        format!(
            "# HELP a_panics Broken.\n# TYPE a_panics gauge\n\
             # HELP revka_children Children by state.\n# TYPE revka_children gauge\n\
             revka_children{{server=\"db\",state=\"backing_off\"}} {d}\n\
             revka_children{{server=\"fs\",state=\"running\"}} 1\n"
        )
    };
    assert_eq!(m.render(), expected(3));
    depth.store(5, Ordering::Relaxed);
    assert_eq!(m.render(), expected(5));
    parse_exposition(&m.render()).unwrap();
}

#[test]
fn timers_observe_on_drop_unless_discarded() {
    let m = Metrics::new();
    let h = m.histogram("t_seconds", "Timed.", &[]).unwrap().with(&[]);
    {
        let _timer = h.start_timer();
    }
    assert_eq!(h.count(), 1);
    h.start_timer().discard();
    assert_eq!(h.count(), 1);
    let timer = h.start_timer();
    thread::sleep(std::time::Duration::from_millis(2));
    let elapsed = timer.observe();
    assert_eq!(h.count(), 2);
    assert!(h.sum() >= elapsed.as_secs_f64() && elapsed.as_secs_f64() >= 0.002);
}

// ---------------------------------------------------------------------------------------------
// Concurrency and the series bound.
// ---------------------------------------------------------------------------------------------

const THREADS: usize = 8;
const PER_THREAD: u64 = 50_000;

#[test]
fn concurrent_updates_are_exact() {
    let m = Metrics::new();
    let calls = m.counter("calls_total", "h", &["tool"]).unwrap();
    let held = calls.with(&["held"]);
    let inflight = m.int_gauge("inflight", "h", &[]).unwrap().with(&[]);
    let level = m.gauge("level", "h", &[]).unwrap().with(&[]);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (calls, held, inflight, level) = (&calls, &held, &inflight, &level);
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    held.inc();
                    calls
                        .with(&[if (i + t as u64).is_multiple_of(2) {
                            "even"
                        } else {
                            "odd"
                        }])
                        .inc();
                    inflight.inc();
                    level.add(0.5);
                    inflight.dec();
                }
            });
        }
    });
    let total = THREADS as u64 * PER_THREAD;
    assert_eq!(held.get(), total);
    assert_eq!(
        calls.with(&["even"]).get() + calls.with(&["odd"]).get(),
        total
    );
    assert_eq!(inflight.get(), 0);
    assert_eq!(level.get(), total as f64 * 0.5);
}

#[test]
fn concurrent_histogram_observations_keep_an_exact_sum_and_count() {
    let m = Metrics::new();
    let h = m
        .histogram_with_buckets("h", "h", &[], &[1.0])
        .unwrap()
        .with(&[]);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for i in 0..PER_THREAD {
                    h.observe(if i % 2 == 0 { 0.25 } else { 1.5 });
                }
            });
        }
    });
    let total = THREADS as u64 * PER_THREAD;
    assert_eq!(h.count(), total);
    assert_eq!(h.sum(), (total / 2) as f64 * 1.75);
    let text = m.render();
    assert!(
        text.contains(&format!("h_bucket{{le=\"1\"}} {}\n", total / 2)),
        "{text}"
    );
    assert!(
        text.contains(&format!("h_bucket{{le=\"+Inf\"}} {total}\n")),
        "{text}"
    );
}

#[test]
fn series_beyond_the_limit_go_to_the_overflow_series() {
    let m = Metrics::with_series_limit(3);
    let f = m.counter("tools_total", "h", &["server", "tool"]).unwrap();
    for tool in ["a", "b", "c", "d", "e"] {
        f.with(&["s", tool]).inc();
    }
    f.with(&["s", "a"]).inc(); // existing series still work
    f.with(&["too few"]).inc(); // wrong arity: overflow
    assert_eq!(f.series_count(), 3);
    assert_eq!(
        m.render(),
        "# HELP tools_total h\n# TYPE tools_total counter\n\
         tools_total{server=\"__overflow__\",tool=\"__overflow__\"} 3\n\
         tools_total{server=\"s\",tool=\"a\"} 2\n\
         tools_total{server=\"s\",tool=\"b\"} 1\n\
         tools_total{server=\"s\",tool=\"c\"} 1\n"
    );
    // Removing a series frees its place; the overflow series cannot be removed.
    assert!(f.remove(&["s", "b"]));
    assert!(!f.remove(&["s", "b"]));
    assert!(!f.remove(&[OVERFLOW_LABEL_VALUE, OVERFLOW_LABEL_VALUE]));
    f.with(&["s", "f"]).inc();
    f.with(&["s", "g"]).inc();
    assert_eq!(f.series_count(), 3);
    let text = m.render();
    assert!(
        text.contains("tool=\"f\"} 1\n") && !text.contains("tool=\"g\""),
        "{text}"
    );
    assert!(text.contains("tool=\"__overflow__\"} 4\n"), "{text}");
}

#[test]
fn the_bound_holds_under_concurrent_inserts() {
    let m = Metrics::with_series_limit(100);
    let f = m.counter("c_total", "h", &["k"]).unwrap();
    thread::scope(|s| {
        for t in 0..THREADS {
            let f = &f;
            s.spawn(move || {
                for i in 0..1_000 {
                    f.with(&[&format!("{t}-{i}")]).inc();
                }
            });
        }
    });
    assert_eq!(f.series_count(), 100);
    let samples = parse_exposition(&m.render()).unwrap();
    assert_eq!(samples.len(), 101);
    assert_eq!(
        samples.iter().map(|s| s.value).sum::<f64>(),
        (THREADS * 1_000) as f64
    );
}

// ---------------------------------------------------------------------------------------------
// The whole registry parses as valid exposition.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_registry_with_every_kind_of_metric_is_valid_exposition() {
    let m = Metrics::with_series_limit(4);
    let calls = m
        .counter(
            "revka_tool_calls_total",
            "Tool calls\nby server \\ tool.",
            &["server", "tool"],
        )
        .unwrap();
    for (i, tool) in ["read", "write \"x\"", "a\\b", "multi\nline", "over", "flow"]
        .iter()
        .enumerate()
    {
        calls.with(&["fs", tool]).inc_by(i as u64);
    }
    m.counter("revka_restarts_total", "Restarts.", &[])
        .unwrap()
        .with(&[])
        .inc();
    let g = m.gauge("revka_ratio", "Ratios.", &["k"]).unwrap();
    for (k, v) in [
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("ninf", f64::NEG_INFINITY),
        ("tiny", 1e-300),
    ] {
        g.with(&[k]).set(v);
    }
    m.int_gauge("revka_inflight", "In flight.", &["server"])
        .unwrap()
        .with(&["fs"])
        .set(-3);
    let lat = m
        .histogram("revka_tool_call_duration_seconds", "Latency.", &["server"])
        .unwrap();
    for (i, v) in [0.00001, 0.0003, 0.02, 0.7, 45.0, 1e6].iter().enumerate() {
        lat.with(&[if i % 2 == 0 { "fs" } else { "db" }])
            .observe(*v);
    }
    lat.with(&[]).observe(1.0); // wrong arity: overflow series
    m.histogram("revka_empty_seconds", "No series.", &["x"])
        .unwrap();
    m.register_gauge_fn(
        "revka_child_state",
        "Child state.",
        &["child", "state"],
        Box::new(|| {
            vec![
                (vec!["mcp:fs".into(), "running".into()], 1.0),
                (vec!["mcp:\"db\"".into(), "failed".into()], 0.0),
            ]
        }),
    )
    .unwrap();

    let text = m.render();
    let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let count = |name: &str| samples.iter().filter(|s| s.name == name).count();
    assert_eq!(
        count("revka_tool_calls_total"),
        5,
        "4 series and the overflow one"
    );
    assert_eq!(count("revka_tool_call_duration_seconds_bucket"), 3 * 22);
    assert_eq!(count("revka_child_state"), 2);
    let multi = samples
        .iter()
        .find(|s| s.labels.iter().any(|(_, v)| v == "multi\nline"))
        .unwrap();
    assert_eq!(multi.value, 3.0);
}

proptest! {
    #[test]
    fn any_label_values_and_help_render_validly_and_round_trip(
        values in prop::collection::vec(any::<String>(), 1..6),
        help in any::<String>(),
        x in any::<f64>(),
    ) {
        let m = Metrics::new();
        let g = m.gauge("g", &format!("h{help}"), &["v"]).unwrap();
        for v in &values {
            g.with(&[v]).set(x);
        }
        let text = m.render();
        let samples = parse_exposition(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let mut got: Vec<String> = samples.iter().map(|s| s.labels[0].1.clone()).collect();
        let mut want = values.clone();
        want.sort();
        want.dedup();
        got.sort();
        prop_assert_eq!(got, want);
        for s in &samples {
            prop_assert!(s.value == x || (s.value.is_nan() && x.is_nan()));
        }
    }
}
