//! Revka's own tools (seed 001's "baseline" and "runtime-aware" tiers), each run under the
//! security policy ([`crate::security::Policy`]).
//!
//! A tool implements [`PolicyTool`]: its name, description, input schema, the [`Effect`] of a
//! call with given arguments, and the call itself. [`Registrar::add`] wraps it in `Guarded`,
//! which every call goes through, in this order:
//! 1. the autonomy check of the call's effect ([`Policy::permit`]);
//! 2. the session's hourly action budget ([`Policy::charge`]);
//! 3. the tool, which checks its own paths, commands and hosts with the policy;
//! 4. an audit line in the run log (`builtin_call`: session, tool, arguments with secrets
//!    masked, decision `allowed` or `refused` with the rule, outcome, duration) and, for a
//!    refusal, `revka_builtin_refusals_total{tool,rule}` in `/metrics`.
//!
//! The tools are registered as *served* built-ins: deferred loading, `tool_search`, client
//! token scopes and bare-name resolution treat them like an external server's tools (their
//! group in the `initialize` instructions is `revka`).
//!
//! Groups, one module each: [`files`] (`file_read`, `file_write`, `file_edit`, `glob_search`,
//! `content_search`, `pdf_read`, `image_info`), [`exec`] (`shell`, `git_operations`,
//! `calculator`, `screenshot`, `browser_open`), [`web`] (`http_request`, `web_fetch`,
//! `weather`, `web_search_tool`), [`cron`] (`cron_*`), [`sessions`] (`sessions_*`). The
//! runtime-tier tools Revka does not implement are recorded with their skip reasons
//! ([`NOT_PROVIDED`]).

pub mod cron;
pub mod exec;
pub mod files;
pub mod sessions;
pub mod web;

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use revka_actors::session::{Session, Sessions};
use revka_mcp::protocol::ProgressUpdate;
use revka_mcp::redact;
use serde_json::{Map, Value, json};

use super::{BuiltinError, BuiltinTool, ToolContext, ToolRegistry};
use crate::config::ToolsConfig;
use crate::security::{Effect, Policy, Refusal};
use crate::telemetry::Telemetry;

/// The runtime-tier tools of seed 001 that Revka does not provide, with the reason each is
/// listed as skipped in `/health`.
pub const NOT_PROVIDED: [(&str, &str); 13] = [
    (
        "llm_task",
        "needs a model provider; Revka serves tools and holds no model credentials",
    ),
    (
        "image_gen",
        "needs an image model provider; Revka holds no model credentials",
    ),
    (
        "delegate",
        "needs a model provider to delegate to; use the session manager's create_agent",
    ),
    (
        "swarm",
        "needs a model provider; use the session manager's agents and chat rooms",
    ),
    (
        "workspace",
        "needs a workspace session store; a session's workspace is its cwd",
    ),
    (
        "poll",
        "needs a channel map (chat channels) Revka does not run",
    ),
    ("discord_search", "needs the discord.db memory backend"),
    ("sop_list", "needs an SOP engine Revka does not run"),
    ("sop_execute", "needs an SOP engine Revka does not run"),
    ("sop_advance", "needs an SOP engine Revka does not run"),
    ("sop_approve", "needs an SOP engine Revka does not run"),
    ("sop_status", "needs an SOP engine Revka does not run"),
    (
        "notion, jira, composio, google_workspace, linkedin, microsoft365",
        "credential-gated integrations: not part of Revka; add their MCP servers under [[mcp.servers]]",
    ),
];

/// What a built-in tool gets for one call.
#[derive(Clone)]
pub struct Cx {
    /// The calling session (its cwd is the workspace).
    pub session: Arc<Session>,
    /// The policy.
    pub policy: Arc<Policy>,
    /// Reports progress on the call (keyed to the caller's token).
    pub progress: Arc<dyn Fn(ProgressUpdate) + Send + Sync>,
}

impl Cx {
    /// The workspace: the session's working directory (canonical).
    pub fn workspace(&self) -> &std::path::Path {
        self.session.cwd()
    }

    /// Reports progress: `progress` of `total` (when known), with a status line.
    pub fn report(&self, progress: u64, total: Option<u64>, message: impl Into<String>) {
        (self.progress)(ProgressUpdate {
            progress: json!(progress),
            total: total.map(|t| json!(t)),
            message: Some(message.into()),
        });
    }
}

/// A tool run under the security policy.
pub trait PolicyTool: Send + Sync + 'static {
    /// Its name (`file_read`).
    fn name(&self) -> &'static str;
    /// What it does, for the model: precise, with its limits.
    fn description(&self) -> String;
    /// The JSON schema of its arguments.
    fn input_schema(&self) -> Value;
    /// What a call with `args` does (for the autonomy check); arguments it cannot read are
    /// the tool's to refuse, so this answers the effect of the most it could do.
    fn effect(&self, args: &Value) -> Effect;
    /// Runs the call: a tool result (see [`ok`] and [`ok_text`]) or why it failed.
    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>>;
}

/// What the registration of the built-in tools needs.
pub struct Deps {
    /// The policy.
    pub policy: Arc<Policy>,
    /// `[tools]`.
    pub tools: ToolsConfig,
    /// Metrics (refusal counts).
    pub telemetry: Telemetry,
    /// The live sessions (`sessions_*`).
    pub sessions: Arc<Sessions>,
    /// `$REVKA_HOME` (the cron journal).
    pub home: std::path::PathBuf,
    /// The scheduler of the `cron_*` tools (`root/scheduler`).
    pub scheduler: crate::scheduler::Scheduler,
}

/// Registers tools into the registry, honouring `[tools.<name>] enabled`.
pub struct Registrar<'a> {
    registry: &'a mut ToolRegistry,
    /// What the tools are built with.
    pub deps: &'a Deps,
}

impl Registrar<'_> {
    /// Adds `tool`, or records it as skipped when `[tools.<name>] enabled = false`.
    pub fn add(&mut self, tool: impl PolicyTool) {
        let name = tool.name();
        if !self.deps.tools.enabled(name) {
            self.skip(
                name,
                &format!("disabled by [tools.{}] enabled = false", config_key(name)),
            );
            return;
        }
        self.registry.register_served(Arc::new(Guarded {
            tool: Arc::new(tool),
            policy: self.deps.policy.clone(),
            telemetry: self.deps.telemetry.clone(),
        }));
    }

    /// Records `name` as not registered, with the reason (shown in `/health`).
    pub fn skip(&mut self, name: &str, reason: &str) {
        self.registry.skip(name, reason);
    }
}

/// The `[tools.<key>]` table of a tool.
fn config_key(name: &str) -> &str {
    if name == "web_search_tool" {
        "web_search"
    } else {
        name
    }
}

/// Registers every built-in tool of the baseline and runtime tiers.
pub fn register(registry: &mut ToolRegistry, deps: &Deps) {
    let mut r = Registrar { registry, deps };
    files::register(&mut r);
    exec::register(&mut r);
    web::register(&mut r);
    cron::register(&mut r);
    sessions::register(&mut r);
    for (name, reason) in NOT_PROVIDED {
        r.skip(name, reason);
    }
}

/// A [`PolicyTool`] behind the policy's gates and the audit.
struct Guarded {
    tool: Arc<dyn PolicyTool>,
    policy: Arc<Policy>,
    telemetry: Telemetry,
}

impl BuiltinTool for Guarded {
    fn definition(&self) -> Value {
        let effect = self.tool.effect(&Value::Null);
        json!({
            "name": self.tool.name(),
            "description": self.tool.description(),
            "inputSchema": self.tool.input_schema(),
            "annotations": {
                "readOnlyHint": effect.reads_only(),
                "openWorldHint": matches!(effect, Effect::NetworkRead | Effect::NetworkWrite),
            },
        })
    }

    fn call(
        &self,
        ctx: ToolContext,
        args: Value,
    ) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let tool = self.tool.clone();
        let policy = self.policy.clone();
        let telemetry = self.telemetry.clone();
        Box::pin(async move {
            let started = Instant::now();
            let name = tool.name();
            let session = ctx.session.clone();
            let effect = tool.effect(&args);
            let audit = Audit {
                session: session.id().to_owned(),
                tool: name,
                arguments: redacted(&args),
                effect,
            };
            let gate = policy
                .permit(name, effect)
                .and_then(|()| policy.charge(session.id()));
            if let Err(refusal) = gate {
                telemetry.record_refusal(name, refusal.rule);
                audit.record(Some(&refusal), "refused", started);
                return Err(BuiltinError::Refused(refusal));
            }
            let cx = Cx {
                session,
                policy,
                progress: ctx.progress,
            };
            let result = tool.run(cx, args).await;
            match &result {
                Err(BuiltinError::Refused(refusal)) => {
                    telemetry.record_refusal(name, refusal.rule);
                    audit.record(Some(refusal), "refused", started);
                }
                Err(_) => audit.record(None, "error", started),
                Ok(v) if v.get("isError").and_then(Value::as_bool) == Some(true) => {
                    audit.record(None, "error", started);
                }
                Ok(_) => audit.record(None, "ok", started),
            }
            result
        })
    }
}

/// One built-in call's audit line.
struct Audit {
    session: String,
    tool: &'static str,
    arguments: Value,
    effect: Effect,
}

impl Audit {
    fn record(&self, refusal: Option<&Refusal>, outcome: &str, started: Instant) {
        if let Some(refusal) = refusal {
            tracing::info!(
                session = %self.session,
                tool = self.tool,
                rule = refusal.rule,
                "built-in tool call refused"
            );
        }
        let Some(log) = crate::runlog::get() else {
            return;
        };
        log.record(
            "builtin_call",
            json!({
                "session": self.session,
                "tool": self.tool,
                "arguments": self.arguments,
                "effect": self.effect.as_str(),
                "decision": if refusal.is_some() { "refused" } else { "allowed" },
                "rule": refusal.map(|r| r.rule),
                "reason": refusal.map(|r| redact::text(&r.message)),
                "outcome": outcome,
                "duration_ms": started.elapsed().as_millis() as u64,
            }),
        );
    }
}

/// The longest string kept whole in an audit record.
const AUDIT_STRING: usize = 256;

/// `args` as the audit records them: values under secret-looking keys masked, URLs and text
/// with random-looking runs masked ([`redact`]), long strings cut.
pub fn redacted(args: &Value) -> Value {
    match args {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if redact::is_secret_name(k) && !v.is_object() && !v.is_array() {
                        Value::String(redact::MASK.to_owned())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        Value::String(s) => {
            let cut: String = s.chars().take(AUDIT_STRING).collect();
            let mut shown = if cut.contains("://") {
                redact::url(&cut)
            } else {
                redact::text(&cut)
            };
            if s.chars().count() > AUDIT_STRING {
                shown.push_str(&format!("… ({} bytes)", s.len()));
            }
            Value::String(shown)
        }
        other => other.clone(),
    }
}

/// A successful result: `text` for the model, `structured` as `structuredContent`.
pub fn ok_text(text: impl Into<String>, structured: Value) -> Value {
    json!({
        "content": [{ "type": "text", "text": text.into() }],
        "structuredContent": structured,
    })
}

/// A successful result whose text is `structured` as JSON.
pub fn ok(structured: Value) -> Value {
    let text = serde_json::to_string_pretty(&structured).unwrap_or_default();
    ok_text(text, structured)
}

/// A tool-level failure the caller should see as `isError: true`, with structured details.
pub fn failed(text: impl Into<String>, structured: Value) -> Value {
    let mut v = ok_text(text, structured);
    v["isError"] = Value::Bool(true);
    v
}

/// `bytes` cut to at most `max` bytes at a character boundary, as text (invalid UTF-8
/// replaced), and whether anything was cut.
pub fn capped(bytes: &[u8], max: usize) -> (String, bool) {
    if bytes.len() <= max {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let mut end = max;
    // Back off to the start of a UTF-8 sequence (at most 3 bytes).
    while end > 0 && end > max.saturating_sub(3) && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), true)
}

/// Reads a tool's arguments with precise errors (`` `path` is required (a string) ``).
pub struct Args<'a>(&'a Value);

impl<'a> Args<'a> {
    /// Over `args`, which must be an object (or null, for no arguments).
    pub fn new(args: &'a Value) -> Result<Self, BuiltinError> {
        match args {
            Value::Object(_) | Value::Null => Ok(Self(args)),
            other => Err(BuiltinError::Arguments(format!(
                "arguments must be an object, not {}",
                kind(other)
            ))),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&'a str, BuiltinError> {
        self.opt_str(key)?
            .ok_or_else(|| BuiltinError::Arguments(format!("`{key}` is required (a string)")))
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, BuiltinError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong(key, "a string", other)),
        }
    }

    /// An optional non-negative integer (a whole number in a string is accepted too).
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, BuiltinError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| wrong(key, "a non-negative integer", &Value::Number(n.clone()))),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| wrong(key, "a non-negative integer", &Value::String(s.clone()))),
            Some(other) => Err(wrong(key, "a non-negative integer", other)),
        }
    }

    /// An optional boolean (`"true"`/`"false"` accepted too).
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, BuiltinError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(other) => Err(wrong(key, "a boolean", other)),
        }
    }

    /// An optional array of strings (one string is taken as a one-element array).
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>, BuiltinError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong(key, "an array of strings", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong(key, "an array of strings", other)),
        }
    }

    /// An optional object.
    pub fn opt_object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, BuiltinError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(wrong(key, "an object", other)),
        }
    }

    /// The raw value of `key`, if present and not null.
    pub fn value(&self, key: &str) -> Option<&'a Value> {
        self.get(key)
    }
}

fn wrong(key: &str, expected: &str, got: &Value) -> BuiltinError {
    BuiltinError::Arguments(format!("`{key}` must be {expected}, not {}", kind(got)))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_masks_secrets_and_cuts_long_strings() {
        let args = json!({
            "url": "https://user:pw@example.com/x?api_key=abc123def456",
            "headers": { "Authorization": "Bearer rvk_0123456789abcdef0123456789abcdef" },
            "content": "x".repeat(1000),
            "n": 3,
        });
        let shown = redacted(&args).to_string();
        assert!(!shown.contains("pw@"), "{shown}");
        assert!(!shown.contains("abc123def456"), "{shown}");
        assert!(!shown.contains("0123456789abcdef0123"), "{shown}");
        assert!(shown.contains("(1000 bytes)"), "{shown}");
        assert!(shown.contains("\"n\":3"), "{shown}");
    }

    #[test]
    fn capped_cuts_at_a_character_boundary() {
        let text = "aé".repeat(10); // 3 bytes per pair
        let (cut, truncated) = capped(text.as_bytes(), 5);
        assert!(truncated);
        assert_eq!(cut, "aéa");
        let (whole, truncated) = capped(b"abc", 3);
        assert!(!truncated);
        assert_eq!(whole, "abc");
    }

    #[test]
    fn args_name_the_field_and_the_type() {
        let v = json!({ "path": 3, "n": "12", "flag": "true", "list": "one" });
        let a = Args::new(&v).unwrap();
        assert_eq!(
            a.str("path").unwrap_err().to_string(),
            "`path` must be a string, not a number"
        );
        assert_eq!(
            a.str("missing").unwrap_err().to_string(),
            "`missing` is required (a string)"
        );
        assert_eq!(a.opt_u64("n").unwrap(), Some(12));
        assert_eq!(a.opt_bool("flag").unwrap(), Some(true));
        assert_eq!(a.opt_strings("list").unwrap().unwrap(), vec!["one"]);
        assert!(Args::new(&json!([1])).is_err());
    }
}
