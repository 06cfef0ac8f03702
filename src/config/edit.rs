//! Editing `config.toml` in place: what `revka mcp add | remove | import` and
//! `revka install --enable` change, and nothing else.
//!
//! Part of the config layer, next to the loader. [`ConfigFile`] holds the file as a
//! format-preserving document (toml_edit): every comment, blank line, key order and quoting
//! style the operator wrote survives an edit; only the table that is added or removed
//! changes. Values are written as given: a `${VAR}` reference stays a reference (it is
//! expanded when the daemon loads the file, never here).
//!
//! An edit is all or nothing. [`ConfigFile::commit`] renders the document, loads it with the
//! daemon's own loader and validator ([`super::parse`]), refuses it if it would not load or if
//! a server it adds would be an invalid entry, and only then replaces the file atomically
//! (a temporary file in the same directory, renamed over the old one), keeping its permission
//! bits (a new file is owner-only). Without a file, the commented template
//! ([`super::DEFAULT_TOML`]) is the starting point, so a new file documents every key.
//!
//! Tables this module creates go at the end of the file, after what is there (including the
//! template's commented sections); a new `[[mcp.servers]]` entry goes after the last one.
//!
//! The dashboard's config editor (`root/gateway`, `/api/config/servers`) reads the entries as
//! written ([`ConfigFile::server_entries`]), changes one in place or adds it
//! ([`ConfigFile::put_server`], merge rule in `entry`), and writes with
//! [`ConfigFile::commit_live`]. [`ConfigFile::version`] fingerprints the bytes the file was
//! opened from, so a writer can tell that someone else changed the file since it was read.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::schema::Transport;
use super::{ConfigError, EnvLookup, Loaded};

mod entry;
pub(crate) mod layout;

pub use entry::{FIELDS as SERVER_FIELDS, ServerEdit};
#[cfg(test)]
mod tests;

/// Why an edit of the config file was refused or failed. The file is unchanged in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML, so it cannot be edited safely.
    #[error("{}: not valid TOML, fix it first: {message}", path.display())]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key the edit needs has an unexpected type (e.g. `mcp = 1`).
    #[error("{}: `{key}` {message}; edit it by hand", path.display())]
    Shape {
        /// The config file.
        path: PathBuf,
        /// The key path.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The server name breaks the naming rules.
    #[error("{message}")]
    BadName {
        /// The name given.
        name: String,
        /// The rule it breaks.
        message: String,
    },
    /// A server of that name is already configured.
    #[error("a server named `{name}` already exists in {}", path.display())]
    Duplicate {
        /// The name.
        name: String,
        /// The file that has it.
        path: PathBuf,
    },
    /// No server of that name in the file.
    #[error("no server named `{name}` in {} (configured there: {})", path.display(), list(configured))]
    NotFound {
        /// The name.
        name: String,
        /// The config file.
        path: PathBuf,
        /// The servers the file has.
        configured: Vec<String>,
    },
    /// The added server would be an invalid entry (the daemon would show it as failed).
    #[error("server `{name}` would be invalid: {reason}")]
    InvalidServer {
        /// The server.
        name: String,
        /// The loader's reason (`file:line:col: key: message`).
        reason: String,
    },
    /// The edited file would not load.
    #[error("the edited configuration would be invalid: {0}")]
    Invalid(#[source] ConfigError),
    /// Writing the file failed.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// `a, b, c`, or `none`.
fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Loads the config at `path` as [`ConfigFile::check`] does: a missing file is the defaults,
/// and a `${VAR}` unset in `env` is not an error (the daemon may have it).
pub fn load_lenient(path: &Path, env: EnvLookup<'_>) -> Result<Loaded, EditError> {
    Ok(ConfigFile::open(path)?.check(env, &[])?.loaded)
}

/// A new `[[mcp.servers]]` entry: the keys `mcp add` and `mcp import` set. Everything else
/// keeps its default (and can be added by hand later).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewServer {
    /// The server's name (the config's naming rules apply).
    pub name: String,
    /// How to reach it; written only when not `stdio`.
    pub transport: Transport,
    /// The program (stdio).
    pub command: Option<String>,
    /// Its arguments (stdio), as given: `${VAR}` stays a reference.
    pub args: Vec<String>,
    /// The endpoint (http, sse, url).
    pub url: Option<String>,
    /// Environment of the child process (stdio).
    pub env: BTreeMap<String, String>,
    /// HTTP headers (remote transports).
    pub headers: BTreeMap<String, String>,
    /// `false` writes `auto_connect = false` (an imported entry that was disabled).
    pub auto_connect: bool,
}

/// What `[mcp] enabled` is after [`ConfigFile::enable_mcp_client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpSwitch {
    /// It was already `true`.
    AlreadyOn,
    /// It was not written (default `false`), and is now `enabled = true`.
    TurnedOn,
    /// It is written as `false`: left alone, the operator chose it.
    LeftOff,
}

/// A config file open for editing.
#[derive(Debug)]
pub struct ConfigFile {
    /// The file to write (a symlink's target, so a linked config stays linked).
    target: PathBuf,
    /// The path as given, for messages and for loading (relative paths in the file resolve
    /// against its directory).
    path: PathBuf,
    doc: DocumentMut,
    /// Whether the file exists (else the document is the commented template).
    existed: bool,
    /// Permission bits to write the file with: the old file's, or owner-only for a new one.
    mode: u32,
    /// [`fingerprint`] of the bytes read (`"absent"` without a file).
    version: String,
}

/// The version of a config file's contents, as `If-Match` compares it: the SHA-256 of its
/// bytes in hex, or `"absent"` when there is no file.
pub fn fingerprint(bytes: Option<&[u8]>) -> String {
    use sha2::Digest;
    match bytes {
        None => "absent".to_owned(),
        Some(bytes) => sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

/// What a successful [`ConfigFile::commit`] wrote.
#[derive(Debug)]
pub struct Committed {
    /// The config as the daemon will load it.
    pub loaded: Loaded,
    /// `${VAR}` references to variables unset in this environment: the file is valid, but the
    /// daemon needs them set in its own environment to start.
    pub unset_vars: Vec<String>,
}

impl ConfigFile {
    /// Opens `path`; a missing file starts from the commented template.
    pub fn open(path: &Path) -> Result<Self, EditError> {
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let (text, existed, mode, version) = match std::fs::read(&target) {
            Ok(bytes) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&target)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(0o600);
                let version = fingerprint(Some(&bytes));
                let text = String::from_utf8(bytes).map_err(|e| EditError::Read {
                    path: path.to_path_buf(),
                    source: io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()),
                })?;
                (text, true, mode, version)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (
                super::DEFAULT_TOML.to_owned(),
                false,
                0o600,
                fingerprint(None),
            ),
            Err(source) => {
                return Err(EditError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let doc: DocumentMut =
            text.parse()
                .map_err(|e: toml_edit::TomlError| EditError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string().trim().to_owned(),
                })?;
        Ok(Self {
            target,
            path: path.to_path_buf(),
            doc,
            existed,
            mode,
            version,
        })
    }

    /// The [`fingerprint`] of the file as it was when opened (`"absent"` without a file).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file existed when opened.
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// The document as it would be written.
    pub fn render(&self) -> String {
        self.doc.to_string()
    }

    /// The names of the `[[mcp.servers]]` entries written in this file (not those of
    /// `[mcp] servers_file`), in order.
    pub fn server_names(&self) -> Vec<String> {
        let Some(servers) = self.doc.get("mcp").and_then(|m| m.get("servers")) else {
            return Vec::new();
        };
        let name =
            |t: &dyn toml_edit::TableLike| t.get("name").and_then(Item::as_str).map(str::to_owned);
        match servers {
            Item::ArrayOfTables(aot) => aot.iter().filter_map(|t| name(t)).collect(),
            Item::Value(Value::Array(array)) => array
                .iter()
                .filter_map(|v| v.as_inline_table().and_then(|t| name(t)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Sets `[mcp] enabled = true` unless the file says otherwise: adding a server to a client
    /// that is off by default would otherwise do nothing.
    pub fn enable_mcp_client(&mut self) -> Result<McpSwitch, EditError> {
        let mcp = self.table("mcp")?;
        match mcp.get("enabled").map(|i| i.as_bool()) {
            Some(Some(true)) => Ok(McpSwitch::AlreadyOn),
            Some(Some(false)) => Ok(McpSwitch::LeftOff),
            Some(None) => Err(self.shape("mcp.enabled", "is not a boolean")),
            None => {
                mcp.insert("enabled", toml_edit::value(true));
                Ok(McpSwitch::TurnedOn)
            }
        }
    }

    /// Sets `[session_manager] enabled = true`; whether it changed anything.
    pub fn enable_session_manager(&mut self) -> Result<bool, EditError> {
        let table = self.table("session_manager")?;
        match table.get_mut("enabled").and_then(Item::as_value_mut) {
            Some(Value::Boolean(b)) if *b.value() => Ok(false),
            Some(value) => {
                // The new value keeps the old one's spacing and trailing comment.
                let decor = value.decor().clone();
                *value = Value::from(true);
                *value.decor_mut() = decor;
                Ok(true)
            }
            None => {
                table.insert("enabled", toml_edit::value(true));
                Ok(true)
            }
        }
    }

    /// Appends a `[[mcp.servers]]` entry for `server`, after the last one. Refuses a name that
    /// breaks the naming rules or that this file already has (the full check, including
    /// `servers_file`, is [`Self::commit`]'s).
    pub fn add_server(&mut self, server: &NewServer) -> Result<(), EditError> {
        super::validate::server::check_name(&server.name).map_err(|message| {
            EditError::BadName {
                name: server.name.clone(),
                message,
            }
        })?;
        if self.server_names().contains(&server.name) {
            return Err(EditError::Duplicate {
                name: server.name.clone(),
                path: self.path.clone(),
            });
        }
        let table = server_table(server);
        let mcp = self.table("mcp")?;
        match mcp
            .entry("servers")
            .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        {
            Item::ArrayOfTables(aot) => aot.push(table),
            Item::Value(Value::Array(array)) => array.push(table.into_inline_table()),
            _ => return Err(self.shape("mcp.servers", "is not an array of tables")),
        }
        Ok(())
    }

    /// Removes the `[[mcp.servers]]` entry called `name`, with the comments directly above
    /// it; comments set apart from it by a blank line stay where they are.
    pub fn remove_server(&mut self, name: &str) -> Result<(), EditError> {
        let not_found = |this: &Self| EditError::NotFound {
            name: name.to_owned(),
            path: this.path.clone(),
            configured: this.server_names(),
        };
        let Some(servers) = self
            .doc
            .get_mut("mcp")
            .and_then(Item::as_table_like_mut)
            .and_then(|m| m.get_mut("servers"))
        else {
            return Err(not_found(self));
        };
        let named =
            |t: &dyn toml_edit::TableLike| t.get("name").and_then(Item::as_str) == Some(name);
        match servers {
            Item::ArrayOfTables(aot) => {
                let Some(i) = aot.iter().position(|t| named(t)) else {
                    return Err(not_found(self));
                };
                let removed = aot.remove(i);
                layout::keep_detached_comments(&mut self.doc, &removed);
            }
            Item::Value(Value::Array(array)) => {
                let Some(i) = array
                    .iter()
                    .position(|v| v.as_inline_table().is_some_and(|t| named(t)))
                else {
                    return Err(not_found(self));
                };
                array.remove(i);
            }
            _ => return Err(not_found(self)),
        }
        Ok(())
    }

    /// The `[[mcp.servers]]` entries written in this file (not those of `[mcp] servers_file`),
    /// in order, each as its table's keys and values as written: `${VAR}` unexpanded, defaults
    /// not filled in, keys the loader does not know included.
    pub fn server_entries(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        match self.doc.get("mcp").and_then(|m| m.get("servers")) {
            Some(Item::ArrayOfTables(aot)) => aot.iter().map(|t| entry::table_json(t)).collect(),
            Some(Item::Value(Value::Array(array))) => array
                .iter()
                .filter_map(Value::as_inline_table)
                .map(|t| entry::table_json(t))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Applies `edit` to the `[[mcp.servers]]` entry called `name`: merged into it in place
    /// when the file has it (same position; its comments, and the keys the edit does not
    /// mention, kept: the rule is in `entry`'s docs), else added after the last entry (in the
    /// form the file writes its servers in). Returns whether the entry was added. The name's
    /// rules and the entry's validity are [`Self::commit_live`]'s (the loader's) to check, so
    /// that its errors point into the rendered file.
    pub fn put_server(&mut self, name: &str, edit: &ServerEdit) -> Result<bool, EditError> {
        let named =
            |t: &dyn toml_edit::TableLike| t.get("name").and_then(Item::as_str) == Some(name);
        let shape = self.shape("mcp.servers", "is not an array of tables");
        let mcp = self.table("mcp")?;
        match mcp
            .entry("servers")
            .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        {
            Item::ArrayOfTables(aot) => {
                let found = aot.iter().position(|t| named(t));
                match found.and_then(|i| aot.get_mut(i)) {
                    Some(table) => edit.merge_into(table),
                    None => {
                        aot.push(edit.new_table(name));
                        return Ok(true);
                    }
                }
            }
            Item::Value(Value::Array(array)) => {
                let found = array
                    .iter()
                    .position(|v| v.as_inline_table().is_some_and(|t| named(t)));
                match found.and_then(|i| array.get_mut(i)?.as_inline_table_mut()) {
                    Some(table) => edit.merge_into(table),
                    None => {
                        array.push(edit.new_table(name).into_inline_table());
                        return Ok(true);
                    }
                }
            }
            _ => return Err(shape),
        }
        Ok(false)
    }

    /// For an edit the daemon makes to its own file (the dashboard's config editor): checks
    /// the rendered document with the daemon's loader and validator like [`Self::commit`],
    /// but `env` is the daemon's own environment, so a `${VAR}` it lacks is an error (the
    /// reload that follows would refuse the file), and `server`, when given, must be a valid
    /// entry. Writes only then (atomically); the file is untouched on every error.
    pub fn commit_live(
        &self,
        env: EnvLookup<'_>,
        server: Option<&str>,
    ) -> Result<Loaded, EditError> {
        let text = self.render();
        let loaded = super::parse(&text, &self.path, env).map_err(EditError::Invalid)?;
        if let Some(bad) = loaded
            .config
            .mcp
            .invalid_servers
            .iter()
            .find(|s| Some(s.name.as_str()) == server)
        {
            return Err(EditError::InvalidServer {
                name: bad.name.clone(),
                reason: bad.reason.clone(),
            });
        }
        revka_actors::fs::write_atomic(&self.target, text.as_bytes(), self.mode).map_err(|e| {
            EditError::Write {
                path: self.path.clone(),
                source: e.into_io(),
            }
        })?;
        Ok(loaded)
    }

    /// Where the `[[mcp.servers]]` entry `name` starts in the rendered document (its header,
    /// or its inline table): 1-based line and column, to point at an error the loader could not
    /// place.
    pub fn locate_server(&self, name: &str) -> Option<(usize, usize)> {
        let text = self.render();
        let doc = toml_edit::Document::parse(text.as_str()).ok()?;
        let named =
            |t: &dyn toml_edit::TableLike| t.get("name").and_then(Item::as_str) == Some(name);
        let span = match doc.get("mcp")?.get("servers")? {
            Item::ArrayOfTables(aot) => aot.iter().find(|t| named(*t))?.span(),
            Item::Value(Value::Array(array)) => array
                .iter()
                .filter_map(Value::as_inline_table)
                .find(|t| named(*t))?
                .span(),
            _ => None,
        }?;
        Some(super::keypath::line_col(&text, span.start))
    }

    /// Validates the edited document with the daemon's loader and, if it loads and none of
    /// `added` is an invalid entry, writes it. `env` resolves `${VAR}` for the check only; a
    /// variable it lacks is reported in [`Committed::unset_vars`], not an error (the daemon
    /// may run with another environment).
    pub fn commit(&self, env: EnvLookup<'_>, added: &[&str]) -> Result<Committed, EditError> {
        let checked = self.check(env, added)?;
        let text = self.render();
        revka_actors::fs::write_atomic(&self.target, text.as_bytes(), self.mode).map_err(|e| {
            EditError::Write {
                path: self.path.clone(),
                source: e.into_io(),
            }
        })?;
        Ok(checked)
    }

    /// [`Self::commit`] without writing.
    pub fn check(&self, env: EnvLookup<'_>, added: &[&str]) -> Result<Committed, EditError> {
        let text = self.render();
        let mut unset_vars: Vec<String> = Vec::new();
        // Each pass learns at most one unset variable; a file has only so many references.
        let loaded = loop {
            let result = {
                let lookup = |name: &str| {
                    env(name).or_else(|| {
                        unset_vars
                            .iter()
                            .any(|v| v == name)
                            .then(|| format!("unset-{name}"))
                    })
                };
                super::parse(&text, &self.path, &lookup)
            };
            match result {
                Ok(loaded) => break loaded,
                Err(ConfigError::MissingEnvVar { var, .. })
                    if !unset_vars.contains(&var) && unset_vars.len() < 256 =>
                {
                    unset_vars.push(var);
                }
                Err(e) => return Err(EditError::Invalid(e)),
            }
        };
        if let Some(bad) = loaded
            .config
            .mcp
            .invalid_servers
            .iter()
            .find(|s| added.contains(&s.name.as_str()))
        {
            return Err(EditError::InvalidServer {
                name: bad.name.clone(),
                reason: bad.reason.clone(),
            });
        }
        Ok(Committed { loaded, unset_vars })
    }

    /// The top-level table `key`, created (at the end of the file) when missing.
    fn table(&mut self, key: &str) -> Result<&mut Table, EditError> {
        let shape = self.shape(key, "is not a table");
        layout::ensure_table(&mut self.doc, key).ok_or(shape)
    }

    fn shape(&self, key: &str, message: &str) -> EditError {
        EditError::Shape {
            path: self.path.clone(),
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// The `[[mcp.servers]]` table for `server`, keys in the order the README shows them.
fn server_table(server: &NewServer) -> Table {
    let mut table = Table::new();
    table.insert("name", toml_edit::value(server.name.as_str()));
    if server.transport != Transport::Stdio {
        table.insert("transport", toml_edit::value(server.transport.as_str()));
    }
    if let Some(command) = &server.command {
        table.insert("command", toml_edit::value(command.as_str()));
    }
    if !server.args.is_empty() {
        let args: Array = server.args.iter().map(String::as_str).collect();
        table.insert("args", toml_edit::value(args));
    }
    if let Some(url) = &server.url {
        table.insert("url", toml_edit::value(url.as_str()));
    }
    for (key, map) in [("env", &server.env), ("headers", &server.headers)] {
        if !map.is_empty() {
            let inline: InlineTable = map
                .iter()
                .map(|(k, v)| (k.as_str(), Value::from(v.as_str())))
                .collect();
            table.insert(key, toml_edit::value(inline));
        }
    }
    if !server.auto_connect {
        table.insert("auto_connect", toml_edit::value(false));
    }
    table
}
