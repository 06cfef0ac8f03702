//! The JSON-RPC oracle shared by the framing and message targets: parsing never panics, every
//! error maps to a JSON-RPC code, every accepted message re-serialises to one line that
//! parses back to the same message, and its id is echoed with exactly the text the line had. Results and params are also run through the code that
//! interprets them later (initialize and tools/list results, `isError`, progress params), all
//! of which must stay within serde_json's recursion limit.

use std::collections::HashMap;

use revka_mcp::jsonrpc::{ErrorObject, Id, Incoming, parse_message};
use revka_mcp::protocol::{parse_initialize_result, parse_tools_page};
use revka_mcp::wrapper::raw_result_is_error;
use serde_json::Value;
use serde_json::value::RawValue;

/// Checks one line (without its terminator).
pub fn check_line(line: &[u8]) {
    let msg = match parse_message(line) {
        Ok(msg) => msg,
        Err(e) => {
            let code = e.code();
            assert!(
                code == ErrorObject::PARSE_ERROR || code == ErrorObject::INVALID_REQUEST,
                "unexpected code {code} for {e}"
            );
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let out = to_line(&msg);
    assert!(
        !out.contains(&b'\n') && !out.contains(&b'\r'),
        "a serialised message is one line"
    );
    let back = parse_message(&out).unwrap_or_else(|e| {
        panic!(
            "re-serialised message does not parse: {e}\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_same(&msg, &back);
    assert_eq!(to_line(&back), out, "serialising is stable");
    if let Some(id) = id_of(&msg) {
        assert_eq!(
            Some(id.to_string()),
            id_text(line),
            "an id is echoed byte for byte"
        );
    }
    interpret(&msg);
}

fn id_of(msg: &Incoming) -> Option<&Id> {
    match msg {
        Incoming::Request(r) => Some(&r.id),
        Incoming::Response(r) => r.id.as_ref(),
        Incoming::Notification(_) => None,
    }
}

/// The JSON text of the line's `id` member (an accepted message has at most one).
fn id_text(line: &[u8]) -> Option<String> {
    let members: HashMap<String, &RawValue> = serde_json::from_slice(line).ok()?;
    members.get("id").map(|raw| raw.get().to_owned())
}

fn to_line(msg: &Incoming) -> Vec<u8> {
    match msg {
        Incoming::Request(r) => r.to_line(),
        Incoming::Notification(n) => n.to_line(),
        Incoming::Response(r) => r.to_line(),
    }
}

/// Raw JSON as it is after `to_line`: CR and LF (insignificant whitespace) become spaces.
fn one_line(raw: Option<&RawValue>) -> Option<String> {
    raw.map(|r| r.get().replace(['\r', '\n'], " "))
}

fn assert_same(a: &Incoming, b: &Incoming) {
    match (a, b) {
        (Incoming::Request(a), Incoming::Request(b)) => {
            assert_eq!(a.id, b.id);
            assert_eq!(a.method, b.method);
            assert_eq!(one_line(a.params.as_deref()), one_line(b.params.as_deref()));
        }
        (Incoming::Notification(a), Incoming::Notification(b)) => {
            assert_eq!(a.method, b.method);
            assert_eq!(one_line(a.params.as_deref()), one_line(b.params.as_deref()));
        }
        (Incoming::Response(a), Incoming::Response(b)) => {
            assert_eq!(a.id, b.id);
            match (&a.result, &b.result) {
                (Ok(x), Ok(y)) => assert_eq!(one_line(Some(x)), one_line(Some(y))),
                (Err(x), Err(y)) => assert_eq!(x, y),
                _ => panic!("result and error swapped"),
            }
        }
        _ => panic!("message kind changed: {a:?} became {b:?}"),
    }
}

/// What the client does with a message's opaque members later.
fn interpret(msg: &Incoming) {
    match msg {
        Incoming::Response(r) => {
            if let Ok(result) = &r.result {
                let _ = parse_initialize_result(result);
                let _ = parse_tools_page(result);
                let _ = raw_result_is_error(result);
                let _ = serde_json::from_str::<Value>(result.get());
            }
        }
        Incoming::Request(r) => {
            if let Some(params) = &r.params {
                let _ = serde_json::from_str::<Value>(params.get());
            }
        }
        Incoming::Notification(n) => {
            if let Some(params) = &n.params {
                let _ = serde_json::from_str::<Value>(params.get());
            }
        }
    }
}
