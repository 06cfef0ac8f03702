//! Native agent-lifecycle and chat-room tools (seed 000), served by the session-manager
//! sidecar through its circuit breaker, and by the daemon's CLI fallback (`crate::agents`).
//!
//! Each tool maps its arguments to one REST call on the sidecar (`RestTool`); the two that
//! wait (`wait_for_agent`, `wait_for_chat_message`) poll or long-poll with progress. Every
//! result says which path ran: `"path": "sidecar" | "fallback" | "queued"`.
//!
//! - **Unavailable sidecar.** `create_agent`, `send_agent_prompt` and `post_chat_message` that
//!   find the session manager down (restarting, breaker open) go to the persistent retry
//!   queue by default (`"path": "queued"` with its `operation_id`; the outcome shows in
//!   `get_retry_queue_status` and as a `queued_outcome` feed item); `on_unavailable: "fail"`
//!   errors at once, `"fallback"` (create_agent only) runs the CLI now. The older
//!   `queue_if_unavailable` is an alias (true = queue, false = fail); the other mutations
//!   fail unless asked to queue. Nothing is queued by default for a session manager its
//!   supervisor gave up on (`failed`).
//! - **Fallback.** Without the session manager, `create_agent` runs the backend's CLI
//!   through `FallbackAgents` (when `[agents] fallback`); ids starting `fb_` are routed
//!   there by every agent tool; `list_agents` lists both paths.
//! - **Revka's endpoint.** claude and codex agents get `mcp_servers.revka` (`[agents]
//!   inject_revka`): a fresh two-header MCP session of the daemon, which outlives a sidecar
//!   restart.
//! - **Budgets.** A session past its `[agents]` per-session limit is refused new agents and
//!   prompts (`crate::agents::budget`).
//!
//! Every answer is checked for the fields the tool relies on ([`Field`]): an answer of another
//! shape is an error result naming what is wrong, and a failure for the breaker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use revka_mcp::protocol::ProgressUpdate;
use serde_json::{Value, json};

use super::{BuiltinError, BuiltinTool, ToolContext, ToolRegistry};
use crate::agents::fallback::{CreateAgent, FallbackError};
use crate::agents::keeper::{self, Settle};
use crate::agents::{Agents, is_fallback_id};
use crate::sidecars::{Field, SidecarServices};

/// A tool result with one text item.
pub(crate) fn text_result(text: impl Into<String>, is_error: bool) -> Value {
    json!({ "content": [{ "type": "text", "text": text.into() }], "isError": is_error })
}

/// A tool result carrying JSON (as text, and as `structuredContent` for clients that use it).
pub(crate) fn json_result(value: Value) -> Value {
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    json!({ "content": [{ "type": "text", "text": text }], "structuredContent": value, "isError": false })
}

/// A required string argument.
fn arg_str<'a>(args: &'a Value, name: &str) -> Result<&'a str, String> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("`{name}` is required (a non-empty string)"))
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Builds a request from arguments: `(method, path, body)`.
type Mapper = fn(&Value, &ToolContext) -> Result<(&'static str, String, Option<Value>), String>;

/// What a mutation does when the session manager is unavailable (down, restarting, breaker
/// open): the `on_unavailable` argument, or the older `queue_if_unavailable` (true = queue,
/// false = fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnUnavailable {
    /// Put it on the retry queue; the result carries its `operation_id`.
    Queue,
    /// Run it now through the daemon's CLI fallback (`create_agent` only).
    Fallback,
    /// Fail at once.
    Fail,
}

/// The mutations queued by default when the sidecar is unavailable.
const QUEUED_BY_DEFAULT: [&str; 3] = ["create_agent", "send_agent_prompt", "post_chat_message"];

impl OnUnavailable {
    /// The policy of a call of `tool` with `args`.
    fn of(tool: &str, args: &Value) -> Result<Self, String> {
        match args.get("on_unavailable") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                return match s.as_str() {
                    "queue" => Ok(Self::Queue),
                    "fail" => Ok(Self::Fail),
                    "fallback" if tool == "create_agent" => Ok(Self::Fallback),
                    "fallback" => Err(format!(
                        "`on_unavailable: \"fallback\"` is for create_agent only; {tool} takes \"queue\" or \"fail\""
                    )),
                    other => Err(format!(
                        "`on_unavailable` must be \"queue\", \"fallback\" (create_agent only) or \"fail\", not {other:?}"
                    )),
                };
            }
            Some(v) => return Err(format!("`on_unavailable` must be a string, not {v}")),
        }
        match args.get("queue_if_unavailable") {
            Some(Value::Bool(true)) => Ok(Self::Queue),
            Some(Value::Bool(false)) => Ok(Self::Fail),
            None | Some(Value::Null) if QUEUED_BY_DEFAULT.contains(&tool) => Ok(Self::Queue),
            None | Some(Value::Null) => Ok(Self::Fail),
            Some(v) => Err(format!("`queue_if_unavailable` must be a boolean, not {v}")),
        }
    }
}

/// `value` (an object) with `"path": path`.
fn with_path(mut value: Value, path: &str) -> Value {
    if let Some(obj) = value.as_object_mut() {
        obj.insert("path".into(), json!(path));
    }
    value
}

/// A tool that is one REST call on the session manager (fallback agents, `fb_` ids, are
/// routed to [`FallbackAgents`](crate::agents::fallback::FallbackAgents) by [`fallback_call`]).
struct RestTool {
    name: &'static str,
    description: &'static str,
    schema: fn() -> Value,
    mapper: Mapper,
    /// Mutations may be queued when the sidecar is unavailable.
    mutation: bool,
    /// What the answer must hold (else it is an error result and a breaker failure).
    shape: &'static [Field],
    agents: Arc<Agents>,
}

impl BuiltinTool for RestTool {
    fn definition(&self) -> Value {
        let mut schema = (self.schema)();
        if self.mutation {
            let default = if QUEUED_BY_DEFAULT.contains(&self.name) {
                "queue"
            } else {
                "fail"
            };
            let choices: &[&str] = if self.name == "create_agent" {
                &["queue", "fallback", "fail"]
            } else {
                &["queue", "fail"]
            };
            schema["properties"]["on_unavailable"] = json!({
                "type": "string",
                "enum": choices,
                "description": format!("If the session manager is down or its breaker open: `queue` the change on the retry queue (the result has its operation_id; its outcome shows in get_retry_queue_status and on /ws/agents/events), `fail` at once{}. Default `{default}`.", if self.name == "create_agent" { ", or run the agent now through the daemon's CLI `fallback` (claude and codex only)" } else { "" }),
            });
            schema["properties"]["queue_if_unavailable"] = json!({
                "type": "boolean",
                "description": "Older form of on_unavailable: true = queue, false = fail."
            });
        }
        json!({ "name": self.name, "description": self.description, "inputSchema": schema })
    }

    fn call(
        &self,
        ctx: ToolContext,
        args: Value,
    ) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let name = self.name;
        let mapper = self.mapper;
        let mutation = self.mutation;
        let shape = self.shape;
        let agents = self.agents.clone();
        Box::pin(async move {
            let session = ctx.session.id().to_owned();
            if let Some(result) = fallback_call(name, &agents, &args, &session).await? {
                return Ok(result);
            }
            let mut policy = if mutation {
                OnUnavailable::of(name, &args).map_err(BuiltinError::Arguments)?
            } else {
                OnUnavailable::Fail
            };
            // By default nothing is queued for a session manager its supervisor gave up on
            // (`failed`: it does not come back by itself); asked for, it is.
            let asked = args.get("on_unavailable").is_some_and(|v| !v.is_null())
                || args
                    .get("queue_if_unavailable")
                    .is_some_and(|v| !v.is_null());
            if policy == OnUnavailable::Queue && !asked && agents.sidecar.gave_up() {
                policy = OnUnavailable::Fail;
            }
            if matches!(name, "create_agent" | "send_agent_prompt")
                && let Err(refused) = agents.ledger.check(&session)
            {
                return Ok(text_result(refused, true));
            }
            let sidecar = agents.sidecar.clone();
            if name == "create_agent" && !sidecar.enabled {
                let settings = agents.settings();
                if !settings.fallback {
                    return Ok(text_result(
                        "create_agent: the session manager is not enabled ([session_manager] enabled = false) and the CLI fallback is off ([agents] fallback = false); enable one of them",
                        true,
                    ));
                }
                return create_fallback(&agents, &args, &ctx, &session).await;
            }
            let (method, path, mut body) = mapper(&args, &ctx).map_err(BuiltinError::Arguments)?;
            if name == "create_agent"
                && let Some(body) = body.as_mut()
            {
                inject_revka(&agents, body, &ctx).await?;
            }
            // The agent's own MCP session, made by `inject_revka`: told how the create went.
            let injected = body
                .as_ref()
                .and_then(keeper::injected_session)
                .map(str::to_owned);
            let injected = injected.as_deref();
            // A mutation that may be queued is keyed from its first attempt: if that one
            // timed out after the sidecar acted, the queued retries are answered, not re-run.
            let key = (policy == OnUnavailable::Queue).then(SidecarServices::operation_id);
            let answer = sidecar
                .request_keyed(method, &path, body.clone(), None, shape, key.as_deref())
                .await;
            // (A queued create settles once the queue took it, below. A create that may have
            // reached the sidecar (a timeout, a 5xx) is not settled: its agent may exist; the
            // keeper gives such a session up after an hour.)
            let settled = match &answer {
                Ok(value) => Some(
                    value["id"]
                        .as_str()
                        .map_or(Settle::Failed, |id| Settle::Agent(id.to_owned())),
                ),
                Err(e) if policy == OnUnavailable::Queue && e.is_unavailable() => None,
                Err(e) if e.is_unavailable() && !e.never_reached() => None,
                Err(_) => Some(Settle::Failed),
            };
            if name == "create_agent"
                && let Some(settled) = settled
            {
                agents.settle_session(injected, settled);
            }
            match (answer, policy) {
                (Ok(value), _) => {
                    if name == "create_agent"
                        && let Some(id) = value["id"].as_str()
                    {
                        agents.ledger.owned(id, "sidecar", Some(&session));
                    }
                    Ok(json_result(with_path(value, "sidecar")))
                }
                (Err(e), OnUnavailable::Queue) if e.is_unavailable() => {
                    let id = key.unwrap_or_else(SidecarServices::operation_id);
                    let id = match sidecar
                        .enqueue(id, method, &path, body, Some(name), Some(&session))
                        .await
                    {
                        Ok(id) => id,
                        Err(queue) => {
                            if name == "create_agent" {
                                agents.settle_session(injected, Settle::Failed);
                            }
                            return Err(BuiltinError::NotQueued { call: e, queue });
                        }
                    };
                    if name == "create_agent" {
                        agents.settle_session(injected, Settle::Queued(id.clone()));
                    }
                    Ok(json_result(json!({
                        "queued": true, "path": "queued", "operation_id": id,
                        "operation": name, "reason": e.to_string(),
                    })))
                }
                // Only a create the sidecar surely never saw runs elsewhere: after a timeout
                // it may have made the agent, and a second one would spend twice.
                (Err(e), OnUnavailable::Fallback) if e.never_reached() => {
                    if !agents.settings().fallback {
                        return Ok(text_result(
                            format!("{e}; and the CLI fallback is off ([agents] fallback = false)"),
                            true,
                        ));
                    }
                    create_fallback(&agents, &args, &ctx, &session).await
                }
                (Err(e), _) => Ok(text_result(e.to_string(), true)),
            }
        })
    }
}

/// The agent id argument, when it names a fallback agent.
fn fallback_id(args: &Value) -> Option<&str> {
    args.get("agent_id")
        .and_then(Value::as_str)
        .filter(|id| is_fallback_id(id))
}

/// Runs the calls about fallback agents (`fb_` ids) and `list_agents` (both paths);
/// `None` for the others.
async fn fallback_call(
    name: &str,
    agents: &Agents,
    args: &Value,
    session: &str,
) -> Result<Option<Value>, BuiltinError> {
    let fb = &agents.fallback;
    if name == "list_agents" {
        // An unreachable session manager is the call's error unless fallback agents exist.
        return Ok(Some(match agents.list_both().await {
            (list, Some(e)) if list["agents"].as_array().is_none_or(Vec::is_empty) => {
                text_result(e.to_string(), true)
            }
            (list, _) => json_result(list),
        }));
    }
    let Some(id) = fallback_id(args) else {
        return Ok(None);
    };
    let answer = match name {
        "send_agent_prompt" => {
            if let Err(refused) = agents.ledger.check(session) {
                return Ok(Some(text_result(refused, true)));
            }
            let prompt = arg_str(args, "prompt").map_err(BuiltinError::Arguments)?;
            fb.query(id, prompt).await
        }
        "get_agent_activity" => {
            let since = args.get("since").and_then(Value::as_u64).unwrap_or(0);
            let limit = args
                .get("limit")
                .and_then(Value::as_u64)
                .unwrap_or(200)
                .min(5000) as usize;
            fb.events(id, since, limit)
                .ok_or_else(|| FallbackError::NotFound(id.to_owned()))
        }
        "cancel_agent" if args.get("delete").and_then(Value::as_bool) == Some(true) => {
            fb.close(id).await
        }
        "cancel_agent" => fb.interrupt(id).await,
        _ => return Ok(None),
    };
    Ok(Some(match answer {
        Ok(value) => json_result(with_path(value, "fallback")),
        Err(e) => text_result(e.to_string(), true),
    }))
}

/// `create_agent` through the daemon's CLI fallback.
async fn create_fallback(
    agents: &Agents,
    args: &Value,
    ctx: &ToolContext,
    session: &str,
) -> Result<Value, BuiltinError> {
    let backend = args
        .get("backend")
        .and_then(Value::as_str)
        .unwrap_or("claude");
    let strings = |name: &str| -> Result<Vec<String>, BuiltinError> {
        match args.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        BuiltinError::Arguments(format!("`{name}` must be an array of strings"))
                    })
                })
                .collect(),
            Some(v) => Err(BuiltinError::Arguments(format!(
                "`{name}` must be an array of strings, not {v}"
            ))),
        }
    };
    let opt = |name: &str| args.get(name).and_then(Value::as_str).map(str::to_owned);
    let cwd = opt("cwd")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ctx.session.cwd().to_path_buf());
    let mut request =
        json!({ "mcp_servers": args.get("mcp_servers").cloned().unwrap_or(json!({})) });
    if matches!(backend, "claude" | "codex") {
        inject_revka(agents, &mut request, ctx).await?;
    }
    let injected = keeper::injected_session(&request).map(str::to_owned);
    let mcp_servers = request["mcp_servers"].take();
    let create = CreateAgent {
        backend: backend.to_owned(),
        name: opt("name"),
        prompt: opt("prompt").unwrap_or_default(),
        cwd: Some(cwd),
        model: opt("model"),
        allowed_tools: strings("allowed_tools")?,
        system_prompt: opt("system_prompt"),
        mcp_servers: mcp_servers
            .as_object()
            .is_some_and(|m| !m.is_empty())
            .then_some(mcp_servers),
        owner_session: Some(session.to_owned()),
    };
    agents.settings();
    let created = agents.fallback.create(create).await;
    agents.settle_session(
        injected.as_deref(),
        match created.as_ref().ok().and_then(|a| a["id"].as_str()) {
            Some(id) => Settle::Agent(id.to_owned()),
            None => Settle::Failed,
        },
    );
    match created {
        Ok(agent) => {
            if let Some(id) = agent["id"].as_str() {
                agents.ledger.owned(id, "fallback", Some(session));
            }
            Ok(json_result(with_path(agent, "fallback")))
        }
        Err(e) => Ok(text_result(
            format!("create_agent (CLI fallback): {e}"),
            true,
        )),
    }
}

/// Adds `mcp_servers.revka` (Revka's own endpoint, a fresh MCP session for the agent) to a
/// create body of a claude or codex agent, when `[agents] inject_revka` and the caller did
/// not name a `revka` server itself.
async fn inject_revka(
    agents: &Agents,
    body: &mut Value,
    ctx: &ToolContext,
) -> Result<(), BuiltinError> {
    let backend = body.get("backend").and_then(Value::as_str);
    if !agents.settings().inject_revka || matches!(backend, Some("command" | "echo")) {
        return Ok(());
    }
    if body.get("mcp_servers").is_none_or(Value::is_null) {
        body["mcp_servers"] = json!({});
    }
    let Some(servers) = body["mcp_servers"].as_object_mut() else {
        return Err(BuiltinError::Arguments(
            "`mcp_servers` must be an object ({name: {type: \"http\", url, headers?} | {type: \"stdio\", command, args?, env?}})".into(),
        ));
    };
    if servers.contains_key("revka") {
        return Ok(());
    }
    let label = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed")
        .to_owned();
    match agents
        .revka_server(ctx.session.cwd(), &label, ctx.session.id())
        .await
    {
        Ok(server) => {
            if let Some(servers) = body["mcp_servers"].as_object_mut() {
                servers.insert("revka".into(), server);
            }
        }
        Err(e) => tracing::warn!(error = e, "agent created without Revka's MCP endpoint"),
    }
    Ok(())
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required })
}

/// `wait_for_agent`: polls the agent until it is no longer running, reporting progress.
struct WaitForAgent(Arc<Agents>);

impl BuiltinTool for WaitForAgent {
    fn definition(&self) -> Value {
        json!({
            "name": "wait_for_agent",
            "description": "Wait until an agent finishes its current run (or the timeout passes); returns its state and latest events.",
            "inputSchema": object(json!({
                "agent_id": { "type": "string" },
                "timeout_secs": { "type": "integer", "description": "Give up after this long (default 300)." }
            }), &["agent_id"]),
        })
    }

    fn call(
        &self,
        ctx: ToolContext,
        args: Value,
    ) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let agents = self.0.clone();
        Box::pin(async move {
            let sidecar = agents.sidecar.clone();
            let id = arg_str(&args, "agent_id")
                .map_err(BuiltinError::Arguments)?
                .to_owned();
            let limit = Duration::from_secs(
                args.get("timeout_secs")
                    .and_then(Value::as_u64)
                    .unwrap_or(300)
                    .clamp(1, 590),
            );
            let started = Instant::now();
            loop {
                if is_fallback_id(&id) {
                    let Some(agent) = agents.fallback.get(&id) else {
                        return Ok(text_result(FallbackError::NotFound(id).to_string(), true));
                    };
                    let status = agent["status"].as_str().unwrap_or("unknown").to_owned();
                    let done = status != "running";
                    if done || started.elapsed() >= limit {
                        let since = agent["event_count"]
                            .as_u64()
                            .unwrap_or(0)
                            .saturating_sub(20);
                        let events = agents.fallback.events(&id, since, 20);
                        let mut out = json!({
                            "agent": agent, "path": "fallback", "recent_events": events,
                            "waited_secs": started.elapsed().as_secs(),
                        });
                        if !done {
                            out["timed_out"] = json!(true);
                        }
                        return Ok(json_result(out));
                    }
                    (ctx.progress)(ProgressUpdate {
                        progress: json!(started.elapsed().as_secs()),
                        total: Some(json!(limit.as_secs())),
                        message: Some(format!("agent {id} is {status}")),
                    });
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                let agent = match sidecar
                    .request_shaped(
                        "GET",
                        &format!("/agents/{}", seg(&id)),
                        None,
                        None,
                        &[Field::Str("status")],
                    )
                    .await
                {
                    Ok(a) => a,
                    Err(e) => return Ok(text_result(e.to_string(), true)),
                };
                let status = agent["status"].as_str().unwrap_or("unknown").to_owned();
                if status != "running" {
                    let since = agent["event_count"]
                        .as_u64()
                        .unwrap_or(0)
                        .saturating_sub(20);
                    let events = match sidecar
                        .request_shaped(
                            "GET",
                            &format!("/agents/{}/events?since={since}", seg(&id)),
                            None,
                            None,
                            &[Field::Array("events")],
                        )
                        .await
                    {
                        Ok(events) => events,
                        Err(e) => json!({ "unavailable": e.to_string() }),
                    };
                    return Ok(json_result(
                        json!({ "agent": agent, "path": "sidecar", "recent_events": events, "waited_secs": started.elapsed().as_secs() }),
                    ));
                }
                if started.elapsed() >= limit {
                    return Ok(json_result(
                        json!({ "agent": agent, "path": "sidecar", "timed_out": true, "waited_secs": started.elapsed().as_secs() }),
                    ));
                }
                (ctx.progress)(ProgressUpdate {
                    progress: json!(started.elapsed().as_secs()),
                    total: Some(json!(limit.as_secs())),
                    message: Some(format!("agent {id} is {status}")),
                });
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }
}

/// `wait_for_chat_message`: long-polls a room for a message newer than `since`.
struct WaitForChatMessage(SidecarServices);

impl BuiltinTool for WaitForChatMessage {
    fn definition(&self) -> Value {
        json!({
            "name": "wait_for_chat_message",
            "description": "Wait for a new message in a chat room (long poll); returns it, or `timeout: true`.",
            "inputSchema": object(json!({
                "room_id": { "type": "string" },
                "since": { "type": "integer", "description": "Only messages after this sequence number." },
                "timeout_secs": { "type": "integer", "description": "Default 30, at most 120." }
            }), &["room_id"]),
        })
    }

    fn call(
        &self,
        _ctx: ToolContext,
        args: Value,
    ) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let sidecar = self.0.clone();
        Box::pin(async move {
            let room = arg_str(&args, "room_id").map_err(BuiltinError::Arguments)?;
            let since = args.get("since").and_then(Value::as_u64).unwrap_or(0);
            let wait = args
                .get("timeout_secs")
                .and_then(Value::as_u64)
                .unwrap_or(30)
                .clamp(1, 120);
            let path = format!(
                "/chat/rooms/{}/wait?since={since}&timeout={wait}",
                seg(room)
            );
            match sidecar
                .request_shaped(
                    "GET",
                    &path,
                    None,
                    Some(Duration::from_secs(wait + 10)),
                    &[Field::Array("messages"), Field::Bool("timeout")],
                )
                .await
            {
                Ok(v) => Ok(json_result(v)),
                Err(e) => Ok(text_result(e.to_string(), true)),
            }
        })
    }
}

/// Registers the agent and chat tools, or records why they are not available. Without the
/// session manager, the agent tools run on the CLI fallback when `[agents] fallback` is on
/// (at start-up; the chat tools need the session manager).
pub fn register(registry: &mut ToolRegistry, agents: &Arc<Agents>) {
    let sidecar = &agents.sidecar;
    let fallback = agents.settings().fallback;
    let agent_tools = [
        "create_agent",
        "list_agents",
        "get_agent_activity",
        "send_agent_prompt",
        "wait_for_agent",
        "cancel_agent",
    ];
    let chat_tools = [
        "create_chat_room",
        "list_chat_rooms",
        "post_chat_message",
        "read_chat_messages",
        "wait_for_chat_message",
        "delete_chat_room",
    ];
    let only_fallback = !sidecar.enabled;
    if only_fallback {
        for name in agent_tools.iter().chain(&chat_tools).copied() {
            if fallback && agent_tools.contains(&name) {
                continue;
            }
            registry.skip(
                name,
                "needs the session manager ([session_manager] enabled = true)",
            );
        }
        if !fallback {
            return;
        }
    }
    let mut registry = Registrar {
        registry,
        only: only_fallback.then_some(&agent_tools[..]),
    };
    let rest = |name, description, schema, mapper, mutation, shape| {
        Arc::new(RestTool {
            name,
            description,
            schema,
            mapper,
            mutation,
            shape,
            agents: agents.clone(),
        })
    };
    registry.register(rest(
        "create_agent",
        "Start an agent: `claude` (Claude Agent SDK) or `codex` (codex app-server) in the session manager, or `command` (an argv template) / `echo` (tests). Without the session manager (or with on_unavailable: \"fallback\") claude and codex run as CLI processes of the daemon. The result says which path ran (`path`: sidecar, fallback or queued). Agents get Revka's own MCP endpoint as `mcp_servers.revka` unless [agents] inject_revka = false.",
        || object(json!({
            "name": { "type": "string" },
            "backend": { "type": "string", "enum": ["claude", "codex", "command", "echo"], "description": "Default `command` in the session manager, `claude` in the fallback." },
            "prompt": { "type": "string", "description": "First prompt (optional in the session manager, required in the fallback)." },
            "cwd": { "type": "string", "description": "Working directory (default: the session's)." },
            "model": { "type": "string" },
            "allowed_tools": { "type": "array", "items": { "type": "string" }, "description": "Tools the agent may use without asking." },
            "system_prompt": { "type": "string" },
            "mcp_servers": { "type": "object", "description": "{name: {type: \"http\", url, headers?} | {type: \"stdio\", command, args?, env?}}" },
            "budget": { "type": "object", "properties": { "max_cost_usd": { "type": "number" }, "max_tokens": { "type": "integer" } }, "description": "Per-agent limits (default from [agents])." },
            "permission_mode": { "type": "string", "enum": ["default", "acceptEdits", "bypassPermissions", "plan"], "description": "claude only." },
            "approval_policy": { "type": "string", "description": "codex only." },
            "env": { "type": "object", "additionalProperties": { "type": "string" } },
            "argv": { "type": "array", "items": { "type": "string" }, "description": "command only: the template; `{prompt}` is replaced." }
        }), &[]),
        |args, ctx| {
            let mut body = args.clone();
            if let Some(obj) = body.as_object_mut() {
                obj.remove("queue_if_unavailable");
                obj.remove("on_unavailable");
                obj.entry("backend").or_insert(json!("command"));
                obj.entry("cwd").or_insert(json!(ctx.session.cwd()));
            }
            Ok(("POST", "/agents".into(), Some(body)))
        },
        true,
        &[Field::Str("id")],
    ));
    registry.register(rest(
        "list_agents",
        "List the agents of both paths: the session manager's (`path: sidecar`) and the daemon's CLI fallback's (`path: fallback`).",
        || object(json!({}), &[]),
        |_, _| Ok(("GET", "/agents".into(), None)),
        false,
        &[Field::Array("agents")],
    ));
    registry.register(rest(
        "get_agent_activity",
        "An agent's timeline events, after sequence number `since`.",
        || object(json!({ "agent_id": { "type": "string" }, "since": { "type": "integer" }, "limit": { "type": "integer" } }), &["agent_id"]),
        |args, _| {
            let id = arg_str(args, "agent_id")?;
            let since = args.get("since").and_then(Value::as_u64).unwrap_or(0);
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(200).min(5000);
            Ok(("GET", format!("/agents/{}/events?since={since}&limit={limit}", seg(id)), None))
        },
        false,
        &[Field::Array("events")],
    ));
    registry.register(rest(
        "send_agent_prompt",
        "Send a follow-up prompt to an agent (`queue: true` waits for a busy agent); `fb_` agents are the daemon's fallback agents.",
        || object(json!({ "agent_id": { "type": "string" }, "prompt": { "type": "string" }, "queue": { "type": "boolean" } }), &["agent_id", "prompt"]),
        |args, _| {
            let id = arg_str(args, "agent_id")?;
            let prompt = arg_str(args, "prompt")?;
            let queue = args.get("queue").and_then(Value::as_bool).unwrap_or(false);
            Ok(("POST", format!("/agents/{}/query", seg(id)), Some(json!({ "prompt": prompt, "queue": queue }))))
        },
        true,
        &[Field::Bool("queued")],
    ));
    registry.register(Arc::new(WaitForAgent(agents.clone())));
    registry.register(rest(
        "cancel_agent",
        "Interrupt an agent's run; with `delete: true`, also close the agent and clean it up.",
        || {
            object(
                json!({ "agent_id": { "type": "string" }, "delete": { "type": "boolean" } }),
                &["agent_id"],
            )
        },
        |args, _| {
            let id = seg(arg_str(args, "agent_id")?);
            if args.get("delete").and_then(Value::as_bool) == Some(true) {
                Ok(("DELETE", format!("/agents/{id}"), None))
            } else {
                Ok(("POST", format!("/agents/{id}/interrupt"), Some(json!({}))))
            }
        },
        true,
        &[Field::Object("agent")],
    ));
    registry.register(rest(
        "create_chat_room",
        "Create an inter-agent chat room.",
        || object(json!({ "name": { "type": "string" }, "members": { "type": "array", "items": { "type": "string" } } }), &["name"]),
        |args, _| {
            let name = arg_str(args, "name")?;
            Ok(("POST", "/chat/rooms".into(), Some(json!({ "name": name, "members": args.get("members").cloned().unwrap_or(json!([])) }))))
        },
        true,
        &[Field::Str("id")],
    ));
    registry.register(rest(
        "list_chat_rooms",
        "List the chat rooms.",
        || object(json!({}), &[]),
        |_, _| Ok(("GET", "/chat/rooms".into(), None)),
        false,
        &[Field::Array("rooms")],
    ));
    registry.register(rest(
        "post_chat_message",
        "Post a message to a room; @mentioned idle agents get it as a follow-up prompt.",
        || object(json!({ "room_id": { "type": "string" }, "text": { "type": "string" }, "from": { "type": "string" } }), &["room_id", "text"]),
        |args, _| {
            let room = seg(arg_str(args, "room_id")?);
            let text = arg_str(args, "text")?;
            let from = args.get("from").and_then(Value::as_str).unwrap_or("operator");
            Ok(("POST", format!("/chat/rooms/{room}/messages"), Some(json!({ "from": from, "text": text }))))
        },
        true,
        &[Field::Number("id")],
    ));
    registry.register(rest(
        "read_chat_messages",
        "Read a room's messages (`limit`, `since`).",
        || object(json!({ "room_id": { "type": "string" }, "limit": { "type": "integer" }, "since": { "type": "integer" } }), &["room_id"]),
        |args, _| {
            let room = seg(arg_str(args, "room_id")?);
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(50).min(1000);
            let since = args.get("since").and_then(Value::as_u64).unwrap_or(0);
            Ok(("GET", format!("/chat/rooms/{room}/messages?limit={limit}&since={since}"), None))
        },
        false,
        &[Field::Array("messages")],
    ));
    registry.register(Arc::new(WaitForChatMessage(sidecar.clone())));
    registry.register(rest(
        "delete_chat_room",
        "Delete a chat room.",
        || object(json!({ "room_id": { "type": "string" } }), &["room_id"]),
        |args, _| {
            Ok((
                "DELETE",
                format!("/chat/rooms/{}", seg(arg_str(args, "room_id")?)),
                None,
            ))
        },
        true,
        &[Field::Bool("deleted")],
    ));
}

/// Registers tools, only those named in `only` when it is set (the fallback-only tools).
struct Registrar<'a> {
    registry: &'a mut ToolRegistry,
    only: Option<&'a [&'static str]>,
}

impl Registrar<'_> {
    fn register(&mut self, tool: Arc<dyn BuiltinTool>) {
        let def = tool.definition();
        let name = def["name"].as_str().unwrap_or_default();
        if self.only.is_none_or(|only| only.contains(&name)) {
            self.registry.register(tool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_unavailable_defaults_to_queue_for_the_three_mutations_and_takes_the_old_alias() {
        use OnUnavailable::{Fail, Fallback, Queue};
        let of = |tool: &str, args: Value| OnUnavailable::of(tool, &args);
        for tool in QUEUED_BY_DEFAULT {
            assert_eq!(of(tool, json!({})), Ok(Queue), "{tool}");
        }
        assert_eq!(of("create_chat_room", json!({})), Ok(Fail));
        assert_eq!(
            of("create_chat_room", json!({ "queue_if_unavailable": true })),
            Ok(Queue)
        );
        assert_eq!(
            of("create_agent", json!({ "queue_if_unavailable": false })),
            Ok(Fail)
        );
        assert_eq!(
            of("create_agent", json!({ "on_unavailable": "fallback" })),
            Ok(Fallback)
        );
        // on_unavailable wins over the alias.
        assert_eq!(
            of(
                "create_agent",
                json!({ "on_unavailable": "fail", "queue_if_unavailable": true })
            ),
            Ok(Fail)
        );
        assert_eq!(
            of("send_agent_prompt", json!({ "on_unavailable": "fallback" })),
            Err("`on_unavailable: \"fallback\"` is for create_agent only; send_agent_prompt takes \"queue\" or \"fail\"".into())
        );
        assert_eq!(
            of("create_agent", json!({ "on_unavailable": "later" })),
            Err("`on_unavailable` must be \"queue\", \"fallback\" (create_agent only) or \"fail\", not \"later\"".into())
        );
        assert_eq!(
            of("create_agent", json!({ "on_unavailable": 1 })),
            Err("`on_unavailable` must be a string, not 1".into())
        );
        assert_eq!(
            of("create_agent", json!({ "queue_if_unavailable": "yes" })),
            Err("`queue_if_unavailable` must be a boolean, not \"yes\"".into())
        );
    }
}
