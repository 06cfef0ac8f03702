//! Exposed tool names: how an external MCP tool is named in Revka's tool registry.
//!
//! Every tool of every connected server is exposed as `<server>__<tool>` (the server name from
//! config, two underscores, the tool's own name), so tools of different servers never clash.
//! The model calls tools by these names, and provider APIs restrict tool names to
//! `[A-Za-z0-9_-]{1,64}`, so [`exposed_name`] sanitises and bounds them. [`ToolNames`] builds the
//! names for a whole registry and reports the collisions sanitisation can cause (`a.b` and `a_b`
//! both become `a_b`) instead of letting one tool silently replace another.
//! [`resolve_bare`] lets the model call an activated tool by its bare suffix when that suffix is
//! unique.
//!
//! This is pure logic: the connection actor feeds it the server names from config and the tool
//! names from `tools/list`; the daemon's `tool_search` (in the `revka` crate) resolves `select:`
//! names with [`resolve_bare`].

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

/// The longest exposed name, in characters (all exposed names are ASCII).
pub const MAX_NAME_LEN: usize = 64;

/// The longest valid server name, in characters.
pub const MAX_SERVER_NAME_LEN: usize = 64;

/// What separates the server name from the tool name in an exposed name.
pub const SEPARATOR: &str = "__";

/// Hex digits of the hash suffix a too-long exposed name ends with.
const HASH_LEN: usize = 8;

/// The exposed name of `tool` on `server`: `<server>__<tool>`, sanitised and bounded.
///
/// Every character outside `[A-Za-z0-9_-]` (including every non-ASCII character, counted once
/// however many bytes it has) becomes `_`. If the result is longer than [`MAX_NAME_LEN`], it is
/// cut to 55 characters and `_` plus 8 lowercase hex digits are appended, for exactly 64: the
/// digits are the two 32-bit halves, XORed, of the 64-bit FNV-1a hash of the UTF-8 bytes of the
/// original, unsanitised `<server>__<tool>`. The result depends on nothing but the two names, so
/// it is the same on every run and platform.
///
/// Distinct pairs can still map to the same name; [`ToolNames`] detects that.
pub fn exposed_name(server: &str, tool: &str) -> String {
    let sanitised: String = server
        .chars()
        .chain(SEPARATOR.chars())
        .chain(tool.chars())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if sanitised.len() <= MAX_NAME_LEN {
        return sanitised;
    }
    let hash = fnv1a64(&[server.as_bytes(), SEPARATOR.as_bytes(), tool.as_bytes()]);
    let folded = ((hash >> 32) ^ (hash & 0xffff_ffff)) as u32;
    let keep = MAX_NAME_LEN - HASH_LEN - 1;
    // Sanitised names are ASCII, so byte 55 is a character boundary.
    format!("{}_{folded:08x}", &sanitised[..keep])
}

/// The 64-bit FNV-1a hash of the concatenation of `parts`.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    parts
        .iter()
        .flat_map(|part| part.iter())
        .fold(OFFSET, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

/// Why a configured server name is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("MCP server name must not be empty")]
    Empty,
    /// The name is longer than [`MAX_SERVER_NAME_LEN`] characters.
    #[error("MCP server name {name:?} is {len} characters long; the limit is 64")]
    TooLong {
        /// The name.
        name: String,
        /// Its length in characters.
        len: usize,
    },
    /// The name contains a character outside `[A-Za-z0-9_.-]`.
    #[error(
        "MCP server name {name:?} contains {found:?} at character {index}; \
         only ASCII letters, digits, '_', '-' and '.' are allowed"
    )]
    InvalidChar {
        /// The name.
        name: String,
        /// The first offending character.
        found: char,
        /// Its index, in characters.
        index: usize,
    },
    /// The name contains `__`, or `.` next to `_` or `.` (which becomes `__` once `.` is mapped to
    /// `_`): the exposed name would no longer split at its first `__`.
    #[error(
        "MCP server name {name:?} must not contain \"__\" (nor \"._\", \"_.\" or \"..\", since \
         '.' becomes '_'): \"__\" separates the server from the tool in exposed names"
    )]
    DoubleUnderscore {
        /// The name.
        name: String,
    },
    /// The name ends with `_` or `.`, which would run into the `__` separator.
    #[error("MCP server name {name:?} must not end with '_' or '.'")]
    TrailingUnderscore {
        /// The name.
        name: String,
    },
}

/// Checks a server name from config: non-empty, at most [`MAX_SERVER_NAME_LEN`] characters of
/// `[A-Za-z0-9_.-]`, no `__` (counting `.` as `_`, as sanitisation maps it), and not ending in
/// `_` or `.`. A valid name keeps the server part of every exposed name free of `__`, so an
/// exposed name (short enough not to be hashed) splits back at its first `__`.
pub fn validate_server_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some((index, found)) = name
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(NameError::InvalidChar {
            name: name.to_owned(),
            found,
            index,
        });
    }
    // Every character is ASCII from here on.
    if name.len() > MAX_SERVER_NAME_LEN {
        return Err(NameError::TooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    let underscore = |b: u8| b == b'_' || b == b'.';
    if name
        .as_bytes()
        .windows(2)
        .any(|w| underscore(w[0]) && underscore(w[1]))
    {
        return Err(NameError::DoubleUnderscore {
            name: name.to_owned(),
        });
    }
    if name.ends_with(['_', '.']) {
        return Err(NameError::TrailingUnderscore {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Two different `(server, tool)` pairs that map to the same exposed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The exposed name both map to.
    pub exposed: String,
    /// The pair that keeps the name: the first in `(server, tool)` order.
    pub kept: (String, String),
    /// The pair left without a name.
    pub dropped: (String, String),
}

/// The exposed names of a set of tools, with the collisions among them.
///
/// Built from `(server, tool)` pairs with [`ToolNames::build`]. Pairs are processed in sorted
/// `(server, tool)` order (byte-wise), so the outcome does not depend on the input order: the
/// first pair to claim an exposed name keeps it, and every later pair mapping to the same name
/// is reported in [`collisions`](ToolNames::collisions) and left out. A pair given twice is
/// counted once.
#[derive(Debug, Clone, Default)]
pub struct ToolNames {
    /// Exposed name to the original pair.
    by_exposed: BTreeMap<String, (String, String)>,
    collisions: Vec<Collision>,
}

impl ToolNames {
    /// Builds the exposed names of `pairs` of `(server, tool)`.
    pub fn build<I, S, T>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<String>,
        T: Into<String>,
    {
        let mut originals: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(server, tool)| (server.into(), tool.into()))
            .collect();
        originals.sort_unstable();
        originals.dedup();
        let mut names = ToolNames::default();
        for (server, tool) in originals {
            let exposed = exposed_name(&server, &tool);
            if let Some(kept) = names.by_exposed.get(&exposed) {
                names.collisions.push(Collision {
                    exposed,
                    kept: kept.clone(),
                    dropped: (server, tool),
                });
                continue;
            }
            names.by_exposed.insert(exposed, (server, tool));
        }
        names
    }

    /// The `(server, tool)` pair behind an exposed name.
    pub fn original(&self, exposed: &str) -> Option<(&str, &str)> {
        self.by_exposed
            .get(exposed)
            .map(|(server, tool)| (server.as_str(), tool.as_str()))
    }

    /// The exposed name of a pair; `None` if it was not given or lost a collision.
    pub fn exposed(&self, server: &str, tool: &str) -> Option<&str> {
        match self.by_exposed.get_key_value(&exposed_name(server, tool)) {
            Some((exposed, (s, t))) if s == server && t == tool => Some(exposed),
            _ => None,
        }
    }

    /// Every exposed name with its pair, in exposed-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, (&str, &str))> + '_ {
        self.by_exposed
            .iter()
            .map(|(exposed, (s, t))| (exposed.as_str(), (s.as_str(), t.as_str())))
    }

    /// Every exposed name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_exposed.keys().map(String::as_str)
    }

    /// The collisions, in the order the dropped pairs were met (sorted `(server, tool)` order).
    pub fn collisions(&self) -> &[Collision] {
        &self.collisions
    }

    /// How many tools have a name.
    pub fn len(&self) -> usize {
        self.by_exposed.len()
    }

    /// Whether no tool has a name.
    pub fn is_empty(&self) -> bool {
        self.by_exposed.is_empty()
    }
}

/// How a name the model used resolves against a set of exposed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The name is itself one of the exposed names.
    Exact(String),
    /// The name is the bare suffix of exactly one exposed name, given here.
    Unique(String),
    /// The name is the bare suffix of several exposed names, given here sorted and deduplicated.
    Ambiguous(Vec<String>),
    /// Nothing matches.
    NotFound,
}

/// The bare suffix of an exposed name: everything after its first `__`, if there is one.
///
/// Server names cannot contain `__` ([`validate_server_name`]), so this is the sanitised tool
/// name (for names that were not hashed).
pub fn bare_suffix(exposed: &str) -> Option<&str> {
    // A byte scan: `split_once(SEPARATOR)` builds a two-way searcher on every call, and this
    // runs on every tool call.
    let sep = SEPARATOR.as_bytes();
    let at = exposed
        .as_bytes()
        .windows(sep.len())
        .position(|w| w == sep)?;
    Some(&exposed[at + sep.len()..])
}

/// Resolves `name` against `candidates` (exposed names).
///
/// An exact match wins. Otherwise `name` is taken as a bare tool name and matched against the
/// [`bare_suffix`] of each candidate (the part after its first `__`, not any `__`-suffix: with
/// `a__b__c`, `b__c` matches but `c` does not). One match is [`Resolution::Unique`], several
/// [`Resolution::Ambiguous`]. An empty `name` matches nothing.
pub fn resolve_bare<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Resolution {
    if name.is_empty() {
        return Resolution::NotFound;
    }
    let mut matches = Vec::new();
    for candidate in candidates {
        if candidate == name {
            return Resolution::Exact(candidate.to_owned());
        }
        if bare_suffix(candidate) == Some(name) {
            matches.push(candidate);
        }
    }
    matches.sort_unstable();
    matches.dedup();
    match matches.as_slice() {
        [] => Resolution::NotFound,
        [one] => Resolution::Unique((*one).to_owned()),
        many => Resolution::Ambiguous(many.iter().map(|s| (*s).to_owned()).collect()),
    }
}
