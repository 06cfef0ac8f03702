//! `tool_search`: how the model activates deferred MCP tools.
//!
//! With deferred loading, external tools' schemas are left out of the system prompt; the model
//! sees only their names and calls the built-in `tool_search` tool to fetch full definitions.
//! Every tool it returns is activated for the rest of the conversation. This module is the pure
//! part of that tool: [`parse_args`] reads its arguments, [`search`] picks tools from those it
//! is given, and [`SearchOutcome::text`] / [`render`] produce the answer. The built-in tool
//! (`ToolSearch`, the parent module) calls these over the calling session's tools and activates
//! [`SearchOutcome::activated`] in that session. It is pure logic over `revka_mcp`'s names and
//! schemas, so the `wrapper_coerce` fuzz target compiles this file in as it is.
//!
//! # Queries
//!
//! - **`select:a,b,c`** (prefix case-insensitive): exactly those tools, in the order given,
//!   each name trimmed, empty items ignored, duplicates dropped. A name is resolved with
//!   [`resolve_bare`]: an exposed name, or the bare tool name of exactly one visible tool.
//!   Unresolved names are listed on a `Not found: x, y` line (an ambiguous bare name as
//!   `x (ambiguous: a__x, b__x)`). `max_results` does not apply.
//! - **Keywords**: the query is split on whitespace into distinct lowercase terms. Each term
//!   scores 2 if it is a substring of the tool's lowercased exposed name, else 1 if it is a
//!   substring of its lowercased description. Tools scoring 0 are left out. A tool whose exposed
//!   name or bare suffix equals the whole trimmed query (ignoring case) ranks first; then higher
//!   scores; ties go by exposed name, ascending. The first `max_results` are returned.
//!
//! Tools the caller's `allowed` predicate rejects are invisible in both modes, before any cut:
//! a `select:` of one is "not found", and they never take a keyword slot. (The daemon's
//! `tool_search` passes the tools a session already sees as rejected in keyword mode; the
//! per-server `allowed_tools` / `denied_tools` act earlier, in the hub's table.)

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::BTreeSet;

use serde_json::Value;

use revka_mcp::naming::{Resolution, bare_suffix, resolve_bare};
use revka_mcp::wrapper::json_kind;

/// `max_results` when the arguments do not give it.
pub const DEFAULT_MAX_RESULTS: usize = 5;

/// The largest `max_results`; larger values are lowered to it.
pub const MAX_RESULTS_CAP: usize = 50;

/// The prefix of an exact-selection query (matched case-insensitively).
pub const SELECT_PREFIX: &str = "select:";

/// The `parameters` rendered for a tool whose definition has no `inputSchema`.
const EMPTY_SCHEMA: &str = r#"{"properties":{},"type":"object"}"#;

/// A deferred tool: its exposed name, the description to search and show, and its full MCP
/// definition (whose `inputSchema` becomes the rendered `parameters`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeferredTool {
    /// The exposed name (`<server>__<tool>`).
    pub name: String,
    /// The description searched in keyword mode and rendered.
    pub description: String,
    /// The tool's definition as the server sent it, unknown members included.
    pub definition: Value,
}

impl DeferredTool {
    /// A tool with an explicit description.
    pub fn new(name: impl Into<String>, description: impl Into<String>, definition: Value) -> Self {
        DeferredTool {
            name: name.into(),
            description: description.into(),
            definition,
        }
    }

    /// A tool described by its definition's `description` (empty if absent or not a string).
    pub fn from_definition(name: impl Into<String>, definition: Value) -> Self {
        let description = definition
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        DeferredTool::new(name, description, definition)
    }

    /// The definition's `inputSchema`, if it has one.
    pub fn input_schema(&self) -> Option<&Value> {
        self.definition.get("inputSchema")
    }
}

/// What a `tool_search` call asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `select:` mode: the names, trimmed, non-empty, deduplicated, in the order given.
    Select(Vec<String>),
    /// Keyword mode.
    Keywords {
        /// The whole query, trimmed.
        text: String,
        /// Its distinct whitespace-separated terms, lowercased, in order of appearance.
        terms: Vec<String>,
    },
}

/// Parsed `tool_search` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchArgs {
    /// The query.
    pub query: Query,
    /// How many tools keyword mode returns at most: 1 to [`MAX_RESULTS_CAP`].
    pub max_results: usize,
}

/// Why `tool_search` arguments are invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The arguments are not a JSON object.
    #[error("tool_search arguments must be a JSON object, got {kind}")]
    NotAnObject {
        /// The JSON type found.
        kind: &'static str,
    },
    /// There is no `query`.
    #[error("tool_search requires a \"query\": \"select:<name>[,<name>...]\" or search keywords")]
    MissingQuery,
    /// `query` is not a string.
    #[error("tool_search \"query\" must be a string, got {kind}")]
    QueryNotString {
        /// The JSON type found.
        kind: &'static str,
    },
    /// `query` is empty or blank.
    #[error("tool_search \"query\" must not be empty")]
    EmptyQuery,
    /// A `select:` query names no tool.
    #[error("tool_search \"select:\" names no tool; use \"select:<name>[,<name>...]\"")]
    EmptySelection,
    /// `max_results` is not a whole number of at least 1 (as a number or a numeric string).
    #[error("tool_search \"max_results\" must be a whole number of at least 1, got {found}")]
    InvalidMaxResults {
        /// The value's JSON text, cut to 32 characters.
        found: String,
    },
}

/// Parses `tool_search` arguments: `{"query": string, "max_results"?: number | numeric string}`.
///
/// `null` arguments read as `{}` (and so lack a query). `max_results` defaults to
/// [`DEFAULT_MAX_RESULTS`]; it may be a whole JSON number (`3` or `3.0`) or a string of decimal
/// digits (`"3"`); above [`MAX_RESULTS_CAP`] it is lowered to the cap; 0, negative, fractional
/// or non-numeric values are errors. Other members are ignored.
pub fn parse_args(args: &Value) -> Result<SearchArgs, SearchError> {
    let (query, max_results) = match args {
        Value::Null => (None, None),
        Value::Object(map) => (map.get("query"), map.get("max_results")),
        other => {
            return Err(SearchError::NotAnObject {
                kind: json_kind(other),
            });
        }
    };
    let query = match query {
        None | Some(Value::Null) => return Err(SearchError::MissingQuery),
        Some(Value::String(s)) => parse_query(s)?,
        Some(other) => {
            return Err(SearchError::QueryNotString {
                kind: json_kind(other),
            });
        }
    };
    Ok(SearchArgs {
        query,
        max_results: parse_max_results(max_results)?,
    })
}

fn parse_query(query: &str) -> Result<Query, SearchError> {
    let text = query.trim();
    if text.is_empty() {
        return Err(SearchError::EmptyQuery);
    }
    let prefix = text.get(..SELECT_PREFIX.len());
    if prefix.is_some_and(|p| p.eq_ignore_ascii_case(SELECT_PREFIX)) {
        let mut names: Vec<String> = Vec::new();
        for name in text[SELECT_PREFIX.len()..].split(',').map(str::trim) {
            if !name.is_empty() && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        if names.is_empty() {
            return Err(SearchError::EmptySelection);
        }
        return Ok(Query::Select(names));
    }
    let mut terms: Vec<String> = Vec::new();
    for term in text.split_whitespace().map(str::to_lowercase) {
        if !terms.contains(&term) {
            terms.push(term);
        }
    }
    Ok(Query::Keywords {
        text: text.to_owned(),
        terms,
    })
}

fn parse_max_results(value: Option<&Value>) -> Result<usize, SearchError> {
    let n = match value {
        None | Some(Value::Null) => return Ok(DEFAULT_MAX_RESULTS),
        Some(Value::Number(n)) => n.as_u64().or_else(|| {
            let f = n.as_f64()?;
            // Saturating float-to-int cast; only whole non-negative floats get here.
            (f.fract() == 0.0 && f >= 0.0).then_some(f as u64)
        }),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if n >= 1 => {
            Ok(usize::try_from(n).map_or(MAX_RESULTS_CAP, |n| n.min(MAX_RESULTS_CAP)))
        }
        _ => {
            let text = value.map(Value::to_string).unwrap_or_default();
            Err(SearchError::InvalidMaxResults {
                found: text.chars().take(32).collect(),
            })
        }
    }
}

/// The result of a search: the tools to activate and return, and the unresolved names.
#[derive(Debug, Clone)]
pub struct SearchOutcome<'t> {
    /// The tools found, in answer order (selection order, or rank).
    pub found: Vec<&'t DeferredTool>,
    /// `select:` names that resolved to no visible tool (always empty in keyword mode).
    pub not_found: Vec<String>,
    /// The keyword query, in keyword mode (for the no-match sentence).
    keywords: Option<String>,
}

impl<'t> SearchOutcome<'t> {
    /// The exposed names of the tools found: the ones the session must activate.
    pub fn activated(&self) -> Vec<&'t str> {
        self.found.iter().map(|tool| tool.name.as_str()).collect()
    }

    /// The answer for the model: [`render`]'s output, or, when a keyword search found nothing,
    /// `No deferred tools matched "<query>".`
    pub fn text(&self) -> String {
        match &self.keywords {
            Some(query) if self.found.is_empty() => {
                format!("No deferred tools matched \"{query}\".")
            }
            _ => render(&self.found, &self.not_found),
        }
    }
}

/// Runs a search over `tools`, seeing only those whose exposed name `allowed` accepts.
///
/// If several tools share an exposed name, only the first is considered.
pub fn search<'t>(
    tools: &'t [DeferredTool],
    allowed: impl Fn(&str) -> bool,
    args: &SearchArgs,
) -> SearchOutcome<'t> {
    let mut seen = BTreeSet::new();
    let visible: Vec<&'t DeferredTool> = tools
        .iter()
        .filter(|tool| allowed(&tool.name) && seen.insert(tool.name.as_str()))
        .collect();
    match &args.query {
        Query::Select(names) => select(&visible, names),
        Query::Keywords { text, terms } => SearchOutcome {
            found: rank(&visible, text, terms, args.max_results),
            not_found: Vec::new(),
            keywords: Some(text.clone()),
        },
    }
}

fn select<'t>(visible: &[&'t DeferredTool], names: &[String]) -> SearchOutcome<'t> {
    let mut found: Vec<&'t DeferredTool> = Vec::new();
    let mut not_found = Vec::new();
    for name in names {
        let resolved = match resolve_bare(name, visible.iter().map(|t| t.name.as_str())) {
            Resolution::Exact(n) | Resolution::Unique(n) => n,
            Resolution::Ambiguous(all) => {
                not_found.push(format!("{name} (ambiguous: {})", all.join(", ")));
                continue;
            }
            Resolution::NotFound => {
                not_found.push(name.clone());
                continue;
            }
        };
        let tool = visible.iter().find(|t| t.name == resolved);
        if let Some(&tool) = tool.filter(|t| !found.iter().any(|f| f.name == t.name)) {
            found.push(tool);
        }
    }
    SearchOutcome {
        found,
        not_found,
        keywords: None,
    }
}

fn rank<'t>(
    visible: &[&'t DeferredTool],
    text: &str,
    terms: &[String],
    max: usize,
) -> Vec<&'t DeferredTool> {
    let query = text.to_lowercase();
    let mut scored: Vec<(bool, usize, &'t DeferredTool)> = visible
        .iter()
        .filter_map(|&tool| {
            let name = tool.name.to_lowercase();
            let description = tool.description.to_lowercase();
            let exact = name == query || bare_suffix(&name) == Some(query.as_str());
            let score: usize = terms
                .iter()
                .map(|term| {
                    if name.contains(term.as_str()) {
                        2
                    } else if description.contains(term.as_str()) {
                        1
                    } else {
                        0
                    }
                })
                .sum();
            (exact || score > 0).then_some((exact, score, tool))
        })
        .collect();
    scored.sort_by(|a, b| {
        (Reverse(a.0), Reverse(a.1), &a.2.name).cmp(&(Reverse(b.0), Reverse(b.1), &b.2.name))
    });
    scored
        .into_iter()
        .take(max)
        .map(|(_, _, tool)| tool)
        .collect()
}

/// Renders tools for the model, the way it reads native tool definitions.
///
/// With tools: `<functions>`, then one line per tool,
/// `<function>{"description":…,"name":…,"parameters":…}</function>` (compact JSON with exactly
/// these keys in this order; `parameters` is the `inputSchema`, or
/// `{"properties":{},"type":"object"}` if there is none), then `</functions>`. Any `</` inside
/// the JSON is written `<\/` (the same JSON string) so a description cannot close the block.
/// Then, if names were not found, a line `Not found: a, b`. Without tools the answer is only
/// that line, or `No matching deferred tools.` if there is nothing at all.
pub fn render(found: &[&DeferredTool], not_found: &[String]) -> String {
    let mut lines: Vec<String> = Vec::new();
    if !found.is_empty() {
        lines.push("<functions>".to_owned());
        for tool in found {
            let parameters = tool
                .input_schema()
                .map_or_else(|| EMPTY_SCHEMA.to_owned(), Value::to_string);
            let json = format!(
                r#"{{"description":{},"name":{},"parameters":{parameters}}}"#,
                Value::from(tool.description.as_str()),
                Value::from(tool.name.as_str()),
            );
            lines.push(format!(
                "<function>{}</function>",
                json.replace("</", "<\\/")
            ));
        }
        lines.push("</functions>".to_owned());
    }
    if !not_found.is_empty() {
        lines.push(format!("Not found: {}", not_found.join(", ")));
    }
    if lines.is_empty() {
        return "No matching deferred tools.".to_owned();
    }
    lines.join("\n")
}
