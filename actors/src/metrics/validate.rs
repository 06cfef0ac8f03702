//! A validator of the Prometheus text exposition format 0.0.4, for tests of anything that
//! serves metrics: the registry's own renderer, and the daemon's `GET /metrics` end to end.
//!
//! It accepts a strict subset of the format: everything [`Metrics::render`](super::Metrics::render)
//! may write, and rejects sample timestamps, which Revka never writes. Errors name the line.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One parsed sample line, label values unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (a histogram's lines end in `_bucket`, `_sum` or `_count`).
    pub name: String,
    /// Its labels in order, values unescaped.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(l, _)| l == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Checks that `text` is valid text exposition (see [`parse_exposition`]).
pub fn validate_exposition(text: &str) -> Result<(), String> {
    parse_exposition(text).map(drop)
}

/// [`parse_exposition`], plus the naming rules `promtool check metrics` lints and the registry
/// enforces: every family has a TYPE and a non-empty HELP, a counter's name ends in `_total`
/// and no other family's does. Returns the samples; `Err` names the first offending family.
pub fn lint_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let samples = parse_exposition(text)?;
    let mut helps: HashMap<&str, &str> = HashMap::new();
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        if let Some((name, help)) = line.strip_prefix("# HELP ").and_then(|r| r.split_once(' ')) {
            helps.insert(name, help);
        } else if let Some(name) = line.strip_prefix("# HELP ") {
            helps.insert(name, "");
        } else if let Some((name, kind)) =
            line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' '))
        {
            types.insert(name, kind);
        }
    }
    let typed: HashMap<String, String> = types
        .iter()
        .map(|(n, k)| ((*n).to_owned(), (*k).to_owned()))
        .collect();
    for s in &samples {
        let family = family_of(&s.name, &typed);
        if !types.contains_key(family.as_str()) {
            return Err(format!("{family}: samples without a TYPE line"));
        }
    }
    for (name, kind) in types {
        if helps.get(name).is_none_or(|h| h.trim().is_empty()) {
            return Err(format!("{name}: no help text"));
        }
        if name.ends_with("_total") != (kind == "counter") {
            return Err(format!(
                "{name}: a counter's name must end in `_total`, and only a counter's may ({kind})"
            ));
        }
    }
    Ok(samples)
}

/// Checks `text` line by line (comments, `name{labels} value` with valid names and escapes, one
/// TYPE per family before its samples, families contiguous, no duplicate series, no negative
/// counter) and every histogram (`le` strictly increasing and ending in `+Inf`, cumulative
/// counts monotone, `+Inf` equal to `_count`, `_sum` present). Returns the samples; `Err` names
/// the first offending line.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("output does not end with a newline".into());
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    let mut sampled: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for (n, line) in text.split_terminator('\n').enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        let family = if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            check_metric_name(name).map_err(at)?;
            check_help(help).map_err(at)?;
            if !helps.insert(name.to_owned()) {
                return Err(at("second HELP".into()));
            }
            name.to_owned()
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type".into()))?;
            check_metric_name(name).map_err(at)?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(at("second TYPE".into()));
            }
            if sampled.contains(name) {
                return Err(at("TYPE after samples".into()));
            }
            name.to_owned()
        } else if line.starts_with('#') {
            continue;
        } else {
            let sample = parse_sample(line).map_err(at)?;
            if !seen.insert((sample.name.clone(), sample.labels.clone())) {
                return Err(at("duplicate series".into()));
            }
            let family = family_of(&sample.name, &types);
            match types.get(&family).map(String::as_str) {
                Some("counter") if sample.value.is_nan() || sample.value < 0.0 => {
                    return Err(at("negative counter".into()));
                }
                Some("histogram") if sample.name == family => {
                    return Err(at("bare histogram sample".into()));
                }
                Some("histogram")
                    if sample.name.ends_with("_bucket")
                        != sample.labels.iter().any(|(l, _)| l == "le") =>
                {
                    return Err(at("`le` on a non-bucket line or missing on a bucket".into()));
                }
                _ => {}
            }
            samples.push(sample);
            sampled.insert(family.clone());
            family
        };
        if current.as_deref() != Some(&family) {
            if finished.contains(&family) {
                return Err(at(format!("family {family} is not contiguous")));
            }
            if let Some(prev) = current.replace(family) {
                finished.insert(prev);
            }
        }
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| t == "histogram")
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> Result<(), String> {
    // (family, labels without le) -> (buckets in order, sum, count)
    type Series = (Vec<(f64, f64)>, Option<f64>, Option<f64>);
    let mut series: BTreeMap<(String, Vec<(String, String)>), Series> = BTreeMap::new();
    for s in samples {
        let family = family_of(&s.name, types);
        if types.get(&family).is_none_or(|t| t != "histogram") {
            continue;
        }
        let labels: Vec<_> = s
            .labels
            .iter()
            .filter(|(l, _)| l != "le")
            .cloned()
            .collect();
        let entry = series.entry((family.clone(), labels)).or_default();
        if s.name.ends_with("_bucket") {
            let le = s
                .label("le")
                .ok_or_else(|| format!("{}: bucket without le", s.name))?;
            entry.0.push((parse_value(le)?, s.value));
        } else if s.name.ends_with("_sum") {
            entry.1 = Some(s.value);
        } else {
            entry.2 = Some(s.value);
        }
    }
    for ((family, labels), (buckets, sum, count)) in series {
        let err = |e: &str| Err(format!("histogram {family} {labels:?}: {e}"));
        if buckets.last().is_none_or(|&(le, _)| le != f64::INFINITY) {
            return err("buckets do not end in +Inf");
        }
        if buckets.windows(2).any(|w| w[0].0 >= w[1].0) {
            return err("le not strictly increasing");
        }
        if buckets.windows(2).any(|w| w[0].1 > w[1].1) {
            return err("bucket counts not cumulative");
        }
        if sum.is_none() {
            return err("no _sum");
        }
        if count != buckets.last().map(|&(_, n)| n) {
            return err("+Inf bucket differs from _count");
        }
    }
    Ok(())
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let ok = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if ok && !name.is_empty() {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
    if ok && !name.is_empty() {
        Ok(())
    } else {
        Err(format!("bad label name {name:?}"))
    }
}

fn check_help(help: &str) -> Result<(), String> {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err("bad escape in HELP".into());
        }
    }
    Ok(())
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
            s.parse().map_err(|e| format!("bad value {s:?}: {e}"))
        }
        _ => Err(format!("bad value {s:?}")),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..end];
    check_metric_name(name)?;
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        while !r.starts_with('}') {
            let (label, after) = r.split_once("=\"").ok_or("label without =\"")?;
            check_label_name(label)?;
            if labels.iter().any(|(l, _)| l == label) {
                return Err(format!("label {label} repeated"));
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        _ => return Err("bad escape in label value".into()),
                    },
                    (_, '\n') => return Err("raw newline in label value".into()),
                    (_, c) => value.push(c),
                }
            };
            labels.push((label.to_owned(), value));
            r = &after[close + 1..];
            if let Some(next) = r.strip_prefix(',') {
                r = next;
                if r.starts_with('}') {
                    return Err("trailing comma".into());
                }
            } else if !r.starts_with('}') {
                return Err("expected , or }".into());
            }
        }
        rest = &r[1..];
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.contains(' ') {
        return Err("extra fields after the value".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}
