//! Launchers: what a terminal of the Code tab runs, and how each coding CLI is handed its
//! fresh Revka MCP session (`root/terminals`).
//!
//! The built-in launchers are `shell` (`$SHELL -l`, else `/bin/sh -l`), `claude` (Claude
//! Code), `codex` (Codex CLI), `gemini` (Gemini CLI) and `opencode` (OpenCode);
//! `[[terminal.launchers]]` adds more, or replaces a built-in of the same name. Every launcher
//! but `shell` runs with a session of its own, which reaches it in the form its CLI reads
//! ([`Launcher::prepare`]):
//!
//! | launcher | how |
//! |---|---|
//! | `claude` | `--mcp-config <dir>/mcp.json`: `{"mcpServers":{"revka":{"type":"http","url":…,"headers":{…}}}}` |
//! | `codex` | `-c mcp_servers.revka.url="…"`, `-c mcp_servers.revka.bearer_token_env_var="REVKA_MCP_TOKEN"`, `-c mcp_servers.revka.http_headers={"X-Revka-Session"="…"}` |
//! | `gemini` | `GEMINI_CLI_SYSTEM_DEFAULTS_PATH=<dir>/gemini-settings.json`: `{"mcpServers":{"revka":{"httpUrl":…,"headers":{…}}}}` (the lowest layer: the user's own settings still apply, and `mcpServers` objects are merged) |
//! | `opencode` | `OPENCODE_CONFIG=<dir>/opencode.json`: `{"mcp":{"revka":{"type":"remote","url":…,"headers":{…},"enabled":true}}}` |
//! | from config | its `args` and `env` with `{mcp_url}`, `{session_id}`, `{token}`, `{mcp_config}` replaced |
//!
//! and every one of them gets `REVKA_MCP_URL`, `REVKA_SESSION_ID`, `REVKA_MCP_TOKEN` and
//! `REVKA_MCP_CONFIG` (the generic `mcp.json`). The headers are the two of Revka's MCP flow:
//! `Authorization: Bearer <session token>` and `X-Revka-Session: <session id>`. The files live
//! in the terminal's own directory, `$REVKA_HOME/terminals/<id>/` (0700, files 0600), removed
//! when the terminal ends.
//!
//! The child's environment is the daemon's without its secrets ([`child_env`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{LauncherConfig, TerminalConfig};

/// The launcher that gets no MCP session.
pub const SHELL: &str = "shell";

/// The built-in launchers other than `shell`: (name, program).
const BUILTIN_CLIS: [(&str, &str); 4] = [
    ("claude", "claude"),
    ("codex", "codex"),
    ("gemini", "gemini"),
    ("opencode", "opencode"),
];

/// One launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    /// Its name (`?launcher=`).
    pub name: String,
    /// The program.
    pub command: String,
    /// Its arguments, placeholders not yet replaced.
    pub args: Vec<String>,
    /// More environment, placeholders not yet replaced.
    pub env: Vec<(String, String)>,
    /// Whether it is built in (not from `[[terminal.launchers]]`).
    pub builtin: bool,
}

/// What `GET /api/terminal/launchers` lists for a launcher.
#[derive(Debug, Clone, Serialize)]
pub struct LauncherInfo {
    /// Its name.
    pub name: String,
    /// The program.
    pub command: String,
    /// Whether the program is found (on `PATH` when it has no slash).
    pub available: bool,
    /// Whether it is built in.
    pub builtin: bool,
}

/// Every launcher of `config`: the built-in ones (each replaced by a configured one of the
/// same name), then the other configured ones in config order.
pub fn launchers(config: &TerminalConfig) -> Vec<Launcher> {
    let configured = |name: &str| config.launchers.iter().find(|l| l.name == name);
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "/bin/sh".to_owned());
    let mut all: Vec<Launcher> = std::iter::once((SHELL, shell.as_str()))
        .chain(BUILTIN_CLIS)
        .map(|(name, program)| match configured(name) {
            Some(c) => from_config(c),
            None => Launcher {
                name: name.to_owned(),
                command: program.to_owned(),
                args: if name == SHELL {
                    vec!["-l".to_owned()]
                } else {
                    Vec::new()
                },
                env: Vec::new(),
                builtin: true,
            },
        })
        .collect();
    for c in &config.launchers {
        if !all.iter().any(|l| l.name == c.name) {
            all.push(from_config(c));
        }
    }
    all
}

fn from_config(c: &LauncherConfig) -> Launcher {
    Launcher {
        name: c.name.clone(),
        command: c.command.clone(),
        args: c.args.clone(),
        env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        builtin: false,
    }
}

/// The listing of [`launchers`], with whether each program is found.
pub fn list(config: &TerminalConfig) -> Vec<LauncherInfo> {
    let path = std::env::var_os("PATH");
    launchers(config)
        .into_iter()
        .map(|l| LauncherInfo {
            available: find_program(&l.command, path.as_deref()).is_some(),
            name: l.name,
            command: l.command,
            builtin: l.builtin,
        })
        .collect()
}

/// Where `program` is: itself when it has a slash, else the first executable file of that
/// name in `path`.
pub fn find_program(program: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// The MCP session a terminal's CLI is given.
#[derive(Debug, Clone)]
pub struct Injected {
    /// Revka's MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub mcp_url: String,
    /// The session's id.
    pub session_id: String,
    /// The session's token.
    pub token: String,
}

impl Injected {
    /// The two headers of Revka's MCP flow.
    fn headers(&self) -> Value {
        json!({
            "Authorization": format!("Bearer {}", self.token),
            "X-Revka-Session": self.session_id,
        })
    }
}

/// A launcher made ready to run: program, arguments, extra environment.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The program.
    pub program: String,
    /// Its arguments, placeholders replaced.
    pub args: Vec<String>,
    /// The environment to add to [`child_env`]'s.
    pub env: Vec<(String, String)>,
}

impl Launcher {
    /// Whether the launcher runs with an MCP session of its own: every one but `shell`.
    pub fn wants_session(&self) -> bool {
        self.name != SHELL
    }

    /// The command to run in the terminal directory `dir`, with `injected` (when the launcher
    /// has a session) written where its CLI reads it. Files are created 0600 in `dir`.
    pub fn prepare(&self, dir: &Path, injected: Option<&Injected>) -> std::io::Result<Prepared> {
        let Some(inj) = injected else {
            return Ok(Prepared {
                program: self.command.clone(),
                args: self.args.clone(),
                env: self.env.clone(),
            });
        };
        let generic = dir.join("mcp.json");
        write_private(
            &generic,
            &json!({ "mcpServers": { "revka": {
                "type": "http", "url": inj.mcp_url, "headers": inj.headers(),
            }}}),
        )?;
        let fill = |s: &str| {
            s.replace("{mcp_url}", &inj.mcp_url)
                .replace("{session_id}", &inj.session_id)
                .replace("{token}", &inj.token)
                .replace("{mcp_config}", &generic.display().to_string())
        };
        let mut args: Vec<String> = self.args.iter().map(|a| fill(a)).collect();
        let mut env: Vec<(String, String)> =
            self.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
        env.extend([
            ("REVKA_MCP_URL".to_owned(), inj.mcp_url.clone()),
            ("REVKA_SESSION_ID".to_owned(), inj.session_id.clone()),
            ("REVKA_MCP_TOKEN".to_owned(), inj.token.clone()),
            ("REVKA_MCP_CONFIG".to_owned(), generic.display().to_string()),
        ]);
        if self.builtin {
            match self.name.as_str() {
                "claude" => {
                    args.splice(
                        0..0,
                        ["--mcp-config".to_owned(), generic.display().to_string()],
                    );
                }
                "codex" => {
                    let url = toml_string(&inj.mcp_url);
                    let session = toml_string(&inj.session_id);
                    args.splice(
                        0..0,
                        [
                            "-c".to_owned(),
                            format!("mcp_servers.revka.url={url}"),
                            "-c".to_owned(),
                            "mcp_servers.revka.bearer_token_env_var=\"REVKA_MCP_TOKEN\"".to_owned(),
                            "-c".to_owned(),
                            format!(
                                "mcp_servers.revka.http_headers={{\"X-Revka-Session\"={session}}}"
                            ),
                        ],
                    );
                }
                "gemini" => {
                    let file = dir.join("gemini-settings.json");
                    write_private(
                        &file,
                        &json!({ "mcpServers": { "revka": {
                            "httpUrl": inj.mcp_url, "headers": inj.headers(),
                        }}}),
                    )?;
                    env.push((
                        "GEMINI_CLI_SYSTEM_DEFAULTS_PATH".to_owned(),
                        file.display().to_string(),
                    ));
                }
                "opencode" => {
                    let file = dir.join("opencode.json");
                    write_private(
                        &file,
                        &json!({
                            "$schema": "https://opencode.ai/config.json",
                            "mcp": { "revka": {
                                "type": "remote", "url": inj.mcp_url,
                                "headers": inj.headers(), "enabled": true,
                            }},
                        }),
                    )?;
                    env.push(("OPENCODE_CONFIG".to_owned(), file.display().to_string()));
                }
                _ => {}
            }
        }
        Ok(Prepared {
            program: self.command.clone(),
            args,
            env,
        })
    }
}

/// A TOML basic string (what `codex -c key=value` parses the value as).
fn toml_string(s: &str) -> String {
    // A JSON string is a valid TOML basic string for the characters these values hold
    // (a URL, a hex id); escapes agree for quotes, backslashes and control characters.
    Value::String(s.to_owned()).to_string()
}

/// Writes `value` to a new file `path`, owner-only (0600).
fn write_private(path: &Path, value: &Value) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(serde_json::to_string_pretty(value)?.as_bytes())?;
    file.write_all(b"\n")
}

/// Whether the daemon's environment variable `name` stays out of a terminal: Revka's own
/// secrets (any `REVKA_*` naming a token, secret, password or key), the process-tree marker of
/// supervised children, and the service manager's sockets and descriptors (a shell must not
/// notify systemd for the daemon).
fn scrubbed(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let secret = ["TOKEN", "SECRET", "PASSWORD", "KEY"]
        .iter()
        .any(|w| upper.contains(w));
    (upper.starts_with("REVKA_") && secret)
        || upper == revka_actors::process::TREE_VAR
        || matches!(
            upper.as_str(),
            "NOTIFY_SOCKET"
                | "WATCHDOG_USEC"
                | "WATCHDOG_PID"
                | "LISTEN_FDS"
                | "LISTEN_PID"
                | "LISTEN_FDNAMES"
        )
}

/// A terminal's environment: the daemon's without its secrets (`scrubbed`), with `TERM` and
/// `COLORTERM` set, then `extra` (the launcher's and the injected session's, which win).
pub fn child_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| !scrubbed(k))
        .collect();
    let mut set = |k: &str, v: &str| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v.to_owned()));
    };
    set("TERM", "xterm-256color");
    set("COLORTERM", "truecolor");
    for (k, v) in extra {
        set(k, v);
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injected() -> Injected {
        Injected {
            mcp_url: "http://127.0.0.1:4242/mcp".into(),
            session_id: "abc".into(),
            token: "tok".into(),
        }
    }

    #[test]
    fn builtins_come_first_and_config_replaces_or_adds() {
        let config = TerminalConfig {
            launchers: vec![
                LauncherConfig {
                    name: "codex".into(),
                    command: "/opt/codex".into(),
                    args: vec![],
                    env: Default::default(),
                },
                LauncherConfig {
                    name: "fake".into(),
                    command: "fake_cli".into(),
                    args: vec!["{mcp_config}".into()],
                    env: Default::default(),
                },
            ],
            ..TerminalConfig::default()
        };
        let all = launchers(&config);
        let names: Vec<(&str, bool)> = all.iter().map(|l| (&*l.name, l.builtin)).collect();
        assert_eq!(
            names,
            [
                ("shell", true),
                ("claude", true),
                ("codex", false),
                ("gemini", true),
                ("opencode", true),
                ("fake", false)
            ]
        );
        assert!(!all[0].wants_session() && all[1].wants_session());
    }

    #[test]
    fn each_cli_gets_the_session_in_its_own_form() {
        let dir = tempfile::tempdir().unwrap();
        let config = TerminalConfig::default();
        let all = launchers(&config);
        let get = |name: &str| all.iter().find(|l| l.name == name).unwrap();
        let inj = injected();

        let sub = |n: &str| {
            let d = dir.path().join(n);
            std::fs::create_dir(&d).unwrap();
            d
        };
        let d = sub("claude");
        let claude = get("claude").prepare(&d, Some(&inj)).unwrap();
        let file = d.join("mcp.json");
        assert_eq!(claude.args, ["--mcp-config", &*file.display().to_string()]);
        let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(doc["mcpServers"]["revka"]["type"], "http");
        assert_eq!(
            doc["mcpServers"]["revka"]["headers"]["Authorization"],
            "Bearer tok"
        );
        assert_eq!(
            doc["mcpServers"]["revka"]["headers"]["X-Revka-Session"],
            "abc"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            claude
                .env
                .contains(&("REVKA_MCP_TOKEN".into(), "tok".into()))
        );

        let codex = get("codex").prepare(&sub("codex"), Some(&inj)).unwrap();
        assert_eq!(
            codex.args,
            [
                "-c",
                "mcp_servers.revka.url=\"http://127.0.0.1:4242/mcp\"",
                "-c",
                "mcp_servers.revka.bearer_token_env_var=\"REVKA_MCP_TOKEN\"",
                "-c",
                "mcp_servers.revka.http_headers={\"X-Revka-Session\"=\"abc\"}",
            ]
        );

        let d = sub("gemini");
        let gemini = get("gemini").prepare(&d, Some(&inj)).unwrap();
        let path = d.join("gemini-settings.json").display().to_string();
        assert!(
            gemini
                .env
                .contains(&("GEMINI_CLI_SYSTEM_DEFAULTS_PATH".into(), path))
        );

        let d = sub("opencode");
        let opencode = get("opencode").prepare(&d, Some(&inj)).unwrap();
        let file = d.join("opencode.json");
        assert!(
            opencode
                .env
                .contains(&("OPENCODE_CONFIG".into(), file.display().to_string()))
        );
        let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(doc["mcp"]["revka"]["type"], "remote");
    }

    #[test]
    fn configured_placeholders_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let launcher = Launcher {
            name: "x".into(),
            command: "x".into(),
            args: vec!["--url={mcp_url}".into(), "{session_id}:{token}".into()],
            env: vec![("CFG".into(), "{mcp_config}".into())],
            builtin: false,
        };
        let p = launcher.prepare(dir.path(), Some(&injected())).unwrap();
        assert_eq!(p.args, ["--url=http://127.0.0.1:4242/mcp", "abc:tok"]);
        let file = dir.path().join("mcp.json").display().to_string();
        assert!(p.env.contains(&("CFG".into(), file)));
    }

    #[test]
    fn the_daemons_secrets_stay_out() {
        assert!(scrubbed("REVKA_GATEWAY_TOKEN"));
        assert!(scrubbed("revka_api_key"));
        assert!(scrubbed("REVKA_PROCESS_TREE"));
        assert!(scrubbed("NOTIFY_SOCKET"));
        assert!(!scrubbed("REVKA_HOME"));
        assert!(!scrubbed("GITHUB_TOKEN"));
        let env = child_env(&[("REVKA_MCP_TOKEN".into(), "t".into())]);
        assert!(env.contains(&("REVKA_MCP_TOKEN".into(), "t".into())));
        assert!(env.contains(&("TERM".into(), "xterm-256color".into())));
    }
}
