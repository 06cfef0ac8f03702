//! The parsers of the fallback agents (pure functions, no I/O): one JSON line of a CLI's
//! stream in, the contract's timeline events out (`crate::agents::fallback` records them).
//!
//! - Claude Code, `claude -p … --output-format stream-json --verbose`: the Agent SDK's
//!   `SDKMessage` union (`@anthropic-ai/claude-agent-sdk`, `sdk.d.ts`: `SDKSystemMessage`
//!   (`system`/`init`: `session_id`, `model`), `SDKAssistantMessage` (`assistant`:
//!   `message.content` blocks `text` / `tool_use {id, name, input}`), `SDKUserMessage` (`user`:
//!   `message.content` blocks `tool_result {tool_use_id, content, is_error}`),
//!   `SDKResultMessage` (`result`: `subtype`, `is_error`, `result`, `usage`,
//!   `total_cost_usd`, `num_turns`, `duration_ms`, `session_id`)).
//! - Codex, `codex exec --json`: `ThreadEvent` of `codex-rs/exec/src/exec_events.rs`
//!   (openai/codex at 08a1f30c): `thread.started {thread_id}`, `turn.started`,
//!   `item.started|updated|completed {item: {id, type, …}}` with the item types
//!   `agent_message`, `reasoning`, `command_execution`, `file_change`, `mcp_tool_call`,
//!   `web_search`, `todo_list`, `error`, …, `turn.completed {usage}`, `turn.failed {error}`,
//!   `error {message}`.
//!
//! A type the parser does not know is recorded as an `output` event with `data.cli_type`,
//! never dropped. Codex reports no cost (`cost_usd` null) and counts its cached input inside
//! `input_tokens`: the usage here has `input_tokens` without the cached ones, as Claude's.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

/// `tool_result` texts are cut at this many bytes.
pub const TOOL_RESULT_CAP: usize = 64 * 1024;
/// Raw text kept in an `output` event of an unknown type.
pub const RAW_CAP: usize = 4096;

/// A backend the fallback runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Claude Code.
    Claude,
    /// Codex.
    Codex,
}

impl Backend {
    /// By name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "claude" => Some(Self::Claude),
            "codex" => Some(Self::Codex),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
        }
    }
}

/// Token usage of one run (or turn).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Input tokens (not read from the cache).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the cache.
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the cache.
    pub cache_creation_input_tokens: u64,
    /// The cost, when the backend reports it.
    pub cost_usd: Option<f64>,
}

impl Usage {
    /// Every token counted (what `max_tokens` limits).
    pub fn tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_read_input_tokens)
            .saturating_add(self.cache_creation_input_tokens)
    }
}

/// What one line turns into.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// A timeline event (its `data` gets `run` when recorded).
    Event {
        /// The event type.
        kind: &'static str,
        /// Its text.
        text: Option<String>,
        /// Its data.
        data: Map<String, Value>,
    },
    /// Usage to add to the agent's totals (recorded as a `usage` event with the totals).
    Usage(Usage),
}

/// The state of one run's parser.
#[derive(Debug)]
pub struct Parser {
    backend: Backend,
    /// The model, once reported.
    pub model: Option<String>,
    /// Claude's session id, once reported.
    pub session_id: Option<String>,
    /// Codex's thread id, once reported.
    pub thread_id: Option<String>,
    /// The run reached its end (`result`, `turn.completed`, `turn.failed`).
    pub finished: bool,
    /// The end was an error.
    pub failed: bool,
    /// Codex tool items whose `tool_use` was recorded (bounded by the run's event cap).
    started: HashSet<String>,
    /// Codex's last agent message (the result text).
    last_message: Option<String>,
}

/// An event; `null` fields of its data are left out (the contract's optional fields).
fn event(kind: &'static str, text: Option<String>, data: Value) -> Parsed {
    let data = match data {
        Value::Object(mut map) => {
            map.retain(|_, v| !v.is_null());
            map
        }
        _ => Map::new(),
    };
    Parsed::Event { kind, text, data }
}

/// `s` cut at `cap` bytes (on a char boundary), marked when cut.
pub fn cut(s: &str, cap: usize) -> String {
    if s.len() <= cap {
        return s.to_owned();
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut: {} bytes in all]", &s[..end], s.len())
}

fn unknown(cli_type: &str, line: &Value) -> Parsed {
    event(
        "output",
        Some(cut(&line.to_string(), RAW_CAP)),
        json!({ "cli_type": cli_type }),
    )
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)))
        .unwrap_or(0)
}

/// The text of a `tool_result`'s content: a string, or the `text` of its blocks.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("text").and_then(Value::as_str) {
                Some(t) => t.to_owned(),
                None => b.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Parser {
    /// A parser for one run of `backend`.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            model: None,
            session_id: None,
            thread_id: None,
            finished: false,
            failed: false,
            started: HashSet::new(),
            last_message: None,
        }
    }

    /// One JSON line (already parsed) → events.
    pub fn line(&mut self, line: &Value) -> Vec<Parsed> {
        match self.backend {
            Backend::Claude => self.claude(line),
            Backend::Codex => self.codex(line),
        }
    }

    fn claude(&mut self, line: &Value) -> Vec<Parsed> {
        let ty = line.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "system" => {
                let subtype = line.get("subtype").and_then(Value::as_str).unwrap_or("");
                if subtype == "init" {
                    self.model = str_of(line, "model").or(self.model.take());
                    self.session_id = str_of(line, "session_id").or(self.session_id.take());
                    vec![event(
                        "output",
                        Some(format!(
                            "session {} started (model {})",
                            self.session_id.as_deref().unwrap_or("?"),
                            self.model.as_deref().unwrap_or("?")
                        )),
                        json!({ "cli_type": "system/init", "session_id": self.session_id,
                                "model": self.model }),
                    )]
                } else {
                    vec![unknown(&format!("system/{subtype}"), line)]
                }
            }
            "assistant" => {
                let message = line.get("message").unwrap_or(&Value::Null);
                if let Some(m) = str_of(message, "model") {
                    self.model = Some(m);
                }
                let blocks = message
                    .get("content")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                blocks
                    .iter()
                    .map(|b| match b.get("type").and_then(Value::as_str) {
                        Some("text") => event(
                            "assistant",
                            Some(str_of(b, "text").unwrap_or_default()),
                            json!({ "model": self.model }),
                        ),
                        Some("tool_use") => {
                            let name = str_of(b, "name").unwrap_or_default();
                            event(
                                "tool_use",
                                Some(name.clone()),
                                json!({ "id": str_of(b, "id"), "name": name,
                                        "input": b.get("input").cloned().unwrap_or(Value::Null) }),
                            )
                        }
                        other => unknown(&format!("assistant/{}", other.unwrap_or("?")), b),
                    })
                    .collect()
            }
            "user" => {
                let blocks = line
                    .pointer("/message/content")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if blocks.is_empty() {
                    return vec![unknown("user", line)];
                }
                blocks
                    .iter()
                    .map(|b| match b.get("type").and_then(Value::as_str) {
                        Some("tool_result") => event(
                            "tool_result",
                            Some(cut(
                                &content_text(b.get("content").unwrap_or(&Value::Null)),
                                TOOL_RESULT_CAP,
                            )),
                            json!({ "tool_use_id": str_of(b, "tool_use_id"),
                                    "is_error": b.get("is_error").and_then(Value::as_bool).unwrap_or(false) }),
                        ),
                        other => unknown(&format!("user/{}", other.unwrap_or("?")), b),
                    })
                    .collect()
            }
            "result" => {
                self.finished = true;
                let is_error = line
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                self.failed = is_error;
                if let Some(s) = str_of(line, "session_id") {
                    self.session_id = Some(s);
                }
                let usage = line.get("usage").unwrap_or(&Value::Null);
                let cost = line.get("total_cost_usd").and_then(Value::as_f64);
                let subtype = str_of(line, "subtype");
                let text = str_of(line, "result")
                    .or_else(|| subtype.clone())
                    .unwrap_or_default();
                let mut out = vec![
                    Parsed::Usage(Usage {
                        input_tokens: u64_of(usage, "input_tokens"),
                        output_tokens: u64_of(usage, "output_tokens"),
                        cache_read_input_tokens: u64_of(usage, "cache_read_input_tokens"),
                        cache_creation_input_tokens: u64_of(usage, "cache_creation_input_tokens"),
                        cost_usd: cost,
                    }),
                    event(
                        "result",
                        Some(text.clone()),
                        json!({ "is_error": is_error, "subtype": subtype,
                                "duration_ms": line.get("duration_ms"),
                                "num_turns": line.get("num_turns"), "cost_usd": cost,
                                "session_id": self.session_id }),
                    ),
                ];
                if is_error {
                    out.push(event(
                        "error",
                        Some(format!(
                            "claude: {}",
                            if text.is_empty() { "error" } else { &text }
                        )),
                        json!({ "reason": "backend" }),
                    ));
                }
                out
            }
            "" => vec![unknown("?", line)],
            other => vec![unknown(other, line)],
        }
    }

    fn codex(&mut self, line: &Value) -> Vec<Parsed> {
        let ty = line.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "thread.started" => {
                self.thread_id = str_of(line, "thread_id");
                vec![event(
                    "output",
                    Some(format!(
                        "thread {} started",
                        self.thread_id.as_deref().unwrap_or("?")
                    )),
                    json!({ "cli_type": "thread.started", "thread_id": self.thread_id }),
                )]
            }
            "turn.started" => Vec::new(),
            "item.started" | "item.updated" | "item.completed" => {
                let item = line.get("item").unwrap_or(&Value::Null);
                self.codex_item(ty, item)
            }
            "turn.completed" => {
                self.finished = true;
                let usage = line.get("usage").unwrap_or(&Value::Null);
                let cached = u64_of(usage, "cached_input_tokens");
                vec![
                    Parsed::Usage(Usage {
                        input_tokens: u64_of(usage, "input_tokens").saturating_sub(cached),
                        output_tokens: u64_of(usage, "output_tokens"),
                        cache_read_input_tokens: cached,
                        cache_creation_input_tokens: 0,
                        cost_usd: None,
                    }),
                    event(
                        "result",
                        Some(self.last_message.clone().unwrap_or_default()),
                        json!({ "is_error": false, "thread_id": self.thread_id }),
                    ),
                ]
            }
            "turn.failed" => {
                self.finished = true;
                self.failed = true;
                let message = line
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("turn failed")
                    .to_owned();
                vec![
                    event(
                        "result",
                        Some(message.clone()),
                        json!({ "is_error": true, "subtype": "turn.failed",
                                "thread_id": self.thread_id }),
                    ),
                    event(
                        "error",
                        Some(format!("codex: {message}")),
                        json!({ "reason": "backend" }),
                    ),
                ]
            }
            "error" => {
                self.failed = true;
                let message = str_of(line, "message").unwrap_or_else(|| "error".into());
                vec![event(
                    "error",
                    Some(format!("codex: {message}")),
                    json!({ "reason": "backend" }),
                )]
            }
            "" => vec![unknown("?", line)],
            other => vec![unknown(other, line)],
        }
    }

    fn codex_item(&mut self, ty: &str, item: &Value) -> Vec<Parsed> {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("?");
        let id = str_of(item, "id").unwrap_or_default();
        let completed = ty == "item.completed";
        let tool = match kind {
            "command_execution" => Some((
                "command_execution",
                json!({ "command": item.get("command") }),
            )),
            "mcp_tool_call" => Some((
                "mcp_tool_call",
                json!({ "server": item.get("server"), "tool": item.get("tool"),
                        "arguments": item.get("arguments") }),
            )),
            "file_change" => Some(("file_change", json!({ "changes": item.get("changes") }))),
            "web_search" => Some(("web_search", json!({ "query": item.get("query") }))),
            _ => None,
        };
        if let Some((name, input)) = tool {
            let mut out = Vec::new();
            let name = if kind == "mcp_tool_call" {
                format!(
                    "{}/{}",
                    item.get("server").and_then(Value::as_str).unwrap_or("?"),
                    item.get("tool").and_then(Value::as_str).unwrap_or("?")
                )
            } else {
                name.to_owned()
            };
            if !self.started.contains(&id) && (ty == "item.started" || completed) {
                self.started.insert(id.clone());
                out.push(event(
                    "tool_use",
                    Some(name.clone()),
                    json!({ "id": id, "name": name, "input": input }),
                ));
            }
            if completed {
                self.started.remove(&id);
                let status = item.get("status").and_then(Value::as_str).unwrap_or("");
                let (text, is_error) = match kind {
                    "command_execution" => (
                        str_of(item, "aggregated_output").unwrap_or_default(),
                        status != "completed"
                            || item.get("exit_code").and_then(Value::as_i64).unwrap_or(0) != 0,
                    ),
                    "mcp_tool_call" => match item.get("error").filter(|e| !e.is_null()) {
                        Some(e) => (str_of(e, "message").unwrap_or_default(), true),
                        None => (
                            content_text(item.pointer("/result/content").unwrap_or(&Value::Null)),
                            status == "failed",
                        ),
                    },
                    "file_change" => (
                        item.get("changes")
                            .and_then(Value::as_array)
                            .map(|cs| {
                                cs.iter()
                                    .map(|c| {
                                        format!(
                                            "{} {}",
                                            c.get("kind").and_then(Value::as_str).unwrap_or("?"),
                                            c.get("path").and_then(Value::as_str).unwrap_or("?")
                                        )
                                    })
                                    .collect::<Vec<_>>()
                                    .join("\n")
                            })
                            .unwrap_or_default(),
                        status == "failed",
                    ),
                    _ => (String::new(), false),
                };
                out.push(event(
                    "tool_result",
                    Some(cut(&text, TOOL_RESULT_CAP)),
                    json!({ "tool_use_id": id, "is_error": is_error }),
                ));
            }
            return out;
        }
        match (kind, completed) {
            ("agent_message", true) => {
                let text = str_of(item, "text").unwrap_or_default();
                self.last_message = Some(text.clone());
                vec![event(
                    "assistant",
                    Some(text),
                    json!({ "model": self.model }),
                )]
            }
            ("reasoning", true) => vec![event(
                "output",
                Some(str_of(item, "text").unwrap_or_default()),
                json!({ "cli_type": "reasoning" }),
            )],
            // Partial states of items recorded once completed.
            ("agent_message" | "reasoning", false) => Vec::new(),
            _ => vec![unknown(&format!("{ty}/{kind}"), item)],
        }
    }
}
