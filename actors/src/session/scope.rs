//! [`ToolScope`]: the tools a session may see and call, when the client token that opened it
//! was issued with `--tools`.
//!
//! Part of the session layer (`root/sessions/session:<id>`): a session created for a scoped
//! client token carries the token's scope ([`super::Session::scope`]) for its whole life, and
//! the daemon's tool registry consults it on every `tools/list`, `tool_search` and
//! `tools/call`. The gateway's token store validates a scope when the token is created and
//! keeps it beside the token's hash.
//!
//! Patterns are those of a server's `allowed_tools`: an exact tool name, or a prefix ending in
//! `*` ([`pattern_matches`]), here matched against the names the client sees:
//! `<server>__<tool>` (`fs__*`, `time__get_current_time`), the built-in tools (`health`), the
//! operator's `revka-operator__<tool>`. Those names only ever hold ASCII letters, digits, `_`
//! and `-`, at most 64 of them, so a pattern with anything else could never match and is
//! refused with the reason instead of silently scoping the client to nothing.

use std::sync::Arc;

use revka_mcp::naming::MAX_NAME_LEN;
use serde::{Deserialize, Serialize};

use crate::mcp::hub::{PatternError, check_pattern, pattern_matches};

/// Patterns in one scope at most.
pub const MAX_SCOPE_PATTERNS: usize = 64;

/// A validated, non-empty list of tool patterns; a tool is in scope when one matches its name.
///
/// Cloning is cheap (the patterns are shared). Serialises as the list of patterns, and
/// deserialising validates them again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct ToolScope {
    /// Deduplicated, in the order given (which is how they are listed back).
    patterns: Arc<[String]>,
}

/// Why a list of patterns is not a [`ToolScope`]. Each message names the offending pattern by
/// its index in the list (`tools[2]`), as `POST /api/tokens` receives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// No pattern: a scope that allows nothing is never what was meant.
    #[error(
        "tools: a tool scope needs at least one pattern (leave it out for a client that may use \
         every tool)"
    )]
    Empty,
    /// More than [`MAX_SCOPE_PATTERNS`] patterns.
    #[error("tools: at most {MAX_SCOPE_PATTERNS} patterns, got {0} (use a prefix like \"fs__*\")")]
    TooMany(usize),
    /// Not a tool name or a prefix ending in `*`.
    #[error("tools[{index}]: {source}")]
    Syntax {
        /// The pattern's position in the list.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: PatternError,
    },
    /// A character no tool name has.
    #[error(
        "tools[{index}]: pattern {pattern:?} can never match: tool names hold only ASCII \
         letters, digits, `_` and `-` (servers' tools are named `<server>__<tool>`, e.g. \
         \"fs__read_file\" or \"fs__*\")"
    )]
    Character {
        /// The pattern's position in the list.
        index: usize,
        /// The pattern.
        pattern: String,
    },
    /// Longer than any tool name.
    #[error(
        "tools[{index}]: pattern {pattern:?} can never match: it is longer than {MAX_NAME_LEN} \
         characters, and no tool name is"
    )]
    TooLong {
        /// The pattern's position in the list.
        index: usize,
        /// The pattern.
        pattern: String,
    },
}

impl ToolScope {
    /// The scope of `patterns`, validated; duplicates are dropped.
    pub fn new<I, S>(patterns: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns: Vec<String> = patterns.into_iter().map(Into::into).collect();
        if patterns.len() > MAX_SCOPE_PATTERNS {
            return Err(ScopeError::TooMany(patterns.len()));
        }
        let mut kept: Vec<String> = Vec::with_capacity(patterns.len());
        for (index, pattern) in patterns.into_iter().enumerate() {
            check_pattern(&pattern).map_err(|source| ScopeError::Syntax { index, source })?;
            let name = pattern.strip_suffix('*').unwrap_or(&pattern);
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ScopeError::Character { index, pattern });
            }
            if name.len() > MAX_NAME_LEN {
                return Err(ScopeError::TooLong { index, pattern });
            }
            if !kept.contains(&pattern) {
                kept.push(pattern);
            }
        }
        if kept.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(Self {
            patterns: kept.into(),
        })
    }

    /// Whether the tool the client sees as `name` is in scope.
    pub fn allows(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| pattern_matches(p, name))
    }

    /// The patterns, in the order given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl TryFrom<Vec<String>> for ToolScope {
    type Error = ScopeError;

    fn try_from(patterns: Vec<String>) -> Result<Self, ScopeError> {
        Self::new(patterns)
    }
}

impl From<ToolScope> for Vec<String> {
    fn from(scope: ToolScope) -> Self {
        scope.patterns.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_names_and_prefixes_like_allowed_tools() {
        let scope = ToolScope::new(["fs__*", "time__get_current_time", "health"]).unwrap();
        for allowed in ["fs__read_file", "fs__", "time__get_current_time", "health"] {
            assert!(scope.allows(allowed), "{allowed}");
        }
        for refused in [
            "fs_read_file",
            "FS__read_file",
            "time__get_current_time2",
            "time__convert_time",
            "healthy",
            "tool_search",
            "revka-operator__list_files",
            "",
        ] {
            assert!(!scope.allows(refused), "{refused}");
        }
        assert!(ToolScope::new(["*"]).unwrap().allows("anything__at_all"));
    }

    #[test]
    fn duplicates_are_dropped_and_the_order_is_kept() {
        let scope = ToolScope::new(["b__*", "a__x", "b__*"]).unwrap();
        assert_eq!(scope.patterns(), ["b__*", "a__x"]);
    }

    #[test]
    fn invalid_scopes_are_refused_with_the_pattern_and_the_reason() {
        let long = "x".repeat(65);
        let cases: Vec<(Vec<&str>, String)> =
            vec![
            (vec![], "tools: a tool scope needs at least one pattern".into()),
            (
                vec!["fs__*", ""],
                "tools[1]: must not be empty (use \"*\" to match every tool)".into(),
            ),
            (
                vec![" fs__*"],
                "tools[0]: invalid pattern \" fs__*\": no leading or trailing spaces".into(),
            ),
            (
                vec!["fs__*_file"],
                "tools[0]: invalid pattern \"fs__*_file\": `*` is only allowed once, at the end"
                    .into(),
            ),
            (vec!["fs__**"], "`*` is only allowed once, at the end".into()),
            (
                vec!["a", "fs.read_file"],
                "tools[1]: pattern \"fs.read_file\" can never match: tool names hold only ASCII \
                 letters, digits, `_` and `-`"
                    .into(),
            ),
            (vec!["fs__lé*"], "tools[0]: pattern \"fs__lé*\" can never match".into()),
            (
                vec![long.as_str()],
                format!("tools[0]: pattern \"{long}\" can never match: it is longer than 64"),
            ),
        ];
        for (patterns, expected) in cases {
            let error = ToolScope::new(patterns.iter().copied()).unwrap_err();
            assert!(
                error.to_string().starts_with(&expected) || error.to_string().contains(&expected),
                "{patterns:?}: {error}"
            );
        }
        // 64 characters and a star is the longest prefix that can match.
        ToolScope::new([format!("{}*", "x".repeat(64))]).unwrap();
        let many: Vec<String> = (0..=MAX_SCOPE_PATTERNS)
            .map(|i| format!("s{i}__*"))
            .collect();
        assert_eq!(
            ToolScope::new(many).unwrap_err(),
            ScopeError::TooMany(MAX_SCOPE_PATTERNS + 1)
        );
    }

    #[test]
    fn serialises_as_its_patterns_and_validates_when_read() {
        let scope = ToolScope::new(["fs__*", "health"]).unwrap();
        let json = serde_json::to_string(&scope).unwrap();
        assert_eq!(json, r#"["fs__*","health"]"#);
        assert_eq!(serde_json::from_str::<ToolScope>(&json).unwrap(), scope);
        let error = serde_json::from_str::<ToolScope>(r#"["a*b"]"#).unwrap_err();
        assert!(
            error.to_string().contains("`*` is only allowed once"),
            "{error}"
        );
        assert!(serde_json::from_str::<ToolScope>("[]").is_err());
    }
}
