//! A `[[mcp.servers]]` entry as the dashboard's config editor reads and writes it: the entry's
//! table as JSON (values as written, `${VAR}` unexpanded), and an edit ([`ServerEdit`]) merged
//! into the entry in place.
//!
//! Part of the config editor ([`super::ConfigFile`]), used by `root/gateway`'s config API
//! (`GET|PUT|DELETE /api/config/servers`). The merge rule, for a key of the entry:
//!
//! - given a value in the edit: set; an existing value keeps its spacing and trailing comment,
//!   an existing table (`env`, `headers`, `restart`) keeps its form (`[mcp.servers.env]` or
//!   inline) with the keys the edit lists, in place, and loses the others;
//! - given `null`: removed;
//! - absent from the edit: kept as written, except that when the edit moves the entry between
//!   a local (`stdio`) and a remote (`http`, `sse`, `url`) transport, the keys of the other
//!   kind (`command`, `args`, `env` / `url`, `headers`) are removed unless the edit gives them.
//!
//! Keys the editor does not know (a key a newer Revka reads, a typo the loader warns about)
//! are never touched by an edit of the entry. A new entry's keys come in the order
//! [`FIELDS`] lists them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use toml_edit::{Array, InlineTable, Item, Table, TableLike, Value};

/// The keys an edit may set, in the order a new entry writes them.
pub const FIELDS: [&str; 14] = [
    "name",
    "transport",
    "command",
    "args",
    "url",
    "env",
    "headers",
    "tool_timeout_secs",
    "auto_connect",
    "reset_timeout_on_progress",
    "roots",
    "allowed_tools",
    "denied_tools",
    "restart",
];

/// The keys only a local (stdio) server uses.
const LOCAL_KEYS: [&str; 3] = ["command", "args", "env"];
/// The keys only a remote server uses.
const REMOTE_KEYS: [&str; 2] = ["url", "headers"];

/// A key's new value.
#[derive(Debug, Clone)]
enum New {
    /// A value (string, number, boolean, array).
    Value(Value),
    /// A table of values (`env`, `headers`, `restart`), in order.
    Map(Vec<(String, Value)>),
}

/// An edit of one `[[mcp.servers]]` entry: the keys the request gave, each a value or `null`
/// (remove), in [`FIELDS`] order. See the module docs for how it is merged.
#[derive(Debug, Clone, Default)]
pub struct ServerEdit {
    name: Option<String>,
    transport: Option<Option<String>>,
    changes: Vec<(&'static str, Option<New>)>,
}

/// The request body: every field optional, `null` distinct from absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default, deserialize_with = "given")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "given")]
    transport: Option<Option<String>>,
    #[serde(default, deserialize_with = "given")]
    command: Option<Option<String>>,
    #[serde(default, deserialize_with = "given")]
    args: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "given")]
    url: Option<Option<String>>,
    #[serde(default, deserialize_with = "given")]
    env: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, deserialize_with = "given")]
    headers: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, deserialize_with = "given")]
    tool_timeout_secs: Option<Option<i64>>,
    #[serde(default, deserialize_with = "given")]
    auto_connect: Option<Option<bool>>,
    #[serde(default, deserialize_with = "given")]
    reset_timeout_on_progress: Option<Option<bool>>,
    #[serde(default, deserialize_with = "given")]
    roots: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "given")]
    allowed_tools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "given")]
    denied_tools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "given")]
    restart: Option<Option<serde_json::Map<String, serde_json::Value>>>,
}

/// A field that is present: `Some(None)` for `null`, `Some(Some(v))` for a value.
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    de: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(de).map(Some)
}

fn strings(values: Vec<String>) -> Value {
    Value::Array(values.iter().map(String::as_str).collect::<Array>())
}

fn map(values: BTreeMap<String, String>) -> New {
    New::Map(
        values
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect(),
    )
}

impl ServerEdit {
    /// Reads an edit from a JSON object of the entry's keys ([`FIELDS`]). `Err` says what is
    /// wrong (not JSON, not an object, an unknown key, a value of the wrong type).
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if !value.is_object() {
            return Err(format!(
                "expected a JSON object of the entry's keys, got {}",
                kind_of(&value)
            ));
        }
        let body: Body = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let mut edit = Self {
            name: body.name.flatten(),
            transport: body.transport.clone(),
            changes: Vec::new(),
        };
        let mut push = |key: &'static str, change: Option<Option<New>>| {
            if let Some(change) = change {
                edit.changes.push((key, change));
            }
        };
        let value = |v: Value| New::Value(v);
        push(
            "transport",
            body.transport.map(|t| t.map(|t| value(t.into()))),
        );
        push("command", body.command.map(|c| c.map(|c| value(c.into()))));
        push("args", body.args.map(|a| a.map(|a| value(strings(a)))));
        push("url", body.url.map(|u| u.map(|u| value(u.into()))));
        push("env", body.env.map(|e| e.map(map)));
        push("headers", body.headers.map(|h| h.map(map)));
        push(
            "tool_timeout_secs",
            body.tool_timeout_secs.map(|t| t.map(|t| value(t.into()))),
        );
        push(
            "auto_connect",
            body.auto_connect.map(|b| b.map(|b| value(b.into()))),
        );
        push(
            "reset_timeout_on_progress",
            body.reset_timeout_on_progress
                .map(|b| b.map(|b| value(b.into()))),
        );
        push("roots", body.roots.map(|r| r.map(|r| value(strings(r)))));
        push(
            "allowed_tools",
            body.allowed_tools.map(|a| a.map(|a| value(strings(a)))),
        );
        push(
            "denied_tools",
            body.denied_tools.map(|d| d.map(|d| value(strings(d)))),
        );
        let restart = match body.restart {
            None => None,
            Some(None) => Some(None),
            Some(Some(fields)) => {
                let mut pairs = Vec::with_capacity(fields.len());
                for (key, v) in fields {
                    let v = match &v {
                        serde_json::Value::Bool(b) => Value::from(*b),
                        serde_json::Value::String(s) => Value::from(s.as_str()),
                        serde_json::Value::Number(n) => match n.as_i64() {
                            Some(i) => Value::from(i),
                            None => {
                                return Err(format!(
                                    "restart.{key}: expected a whole number, got {n}"
                                ));
                            }
                        },
                        other => {
                            return Err(format!(
                                "restart.{key}: expected a number, a boolean or a string, got {other}"
                            ));
                        }
                    };
                    pairs.push((key, v));
                }
                Some(Some(New::Map(pairs)))
            }
        };
        push("restart", restart);
        Ok(edit)
    }

    /// The `name` the body gave, if any (it must be the entry's).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The entry's new table (for a server the file does not have yet), keys in [`FIELDS`]
    /// order; `null`s are left out.
    pub(super) fn new_table(&self, name: &str) -> Table {
        let mut table = Table::new();
        table.insert("name", toml_edit::value(name));
        for (key, change) in &self.changes {
            match change {
                Some(New::Value(v)) => {
                    table.insert(key, Item::Value(v.clone()));
                }
                Some(New::Map(pairs)) => {
                    table.insert(key, Item::Value(Value::InlineTable(inline(pairs))));
                }
                None => {}
            }
        }
        table
    }

    /// Merges the edit into an existing entry (see the module docs for the rule).
    pub(super) fn merge_into(&self, entry: &mut dyn TableLike) {
        let written = entry
            .get("transport")
            .and_then(Item::as_str)
            .unwrap_or("stdio")
            .to_owned();
        if let Some(new) = &self.transport {
            let new = new.as_deref().unwrap_or("stdio");
            let drop: &[&str] = match (kind(&written), kind(new)) {
                (Some(true), Some(false)) => &LOCAL_KEYS,
                (Some(false), Some(true)) => &REMOTE_KEYS,
                _ => &[],
            };
            for key in drop {
                if !self.changes.iter().any(|(k, _)| k == key) {
                    entry.remove(key);
                }
            }
        }
        for (key, change) in &self.changes {
            match change {
                None => {
                    entry.remove(key);
                }
                Some(New::Value(v)) => set_value(entry, key, v.clone()),
                Some(New::Map(pairs)) => set_map(entry, key, pairs),
            }
        }
    }
}

/// What a JSON value is, for messages.
fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `Some(true)` for a local transport, `Some(false)` for a remote one, `None` for a value that
/// names none (the loader reports it).
fn kind(transport: &str) -> Option<bool> {
    match transport {
        "stdio" => Some(true),
        "http" | "sse" | "url" => Some(false),
        _ => None,
    }
}

fn inline(pairs: &[(String, Value)]) -> InlineTable {
    pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

/// Sets `key` to `value`; an existing value keeps its decor (spacing, trailing comment).
fn set_value(table: &mut dyn TableLike, key: &str, mut value: Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        Some(other) => *other = Item::Value(value),
        None => {
            table.insert(key, Item::Value(value));
        }
    }
}

/// Sets `key` to a table of `pairs`, keeping an existing table's form and its keys' decor.
fn set_map(table: &mut dyn TableLike, key: &str, pairs: &[(String, Value)]) {
    let existing: Option<&mut dyn TableLike> = match table.get_mut(key) {
        Some(Item::Table(t)) => Some(t),
        Some(Item::Value(Value::InlineTable(t))) => Some(t),
        _ => None,
    };
    match existing {
        Some(sub) => {
            let stale: Vec<String> = sub
                .iter()
                .map(|(k, _)| k.to_owned())
                .filter(|k| !pairs.iter().any(|(p, _)| p == k))
                .collect();
            for k in stale {
                sub.remove(&k);
            }
            for (k, v) in pairs {
                set_value(sub, k, v.clone());
            }
        }
        None => set_value(table, key, Value::InlineTable(inline(pairs))),
    }
}

/// The entry's table as JSON, keys and values as written.
pub(super) fn table_json(table: &dyn TableLike) -> serde_json::Map<String, serde_json::Value> {
    table
        .iter()
        .map(|(k, item)| (k.to_owned(), item_json(item)))
        .collect()
}

fn item_json(item: &Item) -> serde_json::Value {
    match item {
        Item::None => serde_json::Value::Null,
        Item::Value(v) => value_json(v),
        Item::Table(t) => serde_json::Value::Object(table_json(t)),
        Item::ArrayOfTables(aot) => aot
            .iter()
            .map(|t| serde_json::Value::Object(table_json(t)))
            .collect(),
    }
}

fn value_json(value: &Value) -> serde_json::Value {
    match value {
        Value::String(s) => s.value().as_str().into(),
        Value::Integer(i) => (*i.value()).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f.value())
            .map_or_else(|| f.value().to_string().into(), serde_json::Value::Number),
        Value::Boolean(b) => (*b.value()).into(),
        Value::Datetime(d) => d.value().to_string().into(),
        Value::Array(a) => a.iter().map(value_json).collect(),
        Value::InlineTable(t) => serde_json::Value::Object(table_json(t)),
    }
}
