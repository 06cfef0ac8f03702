//! A metric family: the series of one metric, one per combination of label values, bounded.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::OVERFLOW_LABEL_VALUE;

/// The series of one metric, keyed by label values: a [`Counter`](super::Counter),
/// [`Gauge`](super::Gauge), [`IntGauge`](super::IntGauge) or [`Histogram`](super::Histogram)
/// family. Cloning is cheap (an `Arc`).
pub struct Family<S> {
    inner: Arc<Inner<S>>,
}

type MakeSeries<S> = Box<dyn Fn() -> S + Send + Sync>;

struct Inner<S> {
    name: String,
    help: String,
    label_names: Box<[String]>,
    limit: usize,
    /// FxHash, not SipHash: every tool call looks up two series, and label values come from
    /// the config and the configured servers' tool names, not from callers; the series limit
    /// bounds the map whatever the values.
    series: DashMap<Key, S, rustc_hash::FxBuildHasher>,
    /// Series in `series`, the overflow one excepted.
    len: AtomicUsize,
    make: MakeSeries<S>,
    overflow: OnceLock<S>,
    warned_limit: AtomicBool,
    warned_arity: AtomicBool,
}

impl<S> Clone for Family<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> std::fmt::Debug for Family<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.inner.name)
            .field("label_names", &self.inner.label_names)
            .field("series", &self.inner.len.load(Relaxed))
            .finish()
    }
}

impl<S: Clone> Family<S> {
    pub(super) fn new(
        name: &str,
        help: &str,
        label_names: Box<[String]>,
        limit: usize,
        make: MakeSeries<S>,
    ) -> Self {
        let family = Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                help: help.to_owned(),
                label_names,
                limit,
                series: DashMap::with_hasher(rustc_hash::FxBuildHasher),
                len: AtomicUsize::new(0),
                make,
                overflow: OnceLock::new(),
                warned_limit: AtomicBool::new(false),
                warned_arity: AtomicBool::new(false),
            }),
        };
        if family.inner.label_names.is_empty() {
            // A family without labels has exactly one series, rendered from the start.
            family.with(&[]);
        }
        family
    }

    /// The series for these label values (in the order of the family's label names), created
    /// on first use. Keep the handle on hot paths: a lookup of an existing series does not
    /// allocate, but does hash the values.
    ///
    /// Past the family's series limit, new combinations get the overflow series (every label
    /// value [`OVERFLOW_LABEL_VALUE`]), and a warning is logged once. So does a wrong number of
    /// values.
    pub fn with(&self, values: &[&str]) -> S {
        let inner = &*self.inner;
        if values.len() != inner.label_names.len() {
            if !inner.warned_arity.swap(true, Relaxed) {
                tracing::warn!(metric = %inner.name, expected = inner.label_names.len(), got = values.len(),
                    "wrong number of label values; counted in the overflow series");
            }
            return self.overflow();
        }
        if let Some(series) = inner.series.get(&Query(values) as &dyn LabelValues) {
            return series.value().clone();
        }
        if is_overflow(values) {
            return self.overflow();
        }
        let key = Key(values.iter().map(|&v| v.to_owned()).collect());
        // The entry (a shard lock) is dropped before `overflow` touches the map again.
        let created = match inner.series.entry(key) {
            Entry::Occupied(e) => Some(e.get().clone()),
            Entry::Vacant(e) => {
                // Reserve a place first, so racing inserts cannot overshoot the limit.
                if inner.len.fetch_add(1, Relaxed) < inner.limit {
                    Some(e.insert((inner.make)()).value().clone())
                } else {
                    inner.len.fetch_sub(1, Relaxed);
                    None
                }
            }
        };
        created.unwrap_or_else(|| {
            if !inner.warned_limit.swap(true, Relaxed) {
                tracing::warn!(metric = %inner.name, limit = inner.limit,
                    "metric reached its series limit; new label values are counted in the overflow series");
            }
            self.overflow()
        })
    }

    /// Removes the series for these label values, freeing its place under the limit; handles
    /// still held keep working but are no longer rendered. The overflow series (and the single
    /// series of a family without labels) cannot be removed. Returns whether a series was removed.
    pub fn remove(&self, values: &[&str]) -> bool {
        let inner = &*self.inner;
        if values.len() != inner.label_names.len() || is_overflow(values) {
            return false;
        }
        let removed = inner
            .series
            .remove(&Query(values) as &dyn LabelValues)
            .is_some();
        if removed {
            inner.len.fetch_sub(1, Relaxed);
        }
        removed
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The help text.
    pub fn help(&self) -> &str {
        &self.inner.help
    }

    /// The label names, in order.
    pub fn label_names(&self) -> &[String] {
        &self.inner.label_names
    }

    /// The number of series, the overflow series excepted.
    pub fn series_count(&self) -> usize {
        self.inner.len.load(Relaxed)
    }

    /// Every series with its label values (in the order of the family's label names), sorted
    /// by label values; the overflow series, if it exists, has every value
    /// [`OVERFLOW_LABEL_VALUE`]. A read for code that aggregates the family itself (the
    /// daemon's per-server stats): the handles are the live series, read them at once.
    pub fn series(&self) -> Vec<(Box<[String]>, S)> {
        self.snapshot()
    }

    /// Every series with its label values, sorted by label values.
    pub(super) fn snapshot(&self) -> Vec<(Box<[String]>, S)> {
        let map = &self.inner.series;
        let mut all: Vec<_> = map
            .iter()
            .map(|e| (e.key().0.clone(), e.value().clone()))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn overflow(&self) -> S {
        let inner = &*self.inner;
        let series = inner.overflow.get_or_init(|| {
            let key = Key(vec![OVERFLOW_LABEL_VALUE.to_owned(); inner.label_names.len()].into());
            inner
                .series
                .entry(key)
                .or_insert_with(|| (inner.make)())
                .value()
                .clone()
        });
        series.clone()
    }
}

fn is_overflow(values: &[&str]) -> bool {
    values.iter().all(|&v| v == OVERFLOW_LABEL_VALUE)
}

/// Label values as stored: owned.
#[derive(PartialEq, Eq)]
struct Key(Box<[String]>);

/// Label values as looked up: borrowed, so that finding an existing series does not allocate.
struct Query<'a>(&'a [&'a str]);

/// A view of label values shared by [`Key`] and [`Query`], so a `DashMap<Key, _>` can be
/// searched with a `Query` (through `Borrow<dyn LabelValues>`). Hashing and equality go through
/// this view for both, which keeps them consistent.
trait LabelValues {
    fn len(&self) -> usize;
    fn get(&self, i: usize) -> &str;
}

impl LabelValues for Key {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl LabelValues for Query<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> &str {
        self.0[i]
    }
}

impl Hash for dyn LabelValues + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for i in 0..self.len() {
            self.get(i).hash(state);
        }
    }
}

impl PartialEq for dyn LabelValues + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.get(i) == other.get(i))
    }
}

impl Eq for dyn LabelValues + '_ {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn LabelValues).hash(state);
    }
}

impl<'a> Borrow<dyn LabelValues + 'a> for Key {
    fn borrow(&self) -> &(dyn LabelValues + 'a) {
        self
    }
}
