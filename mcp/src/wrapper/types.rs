//! JSON Schema types as coercion sees them: what a schema node declares, what a value is, and
//! how a string converts to a type. Part of [`wrapper`](super); the conversion table is in its
//! docs.

use serde_json::{Number, Value};

use super::exact::{has_inexact_number, parse_integer, parse_number};

/// A JSON Schema primitive type, as far as coercion cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Type {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl Type {
    fn from_name(name: &str) -> Option<Type> {
        Some(match name {
            "null" => Type::Null,
            "boolean" => Type::Boolean,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "string" => Type::String,
            "array" => Type::Array,
            "object" => Type::Object,
            _ => return None,
        })
    }

    /// The narrowest type of a value.
    pub(super) fn of(value: &Value) -> Type {
        match value {
            Value::Null => Type::Null,
            Value::Bool(_) => Type::Boolean,
            Value::Number(n) if is_integer(n) => Type::Integer,
            Value::Number(_) => Type::Number,
            Value::String(_) => Type::String,
            Value::Array(_) => Type::Array,
            Value::Object(_) => Type::Object,
        }
    }

    /// Whether a value of type `self` is valid for a declared type `declared`.
    fn fits(self, declared: Type) -> bool {
        self == declared || (self == Type::Integer && declared == Type::Number)
    }

    /// Converts a string to this type, if it encodes a value of it.
    pub(super) fn parse(self, s: &str) -> Option<Value> {
        let s = s.trim();
        match self {
            Type::Null => s.eq_ignore_ascii_case("null").then_some(Value::Null),
            Type::Boolean => {
                if s.eq_ignore_ascii_case("true") {
                    Some(Value::Bool(true))
                } else if s.eq_ignore_ascii_case("false") {
                    Some(Value::Bool(false))
                } else {
                    None
                }
            }
            Type::Integer => parse_integer(s),
            Type::Number => parse_number(s),
            Type::String => None,
            Type::Array => s
                .starts_with('[')
                .then(|| parse_exact(s))
                .flatten()
                .filter(Value::is_array),
            Type::Object => s
                .starts_with('{')
                .then(|| parse_exact(s))
                .flatten()
                .filter(Value::is_object),
        }
    }
}

/// JSON text as a value, if it parses and every number in it keeps its value in a [`Value`].
fn parse_exact(s: &str) -> Option<Value> {
    let value = serde_json::from_str(s).ok()?;
    (!has_inexact_number(s)).then_some(value)
}

/// Whether a JSON number is an integer (`1.0` is, as in JSON Schema).
fn is_integer(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// The types a schema node declares, in order; `None` when it does not constrain the type.
pub(super) fn declared_types(node: &Value) -> Option<Vec<Type>> {
    let map = node.as_object()?;
    match map.get("type") {
        Some(Value::String(name)) => return Some(Type::from_name(name).into_iter().collect()),
        Some(Value::Array(names)) => {
            return Some(
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(Type::from_name)
                    .collect(),
            );
        }
        _ => {}
    }
    let values: Option<Vec<&Value>> = match (map.get("const"), map.get("enum")) {
        (Some(value), _) => Some(vec![value]),
        (None, Some(Value::Array(values))) => Some(values.iter().collect()),
        _ => None,
    };
    if let Some(values) = values {
        let mut types: Vec<Type> = Vec::new();
        for t in values.into_iter().map(Type::of) {
            if !types.contains(&t) {
                types.push(t);
            }
        }
        return Some(types);
    }
    if ["properties", "additionalProperties"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return Some(vec![Type::Object]);
    }
    if ["items", "prefixItems"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return Some(vec![Type::Array]);
    }
    None
}

/// Whether a value of type `value` is valid for `declared` (`None`: anything is).
pub(super) fn accepts(declared: Option<&[Type]>, value: Type) -> bool {
    declared.is_none_or(|types| types.iter().any(|&t| value.fits(t)))
}
