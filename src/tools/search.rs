//! `tool_search`: finds deferred external tools and activates them for the calling session
//! (seed 002). `select:a,b` returns exact names (any served tool: one already visible gets its
//! schema again) and activates the deferred ones; keywords rank the still-deferred tools by
//! matching terms. The answer is a `<functions>` block with each tool's full schema, plus a
//! `Not found:` line for names that matched nothing. A scoped session searches, and so can
//! activate, only the tools of its scope.
//!
//! [`engine`] is the pure part (arguments, `select:` and keyword search, the `<functions>`
//! block); this module runs it over a session's tools and activates what it returns.

pub(crate) mod engine;

use futures::future::BoxFuture;
use revka_actors::session::SessionEvent;
use serde_json::{Value, json};

use self::engine::{self as search, DeferredTool};
use super::{BuiltinError, BuiltinTool, ToolContext};

/// The `tool_search` built-in tool.
#[derive(Debug, Clone, Copy)]
pub struct ToolSearch;

impl BuiltinTool for ToolSearch {
    fn definition(&self) -> Value {
        json!({
            "name": super::TOOL_SEARCH,
            "description": "Load the full schemas of deferred MCP tools and activate them for this session. \
                Use \"select:<name>[,<name>...]\" for exact names (as listed in <available-deferred-tools>), \
                or keywords for a ranked search. Activated tools can then be called by name.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": { "type": "string", "description": "select:<name>[,<name>...] or free-text keywords" },
                    "max_results": { "type": "number", "description": "Maximum results in keyword mode (default 5, at most 50)" }
                },
                "required": ["query"]
            }
        })
    }

    fn call(
        &self,
        ctx: ToolContext,
        arguments: Value,
    ) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        Box::pin(async move {
            let args = search::parse_args(&arguments)?;
            // `allowed_tools` / `denied_tools` already kept filtered tools out of the hub's
            // table, so out of `tools`: they never reach the cut. `select:` sees every tool
            // (a visible one returns its schema again); keywords rank only the deferred ones,
            // so the eager and activated tools take no `max_results` slot.
            // Only the session's in-scope tools: one outside its scope is `Not found`.
            let tools: Vec<DeferredTool> = ctx.registry.searchable(&ctx.session);
            let selecting = matches!(args.query, search::Query::Select(_));
            let outcome = search::search(
                &tools,
                |name| selecting || !ctx.registry.visible_in(&ctx.session, name),
                &args,
            );
            let activated = outcome.activated();
            if ctx
                .registry
                .activate(&ctx.session, activated.iter().copied())
            {
                tracing::info!(session = %ctx.session.id(), tools = ?activated, "tools activated");
                ctx.session.publish(SessionEvent::ToolsChanged);
            }
            Ok(json!({ "content": [{ "type": "text", "text": outcome.text() }], "isError": false }))
        })
    }
}
