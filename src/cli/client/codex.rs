//! Codex's `config.toml`: the `[mcp_servers.revka]` table, edited with toml_edit so every
//! comment, blank line and key order of the rest of the file stays.
//!
//! Part of `revka client` ([`super`]). A new table goes right after the last
//! `[mcp_servers.*]` table, or after everything else when there is none (before the comments
//! that end the file, which stay last); a replaced one keeps its header, its place and the
//! comments above it; a removed one takes only itself, so adding then removing gives back the
//! original. `mcp_servers` written as an inline table is edited as one.

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use super::splice::Json;
use crate::config::edit::layout::last_position;

/// Why Codex's file cannot be edited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TomlError {
    /// Not valid TOML.
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// A key on the way to the entry holds something other than a table.
    #[error("`{0}` is not a table")]
    NotATable(String),
}

/// A parsed `config.toml`.
#[derive(Debug)]
pub(super) struct TomlDocument {
    doc: DocumentMut,
    /// The same file as plain values, for reading entries.
    value: toml::Table,
}

impl TomlDocument {
    /// Parses `text` (empty is fine: a new file).
    pub(super) fn parse(text: &str) -> Result<Self, TomlError> {
        let syntax = |e: &dyn std::fmt::Display| TomlError::Syntax(e.to_string().trim().to_owned());
        let doc: DocumentMut = text.parse().map_err(|e| syntax(&e))?;
        let value: toml::Table = toml::from_str(text).map_err(|e| syntax(&e))?;
        Ok(Self { doc, value })
    }

    /// The entry `servers.key`, as JSON, when there is one.
    pub(super) fn get(&self, servers: &str, key: &str) -> Option<serde_json::Value> {
        let entry = self.value.get(servers)?.get(key)?;
        serde_json::to_value(entry).ok()
    }

    /// The file with `servers.key` set to `entry` (a [`Json::Map`] of strings, string lists
    /// and one level of string maps).
    pub(super) fn upsert(
        &mut self,
        servers: &str,
        key: &str,
        entry: &Json,
    ) -> Result<String, TomlError> {
        let after = match self.doc.get(servers).and_then(Item::as_table) {
            Some(t) if last_position(t) > 0 => last_position(t),
            _ => last_position(self.doc.as_table()),
        };
        if self.doc.get(servers).and_then(|s| s.get(key)).is_none() {
            make_room(self.doc.as_table_mut(), after);
        }
        if !self.doc.contains_key(servers) {
            let mut table = Table::new();
            table.set_implicit(true);
            self.doc.insert(servers, Item::Table(table));
        }
        let not_a_table = || TomlError::NotATable(servers.to_owned());
        match self.doc.get_mut(servers).ok_or_else(not_a_table)? {
            Item::Table(parent) => match parent.get_mut(key) {
                Some(Item::Table(existing)) => {
                    existing.clear();
                    fill(existing, entry);
                }
                Some(other) => *other = Item::Value(Value::InlineTable(inline(entry))),
                None => {
                    let mut table = Table::new();
                    fill(&mut table, entry);
                    table.set_position(Some(after + 1));
                    parent.insert(key, Item::Table(table));
                }
            },
            Item::Value(Value::InlineTable(parent)) => {
                parent.insert(key, Value::InlineTable(inline(entry)));
            }
            _ => return Err(not_a_table()),
        }
        Ok(self.doc.to_string())
    }

    /// The file without `servers.key`; `None` when it is not there.
    pub(super) fn remove(&mut self, servers: &str, key: &str) -> Result<Option<String>, TomlError> {
        let removed = match self.doc.get_mut(servers) {
            None => false,
            Some(Item::Table(parent)) => {
                let removed = parent.remove(key).is_some();
                if parent.is_implicit() && parent.is_empty() {
                    self.doc.remove(servers);
                }
                removed
            }
            Some(Item::Value(Value::InlineTable(parent))) => parent.remove(key).is_some(),
            Some(_) => return Err(TomlError::NotATable(servers.to_owned())),
        };
        Ok(removed.then(|| self.doc.to_string()))
    }
}

/// Moves every table positioned after `after` one place down, so a table given
/// `after + 1` is rendered right after the one at `after`.
fn make_room(table: &mut Table, after: isize) {
    let mut shift = |t: &mut Table| {
        if let Some(p) = t.position().filter(|p| *p > after) {
            t.set_position(Some(p + 1));
        }
        make_room(t, after);
    };
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(t) => shift(t),
            Item::ArrayOfTables(tables) => tables.iter_mut().for_each(&mut shift),
            _ => {}
        }
    }
}

/// Writes `entry`'s members as the keys of `table`.
fn fill(table: &mut Table, entry: &Json) {
    if let Json::Map(members) = entry {
        for (k, v) in members {
            table.insert(k, Item::Value(value(v)));
        }
    }
}

/// `entry` as an inline table.
fn inline(entry: &Json) -> InlineTable {
    let mut table = InlineTable::new();
    if let Json::Map(members) = entry {
        for (k, v) in members {
            table.insert(k, value(v));
        }
    }
    table
}

fn value(json: &Json) -> Value {
    match json {
        Json::Str(s) => Value::from(s.as_str()),
        Json::List(items) => Value::Array(items.iter().map(String::as_str).collect::<Array>()),
        Json::Map(_) => Value::InlineTable(inline(json)),
    }
}

#[cfg(test)]
mod tests {
    use super::{TomlDocument, TomlError};
    use crate::cli::client::splice::Json;

    fn entry(home: Option<&str>) -> Json {
        let mut members = vec![
            ("command".to_owned(), Json::Str("/bin/revka".to_owned())),
            (
                "args".to_owned(),
                Json::List(vec!["mcp".into(), "serve".into(), "--stdio".into()]),
            ),
        ];
        if let Some(home) = home {
            let env = vec![("REVKA_HOME".to_owned(), Json::Str(home.to_owned()))];
            members.push(("env".to_owned(), Json::Map(env)));
        }
        Json::Map(members)
    }

    fn round_trip(before: &str, after: &str) {
        let mut doc = TomlDocument::parse(before).unwrap();
        let added = doc.upsert("mcp_servers", "revka", &entry(None)).unwrap();
        assert_eq!(added, after, "after adding:\n{added}");
        let mut doc = TomlDocument::parse(&added).unwrap();
        assert_eq!(
            doc.get("mcp_servers", "revka"),
            Some(entry(None).to_value())
        );
        assert_eq!(
            doc.upsert("mcp_servers", "revka", &entry(None)).unwrap(),
            after
        );
        let mut doc = TomlDocument::parse(&added).unwrap();
        let removed = doc.remove("mcp_servers", "revka").unwrap().unwrap();
        assert_eq!(removed, before, "after removing:\n{removed}");
    }

    #[test]
    fn a_table_goes_after_the_other_servers_or_last_and_comes_out_again() {
        round_trip(
            "# Codex\nmodel = \"o3\" # the model\n\n[mcp_servers.docs]\ncommand = \"npx\"\n\n[profiles.fast]\nmodel = \"mini\"\n\n# [mcp_servers.off]\n# command = \"x\"\n",
            "# Codex\nmodel = \"o3\" # the model\n\n[mcp_servers.docs]\ncommand = \"npx\"\n\n[mcp_servers.revka]\ncommand = \"/bin/revka\"\nargs = [\"mcp\", \"serve\", \"--stdio\"]\n\n[profiles.fast]\nmodel = \"mini\"\n\n# [mcp_servers.off]\n# command = \"x\"\n",
        );
        round_trip(
            "model = \"o3\"\n",
            "model = \"o3\"\n\n[mcp_servers.revka]\ncommand = \"/bin/revka\"\nargs = [\"mcp\", \"serve\", \"--stdio\"]\n",
        );
    }

    #[test]
    fn a_new_file_and_an_environment() {
        let mut doc = TomlDocument::parse("").unwrap();
        assert_eq!(
            doc.upsert("mcp_servers", "revka", &entry(Some("/srv/r")))
                .unwrap(),
            "[mcp_servers.revka]\ncommand = \"/bin/revka\"\nargs = [\"mcp\", \"serve\", \"--stdio\"]\nenv = { REVKA_HOME = \"/srv/r\" }\n"
        );
    }

    #[test]
    fn a_replaced_table_keeps_its_place_and_comments() {
        let before = "# ours\n[mcp_servers.revka]\ncommand = \"/old\"\nenabled = false\n\n[mcp_servers.revka.env]\nX = \"1\"\n\n[other]\na = 1\n";
        let mut doc = TomlDocument::parse(before).unwrap();
        assert_eq!(
            doc.upsert("mcp_servers", "revka", &entry(None)).unwrap(),
            "# ours\n[mcp_servers.revka]\ncommand = \"/bin/revka\"\nargs = [\"mcp\", \"serve\", \"--stdio\"]\n\n[other]\na = 1\n"
        );
        let inline = "mcp_servers = { docs = { command = \"npx\" } }\n";
        let mut doc = TomlDocument::parse(inline).unwrap();
        let added = doc.upsert("mcp_servers", "revka", &entry(None)).unwrap();
        let mut doc = TomlDocument::parse(&added).unwrap();
        assert_eq!(
            doc.get("mcp_servers", "revka"),
            Some(entry(None).to_value())
        );
        assert_eq!(doc.remove("mcp_servers", "revka").unwrap().unwrap(), inline);
    }

    #[test]
    fn what_cannot_be_edited_is_refused() {
        let err = TomlDocument::parse("[mcp_servers\ncommand = 1\n").unwrap_err();
        assert!(matches!(err, TomlError::Syntax(_)));
        assert!(err.to_string().starts_with("not valid TOML: "), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
        let mut doc = TomlDocument::parse("mcp_servers = 3\n").unwrap();
        let err = doc
            .upsert("mcp_servers", "revka", &entry(None))
            .unwrap_err();
        assert_eq!(err.to_string(), "`mcp_servers` is not a table");
        let mut doc = TomlDocument::parse("model = \"o3\"\n").unwrap();
        assert_eq!(doc.remove("mcp_servers", "revka").unwrap(), None);
    }
}
