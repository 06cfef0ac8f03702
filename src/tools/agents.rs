//! Native agent-lifecycle and chat-room tools (seed 000), served by the session-manager
//! sidecar through its circuit breaker.
//!
//! Each tool maps its arguments to one REST call on the sidecar (`RestTool`); the two that
//! wait (`wait_for_agent`, `wait_for_chat_message`) poll or long-poll with progress. Mutations
//! accept `queue_if_unavailable: true`: when the breaker is open or the sidecar is restarting,
//! the call is put on the persistent retry queue instead of failing, and the result says so.
//! Every answer is checked for the fields the tool relies on ([`Field`]): an answer of another
//! shape is an error result naming what is wrong, and a failure for the breaker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use revka_mcp::protocol::ProgressUpdate;
use serde_json::{Value, json};

use super::{BuiltinError, BuiltinTool, ToolContext, ToolRegistry};
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

/// A tool that is one REST call on the session manager.
struct RestTool {
    name: &'static str,
    description: &'static str,
    schema: fn() -> Value,
    mapper: Mapper,
    /// Mutations may be queued when the sidecar is unavailable.
    mutation: bool,
    /// What the answer must hold (else it is an error result and a breaker failure).
    shape: &'static [Field],
    sidecar: SidecarServices,
}

impl BuiltinTool for RestTool {
    fn definition(&self) -> Value {
        let mut schema = (self.schema)();
        if self.mutation {
            schema["properties"]["queue_if_unavailable"] = json!({
                "type": "boolean",
                "description": "If the session manager is down, queue this change and retry it later instead of failing."
            });
        }
        json!({ "name": self.name, "description": self.description, "inputSchema": schema })
    }

    fn call(
        &self,
        ctx: ToolContext,
        args: Value,
    ) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let request = (self.mapper)(&args, &ctx);
        let sidecar = self.sidecar.clone();
        let shape = self.shape;
        let queue = self.mutation
            && args.get("queue_if_unavailable").and_then(Value::as_bool) == Some(true);
        Box::pin(async move {
            let (method, path, body) = request.map_err(BuiltinError::Arguments)?;
            // A mutation that may be queued is keyed from its first attempt: if that one
            // timed out after the sidecar acted, the queued retries are answered, not re-run.
            let key = queue.then(SidecarServices::operation_id);
            let answer = sidecar
                .request_keyed(method, &path, body.clone(), None, shape, key.as_deref())
                .await;
            match (answer, key) {
                (Ok(value), _) => Ok(json_result(value)),
                (Err(e), Some(id)) if e.is_unavailable() => {
                    let id = match sidecar.enqueue(id, method, &path, body).await {
                        Ok(id) => id,
                        Err(queue) => return Err(BuiltinError::NotQueued { call: e, queue }),
                    };
                    Ok(json_result(
                        json!({ "queued": true, "operation_id": id, "reason": e.to_string() }),
                    ))
                }
                (Err(e), _) => Ok(text_result(e.to_string(), true)),
            }
        })
    }
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required })
}

/// `wait_for_agent`: polls the agent until it is no longer running, reporting progress.
struct WaitForAgent(SidecarServices);

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
        let sidecar = self.0.clone();
        Box::pin(async move {
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
                        json!({ "agent": agent, "recent_events": events, "waited_secs": started.elapsed().as_secs() }),
                    ));
                }
                if started.elapsed() >= limit {
                    return Ok(json_result(
                        json!({ "agent": agent, "timed_out": true, "waited_secs": started.elapsed().as_secs() }),
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

/// Registers the agent and chat tools, or records why they are not available.
pub fn register(registry: &mut ToolRegistry, sidecar: &SidecarServices) {
    let names = [
        "create_agent",
        "list_agents",
        "get_agent_activity",
        "send_agent_prompt",
        "wait_for_agent",
        "cancel_agent",
        "create_chat_room",
        "list_chat_rooms",
        "post_chat_message",
        "read_chat_messages",
        "wait_for_chat_message",
        "delete_chat_room",
    ];
    if !sidecar.enabled {
        for name in names {
            registry.skip(
                name,
                "needs the session manager ([session_manager] enabled = true)",
            );
        }
        return;
    }
    let rest = |name, description, schema, mapper, mutation, shape| {
        Arc::new(RestTool {
            name,
            description,
            schema,
            mapper,
            mutation,
            shape,
            sidecar: sidecar.clone(),
        })
    };
    registry.register(rest(
        "create_agent",
        "Start an agent session in the session manager (backend `command` runs the configured agent CLI; `echo` is for tests).",
        || object(json!({
            "name": { "type": "string" },
            "backend": { "type": "string", "enum": ["command", "echo"] },
            "prompt": { "type": "string", "description": "First prompt (optional)." },
            "cwd": { "type": "string", "description": "Working directory (default: the session's)." },
            "argv": { "type": "array", "items": { "type": "string" }, "description": "Command template; `{prompt}` is replaced." }
        }), &[]),
        |args, ctx| {
            let mut body = args.clone();
            if let Some(obj) = body.as_object_mut() {
                obj.remove("queue_if_unavailable");
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
        "List the agent sessions.",
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
        "Send a follow-up prompt to an agent (`queue: true` waits for a busy agent).",
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
    registry.register(Arc::new(WaitForAgent(sidecar.clone())));
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
