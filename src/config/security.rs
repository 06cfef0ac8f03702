//! `[security]` and `[tools]`: the policy Revka's own tools run under, and each tool's switch
//! and provider settings.
//!
//! Part of the config layer: plain serde types with documented defaults, checked by
//! `validate`. The daemon turns them into a [`crate::security::Policy`] at boot; the built-in
//! tools (`src/tools/builtin`) ask the policy before they touch a path, run a program or open
//! a connection. Changing either section takes a restart (a reload reports it).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How much the built-in tools may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Autonomy {
    /// Only tools and operations that read: no file writes, no `shell`, no `git` commit or
    /// add, no `http_request` other than `GET`/`HEAD`, no cron job changes.
    ReadOnly,
    /// The default: reads and writes inside the workspace, programs from `allowed_commands`
    /// run with plain arguments (no shell syntax).
    #[default]
    Supervised,
    /// As `supervised`, and `shell` also takes shell syntax (pipes, `&&`, redirections), each
    /// program of the line still checked against `allowed_commands`.
    Full,
}

impl Autonomy {
    /// Its name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read_only",
            Self::Supervised => "supervised",
            Self::Full => "full",
        }
    }
}

/// The paths the built-in tools never touch by default (`~` is the daemon user's home,
/// `$REVKA_HOME` the daemon's own directory, which is forbidden whatever the list says).
pub const DEFAULT_FORBIDDEN_PATHS: [&str; 14] = [
    "$REVKA_HOME",
    "~/.ssh",
    "~/.gnupg",
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.kube",
    "~/.docker",
    "~/.netrc",
    "~/.git-credentials",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/proc/*/environ",
];

/// The programs `shell` runs by default: ones that read and report.
pub const DEFAULT_ALLOWED_COMMANDS: [&str; 27] = [
    "ls", "cat", "head", "tail", "wc", "grep", "rg", "find", "file", "stat", "du", "df", "sort",
    "uniq", "cut", "tr", "diff", "echo", "printf", "pwd", "date", "uname", "whoami", "which",
    "basename", "dirname", "git",
];

/// `[security]`: what the built-in tools may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a [security] table")]
pub struct SecurityConfig {
    /// `read_only`, `supervised` (the default) or `full`: see [`Autonomy`].
    pub autonomy: Autonomy,
    /// Whether paths must stay inside the calling session's workspace (its working directory)
    /// after every symlink is resolved. Default `true`.
    pub workspace_only: bool,
    /// Paths no built-in tool reads, writes, lists or runs in, even inside the workspace:
    /// absolute, `~/...` or `$REVKA_HOME/...`, with `*` matching one path segment. Setting it
    /// replaces [`DEFAULT_FORBIDDEN_PATHS`]; `$REVKA_HOME` stays forbidden whatever it says.
    pub forbidden_paths: Vec<String>,
    /// The programs `shell` may run (bare names, looked up in `PATH`). Default
    /// [`DEFAULT_ALLOWED_COMMANDS`]; `["*"]` allows any program (arguments are still checked).
    pub allowed_commands: Vec<String>,
    /// The most bytes of output a tool returns (a command's stdout and stderr each, a file
    /// read, a response body); more is cut and marked truncated. Default `1048576` (1 MiB).
    pub max_output_bytes: u64,
    /// The most bytes a tool reads from a file it parses whole (a PDF, an image) or a response
    /// body it converts. Default `33554432` (32 MiB).
    pub max_file_bytes: u64,
    /// Seconds a `shell` or `git_operations` command, an HTTP request or a screenshot may run
    /// before it is killed (with its whole process group). Default `60`; at most `3600`.
    pub command_timeout_secs: u64,
    /// Built-in tool calls one session may make in an hour (a sliding window); `0` for no
    /// limit. Default `600`.
    pub max_actions_per_hour: u32,
    /// Hosts the network tools may reach even at a loopback, private, link-local or other
    /// internal address (names, IP addresses, CIDR blocks such as `10.1.0.0/16`, or
    /// `*.example.internal`). Default: none, so every internal address is refused.
    pub allowed_hosts: Vec<String>,
    /// Hosts the network tools never reach (same forms as `allowed_hosts`; wins over it).
    /// Default: none.
    pub blocked_hosts: Vec<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            autonomy: Autonomy::default(),
            workspace_only: true,
            forbidden_paths: DEFAULT_FORBIDDEN_PATHS.map(str::to_owned).to_vec(),
            allowed_commands: DEFAULT_ALLOWED_COMMANDS.map(str::to_owned).to_vec(),
            max_output_bytes: 1024 * 1024,
            max_file_bytes: 32 * 1024 * 1024,
            command_timeout_secs: 60,
            max_actions_per_hour: 600,
            allowed_hosts: Vec::new(),
            blocked_hosts: Vec::new(),
        }
    }
}

impl SecurityConfig {
    /// [`Self::command_timeout_secs`] as a duration.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }

    /// [`Self::max_output_bytes`] as a `usize`.
    pub fn max_output(&self) -> usize {
        usize::try_from(self.max_output_bytes).unwrap_or(usize::MAX)
    }

    /// [`Self::max_file_bytes`] as a `usize`.
    pub fn max_file(&self) -> usize {
        usize::try_from(self.max_file_bytes).unwrap_or(usize::MAX)
    }
}

/// One tool's switch: `[tools.<name>] enabled = false` keeps it from registering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table with `enabled`")]
pub struct ToolSwitch {
    /// Whether the tool registers. Default `true`.
    pub enabled: bool,
}

impl Default for ToolSwitch {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[tools.weather]` and `[tools.web_search]`: a tool backed by a web provider.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    expecting = "a provider table (enabled, provider, base_url, api_key, geocoding_url)"
)]
pub struct ProviderConfig {
    /// Whether the tool registers. Default `true` (it is still skipped, with the reason, when
    /// its provider needs a key that is not set).
    pub enabled: bool,
    /// The provider's name (`weather`: `open-meteo`, the keyless default, or `openweathermap`
    /// with `api_key`; `web_search`: `searxng` with `base_url`, `brave` or `tavily` with
    /// `api_key`, and no default: unset, the tool is skipped with the reason). Unset picks the
    /// keyless default where there is one.
    pub provider: Option<String>,
    /// The provider's base URL, to use a mirror, a self-hosted instance or a test server.
    /// Unset uses the provider's public URL.
    pub base_url: Option<String>,
    /// The provider's API key, usually as `${VAR}` (expanded from the daemon's environment
    /// when the tool registers; a variable that is not set skips the tool with the reason);
    /// never logged or shown (`Debug` masks it).
    pub api_key: Option<String>,
    /// `[tools.weather]` with `open-meteo` only: the base URL of the geocoding API that turns a
    /// place name into coordinates (`{geocoding_url}/v1/search`). Unset uses `base_url` when
    /// that is set (one server answering both), else Open-Meteo's public geocoding host.
    pub geocoding_url: Option<String>,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("enabled", &self.enabled)
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field(
                "api_key",
                &self.api_key.as_ref().map(|_| revka_mcp::redact::MASK),
            )
            .field("geocoding_url", &self.geocoding_url)
            .finish()
    }
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            provider: None,
            base_url: None,
            api_key: None,
            geocoding_url: None,
        }
    }
}

/// `[tools]`: switches and settings of Revka's built-in tools.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, expecting = "a [tools] table")]
pub struct ToolsConfig {
    /// `[tools.weather]`: the `weather` tool's provider.
    pub weather: ProviderConfig,
    /// `[tools.web_search]`: the `web_search_tool` tool's provider.
    pub web_search: ProviderConfig,
    /// `[tools.<name>]` of every other built-in tool: `enabled = false` turns it off.
    #[serde(flatten)]
    pub switches: BTreeMap<String, ToolSwitch>,
}

impl ToolsConfig {
    /// Whether the built-in tool `name` is switched on.
    pub fn enabled(&self, name: &str) -> bool {
        match name {
            "weather" => self.weather.enabled,
            "web_search_tool" | "web_search" => self.web_search.enabled,
            _ => self.switches.get(name).is_none_or(|s| s.enabled),
        }
    }
}
