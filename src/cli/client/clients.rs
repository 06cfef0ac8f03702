//! The MCP clients `revka client` knows: where each keeps its MCP servers, in which format,
//! and what an entry looks like there.
//!
//! Part of `revka client` ([`super`]), and the one table of client config locations in the
//! command line (`revka mcp import` reads the same files through [`Client::user_file`]).
//! Every path is computed from an environment lookup (`HOME` and the variables each client
//! itself honours), never from the process environment directly, so tests point `HOME` at a
//! temporary directory. Each location below was checked against the client's own
//! documentation or source, named beside it.

use std::path::{Path, PathBuf};

use crate::config::EnvLookup;

/// A client whose MCP config `revka client` edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Client {
    /// Claude Code (the `claude` CLI).
    ClaudeCode,
    /// Claude Desktop.
    ClaudeDesktop,
    /// Cursor.
    Cursor,
    /// Visual Studio Code (GitHub Copilot's agent mode).
    #[value(alias = "code")]
    Vscode,
    /// OpenAI Codex CLI.
    Codex,
    /// Gemini CLI.
    #[value(alias = "gemini-cli")]
    Gemini,
}

/// How a client's config file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// Strict JSON: the client parses it with `JSON.parse`, so a comment makes it invalid.
    Json,
    /// JSON with `//` and `/* */` comments and trailing commas.
    Jsonc,
    /// TOML.
    Toml,
}

/// Why a client's config path cannot be worked out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// `HOME` is unset or empty.
    #[error("HOME is not set, so {0}'s config file cannot be found")]
    NoHome(&'static str),
    /// The client has no project-level config file.
    #[error("{0} has no project-level config file; drop --project")]
    NoProjectScope(&'static str),
}

/// Where a config file is, and what says the client is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Location {
    /// The file the client reads.
    pub(super) file: PathBuf,
    /// A directory that exists once the client has run (its config or state directory): when
    /// neither it nor `file` exists, the client is taken to be absent and nothing is created
    /// without `--create`. `None` for a project file, whose project directory is checked
    /// instead.
    pub(super) marker: Option<PathBuf>,
}

impl Client {
    /// Every client, in the order `revka client list` shows them.
    pub(super) const ALL: [Client; 6] = [
        Client::ClaudeCode,
        Client::ClaudeDesktop,
        Client::Cursor,
        Client::Vscode,
        Client::Codex,
        Client::Gemini,
    ];

    /// The name on the command line.
    pub(super) fn name(self) -> &'static str {
        match self {
            Client::ClaudeCode => "claude-code",
            Client::ClaudeDesktop => "claude-desktop",
            Client::Cursor => "cursor",
            Client::Vscode => "vscode",
            Client::Codex => "codex",
            Client::Gemini => "gemini",
        }
    }

    /// The product's name, for messages.
    pub(super) fn title(self) -> &'static str {
        match self {
            Client::ClaudeCode => "Claude Code",
            Client::ClaudeDesktop => "Claude Desktop",
            Client::Cursor => "Cursor",
            Client::Vscode => "VS Code",
            Client::Codex => "Codex",
            Client::Gemini => "Gemini CLI",
        }
    }

    /// The file's format.
    pub(super) fn format(self) -> Format {
        match self {
            // Both are read with JSON.parse; Claude Code also rewrites ~/.claude.json itself.
            Client::ClaudeCode | Client::ClaudeDesktop => Format::Json,
            // VS Code's mcp.json is JSONC (comments and trailing commas); Cursor (a VS Code
            // fork) reads its mcp.json the same way; Gemini CLI strips comments from
            // settings.json before parsing it.
            Client::Cursor | Client::Vscode | Client::Gemini => Format::Jsonc,
            Client::Codex => Format::Toml,
        }
    }

    /// The key of the object (JSON) or table (TOML) that holds the servers by name.
    pub(super) fn servers_key(self) -> &'static str {
        match self {
            // VS Code: a top-level `servers` object (code.visualstudio.com/docs/copilot/
            // reference/mcp-configuration).
            Client::Vscode => "servers",
            // Codex: `[mcp_servers.<name>]` tables (github.com/openai/codex, docs/config.md).
            Client::Codex => "mcp_servers",
            _ => "mcpServers",
        }
    }

    /// Whether the client's entries carry `"type": "stdio"`: VS Code requires it, and Claude
    /// Code writes it itself (`claude mcp add`); the others infer stdio from `command`.
    pub(super) fn typed_entries(self) -> bool {
        matches!(self, Client::ClaudeCode | Client::Vscode)
    }

    /// The user-level config file, from `HOME` and the variables the client honours.
    pub fn user_file(self, env: EnvLookup<'_>) -> Result<PathBuf, PathError> {
        self.user_location(env).map(|l| l.file)
    }

    /// The user-level config file and the directory that shows the client is installed.
    pub(super) fn user_location(self, env: EnvLookup<'_>) -> Result<Location, PathError> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = || var("HOME").ok_or(PathError::NoHome(self.title()));
        let in_dir = |dir: PathBuf, file: &str| Location {
            file: dir.join(file),
            marker: Some(dir),
        };
        Ok(match self {
            // User scope: the top-level `mcpServers` of ~/.claude.json
            // (code.claude.com/docs/en/mcp, "MCP installation scopes"). With
            // CLAUDE_CONFIG_DIR set (code.claude.com/docs/en/env-vars) the file moves into
            // that directory.
            Client::ClaudeCode => match var("CLAUDE_CONFIG_DIR") {
                Some(dir) => in_dir(dir, ".claude.json"),
                None => {
                    let home = home()?;
                    Location {
                        file: home.join(".claude.json"),
                        marker: Some(home.join(".claude")),
                    }
                }
            },
            // modelcontextprotocol.io/quickstart/user: ~/Library/Application Support/Claude/
            // on macOS; the Linux builds are Electron apps whose user data directory is
            // $XDG_CONFIG_HOME/Claude (default ~/.config/Claude).
            Client::ClaudeDesktop => in_dir(
                app_data(env, &home()?).join("Claude"),
                "claude_desktop_config.json",
            ),
            // cursor.com/docs/mcp: ~/.cursor/mcp.json for every project.
            Client::Cursor => in_dir(home()?.join(".cursor"), "mcp.json"),
            // The user profile's mcp.json (code.visualstudio.com/docs/copilot/reference/
            // mcp-configuration), in the user data directory VS Code computes
            // (src/bootstrap-node, getUserDataPath): $VSCODE_PORTABLE/user-data, else
            // $VSCODE_APPDATA/Code, else the platform's application data directory + Code.
            // The default profile only: other profiles keep theirs under User/profiles/.
            Client::Vscode => {
                let data = match (var("VSCODE_PORTABLE"), var("VSCODE_APPDATA")) {
                    (Some(portable), _) => portable.join("user-data"),
                    (None, Some(appdata)) => appdata.join("Code"),
                    (None, None) => app_data(env, &home()?).join("Code"),
                };
                in_dir(data.join("User"), "mcp.json")
            }
            // github.com/openai/codex docs/config.md: $CODEX_HOME/config.toml, CODEX_HOME
            // defaulting to ~/.codex.
            Client::Codex => in_dir(
                var("CODEX_HOME").map_or_else(|| home().map(|h| h.join(".codex")), Ok)?,
                "config.toml",
            ),
            // geminicli.com/docs/tools/mcp-server: `mcpServers` of ~/.gemini/settings.json;
            // GEMINI_CLI_HOME replaces the home directory (packages/core/src/utils/paths.ts).
            Client::Gemini => in_dir(
                var("GEMINI_CLI_HOME")
                    .map_or_else(home, Ok)?
                    .join(".gemini"),
                "settings.json",
            ),
        })
    }

    /// The project-level config file in `project`, for the clients that have one.
    pub(super) fn project_file(self, project: &Path) -> Result<PathBuf, PathError> {
        Ok(match self {
            // code.claude.com/docs/en/mcp: project scope is `.mcp.json` at the project root.
            Client::ClaudeCode => project.join(".mcp.json"),
            Client::ClaudeDesktop => return Err(PathError::NoProjectScope(self.title())),
            Client::Cursor => project.join(".cursor/mcp.json"),
            Client::Vscode => project.join(".vscode/mcp.json"),
            // Read only in projects the user trusted.
            Client::Codex => project.join(".codex/config.toml"),
            Client::Gemini => project.join(".gemini/settings.json"),
        })
    }
}

/// The directory desktop apps keep their data in: `~/Library/Application Support` on macOS,
/// `$XDG_CONFIG_HOME` (default `~/.config`) elsewhere.
fn app_data(env: EnvLookup<'_>, home: &Path) -> PathBuf {
    if cfg!(target_os = "macos") {
        home.join("Library/Application Support")
    } else {
        env("XDG_CONFIG_HOME")
            .filter(|x| !x.is_empty())
            .map_or_else(|| home.join(".config"), PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::{Client, PathError};

    fn lookup<'a>(vars: &'a HashMap<&str, &str>) -> impl Fn(&str) -> Option<String> + 'a {
        |name| vars.get(name).map(|v| (*v).to_owned())
    }

    #[test]
    fn user_files_follow_home_and_each_clients_own_variables() {
        let vars: HashMap<&str, &str> = [("HOME", "/h")].into();
        let env = lookup(&vars);
        let file = |c: Client| c.user_file(&env).unwrap();
        assert_eq!(file(Client::ClaudeCode), Path::new("/h/.claude.json"));
        assert_eq!(file(Client::Cursor), Path::new("/h/.cursor/mcp.json"));
        assert_eq!(file(Client::Codex), Path::new("/h/.codex/config.toml"));
        assert_eq!(file(Client::Gemini), Path::new("/h/.gemini/settings.json"));
        let code = Client::ClaudeCode.user_location(&env).unwrap();
        assert_eq!(code.marker.as_deref(), Some(Path::new("/h/.claude")));
        if cfg!(target_os = "macos") {
            let support = "/h/Library/Application Support";
            assert_eq!(
                file(Client::ClaudeDesktop),
                Path::new(support).join("Claude/claude_desktop_config.json")
            );
            assert_eq!(
                file(Client::Vscode),
                Path::new(support).join("Code/User/mcp.json")
            );
        } else {
            assert_eq!(
                file(Client::ClaudeDesktop),
                Path::new("/h/.config/Claude/claude_desktop_config.json")
            );
            assert_eq!(
                file(Client::Vscode),
                Path::new("/h/.config/Code/User/mcp.json")
            );
        }

        let vars: HashMap<&str, &str> = [
            ("HOME", "/h"),
            ("CLAUDE_CONFIG_DIR", "/c"),
            ("CODEX_HOME", "/x"),
            ("GEMINI_CLI_HOME", "/g"),
            ("VSCODE_APPDATA", "/v"),
            ("XDG_CONFIG_HOME", "/xdg"),
        ]
        .into();
        let env = lookup(&vars);
        let file = |c: Client| c.user_file(&env).unwrap();
        assert_eq!(file(Client::ClaudeCode), Path::new("/c/.claude.json"));
        assert_eq!(file(Client::Codex), Path::new("/x/config.toml"));
        assert_eq!(file(Client::Gemini), Path::new("/g/.gemini/settings.json"));
        assert_eq!(file(Client::Vscode), Path::new("/v/Code/User/mcp.json"));
        if !cfg!(target_os = "macos") {
            assert_eq!(
                file(Client::ClaudeDesktop),
                Path::new("/xdg/Claude/claude_desktop_config.json")
            );
        }
        let vars: HashMap<&str, &str> = [("HOME", "/h"), ("VSCODE_PORTABLE", "/p")].into();
        assert_eq!(
            Client::Vscode.user_file(&lookup(&vars)).unwrap(),
            Path::new("/p/user-data/User/mcp.json")
        );
    }

    #[test]
    fn without_home_only_the_variables_that_replace_it_help() {
        let vars: HashMap<&str, &str> = [("CODEX_HOME", "/x"), ("HOME", "")].into();
        let env = lookup(&vars);
        assert_eq!(
            Client::Codex.user_file(&env).unwrap(),
            Path::new("/x/config.toml")
        );
        let err = Client::Cursor.user_file(&env).unwrap_err();
        assert!(matches!(err, PathError::NoHome("Cursor")), "{err}");
        assert!(err.to_string().contains("HOME is not set"));
    }

    #[test]
    fn project_files_and_the_client_without_one() {
        let p = Path::new("/src/app");
        let file = |c: Client| c.project_file(p).unwrap();
        assert_eq!(file(Client::ClaudeCode), Path::new("/src/app/.mcp.json"));
        assert_eq!(file(Client::Cursor), Path::new("/src/app/.cursor/mcp.json"));
        assert_eq!(file(Client::Vscode), Path::new("/src/app/.vscode/mcp.json"));
        assert_eq!(
            file(Client::Codex),
            Path::new("/src/app/.codex/config.toml")
        );
        assert_eq!(
            file(Client::Gemini),
            Path::new("/src/app/.gemini/settings.json")
        );
        let err = Client::ClaudeDesktop.project_file(p).unwrap_err();
        assert!(err.to_string().contains("no project-level config"), "{err}");
    }
}
