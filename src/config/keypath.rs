//! Key paths (`mcp.servers[0].env.TOKEN`) and source positions for config diagnostics.
//!
//! Part of the config layer: every error and warning names the key it is about. A [`KeyPath`]
//! is built from the paths `serde_path_to_error` and `serde_ignored` report, or by the
//! validator, and is looked up in the spanned TOML document to find a `line:column`.

use std::fmt;

use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A dotted key path, displayed TOML-style: `mcp.servers[2].env.GITHUB_TOKEN`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    /// A path of plain keys.
    pub(crate) fn keys(keys: &[&str]) -> Self {
        Self(keys.iter().map(|k| Seg::Key((*k).to_owned())).collect())
    }

    /// This path with one more key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    /// This path with one more index.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }

    /// The path `serde_path_to_error` recorded.
    pub(crate) fn from_tracked(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        Self(
            path.iter()
                .map(|s| match s {
                    Segment::Seq { index } => Seg::Index(*index),
                    Segment::Map { key } => Seg::Key(key.clone()),
                    Segment::Enum { variant } => Seg::Key(variant.clone()),
                    Segment::Unknown => Seg::Key("?".to_owned()),
                })
                .collect(),
        )
    }

    /// The path `serde_ignored` reported for an ignored key.
    pub(crate) fn from_ignored(path: &serde_ignored::Path<'_>) -> Self {
        use serde_ignored::Path;
        match path {
            Path::Root => Self::default(),
            Path::Seq { parent, index } => Self::from_ignored(parent).index(*index),
            Path::Map { parent, key } => Self::from_ignored(parent).key(key),
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => Self::from_ignored(parent),
        }
    }

    /// This path under `prefix`.
    pub(crate) fn under(&self, prefix: &KeyPath) -> Self {
        let mut p = prefix.clone();
        p.0.extend(self.0.iter().cloned());
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The byte span of the deepest existing value along `path` in a parsed TOML document, and
/// whether the whole path exists.
pub(crate) fn locate(doc: &DeTable<'_>, path: &KeyPath) -> Option<(std::ops::Range<usize>, bool)> {
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    let mut found = None;
    for seg in &path.0 {
        let next = match (seg, value.map(|v| v.get_ref())) {
            (Seg::Key(k), None) => doc.get(k.as_str()),
            (Seg::Key(k), Some(DeValue::Table(t))) => t.get(k.as_str()),
            (Seg::Index(i), Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else {
            return found.map(|span| (span, false));
        };
        found = Some(next.span());
        value = Some(next);
    }
    found.map(|span| (span, true))
}

/// Whether `path` exists in the document.
pub(crate) fn exists(doc: &DeTable<'_>, path: &KeyPath) -> bool {
    matches!(locate(doc, path), Some((_, true)))
}

/// 1-based `(line, column)` of byte `offset` in `text`; the column counts characters.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
