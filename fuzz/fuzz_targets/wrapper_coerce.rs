//! Argument preparation on an arbitrary schema and arbitrary arguments (both JSON, split at the
//! first NUL byte), as a server's `inputSchema` and a model's arguments would arrive.
//!
//! Checked: no panic or stack overflow; `prepare_arguments` succeeds exactly for an object or
//! `null` and returns an object; preparing twice gives what preparing once gave; `tool_search`
//! over a tool with that schema parses, searches and renders without panicking.

#![no_main]

use revka_actors::mcp::search::{DeferredTool, parse_args, render, search};
use revka_actors::mcp::wrapper::{coerce, prepare_arguments};
use serde_json::{Value, json};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (schema, args) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(schema) = serde_json::from_slice::<Value>(schema) else {
        return;
    };
    let Ok(args) = serde_json::from_slice::<Value>(args) else {
        return;
    };

    let _ = coerce(&schema, args.clone());
    let is_object = args.is_object() || args.is_null();
    match prepare_arguments(&schema, args.clone()) {
        Ok(once) => {
            assert!(is_object && once.is_object());
            let twice = prepare_arguments(&schema, once.clone()).expect("an object stays valid");
            assert_eq!(twice, once, "preparing twice differs from preparing once");
        }
        Err(e) => {
            assert!(!is_object);
            assert!(!e.to_string().is_empty());
        }
    }

    let tools = [DeferredTool::from_definition(
        "srv__tool",
        json!({ "name": "tool", "description": "a tool", "inputSchema": schema }),
    )];
    if let Ok(search_args) = parse_args(&args) {
        let outcome = search(&tools, |_| true, &search_args);
        let _ = outcome.text();
    }
    let found: Vec<&DeferredTool> = tools.iter().collect();
    let text = render(&found, &[]);
    assert!(text.starts_with("<functions>"));
});
