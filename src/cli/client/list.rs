//! `revka client list`: for each client, its config file, whether the client seems
//! installed, and whether the file has the `revka` server (and whether that runs this revka
//! as `revka client install` would write it).
//!
//! Part of `revka client` ([`super`]). Read-only: files are read with the same checks as for
//! an edit, and a file that cannot be read or parsed is shown with the reason, not skipped.

use std::process::ExitCode;

use super::clients::Client;
use super::entry::{self, Compared, Entry};
use super::file::ClientFile;
use super::{Edit, Scope, edit, locate, new_mode};
use crate::config::EnvLookup;

/// One client's line.
#[derive(Debug, serde::Serialize)]
struct Row {
    /// The client's name on the command line.
    client: &'static str,
    /// Its config file (`None` when it cannot be worked out, e.g. without `HOME`).
    file: Option<String>,
    /// Whether the file exists.
    exists: bool,
    /// Whether the client seems installed: its file or its directory exists.
    installed: bool,
    /// The `revka` entry in the file, if any.
    entry: Option<Found>,
    /// Why the file could not be read, if it could not.
    error: Option<String>,
}

/// A `revka` entry found in a file.
#[derive(Debug, serde::Serialize)]
struct Found {
    /// What it runs.
    command: Option<String>,
    /// Whether `revka client install` would leave it as it is.
    current: bool,
    /// Whether its command is this revka executable.
    this_revka: bool,
}

/// `revka client list`.
pub(super) fn list(scope: &Scope, json: bool, env: EnvLookup<'_>) -> ExitCode {
    let wanted = Entry::new(None, env).ok();
    let rows: Vec<Row> = Client::ALL
        .into_iter()
        .filter(|c| scope.project.is_none() || c.project_file(std::path::Path::new(".")).is_ok())
        .map(|client| row(client, scope, wanted.as_ref(), env))
        .collect();
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("revka client list: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", table(&rows));
    }
    ExitCode::SUCCESS
}

fn row(client: Client, scope: &Scope, wanted: Option<&Entry>, env: EnvLookup<'_>) -> Row {
    let mut row = Row {
        client: client.name(),
        file: None,
        exists: false,
        installed: false,
        entry: None,
        error: None,
    };
    let location = match locate(client, scope, env) {
        Ok(l) => l,
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    row.file = Some(location.file.display().to_string());
    row.installed = location.file.exists() || location.marker.as_ref().is_none_or(|m| m.is_dir());
    let file = match ClientFile::read(&location.file, new_mode(scope)) {
        Ok(f) => f,
        Err(e) => {
            row.exists = true;
            row.error = Some(e.to_string());
            return row;
        }
    };
    row.exists = file.text.is_some();
    if !row.exists {
        return row;
    }
    match edit(client, &file, Edit::Remove) {
        Ok((Some(found), _)) => {
            let command = entry::command_of(&found).map(str::to_owned);
            row.entry = Some(Found {
                this_revka: command.as_deref().is_some_and(|c| entry::runs_this(c, env)),
                current: wanted.is_some_and(|w| w.compare(client, &found) == Compared::Same),
                command,
            });
        }
        Ok((None, _)) => {}
        Err(e) => row.error = Some(e.to_string()),
    }
    row
}

/// The rows as an aligned table, then the errors in full.
fn table(rows: &[Row]) -> String {
    let states: Vec<String> = rows.iter().map(state).collect();
    let width = states.iter().map(String::len).max().unwrap_or(0).max(12);
    let mut out = format!("{:<15} {:<width$}  CONFIG FILE\n", "CLIENT", "REVKA SERVER");
    for (row, state) in rows.iter().zip(&states) {
        let file = row.file.as_deref().unwrap_or("-");
        out.push_str(&format!("{:<15} {state:<width$}  {file}\n", row.client));
    }
    for row in rows {
        if let Some(error) = &row.error {
            out.push_str(&format!("{}: {error}\n", row.client));
        }
    }
    out
}

/// What the table says about a client.
fn state(row: &Row) -> String {
    if row.error.is_some() {
        return "unknown (error below)".to_owned();
    }
    match &row.entry {
        Some(found) if found.current => "yes".to_owned(),
        Some(found) if found.this_revka => "yes, other settings (install --force)".to_owned(),
        Some(found) => format!("yes, runs {}", found.command.as_deref().unwrap_or("?")),
        None if row.exists => "no".to_owned(),
        None if row.installed => "no (no config file)".to_owned(),
        None => "client not installed".to_owned(),
    }
}
