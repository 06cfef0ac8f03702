//! The daemon's metrics: a small Prometheus registry, read by the gateway's `GET /metrics`.
//!
//! [`Metrics`] is shared through an `Arc`. Families are registered once, by name, help text and
//! label names, as counters, gauges (`f64` or `i64`), histograms, or callback counters and
//! gauges evaluated at scrape time (for values that already live somewhere else: an atomic, the
//! status tree). Registration never panics: bad names, duplicate labels, bad buckets and name
//! clashes are a [`MetricsError`].
//!
//! The registry keeps the exposition honest by construction, as `promtool check metrics` wants
//! it: a counter's name ends in `_total` and nothing else's does, and every family has help
//! text. A state is exported one-hot ([`one_hot`]): one series per possible state, 1 for the
//! current one and 0 for the others, never as a number that encodes the state.
//!
//! [`Family::with`] returns a cheap handle (an `Arc`) on one series; hot paths keep handles, and
//! `inc` / `observe` on a handle are a few relaxed atomic operations with no allocation and no
//! lock. Each family holds at most a bounded number of series ([`DEFAULT_SERIES_LIMIT`]): past
//! it, new label combinations share one series whose label values are all
//! [`OVERFLOW_LABEL_VALUE`], so a client cannot grow memory by inventing tool names. Callback
//! families obey the same bound at each scrape: past it, the rows that sort last are summed
//! into the overflow series (a warning is logged once). The bound is a safety net: label values
//! must come from bounded sets (configured names, states), never from ids minted per client.
//!
//! [`Metrics::render`] writes the Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]):
//! families sorted by name, series sorted by label values, so the output is deterministic.
//! [`validate_exposition`] checks such text and [`lint_exposition`] also its naming rules (tests
//! use them on the daemon's real output; the daemon-level test also runs `promtool`).

mod family;
mod series;
#[cfg(test)]
mod tests;
mod text;
mod validate;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError, RwLock};

pub use family::Family;
pub use series::{Counter, DEFAULT_BUCKETS, Gauge, Histogram, IntGauge, Timer};
pub use validate::{Sample, lint_exposition, parse_exposition, validate_exposition};

use text::Value;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How many series a family holds by default before new label combinations overflow.
pub const DEFAULT_SERIES_LIMIT: usize = 10_000;

/// The label value of every label of a family's overflow series.
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";

/// One series of a callback family: its label values (in the order of the family's label
/// names) and its value.
pub type Row = (Vec<String>, f64);

/// A callback family's producer: evaluated at each scrape, it returns one [`Row`] per series.
pub type SeriesFn = Box<dyn Fn() -> Vec<Row> + Send + Sync>;

/// The producer of a callback gauge ([`Metrics::register_gauge_fn`]).
pub type GaugeFn = SeriesFn;

/// The producer of a callback counter ([`Metrics::register_counter_fn`]): each row's value must
/// never decrease between scrapes (it may restart from zero when its series is recreated).
pub type CounterFn = SeriesFn;

/// Appends the rows of a one-hot state family to `rows`: one row per state of `states`, with
/// label values `labels` followed by the state's name, valued 1 for `current` and 0 for every
/// other state. So each actor's rows sum to 1, and `sum by (state)` counts actors per state.
pub fn one_hot<S: Copy + PartialEq>(
    rows: &mut Vec<Row>,
    labels: &[&str],
    states: &[S],
    current: S,
    name: impl Fn(S) -> &'static str,
) {
    for &state in states {
        let mut values: Vec<String> = labels.iter().map(|&l| l.to_owned()).collect();
        values.push(name(state).to_owned());
        rows.push((values, if state == current { 1.0 } else { 0.0 }));
    }
}

const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// Why a family could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name `{0}`: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName(String),
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`, or starts with the reserved `__`.
    #[error(
        "metric `{metric}`: invalid label name `{label}`: must match [a-zA-Z_][a-zA-Z0-9_]* and not start with `__`"
    )]
    InvalidLabelName {
        /// The metric being registered.
        metric: String,
        /// The offending label name.
        label: String,
    },
    /// A label name is reserved for this metric type (`le` on histograms).
    #[error("metric `{metric}`: label name `{label}` is reserved for this metric type")]
    ReservedLabelName {
        /// The metric being registered.
        metric: String,
        /// The offending label name.
        label: String,
    },
    /// The same label name appears twice.
    #[error("metric `{metric}`: duplicate label name `{label}`")]
    DuplicateLabelName {
        /// The metric being registered.
        metric: String,
        /// The repeated label name.
        label: String,
    },
    /// The name is taken, or would clash with a histogram's `_bucket`, `_sum` or `_count` lines.
    #[error("metric `{name}` clashes with the registered metric `{existing}`")]
    AlreadyRegistered {
        /// The metric being registered.
        name: String,
        /// The registered metric it clashes with.
        existing: String,
    },
    /// A counter's name must end in `_total`, and only a counter's may.
    #[error(
        "metric `{name}`: a counter's name must end in `_total`, and only a counter's may ({kind} given)"
    )]
    TotalSuffix {
        /// The metric being registered.
        name: String,
        /// The type it was registered as.
        kind: &'static str,
    },
    /// Every family needs help text (Prometheus tooling flags families without).
    #[error("metric `{0}`: empty help text")]
    EmptyHelp(String),
    /// Histogram bucket bounds must be finite and strictly increasing (a final `+Inf` is implied).
    #[error("histogram `{metric}`: {reason}")]
    InvalidBuckets {
        /// The metric being registered.
        metric: String,
        /// What is wrong with the bounds.
        reason: &'static str,
    },
}

/// The registry: every metric family of the daemon. Share it through an `Arc`.
pub struct Metrics {
    families: RwLock<BTreeMap<String, Registered>>,
    series_limit: usize,
}

#[derive(Clone)]
enum Registered {
    Counter(Family<Counter>),
    Gauge(Family<Gauge>),
    IntGauge(Family<IntGauge>),
    Histogram(Family<Histogram>),
    Callback(Arc<Callback>),
}

/// The type of a family, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

struct Callback {
    kind: Kind,
    help: String,
    label_names: Box<[String]>,
    f: SeriesFn,
    /// Set once a panic or a bad row (wrong arity, a negative counter) was logged.
    warned: AtomicBool,
    /// Set once reaching the series limit was logged.
    warned_limit: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let families = self.families.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Metrics")
            .field("families", &families.keys().collect::<Vec<_>>())
            .field("series_limit", &self.series_limit)
            .finish()
    }
}

impl Metrics {
    /// An empty registry with [`DEFAULT_SERIES_LIMIT`] series per family.
    pub fn new() -> Self {
        Self::with_series_limit(DEFAULT_SERIES_LIMIT)
    }

    /// An empty registry whose families hold at most `limit` series each (plus the overflow one).
    pub fn with_series_limit(limit: usize) -> Self {
        Self {
            families: RwLock::new(BTreeMap::new()),
            series_limit: limit,
        }
    }

    /// Registers a counter family.
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Family<Counter>, MetricsError> {
        self.register_family(
            name,
            help,
            label_names,
            Kind::Counter,
            Counter::default,
            Registered::Counter,
        )
    }

    /// Registers a gauge family holding `f64` values.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Family<Gauge>, MetricsError> {
        self.register_family(
            name,
            help,
            label_names,
            Kind::Gauge,
            Gauge::default,
            Registered::Gauge,
        )
    }

    /// Registers a gauge family holding `i64` values (cheaper `inc` / `dec` than [`Gauge`]).
    pub fn int_gauge(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Family<IntGauge>, MetricsError> {
        self.register_family(
            name,
            help,
            label_names,
            Kind::Gauge,
            IntGauge::default,
            Registered::IntGauge,
        )
    }

    /// Registers a histogram family with the [`DEFAULT_BUCKETS`] (latencies in seconds).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<Family<Histogram>, MetricsError> {
        self.histogram_with_buckets(name, help, label_names, DEFAULT_BUCKETS)
    }

    /// Registers a histogram family with the given upper bounds: finite and strictly
    /// increasing; a trailing `+Inf` may be given and is always implied.
    pub fn histogram_with_buckets(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        buckets: &[f64],
    ) -> Result<Family<Histogram>, MetricsError> {
        let buckets = buckets.strip_suffix(&[f64::INFINITY]).unwrap_or(buckets);
        let invalid = |reason| MetricsError::InvalidBuckets {
            metric: name.to_owned(),
            reason,
        };
        if buckets.iter().any(|b| !b.is_finite()) {
            return Err(invalid("bucket bounds must be finite (+Inf is implied)"));
        }
        if buckets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid("bucket bounds must be strictly increasing"));
        }
        let bounds: Arc<[f64]> = buckets.into();
        let make = move || Histogram::new(Arc::clone(&bounds));
        self.register_family(
            name,
            help,
            label_names,
            Kind::Histogram,
            make,
            Registered::Histogram,
        )
    }

    /// Registers a gauge family whose series are produced by `f` at each scrape (e.g. actor
    /// states from the status tree, a queue depth). Rows whose label count does not match
    /// `label_names` are skipped, duplicate label sets keep their first row, rows past the
    /// series limit are summed into the overflow series, and a panicking callback yields no
    /// series for that scrape (each logged once per family).
    pub fn register_gauge_fn(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        f: GaugeFn,
    ) -> Result<(), MetricsError> {
        self.register_callback(name, help, label_names, Kind::Gauge, f)
    }

    /// Registers a counter family whose series are produced by `f` at each scrape, for counts
    /// kept elsewhere (an atomic, a breaker's totals, CPU time). The name must end in `_total`.
    /// Rows are handled as by [`Metrics::register_gauge_fn`]; rows with a negative or `NaN`
    /// value are skipped (and logged once).
    pub fn register_counter_fn(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        f: CounterFn,
    ) -> Result<(), MetricsError> {
        self.register_callback(name, help, label_names, Kind::Counter, f)
    }

    fn register_callback(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        kind: Kind,
        f: SeriesFn,
    ) -> Result<(), MetricsError> {
        self.register(name, help, label_names, kind, |label_names| {
            let cb = Callback {
                kind,
                help: help.to_owned(),
                label_names,
                f,
                warned: AtomicBool::new(false),
                warned_limit: AtomicBool::new(false),
            };
            ((), Registered::Callback(Arc::new(cb)))
        })
    }

    /// Renders every family in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        // Snapshot the family list so callbacks run without the registry lock held.
        let families: Vec<(String, Registered)> = {
            let map = self.families.read().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut out = String::new();
        for (name, family) in &families {
            match family {
                Registered::Counter(f) => {
                    text::render_simple(&mut out, name, "counter", f, |c| Value::Unsigned(c.get()))
                }
                Registered::Gauge(f) => {
                    text::render_simple(&mut out, name, "gauge", f, |g| Value::Float(g.get()))
                }
                Registered::IntGauge(f) => {
                    text::render_simple(&mut out, name, "gauge", f, |g| Value::Signed(g.get()))
                }
                Registered::Histogram(f) => text::render_histogram(&mut out, name, f),
                Registered::Callback(cb) => {
                    text::render_callback(&mut out, name, cb, self.series_limit)
                }
            }
        }
        out
    }

    fn register_family<S: Clone + Send + Sync + 'static>(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        kind: Kind,
        make: impl Fn() -> S + Send + Sync + 'static,
        wrap: fn(Family<S>) -> Registered,
    ) -> Result<Family<S>, MetricsError> {
        self.register(name, help, label_names, kind, |labels| {
            let family = Family::new(name, help, labels, self.series_limit, Box::new(make));
            (family.clone(), wrap(family))
        })
    }

    fn register<T>(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        kind: Kind,
        build: impl FnOnce(Box<[String]>) -> (T, Registered),
    ) -> Result<T, MetricsError> {
        validate_metric_name(name)?;
        if name.ends_with("_total") != (kind == Kind::Counter) {
            return Err(MetricsError::TotalSuffix {
                name: name.to_owned(),
                kind: kind.as_str(),
            });
        }
        if help.trim().is_empty() {
            return Err(MetricsError::EmptyHelp(name.to_owned()));
        }
        let histogram = kind == Kind::Histogram;
        let labels = validate_label_names(name, label_names, histogram)?;
        let mut families = self
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = clash(&families, name, histogram) {
            return Err(MetricsError::AlreadyRegistered {
                name: name.to_owned(),
                existing,
            });
        }
        let (handle, entry) = build(labels);
        families.insert(name.to_owned(), entry);
        Ok(handle)
    }
}

/// The registered name `name` would clash with, if any: itself, or a histogram's line names.
fn clash(families: &BTreeMap<String, Registered>, name: &str, histogram: bool) -> Option<String> {
    if families.contains_key(name) {
        return Some(name.to_owned());
    }
    for suffix in HISTOGRAM_SUFFIXES {
        let line_name = format!("{name}{suffix}");
        if histogram && families.contains_key(&line_name) {
            return Some(line_name);
        }
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(families.get(base), Some(Registered::Histogram(_)))
        {
            return Some(base.to_owned());
        }
    }
    None
}

fn validate_metric_name(name: &str) -> Result<(), MetricsError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(MetricsError::InvalidMetricName(name.to_owned()))
    }
}

fn validate_label_names(
    metric: &str,
    label_names: &[&str],
    histogram: bool,
) -> Result<Box<[String]>, MetricsError> {
    for (i, &label) in label_names.iter().enumerate() {
        let names = || (metric.to_owned(), label.to_owned());
        let mut chars = label.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok
            || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            || label.starts_with("__")
        {
            let (metric, label) = names();
            return Err(MetricsError::InvalidLabelName { metric, label });
        }
        if histogram && label == "le" {
            let (metric, label) = names();
            return Err(MetricsError::ReservedLabelName { metric, label });
        }
        if label_names[..i].contains(&label) {
            let (metric, label) = names();
            return Err(MetricsError::DuplicateLabelName { metric, label });
        }
    }
    Ok(label_names.iter().map(|&l| l.to_owned()).collect())
}
