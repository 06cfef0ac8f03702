//! The entry `revka client install` writes: a server named `revka` that runs
//! `revka mcp serve --stdio`, and how an entry already in a file compares with it.
//!
//! Part of `revka client` ([`super`]). The command is an absolute path, because a client
//! started from a desktop launcher (Claude Desktop, an editor opened from the dock) does not
//! have the shell's `PATH`: the `revka` found on `PATH` when it is this very executable (a
//! name such as `~/.cargo/bin/revka` or `/opt/homebrew/bin/revka`, which keeps working
//! across upgrades), else this executable's canonical path, or `--command` as given.
//! `REVKA_HOME` goes into the entry's environment only when it is set to something other
//! than its default (`~/.revka`), so the bridge finds the same daemon the user runs; an
//! entry for the default home carries no environment at all.

use std::path::{Path, PathBuf};

use super::clients::Client;
use super::splice::Json;
use crate::config::{self, EnvLookup};

/// The server's name in every client's config.
pub(super) const NAME: &str = "revka";

/// The arguments after the command.
pub(super) const ARGS: [&str; 3] = ["mcp", "serve", "--stdio"];

/// The variable whose value in an entry must match this one's (other variables a user adds
/// to the entry are theirs).
const HOME_VAR: &str = "REVKA_HOME";

/// Why the entry cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The running executable cannot be located.
    #[error("cannot find the path of this revka executable ({0}); pass --command PATH")]
    NoExe(#[source] std::io::Error),
    /// A path that JSON or TOML cannot hold as a string.
    #[error("{} is not valid UTF-8; pass --command with another path", .0.display())]
    NotUtf8(PathBuf),
    /// `--command` is empty.
    #[error("--command is empty")]
    EmptyCommand,
}

/// What the entry runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The executable.
    pub(super) command: String,
    /// `REVKA_HOME`, when it is not the default.
    pub(super) home: Option<String>,
}

/// How an entry found in a file compares with [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compared {
    /// It runs the same command with the same arguments and `REVKA_HOME` (fields and
    /// variables the user added are let be).
    Same,
    /// It runs something else.
    Differs,
}

impl Entry {
    /// The entry for this executable (or `command`) and this environment.
    pub(super) fn new(command: Option<&Path>, env: EnvLookup<'_>) -> Result<Self, EntryError> {
        let command = match command {
            Some(c) if c.as_os_str().is_empty() => return Err(EntryError::EmptyCommand),
            // A bare name is looked up on the client's PATH; a path is made absolute.
            Some(c) if c.components().count() == 1 && !c.is_absolute() => c.to_path_buf(),
            Some(c) => std::path::absolute(c).map_err(EntryError::NoExe)?,
            None => this_revka(env).map_err(EntryError::NoExe)?,
        };
        let command = utf8(command)?;
        let home = match env(HOME_VAR).filter(|h| !h.is_empty()) {
            None => None,
            Some(_) => {
                let home = config::revka_home_with(env);
                let default = env("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| Path::new(&h).join(".revka"));
                match default {
                    Some(d) if d == home => None,
                    _ => Some(utf8(std::path::absolute(&home).unwrap_or(home))?),
                }
            }
        };
        Ok(Self { command, home })
    }

    /// The entry as `client` writes it: `type` (for the clients that use it), `command`,
    /// `args`, and `env` when there is one.
    pub(super) fn json(&self, client: Client) -> Json {
        let mut members = Vec::new();
        if client.typed_entries() {
            members.push(("type".to_owned(), Json::Str("stdio".to_owned())));
        }
        members.push(("command".to_owned(), Json::Str(self.command.clone())));
        members.push((
            "args".to_owned(),
            Json::List(ARGS.iter().map(|a| (*a).to_owned()).collect()),
        ));
        if let Some(home) = &self.home {
            let env = vec![(HOME_VAR.to_owned(), Json::Str(home.clone()))];
            members.push(("env".to_owned(), Json::Map(env)));
        }
        Json::Map(members)
    }

    /// How `found` (an entry read from `client`'s file) compares with this one.
    pub(super) fn compare(&self, client: Client, found: &serde_json::Value) -> Compared {
        let same = found.is_object()
            && found.get("command").and_then(|c| c.as_str()) == Some(self.command.as_str())
            && found.get("args") == Some(&serde_json::json!(ARGS))
            && found
                .get("type")
                .is_none_or(|t| !client.typed_entries() || t == "stdio")
            && found.pointer("/env/REVKA_HOME").and_then(|h| h.as_str()) == self.home.as_deref();
        if same {
            Compared::Same
        } else {
            Compared::Differs
        }
    }
}

/// The command an entry found in a file runs, when it has one.
pub(super) fn command_of(found: &serde_json::Value) -> Option<&str> {
    found.get("command").and_then(|c| c.as_str())
}

/// Whether `command` (from an entry) is this executable: a path that leads to it, or a bare
/// name that `PATH` resolves to it.
pub(super) fn runs_this(command: &str, env: EnvLookup<'_>) -> bool {
    let Ok(exe) = std::env::current_exe().and_then(|e| e.canonicalize()) else {
        return false;
    };
    let command = Path::new(command);
    if command.components().count() == 1 && !command.is_absolute() {
        return on_path(command, env).any(|c| c.canonicalize().is_ok_and(|c| c == exe));
    }
    command.canonicalize().is_ok_and(|c| c == exe)
}

/// This executable under the name `PATH` gives it, else its canonical path.
fn this_revka(env: EnvLookup<'_>) -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?.canonicalize()?;
    let name = exe.file_name().map(PathBuf::from);
    let found = name.and_then(|name| {
        on_path(&name, env)
            .filter(|c| c.is_absolute())
            .find(|c| c.canonicalize().is_ok_and(|c| c == exe))
    });
    Ok(found.unwrap_or(exe))
}

/// `name` in each directory of `PATH`, in order.
fn on_path<'a>(name: &'a Path, env: EnvLookup<'_>) -> impl Iterator<Item = PathBuf> + 'a {
    let path = env("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.into_iter().map(move |dir| dir.join(name))
}

fn utf8(path: PathBuf) -> Result<String, EntryError> {
    path.into_os_string()
        .into_string()
        .map_err(|p| EntryError::NotUtf8(p.into()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use serde_json::json;

    use super::{Client, Compared, Entry, runs_this};

    fn env<'a>(vars: &'a HashMap<&str, String>) -> impl Fn(&str) -> Option<String> + 'a {
        |name| vars.get(name).cloned()
    }

    #[test]
    fn the_command_is_this_executable_found_on_path_or_its_canonical_path() {
        let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let name = exe.file_name().unwrap();
        std::os::unix::fs::symlink(&exe, dir.path().join(name)).unwrap();
        let linked = dir.path().join(name);

        let vars: HashMap<&str, String> = [("HOME", "/h".to_owned())].into();
        let entry = Entry::new(None, &env(&vars)).unwrap();
        assert_eq!(Path::new(&entry.command), exe, "not on PATH: the real path");

        let path = format!("/nonexistent:{}", dir.path().display());
        let vars: HashMap<&str, String> = [("HOME", "/h".to_owned()), ("PATH", path)].into();
        let entry = Entry::new(None, &env(&vars)).unwrap();
        assert_eq!(Path::new(&entry.command), linked, "the stable name on PATH");
        assert!(runs_this(&entry.command, &env(&vars)));
        assert!(
            runs_this(name.to_str().unwrap(), &env(&vars)),
            "a bare name on PATH"
        );
        assert!(!runs_this("/bin/sh", &env(&vars)));

        let given = Entry::new(Some(Path::new("revka")), &env(&vars)).unwrap();
        assert_eq!(given.command, "revka", "a bare name is kept");
        let given = Entry::new(Some(Path::new("bin/revka")), &env(&vars)).unwrap();
        assert!(
            Path::new(&given.command).is_absolute(),
            "a relative path is made absolute"
        );
        assert!(Entry::new(Some(Path::new("")), &env(&vars)).is_err());
    }

    #[test]
    fn revka_home_is_passed_only_when_it_is_not_the_default() {
        let with = |home: Option<&str>| {
            let mut vars: HashMap<&str, String> = [("HOME", "/h".to_owned())].into();
            if let Some(h) = home {
                vars.insert("REVKA_HOME", h.to_owned());
            }
            Entry::new(Some(Path::new("/bin/revka")), &env(&vars))
                .unwrap()
                .home
        };
        assert_eq!(with(None), None);
        assert_eq!(with(Some("")), None);
        assert_eq!(with(Some("/h/.revka")), None, "the default, spelt out");
        assert_eq!(with(Some("~/.revka")), None, "the default, with a tilde");
        assert_eq!(with(Some("/srv/revka")).as_deref(), Some("/srv/revka"));
        assert_eq!(with(Some("~/other")).as_deref(), Some("/h/other"));
    }

    #[test]
    fn entries_per_client_and_how_found_ones_compare() {
        let entry = Entry {
            command: "/bin/revka".to_owned(),
            home: None,
        };
        let args = json!(["mcp", "serve", "--stdio"]);
        assert_eq!(
            entry.json(Client::Vscode).to_value(),
            json!({"type": "stdio", "command": "/bin/revka", "args": args})
        );
        assert_eq!(
            entry.json(Client::Cursor).to_value(),
            json!({"command": "/bin/revka", "args": args})
        );
        let same = json!({"command": "/bin/revka", "args": args, "disabled": false,
                          "env": {"RUST_LOG": "debug"}});
        assert_eq!(
            entry.compare(Client::Cursor, &same),
            Compared::Same,
            "user additions"
        );
        assert_eq!(
            entry.compare(
                Client::Vscode,
                &json!({"command": "/bin/revka", "args": args})
            ),
            Compared::Same,
            "stdio is the default type"
        );
        for differs in [
            json!({"command": "/old/revka", "args": args}),
            json!({"command": "/bin/revka", "args": ["mcp", "serve"]}),
            json!({"command": "/bin/revka", "args": args, "env": {"REVKA_HOME": "/x"}}),
            json!({"type": "http", "command": "/bin/revka", "args": args}),
            json!("revka"),
        ] {
            assert_eq!(
                entry.compare(Client::Vscode, &differs),
                Compared::Differs,
                "{differs}"
            );
        }
        let homed = Entry {
            home: Some("/x".to_owned()),
            ..entry
        };
        assert_eq!(
            homed.json(Client::Codex).to_value(),
            json!({"command": "/bin/revka", "args": args, "env": {"REVKA_HOME": "/x"}})
        );
        assert_eq!(
            homed.compare(Client::Codex, &homed.json(Client::Codex).to_value()),
            Compared::Same
        );
    }
}
