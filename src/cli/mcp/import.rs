//! `revka mcp import <claude-desktop|cursor|vscode|PATH>`: copies servers from another MCP
//! client's config into `config.toml`.
//!
//! Part of `revka mcp` ([`super`]). The source file is read with the config layer's JSON
//! importer (the `mcpServers` shape of Claude Desktop and Cursor, VS Code's `servers` object,
//! Revka's own `servers` array), after stripping the comments and trailing commas those
//! editors allow. Their variables are translated to Revka's: `${env:NAME}` becomes `${NAME}`
//! (expanded by the daemon), `${userHome}` the home directory and `${workspaceFolder}` the
//! project of a `.vscode/` or `.cursor/` file. A server that needs what only its editor can
//! supply (`${input:…}` prompts, other variables) is skipped with the reason, as are names
//! Revka does not accept and names already configured; the rest are added in one edit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::edit::{refused, save_and_reload};
use crate::cli::client::Client;
use crate::cli::jsonc;
use crate::config::edit::{ConfigFile, EditError, NewServer};
use crate::config::{self, McpServerConfig};

mod vars;

/// `revka mcp import` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// `claude-desktop`, `cursor` (~/.cursor/mcp.json), `vscode` (the user profile's
    /// mcp.json), or the path of a JSON file (`.vscode/mcp.json`, `.cursor/mcp.json`, ...).
    pub source: String,
    /// Import only this server; repeatable (default: all of them).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Print what would be imported and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A source file and what its variables mean.
#[derive(Debug)]
struct Source {
    /// The JSON file.
    path: PathBuf,
    /// The project directory `${workspaceFolder}` names, when the file belongs to one.
    workspace: Option<PathBuf>,
}

/// The file `source` names: a client's user-level config (where `revka client` finds it), or
/// a path, whose project a `.vscode/` or `.cursor/` parent names.
fn resolve(source: &str, env: config::EnvLookup<'_>) -> Result<Source, String> {
    let named = match source {
        "claude-desktop" | "claude" => Some(Client::ClaudeDesktop),
        "cursor" => Some(Client::Cursor),
        "vscode" | "code" => Some(Client::Vscode),
        _ => None,
    };
    if let Some(client) = named {
        // A user-level file: no workspace.
        return Ok(Source {
            path: client.user_file(env).map_err(|e| e.to_string())?,
            workspace: None,
        });
    }
    let path = std::path::absolute(source).unwrap_or_else(|_| PathBuf::from(source));
    // `<project>/.vscode/mcp.json` and `<project>/.cursor/mcp.json` belong to `<project>`.
    let parent = path.parent();
    let workspace = parent
        .filter(|dir| {
            dir.file_name()
                .is_some_and(|n| n == ".vscode" || n == ".cursor")
        })
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    Ok(Source { path, workspace })
}

/// `revka mcp import`.
pub(super) fn run(config_path: &Path, args: ImportArgs) -> ExitCode {
    let source = match resolve(&args.source, &config::process_env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("revka mcp import: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = match std::fs::read_to_string(&source.path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "revka mcp import: cannot read {}: {e}",
                source.path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let servers = match config::import_servers_json(&jsonc::strip(&text), &source.path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("revka mcp import: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut file = match ConfigFile::open(config_path) {
        Ok(f) => f,
        Err(e) => return refused(config_path, &e),
    };
    let home = config::process_env("HOME");
    let context = vars::Context {
        home: home.as_deref(),
        workspace: source.workspace.as_deref(),
    };
    // Names from `[mcp] servers_file` count too; the TOML ones are the editor's to check.
    let existing: Vec<String> = config::edit::load_lenient(config_path, &config::process_env)
        .ok()
        .map(|l| {
            let mcp = l.config.mcp;
            let invalid = mcp.invalid_servers.into_iter().map(|s| s.name);
            mcp.servers
                .into_iter()
                .map(|s| s.name)
                .chain(invalid)
                .collect()
        })
        .unwrap_or_default();
    let mut plan = Plan::default();
    for server in servers {
        if !args.only.is_empty() && !args.only.contains(&server.name) {
            continue;
        }
        let name = server.name.clone();
        if existing.contains(&name) {
            plan.skipped.push((name, "already configured".to_owned()));
            continue;
        }
        match translate(server, &context).and_then(|s| add(&mut file, &s)) {
            Ok(()) => plan.added.push(name),
            Err(reason) => plan.skipped.push((name, reason)),
        }
    }
    for wanted in &args.only {
        if !plan.added.contains(wanted) && !plan.skipped.iter().any(|(n, _)| n == wanted) {
            plan.skipped
                .push((wanted.clone(), format!("not in {}", source.path.display())));
        }
    }
    // An entry the config rejects (a bad URL, say) is skipped, not the whole import.
    loop {
        let added: Vec<&str> = plan.added.iter().map(String::as_str).collect();
        match file.check(&config::process_env, &added) {
            Ok(_) => break,
            Err(EditError::InvalidServer { name, reason }) => {
                if let Err(e) = file.remove_server(&name) {
                    return refused(config_path, &e);
                }
                plan.added.retain(|n| *n != name);
                plan.skipped.push((name, reason));
            }
            Err(e) => return refused(config_path, &e),
        }
    }
    print!("{}", plan.describe(&source.path, args.dry_run));
    if args.dry_run || plan.added.is_empty() {
        return ExitCode::SUCCESS;
    }
    if let Err(e) = file.enable_mcp_client() {
        return refused(config_path, &e);
    }
    let added: Vec<&str> = plan.added.iter().map(String::as_str).collect();
    let done = format!(
        "imported {} server(s) into {}",
        plan.added.len(),
        config_path.display()
    );
    save_and_reload(&file, &added, &done)
}

/// What an import does.
#[derive(Debug, Default)]
struct Plan {
    /// Servers added, in source order.
    added: Vec<String>,
    /// Servers left out, with the reason.
    skipped: Vec<(String, String)>,
}

impl Plan {
    fn describe(&self, source: &Path, dry_run: bool) -> String {
        let verb = if dry_run { "would add" } else { "add" };
        let mut out = String::new();
        for name in &self.added {
            out.push_str(&format!("{verb} {name}\n"));
        }
        for (name, reason) in &self.skipped {
            out.push_str(&format!("skip {name}: {reason}\n"));
        }
        if self.added.is_empty() {
            out.push_str(&format!(
                "nothing to import from {} ({} skipped)\n",
                source.display(),
                self.skipped.len()
            ));
        }
        out
    }
}

/// The imported entry with its variables translated, or why it cannot be imported.
fn translate(server: McpServerConfig, context: &vars::Context<'_>) -> Result<NewServer, String> {
    let convert = |value: &str| vars::translate(value, context);
    let mut env = std::collections::BTreeMap::new();
    for (k, v) in &server.env {
        env.insert(k.clone(), convert(v)?);
    }
    let mut headers = std::collections::BTreeMap::new();
    for (k, v) in &server.headers {
        headers.insert(k.clone(), convert(v)?);
    }
    Ok(NewServer {
        name: server.name,
        transport: server
            .transport
            .known()
            .ok_or_else(|| format!("unknown transport {:?}", server.transport.as_str()))?,
        command: server.command.as_deref().map(convert).transpose()?,
        args: server
            .args
            .iter()
            .map(|a| convert(a))
            .collect::<Result<_, _>>()?,
        url: server.url.as_deref().map(convert).transpose()?,
        env,
        headers,
        auto_connect: server.auto_connect,
    })
}

/// Adds `server` to `file`, or says why not.
fn add(file: &mut ConfigFile, server: &NewServer) -> Result<(), String> {
    file.add_server(server).map_err(|e| match e {
        EditError::Duplicate { .. } => "already configured".to_owned(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::resolve;

    #[test]
    fn named_sources_are_the_clients_user_configs() {
        let vars: HashMap<&str, &str> = [("HOME", "/home/u")].into();
        let env = |name: &str| vars.get(name).map(|v| (*v).to_owned());
        let cursor = resolve("cursor", &env).unwrap();
        assert_eq!(cursor.path, Path::new("/home/u/.cursor/mcp.json"));
        assert_eq!(cursor.workspace, None, "the user's file has no workspace");
        if !cfg!(target_os = "macos") {
            let claude = resolve("claude-desktop", &env).unwrap();
            assert_eq!(
                claude.path,
                Path::new("/home/u/.config/Claude/claude_desktop_config.json")
            );
            let code = resolve("vscode", &env).unwrap();
            assert_eq!(code.path, Path::new("/home/u/.config/Code/User/mcp.json"));
        }
        let project = resolve("/src/app/.vscode/mcp.json", &env).unwrap();
        assert_eq!(project.workspace.as_deref(), Some(Path::new("/src/app")));
        let none = |_: &str| None;
        assert!(resolve("cursor", &none).unwrap_err().contains("HOME"));
    }
}
