//! Running a resolved tool to its result: [`ToolRegistry::execute`], the one place a call
//! leaves the MCP server's framing (`mcp_http::call`) for the tool that answers it.
//!
//! Every route ends in an MCP tool result, never an error or a panic reaching the caller:
//! - a **built-in** tool runs in the caller's task, behind a panic guard (a panic is an error
//!   result naming the tool and the panic, and the server carries on) and the per-call ceiling
//!   [`MAX_CALL`] (a tool still running then is dropped and answered with an error result);
//! - an **external** tool goes to its server through the hub, under the server's
//!   `tool_timeout_secs` (and the same ceiling, applied by the hub);
//! - an **operator** tool goes to the calling session's own operator
//!   ([`Session::call_operator`]), which is started on first use.
//!
//! Dropping the future cancels the call: an external or operator server gets
//! `notifications/cancelled`, a built-in tool's future is dropped.
//!
//! [`Session::call_operator`]: revka_actors::session::Session::call_operator

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use revka_actors::mcp::hub::{MAX_CALL, McpHub};
use revka_mcp::client::CallOptions;
use revka_mcp::protocol::tool_error_result;
use revka_mcp::wrapper::{Arguments, RawArguments};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{BuiltinTool, Resolved, ToolContext, ToolRegistry};

impl ToolRegistry {
    /// Runs `resolved` with `arguments` for the call `ctx` describes, to its result. Failures
    /// of any kind are error results (`isError: true`) with a message for the caller.
    pub async fn execute(
        resolved: Resolved,
        ctx: ToolContext,
        arguments: RawArguments,
    ) -> Box<RawValue> {
        match resolved {
            Resolved::External(route) => {
                let opts = CallOptions {
                    timeout: Duration::ZERO, // the server's tool_timeout_secs
                    progress: Some(ctx.progress),
                    relay: ctx.relay,
                    ..Default::default()
                };
                match McpHub::call_route(&route, Arguments::Raw(arguments), &opts).await {
                    Ok(result) => result,
                    Err(e) => tool_error_result(&e.to_string()),
                }
            }
            Resolved::Operator(tool) => {
                let opts = CallOptions {
                    timeout: Duration::ZERO, // the operator's tool_timeout_secs
                    progress: Some(ctx.progress),
                    relay: ctx.relay.clone(),
                    ..Default::default()
                };
                match ctx
                    .session
                    .call_operator(&tool, Arguments::Raw(arguments), &opts)
                    .await
                {
                    Ok(result) => result,
                    Err(e) => tool_error_result(&e.to_string()),
                }
            }
            Resolved::Builtin(tool) => run_builtin(tool, ctx, arguments).await,
        }
    }
}

/// Runs a built-in tool behind the panic guard, for at most [`MAX_CALL`].
async fn run_builtin(
    tool: std::sync::Arc<dyn BuiltinTool>,
    ctx: ToolContext,
    arguments: RawArguments,
) -> Box<RawValue> {
    let arguments = Arguments::Raw(arguments).into_value();
    let run = AssertUnwindSafe(tool.call(ctx, arguments)).catch_unwind();
    match tokio::time::timeout(MAX_CALL, run).await {
        Ok(Ok(Ok(result))) => RawValue::from_string(result.to_string())
            .unwrap_or_else(|_| tool_error_result("invalid tool result")),
        Ok(Ok(Err(e))) => tool_error_result(&e.to_string()),
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let name = name_of(&*tool);
            tracing::error!(tool = %name, panic = %what, "built-in tool panicked");
            tool_error_result(&format!("tool `{name}` failed internally: {what}"))
        }
        Err(_) => tool_error_result(&format!(
            "tool `{}` did not finish within {}s",
            name_of(&*tool),
            MAX_CALL.as_secs()
        )),
    }
}

/// A built-in tool's name, from its definition: the name it is registered, and so called,
/// under. Only read when a call fails, so the common path builds no definition.
fn name_of(tool: &dyn BuiltinTool) -> String {
    tool.definition()
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_owned()
}
