//! `revka mcp add | remove`, and [`save_and_reload`], which every command that edits
//! `config.toml` ends with.
//!
//! Part of `revka mcp` ([`super`]). The entry is built from the arguments, checked against the
//! config's rules, written by [`ConfigFile`] (comments and layout kept, all or nothing), and a
//! running daemon is asked to reload through its gateway, so `revka status` shows the change
//! at once. Refusals name the reason and leave the file untouched: exit 2 for a malformed
//! command line, 64 for an entry (or file) the config would reject, 1 for I/O failures.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::EXIT_CONFIG;
use crate::cli::ops::{self, Op};
use crate::cli::remote::{Gateway, RemoteError};
use crate::config::edit::{ConfigFile, EditError, McpSwitch, NewServer};
use crate::config::{self, Transport};

/// Exit code of a malformed command line (as clap's own).
const EXIT_USAGE: u8 = 2;

/// `revka mcp add` arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  revka mcp add fs -- npx -y @modelcontextprotocol/server-filesystem ~/src
  revka mcp add gh -e 'GITHUB_TOKEN=${GITHUB_TOKEN}' -- npx -y some-gh-server
  revka mcp add web https://example.com/mcp -H 'Authorization: Bearer ${T}'")]
pub struct AddArgs {
    /// The server's name: ASCII letters, digits, `_`, `-`, `.`, no `__` (its tools become
    /// `<name>__<tool>`).
    pub name: String,
    /// How to reach it (default: stdio; http when the only argument is an http(s) URL).
    #[arg(short, long, value_enum)]
    pub transport: Option<AddTransport>,
    /// An environment variable of the server process (stdio), `KEY=VALUE`; repeatable.
    /// `${VAR}` is written as is and expanded by the daemon.
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// An HTTP header (http, sse, url), `NAME: VALUE`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE", value_parser = parse_header)]
    pub header: Vec<(String, String)>,
    /// The URL of an http, sse or url server (or a stdio command that takes no arguments).
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// After `--`: the stdio server's command and its arguments.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `--transport` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AddTransport {
    /// A child process speaking JSON-RPC on stdin/stdout.
    Stdio,
    /// Streamable HTTP.
    Http,
    /// Legacy HTTP + Server-Sent Events.
    Sse,
    /// HTTP with the endpoint discovered from a well-known URL.
    Url,
}

impl From<AddTransport> for Transport {
    fn from(t: AddTransport) -> Self {
        match t {
            AddTransport::Stdio => Self::Stdio,
            AddTransport::Http => Self::Http,
            AddTransport::Sse => Self::Sse,
            AddTransport::Url => Self::Url,
        }
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected NAME: VALUE, got {text:?}")),
    }
}

/// The entry the arguments describe, or what is wrong with the command line.
fn new_server(args: AddArgs) -> Result<NewServer, String> {
    let name = args.name;
    let target: Vec<String> = match (args.url, args.command.is_empty()) {
        (Some(_), false) => {
            return Err(format!(
                "give either a URL or `-- COMMAND [ARGS...]`, not both (revka mcp add {name} -- \
                 COMMAND [ARGS...])"
            ));
        }
        (Some(url), true) => vec![url],
        (None, _) => args.command,
    };
    let looks_like_url = |t: &str| t.starts_with("http://") || t.starts_with("https://");
    let transport: Transport = match args.transport {
        Some(t) => t.into(),
        None if target.len() == 1 && looks_like_url(&target[0]) => Transport::Http,
        None => Transport::Stdio,
    };
    let mut target = target.into_iter();
    let mut server = NewServer {
        name: name.clone(),
        transport,
        auto_connect: true,
        ..NewServer::default()
    };
    if transport == Transport::Stdio {
        let Some(command) = target.next() else {
            return Err(format!(
                "missing the command: revka mcp add {name} -- COMMAND [ARGS...] (or a URL with \
                 --transport http|sse|url)"
            ));
        };
        if !args.header.is_empty() {
            return Err("--header applies to http, sse and url servers, not stdio".to_owned());
        }
        server.command = Some(command);
        server.args = target.collect();
        server.env = unique("--env", args.env)?;
    } else {
        let (Some(url), None) = (target.next(), target.next()) else {
            return Err(format!(
                "a {} server takes exactly one URL: revka mcp add {name} --transport {} URL",
                transport.as_str(),
                transport.as_str()
            ));
        };
        if !args.env.is_empty() {
            return Err("--env applies to stdio servers (their process), not to URLs".to_owned());
        }
        server.url = Some(url);
        server.headers = unique("--header", args.header)?;
    }
    Ok(server)
}

/// The pairs as a map, refusing a key given twice.
fn unique(flag: &str, pairs: Vec<(String, String)>) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        if map.insert(key.clone(), value).is_some() {
            return Err(format!("{flag} {key} is given twice"));
        }
    }
    Ok(map)
}

/// `revka mcp add`.
pub(super) fn add(path: &Path, args: AddArgs) -> ExitCode {
    let server = match new_server(args) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("revka mcp add: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut file = match ConfigFile::open(path) {
        Ok(f) => f,
        Err(e) => return refused(path, &e),
    };
    if let Err(e) = file.add_server(&server) {
        return refused(path, &e);
    }
    let switch = match file.enable_mcp_client() {
        Ok(s) => s,
        Err(e) => return refused(path, &e),
    };
    let mut done = format!("added server `{}` to {}", server.name, path.display());
    match switch {
        McpSwitch::AlreadyOn => {}
        McpSwitch::TurnedOn => done.push_str("\nset [mcp] enabled = true (the MCP client was off)"),
        McpSwitch::LeftOff => done.push_str(
            "\nnote: [mcp] enabled = false in this file: the daemon connects to no server until \
             it is true",
        ),
    }
    save_and_reload(&file, &[&server.name], &done)
}

/// `revka mcp remove`.
pub(super) fn remove(path: &Path, name: &str) -> ExitCode {
    let mut file = match ConfigFile::open(path) {
        Ok(f) => f,
        Err(e) => return refused(path, &e),
    };
    if let Err(e) = file.remove_server(name) {
        if let EditError::NotFound { .. } = e {
            // It may come from [mcp] servers_file, which is not edited here.
            if let Some(json) = servers_file_with(path, name) {
                eprintln!(
                    "revka mcp remove: server `{name}` comes from {} ([mcp] servers_file); edit \
                     that file",
                    json.display()
                );
                return ExitCode::FAILURE;
            }
            eprintln!("revka mcp remove: {e}");
            return ExitCode::FAILURE;
        }
        return refused(path, &e);
    }
    let done = format!("removed server `{name}` from {}", path.display());
    save_and_reload(&file, &[], &done)
}

/// The `servers_file` of the config at `path`, when it defines a server called `name`.
fn servers_file_with(path: &Path, name: &str) -> Option<std::path::PathBuf> {
    let loaded = config::edit::load_lenient(path, &config::process_env).ok()?;
    let json = loaded.config.mcp.servers_file?;
    let text = std::fs::read_to_string(&json).ok()?;
    let servers = config::import_servers_json(&text, &json).ok()?;
    servers.iter().any(|s| s.name == name).then_some(json)
}

/// Prints why an edit was refused (the file is unchanged) and returns the exit code.
pub(crate) fn refused(path: &Path, e: &EditError) -> ExitCode {
    eprintln!("revka: {e}");
    eprintln!("revka: {} was not changed", path.display());
    match e {
        EditError::Read { .. } | EditError::Write { .. } => ExitCode::FAILURE,
        _ => ExitCode::from(EXIT_CONFIG),
    }
}

/// Validates and writes `file` (refusing it if any of `added` would be an invalid server),
/// prints `done` and any warning, then has a running daemon reload.
pub(crate) fn save_and_reload(file: &ConfigFile, added: &[&str], done: &str) -> ExitCode {
    let committed = match file.commit(&config::process_env, added) {
        Ok(c) => c,
        Err(e) => return refused(file.path(), &e),
    };
    println!("{done}");
    for var in &committed.unset_vars {
        eprintln!(
            "warning: ${{{var}}} is not set here; the daemon must have {var} in its environment \
             or it will not start"
        );
    }
    for warning in &committed.loaded.warnings {
        eprintln!("warning: {warning}");
    }
    reload_daemon(&config::revka_home())
}

/// Asks the daemon of `home`, if one runs, to reload; prints what changed.
fn reload_daemon(home: &Path) -> ExitCode {
    let gateway = match Gateway::connect_with_timeout(home, Duration::from_secs(30)) {
        Ok(g) => g,
        Err(RemoteError::NotRunning { .. } | RemoteError::Stale { .. }) => {
            println!("the daemon is not running: the change applies when it starts");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "warning: cannot reach the daemon to reload it ({e}); run `revka reload` or \
                 restart it"
            );
            return ExitCode::SUCCESS;
        }
    };
    let runtime = match crate::cli::build_runtime(crate::cli::Threads::Current) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warning: cannot reload the daemon ({e}); run `revka reload`");
            return ExitCode::SUCCESS;
        }
    };
    let outcome = runtime.block_on(ops::execute_on(&gateway, &Op::Reload, false));
    runtime.shutdown_timeout(Duration::from_secs(1));
    if !outcome.stdout.is_empty() {
        println!("reloaded the running daemon:");
        for line in outcome.stdout.lines() {
            println!("  {line}");
        }
    }
    eprint!("{}", outcome.stderr);
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::{AddArgs, AddTransport, new_server};
    use crate::config::Transport;

    /// `revka mcp add fs -- <target>`, or `revka mcp add fs <url>` for a lone URL.
    fn args(target: &[&str]) -> AddArgs {
        let url = match target {
            [one] if one.starts_with("http") => Some((*one).to_owned()),
            _ => None,
        };
        AddArgs {
            name: "fs".to_owned(),
            transport: None,
            env: Vec::new(),
            header: Vec::new(),
            command: match url {
                Some(_) => Vec::new(),
                None => target.iter().map(|s| (*s).to_owned()).collect(),
            },
            url,
        }
    }

    #[test]
    fn the_transport_follows_the_arguments() {
        let s = new_server(args(&["npx", "-y", "pkg"])).unwrap();
        assert_eq!(s.transport, Transport::Stdio);
        assert_eq!(s.command.as_deref(), Some("npx"));
        assert_eq!(s.args, ["-y", "pkg"]);
        let s = new_server(args(&["https://example.com/mcp"])).unwrap();
        assert_eq!(s.transport, Transport::Http);
        assert_eq!(s.url.as_deref(), Some("https://example.com/mcp"));
        let s = new_server(AddArgs {
            transport: Some(AddTransport::Sse),
            ..args(&["http://127.0.0.1:9/sse"])
        })
        .unwrap();
        assert_eq!(s.transport, Transport::Sse);
    }

    #[test]
    fn malformed_command_lines_are_refused_with_the_reason() {
        let err = new_server(args(&[])).unwrap_err();
        assert!(err.contains("missing the command"), "{err}");
        let both = AddArgs {
            url: Some("https://example.com/mcp".into()),
            ..args(&["npx"])
        };
        assert!(new_server(both).unwrap_err().contains("not both"));
        let two_urls = AddArgs {
            transport: Some(AddTransport::Http),
            ..args(&["http://a", "http://b"])
        };
        assert!(
            new_server(two_urls)
                .unwrap_err()
                .contains("exactly one URL")
        );
        let env_on_url = AddArgs {
            env: vec![("K".into(), "V".into())],
            ..args(&["https://example.com/mcp"])
        };
        assert!(
            new_server(env_on_url)
                .unwrap_err()
                .contains("--env applies")
        );
        let header_on_stdio = AddArgs {
            header: vec![("X".into(), "1".into())],
            ..args(&["npx"])
        };
        assert!(
            new_server(header_on_stdio)
                .unwrap_err()
                .contains("--header applies")
        );
        let twice = AddArgs {
            env: vec![("K".into(), "1".into()), ("K".into(), "2".into())],
            ..args(&["npx"])
        };
        assert!(new_server(twice).unwrap_err().contains("given twice"));
        assert_eq!(
            super::parse_env("K=a=b").unwrap(),
            ("K".into(), "a=b".into())
        );
        assert!(super::parse_env("=x").is_err() && super::parse_env("K").is_err());
        assert_eq!(
            super::parse_header("Authorization: Bearer ${T}").unwrap(),
            ("Authorization".into(), "Bearer ${T}".into())
        );
    }
}
