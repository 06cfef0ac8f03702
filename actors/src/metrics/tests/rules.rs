//! The rules the registry enforces: names, labels and buckets are checked at registration, a
//! family's `# TYPE` matches what it is, counters and only counters end in `_total`, states are
//! one-hot, and callback families are bounded like handle families.

use super::super::*;
use crate::ActorState;
use crate::breaker::BreakerState;

/// The `# TYPE` of every family in `text`, by name.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

#[test]
fn every_kind_of_family_has_its_type_line_and_passes_the_lint() {
    let m = Metrics::new();
    m.counter("a_calls_total", "Calls.", &[])
        .unwrap()
        .with(&[])
        .inc();
    m.register_counter_fn(
        "b_cpu_seconds_total",
        "CPU.",
        &[],
        Box::new(|| vec![(vec![], 1.25)]),
    )
    .unwrap();
    m.gauge("c_ratio", "Ratio.", &[]).unwrap();
    m.int_gauge("d_inflight", "In flight.", &[]).unwrap();
    m.histogram("e_duration_seconds", "Latency.", &[]).unwrap();
    m.register_gauge_fn("f_depth", "Depth.", &[], Box::new(|| vec![(vec![], 3.0)]))
        .unwrap();
    let text = m.render();
    let want: BTreeMap<String, String> = [
        ("a_calls_total", "counter"),
        ("b_cpu_seconds_total", "counter"),
        ("c_ratio", "gauge"),
        ("d_inflight", "gauge"),
        ("e_duration_seconds", "histogram"),
        ("f_depth", "gauge"),
    ]
    .into_iter()
    .map(|(n, k)| (n.to_owned(), k.to_owned()))
    .collect();
    assert_eq!(types(&text), want, "{text}");
    assert!(text.contains("\nb_cpu_seconds_total 1.25\n"), "{text}");
    lint_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
}

#[test]
fn the_lint_rejects_dishonest_families() {
    let bad = [
        // A monotonic count typed gauge (what `revka_session_events_total` used to be).
        "# HELP x_total Events.\n# TYPE x_total gauge\nx_total 1\n",
        // A counter without `_total` (what `revka_actor_restarts` would have been).
        "# HELP restarts Restarts.\n# TYPE restarts counter\nrestarts 1\n",
        "# TYPE x gauge\nx 1\n",
        "# HELP x \n# TYPE x gauge\nx 1\n",
        "# HELP x Untyped.\nx 1\n",
    ];
    for text in bad {
        assert!(lint_exposition(text).is_err(), "accepted: {text:?}");
        parse_exposition(text).unwrap();
    }
    lint_exposition("# HELP x_total Events.\n# TYPE x_total counter\nx_total 1\n").unwrap();
}

#[test]
fn callback_counters_leave_out_negative_and_nan_rows() {
    let m = Metrics::new();
    m.register_counter_fn(
        "opens_total",
        "Opens.",
        &["breaker"],
        Box::new(|| {
            vec![
                (vec!["a".into()], 2.0),
                (vec!["b".into()], -1.0),
                (vec!["c".into()], f64::NAN),
                (vec!["d".into()], 0.0),
            ]
        }),
    )
    .unwrap();
    assert_eq!(
        m.render(),
        "# HELP opens_total Opens.\n# TYPE opens_total counter\n\
         opens_total{breaker=\"a\"} 2\nopens_total{breaker=\"d\"} 0\n"
    );
}

#[test]
fn one_hot_states_sum_to_one_for_each_subject() {
    let m = Metrics::new();
    let current = Arc::new(std::sync::Mutex::new(vec![
        ("root/a", ActorState::Running),
        ("root/b", ActorState::BackingOff),
        ("root/c", ActorState::Failed),
    ]));
    let actors = Arc::clone(&current);
    m.register_gauge_fn(
        "actor_state",
        "State.",
        &["path", "state"],
        Box::new(move || {
            let mut rows = Vec::new();
            for &(path, state) in actors.lock().unwrap().iter() {
                one_hot(
                    &mut rows,
                    &[path],
                    &ActorState::ALL,
                    state,
                    ActorState::as_str,
                );
            }
            rows
        }),
    )
    .unwrap();
    m.register_gauge_fn(
        "breaker_state",
        "State.",
        &["breaker", "state"],
        Box::new(|| {
            let mut rows = Vec::new();
            one_hot(
                &mut rows,
                &["sm"],
                &BreakerState::ALL,
                BreakerState::HalfOpen,
                BreakerState::as_str,
            );
            rows
        }),
    )
    .unwrap();
    let check = |expected: &[(&str, &str)]| {
        let text = m.render();
        let samples = lint_exposition(&text).unwrap();
        for &(path, state) in expected {
            let of: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.name == "actor_state" && s.label("path") == Some(path))
                .collect();
            assert_eq!(
                of.len(),
                ActorState::ALL.len(),
                "{path}: every state:\n{text}"
            );
            assert_eq!(of.iter().map(|s| s.value).sum::<f64>(), 1.0, "{text}");
            let on: Vec<_> = of.iter().filter(|s| s.value == 1.0).collect();
            assert_eq!(on[0].label("state"), Some(state), "{text}");
            assert!(
                of.iter().all(|s| s.value == 0.0 || s.value == 1.0),
                "{text}"
            );
        }
        let breaker: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == "breaker_state")
            .collect();
        assert_eq!(breaker.len(), 3, "{text}");
        assert_eq!(breaker.iter().map(|s| s.value).sum::<f64>(), 1.0, "{text}");
        assert!(
            text.contains("breaker_state{breaker=\"sm\",state=\"half_open\"} 1\n"),
            "{text}"
        );
    };
    check(&[
        ("root/a", "running"),
        ("root/b", "backing_off"),
        ("root/c", "failed"),
    ]);
    current.lock().unwrap()[1].1 = ActorState::Running;
    current.lock().unwrap()[2].1 = ActorState::Starting;
    check(&[
        ("root/a", "running"),
        ("root/b", "running"),
        ("root/c", "starting"),
    ]);
}

#[test]
fn callback_families_past_the_series_limit_sum_into_the_overflow_series() {
    let m = Metrics::with_series_limit(3);
    m.register_counter_fn(
        "events_total",
        "Events.",
        &["kind"],
        Box::new(|| {
            ["e", "b", "d", "a", "c"]
                .iter()
                .enumerate()
                .map(|(i, k)| (vec![(*k).to_owned()], (i + 1) as f64))
                .collect()
        }),
    )
    .unwrap();
    // A callback that writes the overflow series itself: the rest is added to it.
    m.register_gauge_fn(
        "depth",
        "Depth.",
        &["queue", "state"],
        Box::new(|| {
            vec![
                (vec!["q".into(), "x".into()], 1.0),
                (vec!["q".into(), "y".into()], 2.0),
                (vec!["q".into(), "z".into()], 4.0),
                (
                    vec![OVERFLOW_LABEL_VALUE.into(), OVERFLOW_LABEL_VALUE.into()],
                    8.0,
                ),
            ]
        }),
    )
    .unwrap();
    let text = m.render();
    assert_eq!(
        text,
        "# HELP depth Depth.\n# TYPE depth gauge\n\
         depth{queue=\"__overflow__\",state=\"__overflow__\"} 12\n\
         depth{queue=\"q\",state=\"x\"} 1\n\
         depth{queue=\"q\",state=\"y\"} 2\n\
         # HELP events_total Events.\n# TYPE events_total counter\n\
         events_total{kind=\"__overflow__\"} 4\n\
         events_total{kind=\"a\"} 4\n\
         events_total{kind=\"b\"} 2\n\
         events_total{kind=\"c\"} 5\n",
        "the three smallest label sets stay; d (3) and e (1) are summed"
    );
    lint_exposition(&text).unwrap();
    assert_eq!(m.render(), text, "deterministic");
}

#[test]
fn invalid_registrations_are_errors() {
    let m = Metrics::new();
    m.histogram("h", "h", &[]).unwrap();
    m.gauge("c", "h", &[]).unwrap();
    let cases: Vec<(Result<(), MetricsError>, MetricsError)> = vec![
        (
            m.counter("", "h", &[]).map(drop),
            MetricsError::InvalidMetricName("".into()),
        ),
        (
            m.counter("1abc", "h", &[]).map(drop),
            MetricsError::InvalidMetricName("1abc".into()),
        ),
        (
            m.gauge("a-b", "h", &[]).map(drop),
            MetricsError::InvalidMetricName("a-b".into()),
        ),
        (
            m.gauge("ünï", "h", &[]).map(drop),
            MetricsError::InvalidMetricName("ünï".into()),
        ),
        (
            m.counter("ok_total", "h", &["a:b"]).map(drop),
            MetricsError::InvalidLabelName {
                metric: "ok_total".into(),
                label: "a:b".into(),
            },
        ),
        (
            m.counter("ok_total", "h", &["__name__"]).map(drop),
            MetricsError::InvalidLabelName {
                metric: "ok_total".into(),
                label: "__name__".into(),
            },
        ),
        (
            m.gauge("ok", "h", &["9"]).map(drop),
            MetricsError::InvalidLabelName {
                metric: "ok".into(),
                label: "9".into(),
            },
        ),
        (
            m.gauge("ok", "h", &["a", "b", "a"]).map(drop),
            MetricsError::DuplicateLabelName {
                metric: "ok".into(),
                label: "a".into(),
            },
        ),
        (
            m.counter("calls", "h", &[]).map(drop),
            MetricsError::TotalSuffix {
                name: "calls".into(),
                kind: "counter",
            },
        ),
        (
            m.register_counter_fn("cpu_seconds", "h", &[], Box::new(Vec::new)),
            MetricsError::TotalSuffix {
                name: "cpu_seconds".into(),
                kind: "counter",
            },
        ),
        (
            m.gauge("events_total", "h", &[]).map(drop),
            MetricsError::TotalSuffix {
                name: "events_total".into(),
                kind: "gauge",
            },
        ),
        (
            m.register_gauge_fn("opens_total", "h", &[], Box::new(Vec::new)),
            MetricsError::TotalSuffix {
                name: "opens_total".into(),
                kind: "gauge",
            },
        ),
        (
            m.histogram("latency_total", "h", &[]).map(drop),
            MetricsError::TotalSuffix {
                name: "latency_total".into(),
                kind: "histogram",
            },
        ),
        (
            m.gauge("undocumented", " \n", &[]).map(drop),
            MetricsError::EmptyHelp("undocumented".into()),
        ),
        (
            m.histogram("hh", "h", &["le"]).map(drop),
            MetricsError::ReservedLabelName {
                metric: "hh".into(),
                label: "le".into(),
            },
        ),
        (
            m.gauge("c", "h", &[]).map(drop),
            MetricsError::AlreadyRegistered {
                name: "c".into(),
                existing: "c".into(),
            },
        ),
        (
            m.register_gauge_fn("h", "h", &[], Box::new(Vec::new)),
            MetricsError::AlreadyRegistered {
                name: "h".into(),
                existing: "h".into(),
            },
        ),
        (
            m.gauge("h_count", "h", &[]).map(drop),
            MetricsError::AlreadyRegistered {
                name: "h_count".into(),
                existing: "h".into(),
            },
        ),
        (
            m.gauge("c_bucket", "h", &[])
                .and_then(|_| m.histogram("c", "h", &[]))
                .map(drop),
            MetricsError::AlreadyRegistered {
                name: "c".into(),
                existing: "c".into(),
            },
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, Err(want));
    }
    m.gauge("x_sum", "h", &[]).unwrap();
    assert_eq!(
        m.histogram("x", "h", &[]).unwrap_err(),
        MetricsError::AlreadyRegistered {
            name: "x".into(),
            existing: "x_sum".into()
        }
    );
    for bad in [
        &[1.0, 1.0][..],
        &[2.0, 1.0],
        &[f64::NAN],
        &[0.5, f64::INFINITY, 1.0],
        &[f64::NEG_INFINITY],
    ] {
        assert!(
            matches!(
                m.histogram_with_buckets("b", "h", &[], bad),
                Err(MetricsError::InvalidBuckets { .. })
            ),
            "{bad:?}"
        );
    }
    // A trailing +Inf is accepted (and implied anyway); valid names with colons are fine.
    m.histogram_with_buckets("b", "h", &[], &[1.0, f64::INFINITY])
        .unwrap();
    m.counter("ns:sub_total", "h", &["_private", "Cap9"])
        .unwrap();
    parse_exposition(&m.render()).unwrap();
    assert!(
        MetricsError::InvalidMetricName("1".into())
            .to_string()
            .contains("invalid metric name")
    );
}
