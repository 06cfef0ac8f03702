//! `revka mcp get <name>`: one server's entry as written, whether the config accepts it, and
//! its state in the running daemon.
//!
//! Part of `revka mcp` ([`super`]). Values are shown as written, before `${VAR}` expansion
//! (so no secret is read from the environment); literal values that look secret (every header,
//! `env` values whose name contains TOKEN, KEY, SECRET or PASSWORD) are masked unless they
//! are `${VAR}` references.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::cli::remote::{self, Gateway, RemoteError};
use crate::cli::status::{render_tree, use_color};
use crate::config::{self, Config, McpServerConfig};

/// What replaces a masked value.
const MASK: &str = "***";

/// `revka mcp get` for the config at `path`.
pub(super) fn run(path: &Path, name: &str, as_json: bool) -> ExitCode {
    let loaded = match config::edit::load_lenient(path, &config::process_env) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("warning: the configuration does not load: {e}");
            None
        }
    };
    let Some((server, file)) = find_written(path, loaded.as_ref().map(|l| &l.config), name) else {
        let mut names: Vec<String> = loaded
            .iter()
            .flat_map(|l| l.config.mcp.servers.iter().map(|s| s.name.clone()))
            .collect();
        names.extend(
            loaded
                .iter()
                .flat_map(|l| l.config.mcp.invalid_servers.iter().map(|s| s.name.clone())),
        );
        let names = if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        };
        eprintln!("revka: no server named `{name}` (configured: {names})");
        return ExitCode::FAILURE;
    };
    let invalid = loaded.as_ref().and_then(|l| {
        l.config
            .mcp
            .invalid_servers
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.reason.clone())
    });
    let state = daemon_state(name);
    if as_json {
        let mut value = shown(&server);
        value["file"] = json!(file.display().to_string());
        value["invalid"] = json!(invalid);
        value["daemon"] = match &state {
            Ok(snapshot) => serde_json::to_value(snapshot).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        print!("{}", describe(&server, &file, invalid.as_deref(), &state));
    }
    ExitCode::SUCCESS
}

/// The entry called `name` as written (unexpanded), and the file it is written in: the TOML
/// file, else `[mcp] servers_file`.
fn find_written(
    path: &Path,
    loaded: Option<&Config>,
    name: &str,
) -> Option<(McpServerConfig, PathBuf)> {
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(raw) = toml::from_str::<Config>(&text)
        && let Some(server) = raw.mcp.servers.into_iter().find(|s| s.name == name)
    {
        return Some((server, path.to_path_buf()));
    }
    let json = loaded?.mcp.servers_file.clone()?;
    let text = std::fs::read_to_string(&json).ok()?;
    let server = config::import_servers_json(&text, &json)
        .ok()?
        .into_iter()
        .find(|s| s.name == name)?;
    Some((server, json))
}

/// The server's node in the running daemon.
fn daemon_state(name: &str) -> Result<revka_actors::Snapshot, String> {
    let home = config::revka_home();
    let gateway = match Gateway::connect_with_timeout(&home, Duration::from_secs(5)) {
        Ok(g) => g,
        Err(RemoteError::NotRunning { .. } | RemoteError::Stale { .. }) => {
            return Err("the daemon is not running".to_owned());
        }
        Err(e) => return Err(e.to_string()),
    };
    let runtime =
        crate::cli::build_runtime(crate::cli::Threads::Current).map_err(|e| e.to_string())?;
    let path = format!("root/mcp_servers/mcp:{name}");
    let result = runtime.block_on(gateway.actors(Some(&path)));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(value) => remote::decode(&path, value).map_err(|e| e.to_string()),
        Err(RemoteError::Api { .. }) => Err("not running in the daemon".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// The entry as JSON, secrets masked.
fn shown(server: &McpServerConfig) -> Value {
    let mut value = serde_json::to_value(server).unwrap_or_else(|_| json!({}));
    value["env"] = json!(masked(&server.env, is_secret_name));
    value["headers"] = json!(masked(&server.headers, |_| true));
    if server
        .oauth
        .as_ref()
        .is_some_and(|o| o.client_secret.is_some())
    {
        value["oauth"]["client_secret"] = json!(revka_mcp::redact::MASK);
    }
    value
}

/// `map` with the values `secret(key)` says are secret masked, unless they are references.
fn masked(
    map: &BTreeMap<String, String>,
    secret: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            let shown = if secret(k) && !v.contains("${") {
                MASK.to_owned()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "KEY", "SECRET", "PASSWORD"]
        .iter()
        .any(|word| upper.contains(word))
}

/// The text form: one `key: value` line per set key.
fn describe(
    server: &McpServerConfig,
    file: &Path,
    invalid: Option<&str>,
    state: &Result<revka_actors::Snapshot, String>,
) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("file", file.display().to_string()),
        ("transport", server.transport.as_str().to_owned()),
    ];
    if let Some(command) = &server.command {
        rows.push(("command", command.clone()));
    }
    if !server.args.is_empty() {
        rows.push(("args", shell_words(&server.args)));
    }
    if let Some(url) = &server.url {
        rows.push(("url", url.clone()));
    }
    let pairs = |map: BTreeMap<String, String>, sep: &str| {
        map.iter()
            .map(|(k, v)| format!("{k}{sep}{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !server.env.is_empty() {
        rows.push(("env", pairs(masked(&server.env, is_secret_name), "=")));
    }
    if !server.headers.is_empty() {
        rows.push(("headers", pairs(masked(&server.headers, |_| true), ": ")));
    }
    rows.push(("auto_connect", server.auto_connect.to_string()));
    rows.push(("tool timeout", format!("{} s", server.tool_timeout_secs)));
    if let Some(reason) = invalid {
        rows.push(("invalid", reason.to_owned()));
    }
    rows.push((
        "daemon",
        match state {
            Ok(snapshot) => {
                let color = use_color(
                    std::io::IsTerminal::is_terminal(&std::io::stdout()),
                    std::env::var("NO_COLOR").ok().as_deref(),
                );
                render_tree(snapshot, SystemTime::now(), color)
                    .trim_end()
                    .to_owned()
            }
            Err(why) => why.clone(),
        },
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{}\n", server.name);
    for (key, value) in rows {
        out.push_str(&format!("  {key:width$}  {value}\n"));
    }
    out
}

/// Arguments joined for display, quoted when they hold spaces.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::describe;
    use crate::config::{McpServerConfig, Transport};

    #[test]
    fn literal_secrets_are_masked_and_references_shown() {
        let server = McpServerConfig {
            name: "gh".to_owned(),
            transport: Transport::Stdio.into(),
            command: Some("npx".to_owned()),
            args: vec!["-y".to_owned(), "a b".to_owned()],
            env: BTreeMap::from([
                ("GITHUB_TOKEN".to_owned(), "ghp_literal".to_owned()),
                ("API_KEY".to_owned(), "${API_KEY}".to_owned()),
                ("MODE".to_owned(), "fast".to_owned()),
            ]),
            ..McpServerConfig::default()
        };
        let text = describe(
            &server,
            Path::new("/c/config.toml"),
            Some("bad"),
            &Err("the daemon is not running".to_owned()),
        );
        assert_eq!(
            text,
            "gh\n  file          /c/config.toml\n  transport     stdio\n  command       npx\n  \
             args          -y \"a b\"\n  env           API_KEY=${API_KEY}, GITHUB_TOKEN=***, \
             MODE=fast\n  auto_connect  true\n  tool timeout  180 s\n  invalid       bad\n  \
             daemon        the daemon is not running\n"
        );
        let json = super::shown(&server);
        assert_eq!(json["env"]["GITHUB_TOKEN"], "***");
        assert!(!json.to_string().contains("ghp_literal"));
    }
}
