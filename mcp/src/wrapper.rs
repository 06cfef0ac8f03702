//! Argument preparation for external MCP tools: the pure half of `McpToolWrapper`.
//!
//! Before a `tools/call` is forwarded, [`prepare_arguments`] turns the arguments the model
//! produced into what the server expects, using the tool's `inputSchema`:
//!
//! - **`approved` is stripped.** Revka's security layer injects `approved: bool` into tool calls
//!   for supervised-mode gating; servers do not know it and may reject it. It is kept only when
//!   the tool's own schema declares an `approved` property.
//! - **String-encoded values are coerced** to the declared type, recursively. Models often send
//!   `"5"` for an integer or `"true"` for a boolean.
//!
//! Arguments may stay raw JSON text ([`Arguments::Raw`], as a client sent them): [`prepare`]
//! forwards them untouched when there is no `approved` to strip and nothing in the schema could
//! convert, and parses them only otherwise. A parsed value holds a number as a 64-bit integer
//! or a double, so raw arguments holding a number that would not survive that (an integer
//! beyond 64 bits, more digits than a double keeps, `1e400`) are not parsed: they are
//! forwarded as sent, unconverted, less a top-level `approved`. No number changes on its way
//! through Revka.
//!
//! Coercion is best effort and never fails the call: a value that already has an accepted type
//! is left alone, and a string that does not convert is forwarded as-is for the server to
//! report. Non-string values are never converted (a number is not turned into a string).
//! Schemas come from servers and may be any JSON; nothing here panics on any schema or value.
//!
//! # Conversions (the string is trimmed of surrounding whitespace first)
//!
//! | declared type | accepted strings                                   | result            |
//! |---------------|----------------------------------------------------|-------------------|
//! | `integer`     | an `i64` or `u64` in decimal (`"5"`, `"-3"`, `"+7"`, `"007"`); not `"5.0"`, `"5e0"` | integer |
//! | `number`      | as for `integer`, else a decimal number whose value a double holds exactly (below) | integer or float |
//! | `boolean`     | `true` / `false`, any case; not `"1"` / `"0"`      | boolean           |
//! | `null`        | `null`, any case                                    | `null`            |
//! | `array`       | JSON text of an array                               | the array         |
//! | `object`      | JSON text of an object                              | the object        |
//!
//! A string converts to a number only with exactly the value it wrote; otherwise it is
//! forwarded unchanged for the server to judge. For `integer` that means an integer that fits
//! 64 bits (leading zeros carry no value; `"-0"` is `0`, an integer has one zero). For `number`
//! it means: an integer that fits 64 bits is that integer; any other decimal
//! (`[+-]digits.digits[eE][+-]digits`, either side of the point may be empty) becomes the
//! nearest double, but only if the text serde_json writes for that double has the same decimal
//! value as the string, digit for digit, zero's sign included. So `"0.1"`, `"1.50"`, `"1e3"`
//! and `"-0"` convert (to `0.1`, `1.5`, `1000.0`, `-0.0`), and `"1.0000000000000000000001"`,
//! `"99999999999999999999"` (beyond 64 bits, and the double is `1e20`), `"1e-400"` (the double
//! is `0.0`), `"1e400"`, `"NaN"` and `"inf"` stay strings. Likewise a string of JSON text
//! becomes the array or object only if every number in it keeps its value when parsed.
//!
//! # Where coercion looks
//!
//! The declared types of a schema node are its `type` (a string or a list, unknown entries
//! ignored), or, without `type`, what `const`, `enum`, `properties`/`additionalProperties`
//! (object) or `items`/`prefixItems` (array) imply. A string is converted to the first declared
//! type that accepts it, in the order listed, unless `string` is among them. Coercion then
//! recurses into `properties` and `additionalProperties` for object members (not
//! `patternProperties`), and into `prefixItems` (or a tuple-form `items` array) then `items` (or
//! `additionalItems`) for array elements, including inside values that were just parsed from a
//! string. `allOf` branches apply in turn. For `anyOf` and `oneOf`, if the value already has a
//! type one branch accepts, that branch alone is applied (to reach nested members); otherwise a
//! string takes the first branch that converts it. A local `$ref` (`#`, `#/$defs/..`,
//! `#/definitions/..`, any JSON pointer into the schema) is followed before the node's own
//! keywords apply; remote refs are ignored. When a string is converted somewhere in a node (by
//! its `$ref`, its own type, a branch), the whole node applies again to the converted value, so
//! that every subschema sees the value as it is forwarded: a `$ref` target's `properties` or an
//! earlier `allOf` branch reach into an object that was still a string when they first saw it.
//!
//! # Limits
//!
//! Parts of a value nested deeper than [`MAX_DEPTH`] (counting `$ref` hops and combinator
//! branches too) are forwarded unconverted; this cuts `$ref` cycles. Schemas that fan out
//! exponentially through `anyOf`/`allOf`/`$ref` are bounded by a work budget (schema nodes
//! visited, proportional to the size of the value): if coercion would exceed it, it is abandoned
//! and the value is forwarded exactly as it came. All or nothing, so that the outcome never
//! depends on where the budget happened to run out.

mod exact;
mod raw;
#[cfg(test)]
mod tests;
mod types;

pub use raw::{
    Arguments, MAX_NESTING, RawArguments, SchemaTraits, prepare, prepare_with, raw_result_is_error,
};

use serde_json::{Map, Value};

use types::{Type, accepts, declared_types};

/// The field Revka's security layer injects into tool calls.
pub const APPROVED_FIELD: &str = "approved";

/// How deep coercion goes: schema `$ref` hops and combinator branches plus nesting of the value.
/// Deeper parts of a value are forwarded unconverted.
pub const MAX_DEPTH: usize = 64;

/// Schema nodes visited per value node before coercion gives up (a guard against `anyOf` and
/// `$ref` schemas that fan out exponentially).
const BUDGET_PER_VALUE: usize = 64;

/// Schema nodes that may always be visited, however small the value.
const BASE_BUDGET: usize = 4096;

/// Why a tool call's arguments cannot be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgumentError {
    /// The arguments are not a JSON object (or `null`, read as no arguments).
    #[error("tool arguments must be a JSON object, got {kind}")]
    NotAnObject {
        /// The JSON type found.
        kind: &'static str,
    },
    /// Raw arguments nest arrays and objects deeper than [`MAX_NESTING`].
    #[error("tool arguments nest deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

/// Prepares a tool call's arguments for the server, following `schema` (the `inputSchema`).
///
/// `args` must be an object; `null` (no arguments) becomes `{}`. The `approved` field is removed
/// unless the schema declares it, then string-encoded values are coerced as the
/// [module docs](self) describe. Members the schema does not mention are kept unchanged.
/// Preparing twice gives the same result as preparing once.
pub fn prepare_arguments(schema: &Value, args: Value) -> Result<Value, ArgumentError> {
    let mut args = match args {
        Value::Null => Map::new(),
        Value::Object(map) => map,
        other => {
            return Err(ArgumentError::NotAnObject {
                kind: json_kind(&other),
            });
        }
    };
    if !declares_property(schema, APPROVED_FIELD) {
        args.remove(APPROVED_FIELD);
    }
    if !may_convert(schema) {
        return Ok(Value::Object(args));
    }
    Ok(coerce(schema, Value::Object(args)))
}

/// Keywords that make a schema node's declared types, or its members' schemas, matter to
/// coercion (see the module docs). A property schema with none of them, or one that declares
/// `string` among its types, never converts anything.
const TYPE_KEYWORDS: [&str; 11] = [
    "type",
    "const",
    "enum",
    "properties",
    "additionalProperties",
    "items",
    "prefixItems",
    "$ref",
    "anyOf",
    "oneOf",
    "allOf",
];

/// Whether coercion could convert any member of an object under `schema`. `false` for the
/// common tool schema, a plain object whose properties are all strings or untyped: coercion
/// would then leave every value as it is, and skipping it spares a copy of the arguments. Any
/// construct not recognised here counts as `true`.
fn may_convert(schema: &Value) -> bool {
    let Some(root) = schema.as_object() else {
        return false; // no keywords, nothing declared: nothing converts
    };
    let plain_root = root.iter().all(|(key, value)| match key.as_str() {
        "type" => value == "object",
        "properties" => value.is_object(),
        "additionalProperties" => value.is_boolean(),
        "$ref" | "anyOf" | "oneOf" | "allOf" | "items" | "prefixItems" | "const" | "enum" => false,
        _ => true, // required, description, $schema, $defs (unused without $ref), ...
    });
    if !plain_root {
        return true;
    }
    let Some(properties) = root.get("properties").and_then(Value::as_object) else {
        return false;
    };
    properties.values().any(|property| {
        let Some(property) = property.as_object() else {
            return false; // `true`/`false` schemas declare no type
        };
        let declares_string = match property.get("type") {
            Some(Value::String(t)) => t == "string",
            Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
            _ => false,
        };
        // `string` among the types: a string value is left as it is, so `type`, `const` and
        // `enum` convert nothing; every other keyword (combinators, refs, and `items` or
        // `properties` for a value of another declared type) still applies, so it counts.
        TYPE_KEYWORDS.iter().any(|k| {
            property.contains_key(*k)
                && !(declares_string && matches!(*k, "type" | "const" | "enum"))
        })
    })
}

/// Coerces `value` to `schema`, which is also the root `$ref`s are resolved against.
///
/// This is the coercion step of [`prepare_arguments`] on its own, for any value. If the work
/// budget runs out, `value` is returned unchanged.
pub fn coerce(schema: &Value, value: Value) -> Value {
    let mut coercer = Coercer {
        root: schema,
        budget: BASE_BUDGET.saturating_add(value_size(&value).saturating_mul(BUDGET_PER_VALUE)),
        exhausted: false,
    };
    let coerced = coercer.node(schema, value.clone(), 0);
    if coercer.exhausted { value } else { coerced }
}

/// Whether a tool result reports a tool-level failure: its `isError` member is `true`.
///
/// Only the boolean `true` counts; a missing, `false`, or malformed `isError` means success.
pub fn result_is_error(result: &Value) -> bool {
    result.get("isError") == Some(&Value::Bool(true))
}

/// The JSON type of a value, for messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether the root schema (after local `$ref`s, and through `allOf`/`anyOf`/`oneOf` one level
/// down) declares a property `name`.
fn declares_property(schema: &Value, name: &str) -> bool {
    let root = schema;
    let mut node = schema;
    for _ in 0..MAX_DEPTH {
        let declared = |n: &Value| {
            n.get("properties")
                .and_then(Value::as_object)
                .is_some_and(|props| props.contains_key(name))
        };
        let in_branch = ["allOf", "anyOf", "oneOf"].iter().any(|key| {
            node.get(key)
                .and_then(Value::as_array)
                .is_some_and(|branches| {
                    branches
                        .iter()
                        .any(|b| declared(b) || resolve_ref(root, b).is_some_and(declared))
                })
        });
        if declared(node) || in_branch {
            return true;
        }
        match resolve_ref(root, node) {
            Some(target) => node = target,
            None => return false,
        }
    }
    false
}

/// The target of `node`'s `$ref`, if it is a local JSON pointer that resolves in `root`.
fn resolve_ref<'r>(root: &'r Value, node: &Value) -> Option<&'r Value> {
    let reference = node.get("$ref")?.as_str()?;
    root.pointer(reference.strip_prefix('#')?)
}

/// How many JSON values `value` contains, itself included; at most `usize::MAX / 2`.
fn value_size(value: &Value) -> usize {
    let mut stack = vec![value];
    let mut count = 0usize;
    while let Some(v) = stack.pop() {
        count = count.saturating_add(1);
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    count.min(usize::MAX / 2)
}

/// One coercion pass over a value.
struct Coercer<'r> {
    /// The schema `$ref`s resolve against.
    root: &'r Value,
    /// Schema nodes that may still be visited.
    budget: usize,
    /// A visit was refused for want of budget: the result is incomplete and is not used.
    exhausted: bool,
}

impl Coercer<'_> {
    /// Takes one schema-node visit from the budget; `false` (and exhausted) when none is left.
    fn visit(&mut self) -> bool {
        if self.budget == 0 {
            self.exhausted = true;
            return false;
        }
        self.budget -= 1;
        true
    }

    /// Coerces `value` to the schema `node`: once, and once more if that converted a string,
    /// so that the node's subschemas that saw the string also apply to what it became (the
    /// second pass cannot convert anything at this level, a parsed value is never a string).
    fn node(&mut self, node: &Value, value: Value, depth: usize) -> Value {
        let was_string = value.is_string();
        let value = self.node_once(node, value, depth);
        if was_string && !value.is_string() {
            self.node_once(node, value, depth)
        } else {
            value
        }
    }

    /// One application of the schema `node` to `value`.
    fn node_once(&mut self, node: &Value, value: Value, depth: usize) -> Value {
        if depth >= MAX_DEPTH || !node.is_object() || !self.visit() {
            return value;
        }
        let mut value = value;
        if let Some(target) = resolve_ref(self.root, node) {
            value = self.node(target, value, depth + 1);
        }
        if let Value::String(s) = &value {
            let types = declared_types(node);
            if let Some(types) = types.filter(|types| !types.contains(&Type::String))
                && let Some(parsed) = types.iter().find_map(|t| t.parse(s))
            {
                value = parsed;
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = node.get(key) {
                value = self.alternatives(branches, value, depth + 1);
            }
        }
        if let Some(Value::Array(branches)) = node.get("allOf") {
            for branch in branches {
                value = self.node(branch, value, depth + 1);
            }
        }
        match value {
            Value::Object(map) => Value::Object(self.members(node, map, depth + 1)),
            Value::Array(items) => Value::Array(self.items(node, items, depth + 1)),
            other => other,
        }
    }

    /// Coerces `value` to one of `branches` (`anyOf` or `oneOf`).
    fn alternatives(&mut self, branches: &[Value], value: Value, depth: usize) -> Value {
        let kind = Type::of(&value);
        let fitting = branches
            .iter()
            .find(|&branch| accepts(self.branch_types(branch, depth).as_deref(), kind));
        if let Some(branch) = fitting {
            return self.node(branch, value, depth);
        }
        if !value.is_string() {
            return value;
        }
        for branch in branches {
            let converted = self.node(branch, value.clone(), depth);
            if !converted.is_string() {
                return converted;
            }
        }
        value
    }

    /// The types a branch accepts, looking through `$ref`s and nested `anyOf`/`oneOf`.
    fn branch_types(&mut self, branch: &Value, depth: usize) -> Option<Vec<Type>> {
        if depth >= MAX_DEPTH || !self.visit() {
            return None;
        }
        if !branch.is_object() {
            // `true` accepts anything; `false` and invalid schemas accept nothing.
            return (branch != &Value::Bool(true)).then(Vec::new);
        }
        if let Some(types) = declared_types(branch) {
            return Some(types);
        }
        if let Some(target) = resolve_ref(self.root, branch) {
            return self.branch_types(target, depth + 1);
        }
        let mut union = Vec::new();
        let mut constrained = false;
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(nested)) = branch.get(key) {
                constrained = true;
                for b in nested {
                    union.extend(self.branch_types(b, depth + 1)?);
                }
            }
        }
        constrained.then_some(union)
    }

    /// Coerces an object's members to `properties` / `additionalProperties`.
    fn members(
        &mut self,
        node: &Value,
        map: Map<String, Value>,
        depth: usize,
    ) -> Map<String, Value> {
        let properties = node.get("properties").and_then(Value::as_object);
        let additional = node.get("additionalProperties");
        if properties.is_none() && additional.is_none() {
            return map;
        }
        map.into_iter()
            .map(|(key, member)| {
                let schema = properties.and_then(|p| p.get(&key)).or(additional);
                let member = match schema {
                    Some(schema) => self.node(schema, member, depth),
                    None => member,
                };
                (key, member)
            })
            .collect()
    }

    /// Coerces an array's elements to `prefixItems` / `items` / `additionalItems`.
    fn items(&mut self, node: &Value, items: Vec<Value>, depth: usize) -> Vec<Value> {
        let (prefix, rest) = match (node.get("prefixItems"), node.get("items")) {
            (Some(Value::Array(prefix)), rest) => (prefix.as_slice(), rest),
            (_, Some(Value::Array(prefix))) => (prefix.as_slice(), node.get("additionalItems")),
            (_, rest) => (&[][..], rest),
        };
        if prefix.is_empty() && rest.is_none() {
            return items;
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match prefix.get(i).or(rest) {
                Some(schema) => self.node(schema, item, depth),
                None => item,
            })
            .collect()
    }
}
