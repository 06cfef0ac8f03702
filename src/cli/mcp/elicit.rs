//! How `revka mcp call` answers a server's `elicitation/create` (form mode): by asking the
//! person at the terminal, field by field, or without asking (accept the schema's defaults, or
//! decline), as `--elicitation` says.
//!
//! Part of `revka mcp` ([`super`]); the call's client hands each request here and sends the
//! returned result back. Asking reads stdin and writes stderr (stdout is the call's result):
//! each field of `requestedSchema` is shown with its title, description, choices and default;
//! an empty line takes the default (or leaves an optional field out); a value that does not
//! fit the field's type or bounds is asked again. Then the person accepts, declines or
//! cancels. When stdin is not a terminal, `ask` declines: nobody is there to answer.
//! URL-mode requests are declined (Revka advertises form mode only).

use std::io::{BufRead, Write};

use serde_json::{Map, Value, json};

/// `--elicitation`: how a server's request for user input is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ElicitMode {
    /// Ask the person at the terminal; decline when stdin is not a terminal.
    #[default]
    Ask,
    /// Accept at once with every default the requested schema gives (fields without one are
    /// left out).
    Defaults,
    /// Decline every request.
    Decline,
}

/// The fields of a requested schema, in the order the server wrote them (the order they are
/// asked in).
type Fields = Vec<(String, Value)>;

/// The `ElicitResult` for a request whose params are the JSON text `params`, answered as
/// `mode` says; `tty`: whether stdin is a terminal; `input` and `output` are where the person
/// is asked.
pub(super) fn answer(
    mode: ElicitMode,
    params: &str,
    tty: bool,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> Value {
    let value: Value = serde_json::from_str(params).unwrap_or_default();
    let form = value["mode"].as_str().is_none_or(|m| m == "form");
    let fields = serde_json::from_str::<Params>(params)
        .ok()
        .and_then(|p| p.requested_schema)
        .map(|s| s.properties.0)
        .unwrap_or_default();
    match (mode, form) {
        (ElicitMode::Decline, _) | (_, false) => action("decline"),
        (ElicitMode::Defaults, true) => accept(defaults(&fields)),
        (ElicitMode::Ask, true) if !tty => action("decline"),
        (ElicitMode::Ask, true) => {
            ask(&value, &fields, input, output).unwrap_or_else(|_| action("cancel"))
        }
    }
}

#[derive(serde::Deserialize)]
struct Params {
    #[serde(rename = "requestedSchema")]
    requested_schema: Option<Schema>,
}

#[derive(serde::Deserialize)]
struct Schema {
    #[serde(default)]
    properties: InOrder,
}

/// A JSON object's members in document order.
#[derive(Default)]
struct InOrder(Fields);

impl<'de> serde::Deserialize<'de> for InOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = InOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<InOrder, A::Error> {
                let mut fields = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    fields.push(member);
                }
                Ok(InOrder(fields))
            }
        }
        d.deserialize_map(Members)
    }
}

fn action(name: &str) -> Value {
    json!({ "action": name })
}

fn accept(content: Map<String, Value>) -> Value {
    json!({ "action": "accept", "content": content })
}

/// Every field's `default`, where it has one.
fn defaults(fields: &Fields) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|(name, schema)| Some((name.clone(), schema.get("default")?.clone())))
        .collect()
}

/// Asks for every field, then for accept / decline / cancel. An I/O error (stdin closed)
/// cancels.
fn ask(
    params: &Value,
    fields: &Fields,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> std::io::Result<Value> {
    let message = params["message"].as_str().unwrap_or("(no message)");
    writeln!(out, "\nThe server asks: {message}")?;
    let required: Vec<&str> = params["requestedSchema"]["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut content = Map::new();
    for (name, schema) in fields {
        let needed = required.contains(&name.as_str());
        if let Some(value) = ask_field(name, schema, needed, input, out)? {
            content.insert(name.clone(), value);
        }
    }
    loop {
        write!(out, "Send this answer? [a]ccept, [d]ecline, [c]ancel: ")?;
        out.flush()?;
        match read_line(input)?.to_ascii_lowercase().as_str() {
            "a" | "accept" | "y" | "yes" => return Ok(accept(content)),
            "d" | "decline" | "n" | "no" => return Ok(action("decline")),
            "c" | "cancel" => return Ok(action("cancel")),
            _ => {}
        }
    }
}

fn read_line(input: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim().to_owned())
}

/// Asks for one field until the answer fits; `None`: left out (empty, optional, no default).
fn ask_field(
    name: &str,
    schema: &Value,
    required: bool,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> std::io::Result<Option<Value>> {
    let title = schema["title"].as_str().unwrap_or(name);
    let mut prompt = format!("  {title}");
    if let Some(description) = schema["description"].as_str() {
        prompt.push_str(&format!(" ({description})"));
    }
    let choices = choices(schema);
    if !choices.is_empty() {
        let shown: Vec<&str> = choices.iter().map(|(value, _)| value.as_str()).collect();
        let many = schema["type"] == "array";
        let how = if many { "comma-separated" } else { "one of" };
        prompt.push_str(&format!(" [{how}: {}]", shown.join(", ")));
    } else if let Some(kind) = schema["type"].as_str() {
        prompt.push_str(&format!(" [{kind}]"));
    }
    if let Some(default) = schema.get("default") {
        prompt.push_str(&format!(" (default {default})"));
    } else if !required {
        prompt.push_str(" (optional)");
    }
    loop {
        write!(out, "{prompt}: ")?;
        out.flush()?;
        let line = read_line(input)?;
        if line.is_empty() {
            if let Some(default) = schema.get("default") {
                return Ok(Some(default.clone()));
            }
            if !required {
                return Ok(None);
            }
            writeln!(out, "    a value is required")?;
            continue;
        }
        match parse_field(schema, &line) {
            Ok(value) => return Ok(Some(value)),
            Err(why) => writeln!(out, "    {why}")?,
        }
    }
}

/// The allowed values of an enum field (single: `enum` or `oneOf` of `const`; multi: the
/// array's `items` likewise), with their titles.
fn choices(schema: &Value) -> Vec<(String, Option<String>)> {
    let of = if schema["type"] == "array" {
        &schema["items"]
    } else {
        schema
    };
    if let Some(values) = of["enum"].as_array() {
        return values
            .iter()
            .filter_map(|v| Some((v.as_str()?.to_owned(), None)))
            .collect();
    }
    of["oneOf"]
        .as_array()
        .or(of["anyOf"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let value = c["const"].as_str()?.to_owned();
            Some((value, c["title"].as_str().map(str::to_owned)))
        })
        .collect()
}

/// The person's answer for one field as the schema's type, or why it does not fit.
fn parse_field(schema: &Value, line: &str) -> Result<Value, String> {
    let choices = choices(schema);
    let pick = |text: &str| -> Result<Value, String> {
        let text = text.trim();
        choices
            .iter()
            .find(|(value, title)| value == text || title.as_deref() == Some(text))
            .map(|(value, _)| Value::String(value.clone()))
            .ok_or_else(|| format!("`{text}` is not one of the choices"))
    };
    match schema["type"].as_str() {
        Some("array") => {
            let picked = line
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(pick)
                .collect::<Result<Vec<_>, _>>()?;
            let n = picked.len() as u64;
            if schema["minItems"].as_u64().is_some_and(|min| n < min) {
                return Err(format!("pick at least {}", schema["minItems"]));
            }
            if schema["maxItems"].as_u64().is_some_and(|max| n > max) {
                return Err(format!("pick at most {}", schema["maxItems"]));
            }
            Ok(Value::Array(picked))
        }
        _ if !choices.is_empty() => pick(line),
        Some("boolean") => match line.to_ascii_lowercase().as_str() {
            "y" | "yes" | "true" => Ok(Value::Bool(true)),
            "n" | "no" | "false" => Ok(Value::Bool(false)),
            _ => Err("answer yes or no".into()),
        },
        Some(kind @ ("number" | "integer")) => {
            let not = if kind == "integer" {
                "not an integer"
            } else {
                "not a number"
            };
            let number: f64 = line.parse().map_err(|_| not.to_owned())?;
            if kind == "integer" && number.fract() != 0.0 {
                return Err("not an integer".into());
            }
            if schema["minimum"].as_f64().is_some_and(|min| number < min) {
                return Err(format!("at least {}", schema["minimum"]));
            }
            if schema["maximum"].as_f64().is_some_and(|max| number > max) {
                return Err(format!("at most {}", schema["maximum"]));
            }
            if kind == "integer" {
                Ok(json!(line.parse::<i64>().map_err(|_| "not an integer")?))
            } else {
                Ok(json!(number))
            }
        }
        _ => {
            let chars = line.chars().count() as u64;
            if schema["minLength"].as_u64().is_some_and(|min| chars < min) {
                return Err(format!("at least {} characters", schema["minLength"]));
            }
            if schema["maxLength"].as_u64().is_some_and(|max| chars > max) {
                return Err(format!("at most {} characters", schema["maxLength"]));
            }
            Ok(Value::String(line.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema of the conformance suite's SEP-1034 scenario, plus a required field
    /// without a default and a multi-select.
    fn request() -> &'static str {
        r#"{
            "message": "Please fill in",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "name": { "type": "string", "default": "John Doe" },
                    "age": { "type": "integer", "default": 30, "minimum": 0 },
                    "score": { "type": "number", "default": 95.5 },
                    "status": { "type": "string", "enum": ["active", "inactive"], "default": "active" },
                    "verified": { "type": "boolean", "default": true },
                    "email": { "type": "string", "title": "E-mail" },
                    "tags": { "type": "array", "items": { "anyOf": [
                        { "const": "a", "title": "Alpha" }, { "const": "b", "title": "Beta" } ] } }
                },
                "required": ["email"]
            }
        }"#
    }

    fn run(mode: ElicitMode, tty: bool, typed: &str) -> (Value, String) {
        let mut out = Vec::new();
        let result = answer(mode, request(), tty, &mut typed.as_bytes(), &mut out);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn defaults_accepts_every_default_and_leaves_out_the_rest() {
        let (result, asked) = run(ElicitMode::Defaults, true, "");
        assert_eq!(
            result,
            json!({ "action": "accept", "content": {
                "name": "John Doe", "age": 30, "score": 95.5, "status": "active", "verified": true,
            } })
        );
        assert!(asked.is_empty());
    }

    #[test]
    fn ask_declines_without_a_terminal_and_decline_always_declines() {
        assert_eq!(
            run(ElicitMode::Ask, false, "").0,
            json!({ "action": "decline" })
        );
        assert_eq!(
            run(ElicitMode::Decline, true, "").0,
            json!({ "action": "decline" })
        );
        let url = json!({ "mode": "url", "url": "https://example.com", "message": "go" });
        let url = url.to_string();
        let result = answer(
            ElicitMode::Defaults,
            &url,
            true,
            &mut &b""[..],
            &mut Vec::new(),
        );
        assert_eq!(result, json!({ "action": "decline" }));
    }

    /// Empty lines take defaults, wrong values are asked again, titles pick choices, and the
    /// person's last word decides.
    #[test]
    fn ask_applies_defaults_checks_types_and_asks_to_confirm() {
        // name, age (bad, negative, then 41), score, status (bad, then ok), verified (no),
        // email (empty: required, then given), tags (by title and value), then accept.
        let typed = "\nforty\n-1\n41\n\nzombie\ninactive\nno\n\nme@example.com\nAlpha, b\nx\na\n";
        let (result, asked) = run(ElicitMode::Ask, true, typed);
        assert_eq!(
            result,
            json!({ "action": "accept", "content": {
                "name": "John Doe", "age": 41, "score": 95.5, "status": "inactive",
                "verified": false, "email": "me@example.com", "tags": ["a", "b"],
            } })
        );
        assert!(asked.contains("The server asks: Please fill in"), "{asked}");
        assert!(asked.contains("not an integer"), "{asked}");
        assert!(asked.contains("at least 0"), "{asked}");
        assert!(
            asked.contains("`zombie` is not one of the choices"),
            "{asked}"
        );
        assert!(asked.contains("a value is required"), "{asked}");
        assert!(asked.contains("E-mail"), "{asked}");
        let (declined, _) = run(ElicitMode::Ask, true, "\n\n\n\n\nx@y\n\nd\n");
        assert_eq!(declined, json!({ "action": "decline" }));
        // Stdin closed midway: cancelled.
        assert_eq!(
            run(ElicitMode::Ask, true, "\n").0,
            json!({ "action": "cancel" })
        );
    }
}
