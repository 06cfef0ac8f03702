//! The typed config schema: `[mcp]`, `[[mcp.servers]]`, `[sessions]`, `[http]`, `[gateway]`,
//! `[terminal]` (with `[[terminal.launchers]]`), `[operator]`; `[security]` and `[tools]` live in
//! `security.rs`.
//!
//! Part of the config layer. These are plain serde types with documented defaults; the loader
//! fills them from TOML, then expands, resolves and validates them, so a [`Config`] handed to
//! the daemon is final. `[mcp_server]` lives in `mcp_server.rs`, `[session_manager]` in
//! `sidecar.rs`, `[supervisor]` and the per-child `restart` tables in `supervision.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use revka_actors::mcp::hub::ToolFilter;
use revka_actors::supervisor::RestartPolicy;
use revka_mcp::redact::Shown;
use revka_mcp::spec::PingPolicy;
use serde::{Deserialize, Serialize};

use super::agents::AgentsConfig;
use super::mcp_server::McpEndpointConfig;
use super::security::{SecurityConfig, ToolsConfig};
use super::sidecar::SessionManagerConfig;
use super::supervision::{RestartOverride, SupervisorConfig};

/// The largest per-call tool timeout, in seconds; larger values are capped with a warning.
pub const MAX_TOOL_TIMEOUT_SECS: u64 = 600;

/// The whole daemon configuration (`config.toml`). Every section and key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a table of config sections")]
pub struct Config {
    /// `[mcp]`: the MCP client and the external servers it connects to.
    pub mcp: McpConfig,
    /// `[mcp_server]`: where Revka's own MCP endpoint listens, and whether its standard path
    /// needs a client token.
    pub mcp_server: McpEndpointConfig,
    /// `[sessions]`: client sessions of Revka's own MCP endpoint.
    pub sessions: SessionsConfig,
    /// `[http]`: what the two HTTP listeners (MCP server, gateway) allow a client.
    pub http: HttpConfig,
    /// `[gateway]`: the HTTP gateway (API, MCP proxy, introspection).
    pub gateway: GatewayConfig,
    /// `[terminal]`: the Code tab's terminals (`GET /ws/terminal`, `root/terminals`).
    pub terminal: TerminalConfig,
    /// `[operator]`: the Python operator MCP sidecar, one process per session.
    pub operator: OperatorConfig,
    /// `[session_manager]`: the Node session-manager sidecar, its breaker and retry queue.
    pub session_manager: SessionManagerConfig,
    /// `[agents]`: the agent backends' CLIs, the CLI fallback, budgets, Revka's endpoint for
    /// agents (in `agents.rs`).
    pub agents: AgentsConfig,
    /// `[supervisor]`: default restart policy and the tree's restart intensity.
    pub supervisor: SupervisorConfig,
    /// `[runtime]`: the daemon's async runtime.
    pub runtime: RuntimeConfig,
    /// `[security]`: what Revka's built-in tools may do.
    pub security: SecurityConfig,
    /// `[tools]`: switches and provider settings of the built-in tools.
    pub tools: ToolsConfig,
}

impl Default for Config {
    /// The defaults, with `REVKA_HOME`-relative paths taken from the process environment.
    fn default() -> Self {
        Self::default_in(&super::revka_home())
    }
}

impl Config {
    /// The defaults, with `REVKA_HOME`-relative paths under `home`.
    pub fn default_in(home: &Path) -> Self {
        Self {
            mcp: McpConfig {
                oauth_dir: home.join("oauth"),
                ..McpConfig::default()
            },
            mcp_server: McpEndpointConfig::default(),
            sessions: SessionsConfig::default(),
            http: HttpConfig::default(),
            gateway: GatewayConfig::default(),
            terminal: TerminalConfig::default(),
            operator: OperatorConfig::default_in(home),
            session_manager: SessionManagerConfig::default_in(home),
            agents: AgentsConfig::default(),
            supervisor: SupervisorConfig::default(),
            runtime: RuntimeConfig::default(),
            security: SecurityConfig::default(),
            tools: ToolsConfig::default(),
        }
    }
}

/// `[mcp]`: Revka as an MCP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "an [mcp] table")]
pub struct McpConfig {
    /// Master switch of the MCP client: no external server connects unless it is `true`.
    /// Default `false`.
    pub enabled: bool,
    /// Load tool schemas on demand through `tool_search` instead of listing every schema up
    /// front; keeps prompts small. Default `true`.
    pub deferred_loading: bool,
    /// Deadline for connect + `initialize` + `tools/list` of one server, in seconds.
    /// Default `60`.
    pub handshake_timeout_secs: u64,
    /// Directories the client announces to servers as MCP roots (`~` expanded, relative paths
    /// are relative to the config file). Default: none.
    pub roots: Vec<PathBuf>,
    /// A JSON file of more servers to import (`{"servers": [...]}` or `{"mcpServers": {...}}`),
    /// relative to the config file's directory. Its servers are appended after the TOML ones.
    /// Default: none.
    pub servers_file: Option<PathBuf>,
    /// `[[mcp.servers]]`: the external servers, in start order. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<McpServerConfig>,
    /// Entries that failed validation (missing command or url, bad URL or header, unknown
    /// transport): left out of `servers` so the rest of the daemon carries on, and shown as
    /// failed servers with their reason. `revka config check` treats them as errors.
    #[serde(skip)]
    pub invalid_servers: Vec<InvalidServer>,
    /// `[mcp.oauth]`: defaults of OAuth for remote servers. Default: see `McpOAuthConfig`.
    pub oauth: McpOAuthConfig,
    /// Where OAuth tokens are stored: `$REVKA_HOME/oauth`. Not a config key.
    #[serde(skip)]
    pub oauth_dir: PathBuf,
}

/// `[mcp.oauth]`: how Revka presents itself to the authorization servers of remote MCP
/// servers (OAuth 2.1, `revka mcp login`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "an [mcp.oauth] table")]
pub struct McpOAuthConfig {
    /// A Client ID Metadata Document URL (an `https` URL where Revka's client metadata is
    /// published) used as the client id wherever a server supports such documents; without
    /// one, Revka registers dynamically. Default: none.
    pub client_metadata_url: Option<String>,
    /// The `client_name` of dynamic registrations. Default `"Revka"`.
    pub client_name: String,
    /// How long `revka mcp login` waits for the browser's redirect, in seconds (1–3600).
    /// Default `300`.
    pub login_timeout_secs: u64,
}

impl Default for McpOAuthConfig {
    fn default() -> Self {
        Self {
            client_metadata_url: None,
            client_name: "Revka".to_owned(),
            login_timeout_secs: 300,
        }
    }
}

/// `[mcp.servers.oauth]`: OAuth for one remote server. OAuth applies to every `http` server
/// without an `Authorization` header of its own; this table tunes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "an [mcp.servers.oauth] table")]
pub struct ServerOAuthConfig {
    /// `false` never sends a token (a 401 is then an error like any other). Default `true`.
    pub enabled: bool,
    /// A pre-registered client id: used first, before a metadata document or dynamic
    /// registration. Default: none.
    pub client_id: Option<String>,
    /// Its secret (`${VAR}` expanded; with `client_id`). Default: none (a public client).
    pub client_secret: Option<String>,
    /// Scopes to ask for instead of the discovered ones. Default: the server's challenge,
    /// else its `scopes_supported`, else none.
    pub scopes: Vec<String>,
    /// This server's Client ID Metadata Document URL, over `[mcp.oauth]`'s. Default: none.
    pub client_metadata_url: Option<String>,
    /// `authorization_code` (a person logs in with `revka mcp login`) or `client_credentials`
    /// (machine to machine: needs `client_id` and `client_secret` or `private_key_file`).
    /// Default `authorization_code`.
    pub grant: String,
    /// A PKCS#8 PEM private key for `private_key_jwt` client authentication (client
    /// credentials; `~` expanded). Default: none.
    pub private_key_file: Option<PathBuf>,
    /// `ES256` or `RS256` for `private_key_file`. Default: the key's own kind.
    pub signing_alg: Option<String>,
    /// The loopback redirect's port (`http://127.0.0.1:<port>/callback`), for a server that
    /// only accepts a registered redirect URI; 0 picks a free port. Default `0`.
    pub redirect_port: u16,
}

impl Default for ServerOAuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            client_id: None,
            client_secret: None,
            scopes: Vec::new(),
            client_metadata_url: None,
            grant: "authorization_code".to_owned(),
            private_key_file: None,
            signing_alg: None,
            redirect_port: 0,
        }
    }
}

/// A `[[mcp.servers]]` entry that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidServer {
    /// Its (valid, unique) name.
    pub name: String,
    /// The precise error: `file:line:col: key: message`.
    pub reason: String,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            deferred_loading: true,
            handshake_timeout_secs: 60,
            roots: Vec::new(),
            servers_file: None,
            servers: Vec::new(),
            invalid_servers: Vec::new(),
            oauth: McpOAuthConfig::default(),
            oauth_dir: PathBuf::new(),
        }
    }
}

impl McpConfig {
    /// [`Self::handshake_timeout_secs`] as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
}

/// How Revka reaches an MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A child process speaking JSON-RPC on stdin/stdout.
    #[default]
    Stdio,
    /// Streamable HTTP.
    Http,
    /// Legacy HTTP + Server-Sent Events.
    Sse,
    /// HTTP with the endpoint discovered from a well-known URL.
    Url,
}

impl Transport {
    /// Every transport, by its config spelling.
    pub const ALL: [Self; 4] = [Self::Stdio, Self::Http, Self::Sse, Self::Url];

    /// Whether the server is reached over the network (needs `url`, may use `headers`).
    pub fn is_remote(self) -> bool {
        !matches!(self, Self::Stdio)
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Http => "http",
            Self::Sse => "sse",
            Self::Url => "url",
        }
    }
}

/// `transport` as the file wrote it. A value that names no [`Transport`] is kept, not refused
/// by the parser, so that validation fails that one entry (shown as an invalid server) while
/// the rest of the file loads; past validation every entry's setting is [`Self::Known`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransportSetting {
    /// One of the transports.
    Known(Transport),
    /// Anything else, as written.
    Other(String),
}

impl Default for TransportSetting {
    fn default() -> Self {
        Self::Known(Transport::default())
    }
}

impl From<Transport> for TransportSetting {
    fn from(transport: Transport) -> Self {
        Self::Known(transport)
    }
}

impl PartialEq<Transport> for TransportSetting {
    fn eq(&self, other: &Transport) -> bool {
        self.known() == Some(*other)
    }
}

impl TransportSetting {
    /// The transport, unless the value names none.
    pub fn known(&self) -> Option<Transport> {
        match self {
            Self::Known(t) => Some(*t),
            Self::Other(_) => None,
        }
    }

    /// The value as written.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(t) => t.as_str(),
            Self::Other(s) => s,
        }
    }
}

impl Serialize for TransportSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TransportSetting {
    /// Read as an enum, the way `Transport`'s own derive reads it (a value that is not a
    /// string gets the same error), with any name accepted.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{EnumAccess, VariantAccess, Visitor};
        struct Setting;
        impl<'de> Visitor<'de> for Setting {
            type Value = TransportSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("enum Transport")
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
                let (name, variant): (String, _) = data.variant()?;
                variant.unit_variant()?;
                Ok(Transport::ALL
                    .into_iter()
                    .find(|t| t.as_str() == name)
                    .map_or(TransportSetting::Other(name), TransportSetting::Known))
            }
        }
        const NAMES: &[&str] = &["stdio", "http", "sse", "url"];
        deserializer.deserialize_enum("Transport", NAMES, Setting)
    }
}

/// `[[mcp.servers]]`: one external MCP server. Only `name` is required (plus `command` for
/// stdio, `url` otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(expecting = "an [[mcp.servers]] table")]
pub struct McpServerConfig {
    /// Unique id: ASCII letters, digits, `_`, `-`, `.`; never `__`, which separates server and
    /// tool in exposed tool names (`<server>__<tool>`). Required.
    pub name: String,
    /// `stdio`, `http`, `sse` or `url`. Default `stdio`.
    #[serde(default)]
    pub transport: TransportSetting,
    /// The executable to spawn (stdio only; required there). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Arguments of `command`; `${VAR}` is expanded. Default: none.
    #[serde(default)]
    pub args: Vec<String>,
    /// The endpoint (http, sse, url; required there): an `http://` or `https://` URL;
    /// `${VAR}` is expanded. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Per-call tool timeout in seconds; `0` is an error, above 600 is capped to 600.
    /// Default `180`.
    #[serde(default = "default_server_tool_timeout")]
    pub tool_timeout_secs: u64,
    /// Connect at boot; `false` keeps it configured but down until asked. Default `true`.
    #[serde(default = "default_true")]
    pub auto_connect: bool,
    /// Restart a call's timeout whenever the server reports progress (long tools that keep
    /// reporting are not cut off; 600 s remains the hard cap). Default `false`.
    #[serde(default)]
    pub reset_timeout_on_progress: bool,
    /// Roots announced to this server instead of `mcp.roots`. Default: `mcp.roots`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<PathBuf>>,
    /// Extra environment of the child process (stdio only); values expand `${VAR}`.
    /// Default: none.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// HTTP headers sent on every request (remote transports only); values expand `${VAR}`.
    /// Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Overrides of `[supervisor]`'s restart policy and liveness probe (`ping_interval_secs`,
    /// `ping_failures`) for this server. Default: none.
    #[serde(default, skip_serializing_if = "RestartOverride::is_empty")]
    pub restart: RestartOverride,
    /// Only the server's tools matching one of these patterns are registered (listed,
    /// searched, callable): a tool's own name (without the `<server>__` prefix), or a prefix
    /// ending in `*` (`read_*`). Default: every tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    /// The server's tools matching one of these patterns (same syntax) are never registered;
    /// wins over `allowed_tools`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_tools: Vec<String>,
    /// `[mcp.servers.oauth]`: OAuth settings (`http` transport only). Default: OAuth with
    /// discovery and dynamic registration, when the server asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<ServerOAuthConfig>,
    /// `args` and `url` as written, before `${VAR}` expansion: what logs, introspection and
    /// error messages show (masked by `revka_mcp::redact`), so a variable's value never
    /// appears there. `None` for an entry built in code. Not a config key.
    #[serde(skip)]
    pub written: Option<WrittenTarget>,
}

/// A server's `args` and `url` as its config file wrote them (see
/// [`McpServerConfig::written`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenTarget {
    /// `args`, unexpanded.
    pub args: Vec<String>,
    /// `url`, unexpanded.
    pub url: Option<String>,
}

impl Default for McpServerConfig {
    /// A stdio server with every default and an empty name (fill in `name` and `command`).
    fn default() -> Self {
        Self {
            name: String::new(),
            transport: Transport::Stdio.into(),
            command: None,
            args: Vec::new(),
            url: None,
            tool_timeout_secs: default_server_tool_timeout(),
            auto_connect: true,
            reset_timeout_on_progress: false,
            roots: None,
            env: BTreeMap::new(),
            headers: BTreeMap::new(),
            restart: RestartOverride::default(),
            allowed_tools: None,
            denied_tools: Vec::new(),
            oauth: None,
            written: None,
        }
    }
}

impl McpServerConfig {
    /// The target as logs, introspection and error messages show it: the unexpanded
    /// [`written`](Self::written) form (else the values), masked by `revka_mcp::redact`.
    pub fn shown(&self) -> Shown {
        let args = self.written.as_ref().map_or(&self.args, |w| &w.args);
        let url = self.written.as_ref().map_or(&self.url, |w| &w.url);
        match self.transport.known() {
            Some(Transport::Stdio) => {
                Shown::command(self.command.as_deref().unwrap_or_default(), args)
            }
            _ => Shown::url(url.as_deref().unwrap_or_default()),
        }
    }

    /// Which of this server's tools the hub registers (`allowed_tools`, `denied_tools`).
    pub fn tool_filter(&self) -> ToolFilter {
        ToolFilter {
            allowed: self.allowed_tools.clone(),
            denied: self.denied_tools.clone(),
        }
    }

    /// This server's restart policy: `[supervisor]` with this server's overrides applied.
    pub fn policy(&self, defaults: &SupervisorConfig) -> RestartPolicy {
        self.restart.apply(defaults.policy())
    }

    /// This server's liveness probe: `[supervisor]`'s with this server's ping overrides.
    pub fn ping(&self, defaults: &SupervisorConfig) -> PingPolicy {
        self.restart.ping(defaults.ping())
    }

    /// [`Self::tool_timeout_secs`] as a duration.
    pub fn tool_timeout(&self) -> Duration {
        Duration::from_secs(self.tool_timeout_secs)
    }

    /// The roots to announce to this server: its own, else `mcp.roots`.
    pub fn effective_roots<'a>(&'a self, mcp: &'a McpConfig) -> &'a [PathBuf] {
        self.roots.as_deref().unwrap_or(&mcp.roots)
    }
}

fn default_server_tool_timeout() -> u64 {
    180
}

fn default_true() -> bool {
    true
}

/// `[sessions]`: sessions of clients of Revka's own MCP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a [sessions] table")]
pub struct SessionsConfig {
    /// A session with no request for this long is closed, in seconds. Default `1800`.
    pub idle_timeout_secs: u64,
    /// Live sessions at most. Default `1024`. At the cap, `POST /session` ends the longest-idle
    /// session that may be evicted (see `evict_idle_floor_secs`), or is refused with 503.
    pub max_sessions: u32,
    /// At the cap, only a session unused for at least this many seconds (no request, no call in
    /// flight, no open event stream) may be evicted to make room. Default `300`: a client that
    /// paused for a few minutes keeps its session however many others are created.
    pub evict_idle_floor_secs: u64,
    /// `POST /session` requests one source may make at once before the rate below applies
    /// (a token bucket; all of loopback is one source). Default `64`.
    pub create_burst: u32,
    /// `POST /session` requests per minute one source may sustain; past the burst, more are
    /// answered 429 with `Retry-After`. Default `120`.
    pub create_per_minute: u32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 1800,
            max_sessions: 1024,
            evict_idle_floor_secs: 300,
            create_burst: 64,
            create_per_minute: 120,
        }
    }
}

impl SessionsConfig {
    /// [`Self::idle_timeout_secs`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// [`Self::evict_idle_floor_secs`] as a duration.
    pub fn evict_idle_floor(&self) -> Duration {
        Duration::from_secs(self.evict_idle_floor_secs)
    }
}

/// `[http]`: what the two HTTP listeners (the MCP server and the gateway) allow one client, so
/// that a client that connects and stalls cannot hold connections open indefinitely. Long
/// answers (SSE streams, WebSockets) are not bounded by these: they bound reading the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "an [http] table")]
pub struct HttpConfig {
    /// Seconds a client has to send a request's headers in full: counted from the accept for
    /// a connection's first request, from the first byte of the request after that. Past it,
    /// the connection is closed. Default `10`.
    pub header_read_timeout_secs: u64,
    /// Seconds a request body has to arrive in full, counted from the first time the server
    /// waits for it. Past it, the request is answered 408 and the connection closed.
    /// Default `30`.
    pub body_read_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request before it is closed.
    /// Default `120`: longer than the idle timeouts of common client pools (reqwest's is 90 s,
    /// and the gateway's own client to the MCP server uses it), so those close first and never
    /// send a request down a connection the server is closing.
    pub keepalive_idle_secs: u64,
    /// Open connections from one source to one listener at most (IPv4 address, IPv6 /64, and
    /// all of loopback counted as one source); a connection past it is answered 503 and closed.
    /// Default `256`: room for every client on a machine at once, while both listeners
    /// together stay well inside the common 1024 open-file limit.
    pub max_connections_per_source: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            keepalive_idle_secs: 120,
            max_connections_per_source: 256,
        }
    }
}

/// `[runtime]`: the daemon's async runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, expecting = "a [runtime] table")]
pub struct RuntimeConfig {
    /// Worker threads of the async runtime, at most [`MAX_WORKER_THREADS`]; `0` (the default)
    /// lets [`RuntimeConfig::worker_threads`] pick.
    pub worker_threads: u32,
}

/// The most worker threads `[runtime] worker_threads` may ask for.
pub const MAX_WORKER_THREADS: u32 = 256;

impl RuntimeConfig {
    /// The worker threads to start on a process that may run on `cpus` CPUs: the configured
    /// number, or for `0` half of `cpus` rounded up (at least one).
    ///
    /// Half, because the daemon forwards and its children and clients do the work: on 2 cores
    /// a second worker mostly woke up to find nothing to steal, and cost a wake-up per hand-off
    /// (the measurements are in docs/benchmarks.md, "What was fixed").
    pub fn worker_threads(&self, cpus: usize) -> usize {
        match self.worker_threads {
            0 => cpus.div_ceil(2).max(1),
            n => n as usize,
        }
    }
}

/// `[gateway]`: the HTTP gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a [gateway] table")]
pub struct GatewayConfig {
    /// Run the gateway. Default `true`.
    pub enabled: bool,
    /// Address to bind. Anything but a loopback address (`127.0.0.0/8`, `::1`, `localhost`)
    /// needs `allow_public_bind`. Default `"127.0.0.1"`.
    pub host: String,
    /// Port to bind; `0` picks a free one. Default `0`.
    pub port: u16,
    /// Allow binding a non-loopback address (exposes the API to the network). Default `false`.
    pub allow_public_bind: bool,
    /// Per-request timeout in seconds; the environment variable `REVKA_GATEWAY_TIMEOUT_SECS`
    /// overrides it when set. Default `30`.
    pub request_timeout_secs: u64,
    /// Ceiling of a proxied `tools/call` (`POST /api/mcp/call`), streamed or not. Default `120`.
    pub call_timeout_secs: u64,
    /// Web origins besides the gateway's own (`http://<Host>:<bound port>`) whose pages may
    /// call the gateway: exact `scheme://host[:port]` values, e.g. a dashboard served from
    /// elsewhere or the public origin of a reverse proxy. Normalised at load (lowercase, no
    /// default port). Default none.
    pub allowed_origins: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host: "127.0.0.1".to_owned(),
            port: 0,
            allow_public_bind: false,
            request_timeout_secs: 30,
            call_timeout_secs: 120,
            allowed_origins: Vec::new(),
        }
    }
}

impl GatewayConfig {
    /// [`Self::call_timeout_secs`] as a duration.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_secs)
    }

    /// [`Self::request_timeout_secs`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// `[operator]`: the Python operator MCP server (stdio), one process per agent session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "an [operator] table")]
pub struct OperatorConfig {
    /// Inject the operator into sessions; disable where the sidecar is not installed.
    /// Default `true`.
    pub enabled: bool,
    /// The bootstrap launcher (`~` expanded). Default
    /// `$REVKA_HOME/operator_mcp/run_operator_mcp.py` (`~/.revka/operator_mcp/…`).
    pub mcp_path: PathBuf,
    /// The Python interpreter that runs `mcp_path`. Default `"python3"`.
    pub python: String,
    /// Tool-loop iterations of operator sessions at most. Default `80`. Revka runs no agent
    /// loop of its own: the value is passed to each operator process as
    /// [`MAX_TOOL_ITERATIONS_ENV`] (the reference operator reports it in `operator_status`).
    pub max_tool_iterations: u32,
    /// Per-tool timeout in seconds, capped at 600 (some tools take ~100 s). Default `600`.
    pub tool_timeout_secs: u64,
}

impl Default for OperatorConfig {
    /// The defaults, with the launcher under the process environment's `REVKA_HOME`.
    fn default() -> Self {
        Self::default_in(&super::revka_home())
    }
}

/// The environment variable carrying `[operator] max_tool_iterations` to operator processes.
pub const MAX_TOOL_ITERATIONS_ENV: &str = "REVKA_OPERATOR_MAX_TOOL_ITERATIONS";

impl OperatorConfig {
    /// The environment of an operator process: `REVKA_HOME` and [`MAX_TOOL_ITERATIONS_ENV`].
    pub fn process_env(&self, home: &Path) -> Vec<(String, String)> {
        vec![
            ("REVKA_HOME".to_owned(), home.display().to_string()),
            (
                MAX_TOOL_ITERATIONS_ENV.to_owned(),
                self.max_tool_iterations.to_string(),
            ),
        ]
    }

    /// The defaults, with the launcher under `home`.
    pub fn default_in(home: &Path) -> Self {
        Self {
            enabled: true,
            mcp_path: home.join("operator_mcp").join("run_operator_mcp.py"),
            python: "python3".to_owned(),
            max_tool_iterations: 80,
            tool_timeout_secs: MAX_TOOL_TIMEOUT_SECS,
        }
    }

    /// [`Self::tool_timeout_secs`] as a duration.
    pub fn tool_timeout(&self) -> Duration {
        Duration::from_secs(self.tool_timeout_secs)
    }
}

/// The placeholders a `[[terminal.launchers]]` entry's `args` and `env` values may hold, each
/// replaced when a terminal starts: the MCP endpoint's URL, the fresh session's id and token,
/// and the path of the generic `mcpServers` JSON file written for it.
pub const LAUNCHER_PLACEHOLDERS: [&str; 4] = ["mcp_url", "session_id", "token", "mcp_config"];

/// `[terminal]`: the Code tab's terminals, each a PTY and its process under `root/terminals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "a [terminal] table")]
pub struct TerminalConfig {
    /// Live terminals at most (1-1024); one more is refused with 503. Default `16`.
    pub max_terminals: u32,
    /// Milliseconds between SIGHUP + SIGTERM and SIGKILL when a terminal ends (at most 60000).
    /// Default `2000`.
    pub stop_grace_ms: u64,
    /// `[[terminal.launchers]]`: commands the Code tab can start besides the built-in ones
    /// (`shell`, `claude`, `codex`, `gemini`, `opencode`); an entry with a built-in's name
    /// replaces it. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub launchers: Vec<LauncherConfig>,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        Self {
            max_terminals: 16,
            stop_grace_ms: 2000,
            launchers: Vec::new(),
        }
    }
}

impl TerminalConfig {
    /// [`Self::stop_grace_ms`] as a duration.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }
}

/// One `[[terminal.launchers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(expecting = "a [[terminal.launchers]] table with name and command")]
pub struct LauncherConfig {
    /// Its name in `GET /ws/terminal?launcher=<name>`: ASCII letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// The program (looked up in `PATH` when it has no slash).
    pub command: String,
    /// Its arguments; `{mcp_url}`, `{session_id}`, `{token}` and `{mcp_config}` are replaced.
    #[serde(default)]
    pub args: Vec<String>,
    /// More environment of the process; values take the same placeholders.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}
