//! Importing MCP servers from JSON: Revka's `{"servers": [...]}`, the common
//! `{"mcpServers": {"<name>": {...}}}` (Claude Desktop, Cursor, …) and VS Code's
//! `{"servers": {"<name>": {...}}}` (`.vscode/mcp.json`, the user profile's `mcp.json`).
//!
//! Part of the config layer. `[mcp] servers_file` points at such a file; its servers are
//! appended after the TOML ones and then expanded and validated like them. Every server keeps a
//! [`ServerSource`] so a later error names the JSON file and the JSON key, not the TOML one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use super::ConfigError;
use super::error::Location;
use super::keypath::KeyPath;
use super::loader::deserialize_tracked;
use super::schema::{McpServerConfig, Transport};

/// Where a server's entry was written, for diagnostics.
#[derive(Debug, Clone)]
pub(crate) struct ServerSource {
    /// The file holding the entry.
    pub(crate) file: PathBuf,
    /// The entry's key path in that file: `mcp.servers[0]`, `servers[1]`, `mcpServers.github`.
    pub(crate) base: KeyPath,
    /// The entry is in the TOML config (positions can be looked up), not an imported file.
    pub(crate) in_toml: bool,
    /// The name is the entry's key (`mcpServers` shape), not a `name` field.
    pub(crate) named_by_key: bool,
}

impl ServerSource {
    /// The key path of `rel` (a path inside the server entry, e.g. `env.TOKEN`).
    pub(crate) fn path(&self, rel: &KeyPath) -> KeyPath {
        if self.named_by_key && rel == &KeyPath::keys(&["name"]) {
            return self.base.clone();
        }
        rel.under(&self.base)
    }
}

/// The servers of a JSON file, with their sources and the file's unknown-key warnings.
#[derive(Debug)]
pub(crate) struct Imported {
    pub(crate) servers: Vec<McpServerConfig>,
    pub(crate) sources: Vec<ServerSource>,
    pub(crate) warnings: Vec<String>,
}

/// Parses a JSON servers file in any of the shapes (`servers` and `mcpServers` may both appear;
/// `servers` come first).
///
/// `origin` is the file's path, named in errors. This only parses and converts: `${VAR}`
/// expansion, path resolution and validation happen when a config that names the file in
/// `[mcp] servers_file` is loaded.
pub fn import_servers_json(text: &str, origin: &Path) -> Result<Vec<McpServerConfig>, ConfigError> {
    import(text, origin).map(|i| i.servers)
}

/// [`import_servers_json`] with sources and warnings.
pub(crate) fn import(text: &str, origin: &Path) -> Result<Imported, ConfigError> {
    let mut ignored = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let file: ServersFile = deserialize_tracked(&mut de, &mut ignored).map_err(|e| {
        let path = KeyPath::from_tracked(e.path());
        json_error(origin, &path, e.into_inner())
    })?;
    de.end()
        .map_err(|e| json_error(origin, &KeyPath::default(), e))?;
    let warnings: Vec<String> = ignored
        .iter()
        .map(|p| format!("{}: unknown key {p} (ignored)", origin.display()))
        .collect();
    if file.servers.is_none() && file.mcp_servers.is_none() {
        return Err(ConfigError::Invalid {
            location: Location {
                file: origin.to_path_buf(),
                line_col: None,
            },
            key: KeyPath::default().to_string(),
            message: "expected a `servers` array or an `mcpServers` object".to_owned(),
        });
    }
    let mut out = Imported {
        servers: Vec::new(),
        sources: Vec::new(),
        warnings,
    };
    let mut named = Vec::new();
    match file.servers {
        Some(Servers::List(list)) => {
            for (i, server) in list.into_iter().enumerate() {
                out.servers.push(server);
                out.sources.push(ServerSource {
                    file: origin.to_path_buf(),
                    base: KeyPath::keys(&["servers"]).index(i),
                    in_toml: false,
                    named_by_key: false,
                });
            }
        }
        Some(Servers::Named(servers)) => named.push(("servers", servers)),
        None => {}
    }
    if let Some(servers) = file.mcp_servers {
        named.push(("mcpServers", servers));
    }
    for (key, servers) in named {
        for (name, entry) in servers.0 {
            let base = KeyPath::keys(&[key, &name]);
            out.servers.push(entry.into_server(name));
            out.sources.push(ServerSource {
                file: origin.to_path_buf(),
                base,
                in_toml: false,
                named_by_key: true,
            });
        }
    }
    Ok(out)
}

/// A JSON parse or shape error, with the file, `line:column` and key path.
fn json_error(origin: &Path, path: &KeyPath, inner: serde_json::Error) -> ConfigError {
    let location = Location {
        file: origin.to_path_buf(),
        line_col: (inner.line() > 0).then(|| (inner.line(), inner.column())),
    };
    // serde_json appends " at line L column C"; the location already says that.
    let full = inner.to_string();
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m)
        .to_owned();
    if inner.is_syntax() || inner.is_eof() {
        ConfigError::Syntax { location, message }
    } else {
        ConfigError::Schema {
            location,
            key: path.to_string(),
            message,
        }
    }
}

/// The top level of a servers file.
#[derive(Deserialize)]
struct ServersFile {
    /// Revka's shape (an array of `[[mcp.servers]]`-like entries) or VS Code's (entries keyed
    /// by name).
    #[serde(default)]
    servers: Option<Servers>,
    /// The Claude Desktop / Cursor shape: entries keyed by server name.
    #[serde(default, rename = "mcpServers")]
    mcp_servers: Option<NamedServers>,
}

/// `servers`: Revka's array, or VS Code's object of named entries.
enum Servers {
    List(Vec<McpServerConfig>),
    Named(NamedServers),
}

impl<'de> Deserialize<'de> for Servers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = Servers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of servers, or an object of servers keyed by name")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(server) = seq.next_element::<McpServerConfig>()? {
                    out.push(server);
                }
                Ok(Servers::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                InOrder.visit_map(map).map(Servers::Named)
            }
        }
        deserializer.deserialize_any(Either)
    }
}

/// `mcpServers` (or VS Code's `servers`), in file order.
struct NamedServers(Vec<(String, NamedServer)>);

/// Visits an object of named servers, keeping their order.
struct InOrder;

impl<'de> Visitor<'de> for InOrder {
    type Value = NamedServers;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of servers keyed by name")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(entry) = map.next_entry::<String, NamedServer>()? {
            out.push(entry);
        }
        Ok(NamedServers(out))
    }
}

impl<'de> Deserialize<'de> for NamedServers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(InOrder)
    }
}

/// One `mcpServers` (or VS Code `servers`) entry.
#[derive(Deserialize)]
struct NamedServer {
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, rename = "type", alias = "transport")]
    kind: Option<Kind>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    disabled: bool,
}

impl NamedServer {
    /// The entry as a server called `name`; without a `type`, a `url` alone means HTTP.
    fn into_server(self, name: String) -> McpServerConfig {
        let transport = match self.kind {
            Some(kind) => kind.into(),
            None if self.command.is_none() && self.url.is_some() => Transport::Http,
            None => Transport::Stdio,
        };
        McpServerConfig {
            name,
            transport: transport.into(),
            command: self.command,
            args: self.args,
            url: self.url,
            env: self.env,
            headers: self.headers,
            auto_connect: !self.disabled,
            ..McpServerConfig::default()
        }
    }
}

/// `type` of an `mcpServers` entry.
#[derive(Deserialize, Clone, Copy)]
enum Kind {
    #[serde(rename = "stdio")]
    Stdio,
    #[serde(rename = "http", alias = "streamable-http", alias = "streamableHttp")]
    Http,
    #[serde(rename = "sse")]
    Sse,
}

impl From<Kind> for Transport {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Stdio => Self::Stdio,
            Kind::Http => Self::Http,
            Kind::Sse => Self::Sse,
        }
    }
}
