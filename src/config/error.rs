//! [`ConfigError`]: why a config file was rejected, and where.
//!
//! Part of the config layer. Every variant that concerns file contents carries a [`Location`]
//! (`file:line:column`, or just the file when no position is known) and the key path, so the
//! daemon can print one line that points the operator at the exact spot, then exit 64.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::keypath::{self, KeyPath};

/// Where in which file a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (the TOML config, or an imported JSON servers file).
    pub file: PathBuf,
    /// 1-based `(line, column)`, when known.
    pub line_col: Option<(usize, usize)>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.line_col {
            write!(f, ":{line}:{column}")?;
        }
        Ok(())
    }
}

/// A config file that cannot be used. The daemon must not start with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Not valid TOML (or JSON, for an imported servers file).
    #[error("{location}: {message}")]
    Syntax {
        /// Where the parser stopped.
        location: Location,
        /// What the parser expected.
        message: String,
    },
    /// Valid syntax, but a value has the wrong type or shape, or a required key is missing.
    #[error("{location}: {key}: {message}")]
    Schema {
        /// Where the value is.
        location: Location,
        /// The key path, e.g. `supervisor.max_restarts`.
        key: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A well-typed value that is not acceptable (a bad URL, a duplicate name, a public bind…).
    #[error("{location}: {key}: {message}")]
    Invalid {
        /// Where the value is.
        location: Location,
        /// The key path.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `${VAR}` reference to a variable that is not set.
    #[error("{location}: {key}: environment variable {var} is not set")]
    MissingEnvVar {
        /// Where the reference is.
        location: Location,
        /// The key path of the value holding the reference.
        key: String,
        /// The variable name.
        var: String,
    },
    /// An environment variable that overrides a key has an unusable value.
    #[error("environment variable {var}: {message} (it overrides {key})")]
    EnvOverride {
        /// The variable, e.g. `REVKA_GATEWAY_TIMEOUT_SECS`.
        var: String,
        /// The key it overrides.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

impl ConfigError {
    /// Where the problem is, for the variants that point into a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Syntax { location, .. }
            | Self::Schema { location, .. }
            | Self::Invalid { location, .. }
            | Self::MissingEnvVar { location, .. } => Some(location),
            Self::Read { .. } | Self::EnvOverride { .. } => None,
        }
    }

    /// The key path the problem is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Schema { key, .. }
            | Self::Invalid { key, .. }
            | Self::MissingEnvVar { key, .. }
            | Self::EnvOverride { key, .. } => Some(key),
            Self::Read { .. } | Self::Syntax { .. } => None,
        }
    }
}

/// A file being checked: its path and, for TOML, its text and spanned document, used to turn
/// key paths into `line:column`.
#[derive(Clone, Copy)]
pub(crate) struct Site<'a> {
    /// The file.
    pub(crate) file: &'a Path,
    /// Its text and parsed document (TOML only).
    pub(crate) doc: Option<(&'a str, &'a DeTable<'a>)>,
}

impl Site<'_> {
    /// The location of `path`: the value's position when it exists, else the deepest existing
    /// ancestor's.
    pub(crate) fn locate(&self, path: &KeyPath) -> Location {
        let line_col = self.doc.and_then(|(text, doc)| {
            keypath::locate(doc, path).map(|(span, _)| keypath::line_col(text, span.start))
        });
        Location {
            file: self.file.to_path_buf(),
            line_col,
        }
    }

    /// An [`ConfigError::Invalid`] at `path`.
    pub(crate) fn invalid(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.locate(path),
            key: path.to_string(),
            message: message.into(),
        }
    }
}
