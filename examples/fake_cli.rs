//! `fake_cli`: a stand-in for a coding CLI, for the Code tab's tests (`tests/terminal.rs`).
//!
//! Run in a terminal by a `[[terminal.launchers]]` entry, it does what a real CLI does with the
//! MCP config Revka hands it, and prints each step so a test can read it off the terminal:
//!
//! 1. Reads the config: the file of `--mcp-config <file>`, else of `$REVKA_MCP_CONFIG`, and
//!    prints `CONFIG <json>` (one line), then `ENV REVKA_SESSION_ID=<id>` and
//!    `ENV REVKA_MCP_URL=<url>`, then `READY`.
//! 2. Reads lines from the terminal. `call` calls the tool of `--tool <name>` (default
//!    `fault__progress`) with the arguments of `--args <json>` (default
//!    `{"steps":3,"interval_ms":50}`) through the config's `mcpServers.revka` entry, the
//!    two-header flow: `initialize`, `tool_search` to activate the tool (deferred loading),
//!    then `tools/call` with a progress token. It prints
//!    `PROGRESS <n>` per progress notification and `RESULT <text>` (or `ERROR <why>`), then
//!    `READY` again. `quit` exits 0; any other line is printed back as `ECHO <line>`; end of
//!    input exits 0.

use std::io::BufRead;

use serde_json::{Value, json};

fn main() {
    let mut config_path = std::env::var("REVKA_MCP_CONFIG").ok();
    let mut tool = "fault__progress".to_owned();
    let mut arguments = json!({ "steps": 3, "interval_ms": 50 });
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mcp-config" => config_path = args.next(),
            "--tool" => tool = args.next().unwrap_or(tool),
            "--args" => {
                arguments = args
                    .next()
                    .and_then(|a| serde_json::from_str(&a).ok())
                    .unwrap_or(arguments);
            }
            other => println!("IGNORED {other}"),
        }
    }
    let Some(config_path) = config_path else {
        println!("ERROR no MCP config (neither --mcp-config nor REVKA_MCP_CONFIG)");
        std::process::exit(2);
    };
    let config: Value = match std::fs::read(&config_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(e) => {
            println!("ERROR cannot read {config_path}: {e}");
            std::process::exit(2);
        }
    };
    println!("CONFIG {config}");
    for name in ["REVKA_SESSION_ID", "REVKA_MCP_URL"] {
        println!("ENV {name}={}", std::env::var(name).unwrap_or_default());
    }
    println!("READY");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("ERROR no runtime: {e}");
            std::process::exit(2);
        }
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "call" => {
                match runtime.block_on(call(&config["mcpServers"]["revka"], &tool, &arguments)) {
                    Ok(text) => println!("RESULT {text}"),
                    Err(e) => println!("ERROR {e}"),
                }
                println!("READY");
            }
            "quit" => return,
            other => println!("ECHO {other}"),
        }
    }
}

/// `initialize`, then `tools/call` of `tool`, through the server entry `server`
/// (`{"url": …, "headers": {…}}`); prints the progress, returns the result's text.
async fn call(server: &Value, tool: &str, arguments: &Value) -> Result<String, String> {
    let url = server["url"].as_str().ok_or("the config names no url")?;
    let headers = server["headers"]
        .as_object()
        .ok_or("the config names no headers")?;
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let mut request = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str().unwrap_or_default());
        }
        request.body(body.to_string()).send()
    };
    let init = post(json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2024-11-05", "capabilities": {},
                    "clientInfo": { "name": "fake_cli", "version": "0" } },
    }))
    .await
    .map_err(|e| format!("initialize: {e}"))?;
    if !init.status().is_success() {
        return Err(format!("initialize: HTTP {}", init.status()));
    }
    // With deferred loading the tool is activated first, as a model would (`tool_search`);
    // where there is no such tool the error is of no matter.
    let _ = post(json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": { "name": "tool_search", "arguments": { "query": format!("select:{tool}") } },
    }))
    .await
    .map_err(|e| format!("tool_search: {e}"))?
    .text()
    .await;
    let response = post(json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": tool, "arguments": arguments, "_meta": { "progressToken": "fake-cli" } },
    }))
    .await
    .map_err(|e| format!("tools/call: {e}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("tools/call: {e}"))?;
    if !status.is_success() {
        return Err(format!("tools/call: HTTP {status}: {body}"));
    }
    // An SSE stream (`data:` lines) or one JSON answer.
    let messages: Vec<Value> = if body.trim_start().starts_with('{') {
        serde_json::from_str(&body).into_iter().collect()
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    let mut result = None;
    for message in messages {
        if message["method"] == "notifications/progress" {
            println!("PROGRESS {}", message["params"]["progress"]);
        } else if message["id"] == 2 {
            result = Some(message);
        }
    }
    let result = result.ok_or("no answer to tools/call")?;
    if let Some(error) = result.get("error") {
        return Err(format!("tools/call: {error}"));
    }
    let text = result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if result["result"]["isError"] == true {
        return Err(format!("tool error: {text}"));
    }
    Ok(text)
}
