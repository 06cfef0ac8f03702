//! Argument preparation on an arbitrary schema and arbitrary arguments (both JSON, split at the
//! first NUL byte), as a server's `inputSchema` and a model's arguments would arrive.
//!
//! Checked: no panic or stack overflow; `prepare_arguments` succeeds exactly for an object or
//! `null` and returns an object; preparing twice gives what preparing once gave; a string
//! coerced to a number has exactly that number's value, and one coerced to an array or object
//! held no number a parse changes (checked with this target's own reading of decimals);
//! `tool_search` over a tool with that schema parses, searches and renders without panicking.

#![no_main]

// `tool_search`'s pure part lives in the daemon crate (src/tools/search/engine.rs); it needs only
// revka-mcp and serde_json, so it is compiled in here rather than pulling in the daemon.
#[path = "../../src/tools/search/engine.rs"]
#[allow(dead_code)]
mod engine;

use engine::{DeferredTool, parse_args, render, search};
use revka_mcp::wrapper::{coerce, prepare_arguments};
use serde_json::{Number, Value, json};

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

    check_exact(&args, &coerce(&schema, args.clone()));
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

/// What coercion made of `before`: a string turned into a number has exactly its value (zero's
/// sign aside for an integer: an integer has one zero), and one turned into an array or object
/// held only numbers that keep their value, and is checked further inside.
fn check_exact(before: &Value, after: &Value) {
    match (before, after) {
        (Value::String(s), Value::Number(n)) => {
            let (wrote, got) = (value_of(s), value_of(&n.to_string()));
            let integer_zero = !n.is_f64() && got.as_ref().is_some_and(|g| g.1.is_empty());
            let same = match (&wrote, &got) {
                (Some(w), Some(g)) if integer_zero => w.1.is_empty() && g.1.is_empty(),
                (Some(w), Some(g)) => w == g,
                _ => false,
            };
            assert!(same, "{s:?} became {n}");
        }
        (Value::String(s), Value::Array(_) | Value::Object(_)) => {
            for token in number_tokens(s) {
                let kept = token
                    .parse::<Number>()
                    .ok()
                    .map(|n| value_of(&n.to_string()));
                assert_eq!(
                    kept,
                    Some(value_of(token)),
                    "{s:?} was parsed, losing {token}"
                );
            }
            let parsed: Value = serde_json::from_str(s.trim()).expect("it parsed");
            check_exact(&parsed, after);
        }
        (Value::Array(a), Value::Array(b)) => {
            for (a, b) in a.iter().zip(b) {
                check_exact(a, b);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (key, b) in b {
                if let Some(a) = a.get(key) {
                    check_exact(a, b);
                }
            }
        }
        _ => {}
    }
}

/// The value of decimal text, `±digits × 10^exp` with no leading or trailing zero in `digits`
/// (`digits` empty for zero); `None` if it is not decimal text.
fn value_of(text: &str) -> Option<(bool, String, i64)> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = rest.split_once(['e', 'E']).unwrap_or((rest, "0"));
    let exp_digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    if exp_digits.is_empty() || !exp_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    if all.is_empty() || !all.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = all.trim_start_matches('0');
    let digits = significant.trim_end_matches('0');
    if digits.is_empty() {
        return Some((negative, String::new(), 0));
    }
    // Beyond `i64`, no double's exponent: such text never converts, and compares as unknown.
    let exp = exp
        .parse::<i64>()
        .ok()?
        .checked_sub(frac.len() as i64)?
        .checked_add((significant.len() - digits.len()) as i64)?;
    Some((negative, digits.to_owned(), exp))
}

/// The number tokens of valid JSON text, outside strings.
fn number_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut in_string = false;
    while let Some((at, c)) = chars.next() {
        match (in_string, c) {
            (true, '\\') => {
                chars.next();
            }
            (_, '"') => in_string = !in_string,
            (false, '-' | '0'..='9') => {
                let mut end = at + 1;
                while let Some(&(i, c)) = chars.peek() {
                    if !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E') {
                        break;
                    }
                    end = i + 1;
                    chars.next();
                }
                tokens.push(&text[at..end]);
            }
            _ => {}
        }
    }
    tokens
}
