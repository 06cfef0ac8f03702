//! Writing the Prometheus text exposition format 0.0.4: families, sample lines, escaping, numbers.

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

use super::{Callback, Family, Histogram, Kind, OVERFLOW_LABEL_VALUE, Row};

/// A sample value, formatted so Prometheus parses it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
pub(super) fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Writes one sample line: `name{label="value",...,le="bound"} value`.
pub(super) fn sample(
    out: &mut String,
    name: &str,
    label_names: &[String],
    values: &[String],
    le: Option<&str>,
    value: Value,
) {
    out.push_str(name);
    let pairs = label_names
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str));
    let mut pairs = pairs.chain(le.map(|le| ("le", le))).peekable();
    if pairs.peek().is_some() {
        out.push('{');
        for (i, (label, value)) in pairs.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    match value {
        Value::Unsigned(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Signed(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Float(v) => write_float(out, v),
    }
    out.push('\n');
}

pub(super) fn render_simple<S: Clone>(
    out: &mut String,
    name: &str,
    kind: &str,
    family: &Family<S>,
    value: impl Fn(&S) -> Value,
) {
    header(out, name, family.help(), kind);
    for (values, series) in family.snapshot() {
        sample(
            out,
            name,
            family.label_names(),
            &values,
            None,
            value(&series),
        );
    }
}

pub(super) fn render_histogram(out: &mut String, name: &str, family: &Family<Histogram>) {
    header(out, name, family.help(), "histogram");
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    let labels = family.label_names();
    let mut les: Option<Vec<String>> = None;
    for (values, series) in family.snapshot() {
        let les = les.get_or_insert_with(|| {
            let mut les: Vec<String> = series.bounds().iter().map(|&b| float(b)).collect();
            les.push("+Inf".to_owned());
            les
        });
        let (counts, total) = series.snapshot();
        let mut cumulative = 0;
        for (n, le) in counts.iter().zip(les.iter()) {
            cumulative += n;
            let le = Some(le.as_str());
            sample(
                out,
                &bucket,
                labels,
                &values,
                le,
                Value::Unsigned(cumulative),
            );
        }
        sample(out, &sum, labels, &values, None, Value::Float(total));
        sample(
            out,
            &count,
            labels,
            &values,
            None,
            Value::Unsigned(cumulative),
        );
    }
}

pub(super) fn render_callback(out: &mut String, name: &str, cb: &Callback, limit: usize) {
    header(out, name, &cb.help, cb.kind.as_str());
    let warn_once = |what: &str| {
        if !cb.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(metric = name, "callback {} {what}", cb.kind.as_str());
        }
    };
    let rows = match std::panic::catch_unwind(AssertUnwindSafe(|| (cb.f)())) {
        Ok(rows) => rows,
        Err(_) => {
            warn_once("panicked; its series are left out");
            return;
        }
    };
    let arity = cb.label_names.len();
    let counter = cb.kind == Kind::Counter;
    let before = rows.len();
    let mut rows: Vec<Row> = rows
        .into_iter()
        .filter(|(v, x)| v.len() == arity && !(counter && (x.is_nan() || *x < 0.0)))
        .collect();
    if rows.len() != before {
        warn_once(
            "returned rows with the wrong number of labels or a negative count; they are left out",
        );
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.dedup_by(|later, first| later.0 == first.0);
    if rows.len() > limit {
        // Past the limit, as for a handle family: the rows that sort last share the overflow
        // series (the overflow row itself included, if the callback wrote one).
        let overflow: f64 = rows.drain(limit..).map(|(_, v)| v).sum();
        if let Some(i) = rows
            .iter()
            .position(|(v, _)| v.iter().all(|v| v == OVERFLOW_LABEL_VALUE))
        {
            rows[i].1 += overflow;
        } else {
            let labels = vec![OVERFLOW_LABEL_VALUE.to_owned(); arity];
            let i = rows.partition_point(|(v, _)| *v < labels);
            rows.insert(i, (labels, overflow));
        }
        if !cb.warned_limit.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                metric = name,
                limit,
                "callback metric reached its series limit; the rest are summed into the overflow series"
            );
        }
    }
    for (values, v) in rows {
        sample(out, name, &cb.label_names, &values, None, Value::Float(v));
    }
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Formats a float as Prometheus (Go's `ParseFloat`) reads it: `+Inf`, `-Inf`, `NaN`, integral
/// values without a fraction (`1`, not `1.0`), others in Rust's shortest round-trip form,
/// switching to exponent notation outside `[1e-4, 1e15)` (`1e-7`, `2.5e20`).
pub(super) fn float(v: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, v);
    out
}

fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}
