//! `surface_server`: a stdio MCP server with resources and prompts that change at runtime, for
//! the tests of Revka's resources, prompts and subscriptions (`tests/mcp_surface.rs`).
//!
//! It offers resources `<scheme>://doc/a` and `<scheme>://doc/b` (`--scheme`, default
//! `surface`, so two instances can serve URIs of their own), prompts `greet(name)` and `other`,
//! and three tools:
//! - `add_entries`: adds prompt `added_<n>` and resource `<scheme>://added/<n>`, then sends
//!   `notifications/prompts/list_changed` and `notifications/resources/list_changed`, before
//!   its answer;
//! - `subscriptions`: the `resources/subscribe` and `resources/unsubscribe` requests this
//!   process received, in order, as the JSON text `[["subscribe", uri], ...]`;
//! - `touch(uri)`: sends `notifications/resources/updated` for `uri`.
//!
//! Protocol: newline-delimited JSON-RPC 2.0 on stdin/stdout, blocking, one message at a time;
//! exits 0 on stdin EOF. It declares `resources` (`subscribe`, `listChanged`), `prompts`
//! (`listChanged`) and `tools`.

use std::io::{self, BufRead, Write};

use serde_json::{Value, json};

const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const RESOURCE_NOT_FOUND: i64 = -32002;

/// What the server offers now, and what it was asked.
struct Server {
    scheme: String,
    /// Resource URIs, in list order.
    resources: Vec<String>,
    /// Prompt names, in list order.
    prompts: Vec<String>,
    /// Entries `add_entries` added so far.
    added: usize,
    /// `("subscribe" | "unsubscribe", uri)`, in the order received.
    subscriptions: Vec<(String, String)>,
}

impl Server {
    fn new(scheme: String) -> Self {
        Self {
            resources: vec![format!("{scheme}://doc/a"), format!("{scheme}://doc/b")],
            prompts: vec!["greet".into(), "other".into()],
            scheme,
            added: 0,
            subscriptions: Vec::new(),
        }
    }

    /// The answer to request `method` (a result or an error), after writing any notification
    /// it sends first.
    fn answer(&mut self, out: &mut impl Write, method: &str, params: &Value) -> io::Result<Answer> {
        let arg = |name: &str| params.get(name).and_then(Value::as_str).unwrap_or_default();
        Ok(match method {
            "initialize" => Ok(json!({
                "protocolVersion": params.get("protocolVersion").cloned()
                    .unwrap_or_else(|| json!("2025-11-25")),
                "capabilities": {
                    "resources": { "subscribe": true, "listChanged": true },
                    "prompts": { "listChanged": true },
                    "tools": {},
                },
                "serverInfo": { "name": "surface_server", "version": env!("CARGO_PKG_VERSION") },
            })),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({ "tools": [
                tool("add_entries", "Adds a prompt and a resource, and announces both.", json!({})),
                tool("subscriptions", "The subscribe/unsubscribe requests received.", json!({})),
                tool("touch", "Sends resources/updated for a URI.",
                     json!({ "uri": { "type": "string" } })),
            ] })),
            "tools/call" => self.call(out, arg("name"), &params["arguments"])?,
            "resources/list" => Ok(json!({
                "resources": self.resources.iter()
                    .map(|uri| json!({ "uri": uri, "name": uri, "mimeType": "text/plain" }))
                    .collect::<Vec<_>>(),
            })),
            "resources/templates/list" => Ok(json!({ "resourceTemplates": [] })),
            "resources/read" => {
                let uri = arg("uri");
                if self.resources.iter().any(|r| r == uri) {
                    Ok(json!({ "contents": [
                        { "uri": uri, "mimeType": "text/plain", "text": format!("text of {uri}") },
                    ] }))
                } else {
                    Err((RESOURCE_NOT_FOUND, format!("Resource not found: {uri}")))
                }
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let kind = method.trim_start_matches("resources/");
                self.subscriptions
                    .push((kind.to_owned(), arg("uri").to_owned()));
                Ok(json!({}))
            }
            "prompts/list" => Ok(json!({
                "prompts": self.prompts.iter().map(|name| {
                    let arguments = if name == "greet" {
                        json!([{ "name": "name", "required": true }])
                    } else {
                        json!([])
                    };
                    json!({ "name": name, "description": format!("prompt {name}"), "arguments": arguments })
                }).collect::<Vec<_>>(),
            })),
            "prompts/get" => {
                let name = arg("name");
                if self.prompts.iter().any(|p| p == name) {
                    let who = params["arguments"]["name"].as_str().unwrap_or("you");
                    Ok(json!({ "messages": [{ "role": "user", "content": {
                        "type": "text", "text": format!("{name}: hello, {who}"),
                    } }] }))
                } else {
                    Err((INVALID_PARAMS, format!("unknown prompt: {name}")))
                }
            }
            other => Err((METHOD_NOT_FOUND, format!("method not found: {other}"))),
        })
    }

    /// `tools/call` of `name`.
    fn call(&mut self, out: &mut impl Write, name: &str, arguments: &Value) -> io::Result<Answer> {
        let text = match name {
            "add_entries" => {
                self.added += 1;
                let prompt = format!("added_{}", self.added);
                let uri = format!("{}://added/{}", self.scheme, self.added);
                self.prompts.push(prompt.clone());
                self.resources.push(uri.clone());
                notify(out, "notifications/prompts/list_changed", None)?;
                notify(out, "notifications/resources/list_changed", None)?;
                json!({ "prompt": prompt, "uri": uri }).to_string()
            }
            "subscriptions" => json!(self.subscriptions).to_string(),
            "touch" => {
                let uri = arguments["uri"].as_str().unwrap_or_default();
                notify(
                    out,
                    "notifications/resources/updated",
                    Some(json!({ "uri": uri })),
                )?;
                format!("touched {uri}")
            }
            other => return Ok(Err((INVALID_PARAMS, format!("unknown tool: {other}")))),
        };
        Ok(Ok(json!({ "content": [{ "type": "text", "text": text }] })))
    }
}

/// A request's outcome: its result, or an error's code and message.
type Answer = Result<Value, (i64, String)>;

fn tool(name: &str, description: &str, properties: Value) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": { "type": "object", "properties": properties },
    })
}

fn notify(out: &mut impl Write, method: &str, params: Option<Value>) -> io::Result<()> {
    let mut message = json!({ "jsonrpc": "2.0", "method": method });
    if let Some(params) = params {
        message["params"] = params;
    }
    write_line(out, &message)
}

fn write_line(out: &mut impl Write, message: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, message)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut scheme = "surface".to_owned();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--scheme", Some(value)) => scheme = value,
            _ => {
                eprintln!("usage: surface_server [--scheme NAME]");
                std::process::exit(64);
            }
        }
    }
    let mut server = Server::new(scheme);
    let mut out = io::stdout().lock();
    for line in io::stdin().lock().lines() {
        let Ok(message) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        // Notifications and answers to requests it never sends get no answer.
        let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) else {
            continue;
        };
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let reply = match server.answer(&mut out, method, &params)? {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err((code, text)) => {
                json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": text } })
            }
        };
        write_line(&mut out, &reply)?;
    }
    Ok(())
}
