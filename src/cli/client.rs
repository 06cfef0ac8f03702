//! `revka client install | uninstall | list`: connects MCP clients (Claude Code, Claude
//! Desktop, Cursor, VS Code, Codex, Gemini CLI) to Revka by adding a `revka` server that runs
//! `revka mcp serve --stdio` to each client's own MCP config file, or removing it.
//!
//! Part of the command line ([`super`]); nothing here talks to the daemon. The pieces:
//!
//! - [`clients`]: where each client keeps its servers, in which format (and the sources);
//! - [`entry`]: the entry written, and how an entry already there compares with it;
//! - [`splice`] (JSON and JSONC) and [`codex`] (TOML): edits that change only the `revka`
//!   member or table, keeping every other entry, comment and the file's layout;
//! - [`file`]: reading (links followed, odd files refused), backups, atomic replacement;
//! - [`diff`]: the change as a unified diff, for `--dry-run`;
//! - [`list`]: `revka client list`.
//!
//! Rules: the whole file is validated before anything is touched, and an invalid one is
//! refused with the parser's message and left as it is. Installing twice changes nothing
//! the second time. An existing `revka` entry that runs something else is replaced only with
//! `--force`. A client that does not seem to be installed (neither its file nor its
//! directory exists) gets nothing unless `--create` says so. Every write is preceded by a
//! backup. Exit code 1 when any client's edit was refused or failed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::{self, EnvLookup};

mod clients;
mod codex;
mod diff;
mod entry;
mod file;
mod list;
mod splice;

pub use clients::{Client, PathError};
pub use codex::TomlError;
pub use entry::EntryError;
pub use file::FileError;
pub use splice::SpliceError;

use clients::{Format, Location};
use codex::TomlDocument;
use entry::{Compared, Entry, NAME};
use file::ClientFile;
use list::list;
use splice::Document;

/// `revka client` actions.
#[derive(Debug, Subcommand)]
pub enum ClientAction {
    /// Add a `revka` server (`revka mcp serve --stdio`) to the clients' MCP config files.
    Install(InstallArgs),
    /// Remove the `revka` server from the clients' MCP config files.
    Uninstall(UninstallArgs),
    /// Show each client's config file and whether it has the `revka` server.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Which files.
        #[command(flatten)]
        scope: Scope,
    },
}

/// The user's config files, or a project's.
#[derive(Debug, Clone, Args)]
pub struct Scope {
    /// Use the project files in DIR (`--project=DIR`; default: the current directory) instead
    /// of the user's: .mcp.json (Claude Code), .cursor/mcp.json, .vscode/mcp.json,
    /// .codex/config.toml, .gemini/settings.json.
    #[arg(
        long,
        value_name = "DIR",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "."
    )]
    pub project: Option<PathBuf>,
}

/// `revka client install` arguments.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// The clients: claude-code, claude-desktop, cursor, vscode, codex, gemini.
    #[arg(required = true, value_enum)]
    pub clients: Vec<Client>,
    /// Which files.
    #[command(flatten)]
    pub scope: Scope,
    /// Print the change as a diff and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace a `revka` server that runs something else.
    #[arg(long)]
    pub force: bool,
    /// Write the file even when the client does not seem to be installed.
    #[arg(long)]
    pub create: bool,
    /// The command the entry runs (default: this revka's absolute path).
    #[arg(long, value_name = "PATH")]
    pub command: Option<PathBuf>,
}

/// `revka client uninstall` arguments.
#[derive(Debug, Clone, Args)]
pub struct UninstallArgs {
    /// The clients: claude-code, claude-desktop, cursor, vscode, codex, gemini.
    #[arg(required = true, value_enum)]
    pub clients: Vec<Client>,
    /// Which files.
    #[command(flatten)]
    pub scope: Scope,
    /// Print the change as a diff and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Why one client's file was not changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The file's path cannot be worked out.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The entry cannot be made.
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The file cannot be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The JSON file is invalid or has an unexpected shape.
    #[error("{}: {source}; fix it first (nothing was changed)", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: SpliceError,
    },
    /// The TOML file is invalid or has an unexpected shape.
    #[error("{}: {source}; fix it first (nothing was changed)", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: TomlError,
    },
    /// Neither the client's file nor its directory exists.
    #[error(
        "{client} does not seem to be installed ({} does not exist); pass --create to write {} anyway",
        marker.display(),
        file.display()
    )]
    NotInstalled {
        /// The client's name.
        client: &'static str,
        /// The directory that would show it is.
        marker: PathBuf,
        /// The file that would be written.
        file: PathBuf,
    },
    /// The project directory does not exist.
    #[error("project directory {}: {source}", dir.display())]
    Project {
        /// The directory given.
        dir: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: std::io::Error,
    },
    /// A `revka` server that runs something else is there already.
    #[error(
        "{} already has a `revka` server that runs {command}; pass --force to replace it (a backup is made first)",
        path.display()
    )]
    Differs {
        /// The file.
        path: PathBuf,
        /// What the entry there runs.
        command: String,
    },
}

/// Runs a `client` action.
pub fn run(action: ClientAction) -> ExitCode {
    let env: EnvLookup<'_> = &config::process_env;
    match action {
        ClientAction::Install(args) => install(&args, env),
        ClientAction::Uninstall(args) => uninstall(&args, env),
        ClientAction::List { json, scope } => list(&scope, json, env),
    }
}

fn install(args: &InstallArgs, env: EnvLookup<'_>) -> ExitCode {
    let entry = match Entry::new(args.command.as_deref(), env) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("revka client install: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for client in dedup(&args.clients) {
        match install_one(client, args, &entry, env) {
            Ok(report) => print!("{report}"),
            Err(e) => {
                eprintln!("revka client install: {}: {e}", client.name());
                ok = false;
            }
        }
    }
    if ok && args.scope.project.is_some() && args.command.is_none() {
        println!(
            "note: the entry names this machine's revka ({}); for a file others use too, \
             run again with --force --command revka",
            entry.command
        );
    }
    exit(ok)
}

fn uninstall(args: &UninstallArgs, env: EnvLookup<'_>) -> ExitCode {
    let mut ok = true;
    for client in dedup(&args.clients) {
        match uninstall_one(client, args, env) {
            Ok(report) => print!("{report}"),
            Err(e) => {
                eprintln!("revka client uninstall: {}: {e}", client.name());
                ok = false;
            }
        }
    }
    exit(ok)
}

/// Installs into one client's file; the lines to print.
fn install_one(
    client: Client,
    args: &InstallArgs,
    entry: &Entry,
    env: EnvLookup<'_>,
) -> Result<String, ClientError> {
    let location = locate(client, &args.scope, env)?;
    let file = ClientFile::read(&location.file, new_mode(&args.scope))?;
    if file.text.is_none()
        && !args.create
        && let Some(marker) = location.marker.filter(|m| !m.is_dir())
    {
        return Err(ClientError::NotInstalled {
            client: client.title(),
            marker,
            file: location.file,
        });
    }
    let name = file.path.display().to_string();
    let (found, edited) = edit(client, &file, Edit::Set(&entry.json(client)))?;
    let mut out = String::new();
    let replacing = match found {
        Some(found) if entry.compare(client, &found) == Compared::Same => {
            out.push_str(&format!(
                "{}: {name} already has the `revka` server; nothing to change\n",
                client.name()
            ));
            return Ok(out);
        }
        Some(found) => {
            let command = entry::command_of(&found)
                .unwrap_or("something else")
                .to_owned();
            if !args.force {
                print!("{}", diff::unified(&name, file.text.as_deref(), &edited));
                return Err(ClientError::Differs {
                    path: file.path,
                    command,
                });
            }
            Some(command)
        }
        None => None,
    };
    let verb = match (&replacing, args.dry_run) {
        (Some(_), true) => "would replace the `revka` server in",
        (Some(_), false) => "replaced the `revka` server in",
        (None, true) => "would add the `revka` server to",
        (None, false) => "added the `revka` server to",
    };
    let was = replacing
        .map(|c| format!(" (it ran {c})"))
        .unwrap_or_default();
    if args.dry_run {
        out.push_str(&diff::unified(&name, file.text.as_deref(), &edited));
        out.push_str(&format!(
            "{}: {verb} {name}{was}; dry run, nothing written\n",
            client.name()
        ));
        return Ok(out);
    }
    let backup = file.backup()?;
    file.write(&edited, true)?;
    out.push_str(&format!(
        "{}: {verb} {name}{was}{}\n",
        client.name(),
        backed_up(backup)
    ));
    out.push_str(&format!("  {}\n", next_step(client)));
    Ok(out)
}

/// Removes the entry from one client's file; the lines to print.
fn uninstall_one(
    client: Client,
    args: &UninstallArgs,
    env: EnvLookup<'_>,
) -> Result<String, ClientError> {
    let location = locate(client, &args.scope, env)?;
    let file = ClientFile::read(&location.file, new_mode(&args.scope))?;
    let name = file.path.display().to_string();
    let nothing = |why: &str| format!("{}: {why}; nothing to remove\n", client.name());
    if file.text.is_none() {
        return Ok(nothing(&format!("there is no {name}")));
    }
    let (_, edited) = edit(client, &file, Edit::Remove)?;
    if file.text.as_deref() == Some(edited.as_str()) {
        return Ok(nothing(&format!("{name} has no `revka` server")));
    }
    if args.dry_run {
        let mut out = diff::unified(&name, file.text.as_deref(), &edited);
        out.push_str(&format!(
            "{}: would remove the `revka` server from {name}; dry run, nothing written\n",
            client.name()
        ));
        return Ok(out);
    }
    let backup = file.backup()?;
    file.write(&edited, false)?;
    Ok(format!(
        "{}: removed the `revka` server from {name}{}\n",
        client.name(),
        backed_up(backup)
    ))
}

/// An edit of the `revka` entry.
enum Edit<'e> {
    /// Set it to this.
    Set(&'e splice::Json),
    /// Remove it.
    Remove,
}

/// Validates the file and makes the edit: the entry found before (as JSON) and the text
/// after (the same text when there was nothing to remove).
fn edit(
    client: Client,
    file: &ClientFile,
    edit: Edit<'_>,
) -> Result<(Option<serde_json::Value>, String), ClientError> {
    let text = file.text.as_deref().unwrap_or("");
    let servers = client.servers_key();
    let path = || file.path.clone();
    let toml = |source| ClientError::Toml {
        path: path(),
        source,
    };
    let json = |source| ClientError::Json {
        path: path(),
        source,
    };
    if client.format() == Format::Toml {
        let mut doc = TomlDocument::parse(text).map_err(toml)?;
        let found = doc.get(servers, NAME);
        let edited = match edit {
            Edit::Set(value) => doc.upsert(servers, NAME, value).map_err(toml)?,
            Edit::Remove => doc
                .remove(servers, NAME)
                .map_err(toml)?
                .unwrap_or_else(|| text.to_owned()),
        };
        return Ok((found, edited));
    }
    if text.trim().is_empty() {
        // A new or empty file: written whole.
        return Ok(match edit {
            Edit::Set(value) => (None, splice::new_document(&[servers], NAME, value)),
            Edit::Remove => (None, text.to_owned()),
        });
    }
    let doc = Document::parse(text, client.format()).map_err(json)?;
    let found = doc.get(&[servers], NAME).cloned();
    let edited = match edit {
        Edit::Set(value) => doc.upsert(&[servers], NAME, value).map_err(json)?,
        Edit::Remove => doc
            .remove(&[servers], NAME)
            .map_err(json)?
            .unwrap_or_else(|| text.to_owned()),
    };
    Ok((found, edited))
}

/// The file to edit: the client's user file, or its file in the project directory (which
/// must exist).
fn locate(client: Client, scope: &Scope, env: EnvLookup<'_>) -> Result<Location, ClientError> {
    let Some(dir) = &scope.project else {
        return Ok(client.user_location(env)?);
    };
    let file = client.project_file(dir)?;
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(ClientError::Project {
                dir,
                source: std::io::Error::other("not a directory"),
            });
        }
        Err(source) => return Err(ClientError::Project { dir, source }),
    }
    let file = std::path::absolute(&file).unwrap_or(file);
    Ok(Location { file, marker: None })
}

/// The mode of a new file: owner-only for a user's file, world-readable for a project's
/// (meant to be shared, and holding nothing secret of Revka's).
fn new_mode(scope: &Scope) -> u32 {
    if scope.project.is_some() {
        0o644
    } else {
        revka_actors::fs::PRIVATE_FILE
    }
}

/// Each client once, in the order given.
fn dedup(clients: &[Client]) -> Vec<Client> {
    let mut seen = Vec::new();
    for c in clients {
        if !seen.contains(c) {
            seen.push(*c);
        }
    }
    seen
}

fn backed_up(backup: Option<PathBuf>) -> String {
    backup
        .map(|b| format!(" (backup: {})", b.display()))
        .unwrap_or_default()
}

/// How the client picks the change up.
fn next_step(client: Client) -> &'static str {
    match client {
        Client::ClaudeCode => "new `claude` sessions start it; `/mcp` lists it",
        Client::ClaudeDesktop => "restart Claude Desktop to load it",
        Client::Cursor => "restart Cursor (or refresh its MCP settings) to load it",
        Client::Vscode => "VS Code reads mcp.json as it changes; `MCP: List Servers` shows it",
        Client::Codex => "new `codex` sessions start it; `/mcp` lists it",
        Client::Gemini => "new `gemini` sessions start it; `/mcp` lists it",
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
