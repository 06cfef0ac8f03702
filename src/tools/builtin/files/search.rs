//! `glob_search` and `content_search`: walking the workspace with the ripgrep crates.
//!
//! Part of the file tools ([`super`]). The walk is `ignore`'s (it honours `.gitignore`,
//! `.ignore` and `.git/info/exclude`, even outside a git repository, and skips hidden entries
//! unless asked), starts at a directory checked by the path rules, never follows symlinks,
//! and prunes every forbidden path before descending. `content_search` matches with
//! `grep-regex` and `grep-searcher` (binary files skipped) and opens each file through the
//! path rules, so a file with several hard links or a link swapped in is skipped, never read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkMatch};
use ignore::WalkBuilder;
use serde_json::{Value, json};

use super::{Limits, blocking, path_schema, resolve, shown};
use crate::security::paths::{Access, PathError};
use crate::security::{Effect, Policy, Refusal};
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, ok_text};

/// Entries a walk visits at most before it stops (marked truncated).
const MAX_VISITED: usize = 200_000;
/// Default and largest `max_results` of `glob_search`.
const GLOB_RESULTS: (u64, u64) = (1000, 10_000);
/// Default and largest `max_results` of `content_search`.
const GREP_RESULTS: (u64, u64) = (200, 5000);
/// The most characters of a matching line returned.
const MAX_LINE_CHARS: usize = 500;

/// A walker over `base` that honours ignore files, does not follow links and prunes forbidden
/// paths.
fn walker(policy: &Arc<Policy>, base: &Path, hidden: bool) -> WalkBuilder {
    let mut walk = WalkBuilder::new(base);
    walk.hidden(!hidden)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .ignore(true)
        .parents(true)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b));
    let policy = policy.clone();
    walk.filter_entry(move |entry| !policy.paths.is_forbidden(entry.path()));
    walk
}

/// The search directory (`path`, default the workspace), checked for listing.
fn base_dir(cx: &Cx, a: &Args<'_>) -> Result<PathBuf, BuiltinError> {
    let raw = a.opt_str("path")?.unwrap_or(".");
    let base = resolve(cx, raw, Access::List)?;
    // Opened like any path: a missing directory or a link swapped in fails here.
    cx.policy
        .paths
        .open_dir(&base)
        .map_err(|e| super::path_failed(cx, e))?;
    Ok(base)
}

/// `max_results` within `(default, max)`.
fn max_results(a: &Args<'_>, (default, max): (u64, u64)) -> Result<usize, BuiltinError> {
    let n = a.opt_u64("max_results")?.unwrap_or(default);
    if n == 0 || n > max {
        return Err(BuiltinError::Arguments(format!(
            "`max_results` must be between 1 and {max}, not {n}"
        )));
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// `glob_search`.
pub struct GlobSearch(pub Limits);

impl PolicyTool for GlobSearch {
    fn name(&self) -> &'static str {
        "glob_search"
    }

    fn description(&self) -> String {
        format!(
            "Find files and directories in the workspace whose path (relative to the search \
             directory) matches a glob: `*` and `?` match within one path segment, `**` any \
             number of segments, `{{a,b}}` alternatives, `[ab]` classes; e.g. `**/*.rs`, \
             `src/*.toml`. Honours .gitignore/.ignore files and skips hidden entries unless \
             hidden is true; symlinks are listed, not followed; forbidden paths are never \
             listed. Returns paths relative to the workspace (directories end with `/`), \
             sorted, at most max_results (default {}, at most {}; more is marked truncated), \
             visiting at most {MAX_VISITED} entries. Patterns that are absolute or contain \
             `..` are refused.",
            GLOB_RESULTS.0, GLOB_RESULTS.1
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": { "type": "string", "minLength": 1, "description": "The glob, relative to the search directory (e.g. `**/*.rs`)." },
                "path": path_schema("The directory to search in (default: the workspace)"),
                "max_results": { "type": "integer", "minimum": 1, "maximum": GLOB_RESULTS.1, "default": GLOB_RESULTS.0, "description": "Most paths to return." },
                "hidden": { "type": "boolean", "default": false, "description": "Include hidden files and directories (names starting with `.`)." },
            },
            "required": ["pattern"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::Read
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        blocking(move || glob_search(&cx, &args))
    }
}

/// Refuses a pattern that would leave the search directory.
fn check_pattern(pattern: &str, key: &str) -> Result<(), BuiltinError> {
    if pattern.starts_with('/') || pattern.split('/').any(|seg| seg == "..") {
        return Err(BuiltinError::Refused(Refusal::new(
            "workspace_only",
            format!(
                "the {key} {pattern:?} would leave the search directory: globs are relative to \
                 it and may not be absolute or contain `..` (give `path` to search elsewhere)"
            ),
        )));
    }
    Ok(())
}

fn glob_search(cx: &Cx, args: &Value) -> Result<Value, BuiltinError> {
    let a = Args::new(args)?;
    let pattern = a.str("pattern")?;
    check_pattern(pattern, "pattern")?;
    let max = max_results(&a, GLOB_RESULTS)?;
    let hidden = a.opt_bool("hidden")?.unwrap_or(false);
    let base = base_dir(cx, &a)?;
    let glob = globset::GlobBuilder::new(pattern.trim_start_matches("./"))
        .literal_separator(true)
        .build()
        .map_err(|e| BuiltinError::Arguments(format!("`pattern` is not a valid glob: {e}")))?
        .compile_matcher();
    let mut matches = Vec::new();
    let (mut visited, mut truncated) = (0usize, false);
    for entry in walker(&cx.policy, &base, hidden).build() {
        let Ok(entry) = entry else { continue };
        if entry.depth() == 0 {
            continue;
        }
        visited += 1;
        if visited > MAX_VISITED {
            truncated = true;
            break;
        }
        let Ok(rel) = entry.path().strip_prefix(&base) else {
            continue;
        };
        if !glob.is_match(rel) {
            continue;
        }
        if matches.len() == max {
            truncated = true;
            break;
        }
        let mut name = shown(cx, entry.path());
        if entry.file_type().is_some_and(|t| t.is_dir()) {
            name.push('/');
        }
        matches.push(name);
    }
    let text = if matches.is_empty() {
        format!("No paths match {pattern:?} in `{}`.", shown(cx, &base))
    } else {
        let mut t = matches.join("\n");
        if truncated {
            t.push_str(&format!("\n[truncated at {} paths]", matches.len()));
        }
        t
    };
    Ok(ok_text(
        text,
        json!({
            "pattern": pattern,
            "path": shown(cx, &base),
            "matches": matches,
            "count": matches.len(),
            "truncated": truncated,
        }),
    ))
}

/// `content_search`.
pub struct ContentSearch(pub Limits);

impl PolicyTool for ContentSearch {
    fn name(&self) -> &'static str {
        "content_search"
    }

    fn description(&self) -> String {
        format!(
            "Search the contents of the workspace's files for a regular expression (Rust regex \
             syntax, as ripgrep), line by line. Honours .gitignore/.ignore files and skips \
             hidden entries unless hidden is true; binary files, symlinks, files with several \
             hard links, files over {} bytes and forbidden paths are skipped. Optional glob \
             filter(s) on file paths (e.g. `*.rs`, `!target/**`), case-insensitive and \
             fixed-string modes. Returns matches as path (relative to the workspace), line \
             number and line text (cut at {MAX_LINE_CHARS} characters), at most max_results \
             (default {}, at most {}) and {} bytes of text; more is marked truncated.",
            self.0.file, GREP_RESULTS.0, GREP_RESULTS.1, self.0.output
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": { "type": "string", "minLength": 1, "description": "The regular expression (or the literal text with fixed_strings)." },
                "path": path_schema("The directory (or file) to search (default: the workspace)"),
                "glob": {
                    "oneOf": [
                        { "type": "string" },
                        { "type": "array", "items": { "type": "string" } },
                    ],
                    "description": "Only files matching these globs (gitignore syntax; a leading `!` excludes).",
                },
                "case_insensitive": { "type": "boolean", "default": false, "description": "Match case-insensitively." },
                "fixed_strings": { "type": "boolean", "default": false, "description": "Take the pattern as literal text, not a regex." },
                "max_results": { "type": "integer", "minimum": 1, "maximum": GREP_RESULTS.1, "default": GREP_RESULTS.0, "description": "Most matching lines to return." },
                "hidden": { "type": "boolean", "default": false, "description": "Include hidden files and directories." },
            },
            "required": ["pattern"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::Read
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let limits = self.0;
        blocking(move || content_search(&cx, &args, limits))
    }
}

/// Collects one file's matching lines.
struct Collect<'a> {
    path: &'a str,
    found: Vec<Value>,
    room: usize,
    bytes: usize,
    byte_room: usize,
    binary: bool,
    full: bool,
}

impl Sink for Collect<'_> {
    type Error = std::io::Error;

    fn matched(&mut self, _s: &Searcher, m: &SinkMatch<'_>) -> Result<bool, Self::Error> {
        let raw = String::from_utf8_lossy(m.bytes());
        let line = raw.trim_end_matches(['\n', '\r']);
        let mut text: String = line.chars().take(MAX_LINE_CHARS).collect();
        if text.len() < line.len() {
            text.push('…');
        }
        let cost = self.path.len() + text.len() + 16;
        if self.found.len() >= self.room || self.bytes + cost > self.byte_room {
            self.full = true;
            return Ok(false);
        }
        self.bytes += cost;
        self.found.push(json!({
            "path": self.path,
            "line": m.line_number(),
            "text": text,
        }));
        Ok(true)
    }

    fn binary_data(&mut self, _s: &Searcher, _offset: u64) -> Result<bool, Self::Error> {
        self.binary = true;
        Ok(false)
    }
}

fn content_search(cx: &Cx, args: &Value, limits: Limits) -> Result<Value, BuiltinError> {
    let a = Args::new(args)?;
    let pattern = a.str("pattern")?;
    let globs = a.opt_strings("glob")?.unwrap_or_default();
    for g in &globs {
        check_pattern(g.trim_start_matches('!'), "glob")?;
    }
    let case_insensitive = a.opt_bool("case_insensitive")?.unwrap_or(false);
    let fixed = a.opt_bool("fixed_strings")?.unwrap_or(false);
    let hidden = a.opt_bool("hidden")?.unwrap_or(false);
    let max = max_results(&a, GREP_RESULTS)?;
    let raw_base = a.opt_str("path")?.unwrap_or(".");
    let base = resolve(cx, raw_base, Access::List)?;
    let matcher = grep_regex::RegexMatcherBuilder::new()
        .case_insensitive(case_insensitive)
        .fixed_strings(fixed)
        .line_terminator(Some(b'\n'))
        .size_limit(16 * 1024 * 1024)
        .build(pattern)
        .map_err(|e| BuiltinError::Arguments(format!("`pattern` is not a valid regex: {e}")))?;
    let mut searcher = SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(0))
        .line_number(true)
        .build();
    let mut walk = walker(&cx.policy, &base, hidden);
    if !globs.is_empty() {
        let mut overrides = ignore::overrides::OverrideBuilder::new(&base);
        for g in &globs {
            overrides
                .add(g)
                .map_err(|e| BuiltinError::Arguments(format!("`glob` {g:?} is not valid: {e}")))?;
        }
        walk.overrides(
            overrides
                .build()
                .map_err(|e| BuiltinError::Arguments(format!("`glob` is not valid: {e}")))?,
        );
    }
    let mut matches: Vec<Value> = Vec::new();
    let mut bytes = 0usize;
    let (mut visited, mut searched, mut truncated) = (0usize, 0usize, false);
    let (mut binary, mut links, mut unreadable, mut large) = (0usize, 0usize, 0usize, 0usize);
    for entry in walk.build() {
        let Ok(entry) = entry else {
            unreadable += 1;
            continue;
        };
        visited += 1;
        if visited > MAX_VISITED {
            truncated = true;
            break;
        }
        let Some(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            links += 1;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let path = entry.path();
        if cx
            .policy
            .paths
            .check(cx.workspace(), path, Access::Read, &path.to_string_lossy())
            .is_err()
        {
            continue;
        }
        let file = match cx.policy.paths.open_read(path) {
            Ok(f) => f,
            Err(PathError::Refused(_)) => {
                links += 1;
                continue;
            }
            Err(PathError::Io { .. }) => {
                unreadable += 1;
                continue;
            }
        };
        if file.metadata().map(|m| m.len()).unwrap_or(0) > limits.file {
            large += 1;
            continue;
        }
        searched += 1;
        let shown_path = shown(cx, path);
        let mut sink = Collect {
            path: &shown_path,
            found: Vec::new(),
            room: max - matches.len(),
            bytes,
            byte_room: limits.output,
            binary: false,
            full: false,
        };
        if searcher.search_file(&matcher, &file, &mut sink).is_err() {
            unreadable += 1;
            continue;
        }
        if sink.binary {
            binary += 1;
            continue;
        }
        bytes = sink.bytes;
        let full = sink.full;
        matches.extend(sink.found);
        if full {
            truncated = true;
            break;
        }
    }
    let mut text = matches
        .iter()
        .map(|m| {
            format!(
                "{}:{}:{}",
                m["path"].as_str().unwrap_or_default(),
                m["line"],
                m["text"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    if matches.is_empty() {
        text = format!(
            "No matches for {pattern:?} in `{}` ({searched} files searched).",
            shown(cx, &base)
        );
    } else if truncated {
        text.push_str(&format!("\n[truncated at {} matches]", matches.len()));
    }
    Ok(ok_text(
        text,
        json!({
            "pattern": pattern,
            "path": shown(cx, &base),
            "count": matches.len(),
            "matches": matches,
            "files_searched": searched,
            "truncated": truncated,
            "skipped": {
                "binary": binary,
                "links": links,
                "unreadable": unreadable,
                "too_large": large,
            },
        }),
    ))
}
