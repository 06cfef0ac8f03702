//! How to reach a server and talk to it: the spec the daemon builds from a `[[mcp.servers]]`
//! config entry and hands to the connection actor that runs it (`revka-actors`).
//!
//! - [`ServerSpec`]: one server: its name, its [`TransportSpec`], timeouts, roots, the liveness
//!   probe's [`PingPolicy`], and what logs show of its target.
//! - [`TransportSpec`]: stdio (a command), Streamable HTTP, legacy HTTP+SSE, or a well-known
//!   discovery URL.
//! - [`PingPolicy`]: how often a silent server is pinged and how many failed pings make it
//!   unresponsive (the probe itself runs in `revka-actors`' connection actor).
//!
//! Plain data, no I/O: the transports in this crate and the actors in `revka-actors` read it.

use std::time::Duration;

use crate::protocol::Root;
use crate::redact::Shown;

/// How to reach one server.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportSpec {
    /// A child process speaking newline-delimited JSON-RPC on stdio.
    Stdio {
        /// Program.
        command: String,
        /// Arguments.
        args: Vec<String>,
        /// Environment overrides.
        env: Vec<(String, String)>,
        /// Working directory.
        cwd: Option<std::path::PathBuf>,
    },
    /// Streamable HTTP.
    Http {
        /// Endpoint URL.
        url: String,
        /// Headers sent on every request.
        headers: Vec<(String, String)>,
    },
    /// Legacy HTTP+SSE.
    Sse {
        /// The SSE stream URL.
        url: String,
        /// Headers sent on every request.
        headers: Vec<(String, String)>,
    },
    /// A well-known discovery document naming the endpoint.
    Url {
        /// The document URL.
        url: String,
        /// Headers sent on every request.
        headers: Vec<(String, String)>,
    },
}

impl TransportSpec {
    /// `stdio`, `http`, `sse` or `url`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::Http { .. } => "http",
            Self::Sse { .. } => "sse",
            Self::Url { .. } => "url",
        }
    }

    /// The target as logs and introspection show it, from these (expanded) values, masked by
    /// [`crate::redact`]'s rule; the fallback of [`ServerSpec::shown`].
    pub fn shown(&self) -> Shown {
        match self {
            Self::Stdio { command, args, .. } => Shown::command(command, args),
            Self::Http { url, .. } | Self::Sse { url, .. } | Self::Url { url, .. } => {
                Shown::url(url)
            }
        }
    }
}

/// One external server, as the connection actor runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// Server name; the `<name>__` prefix of its tools.
    pub name: String,
    /// How to reach it.
    pub transport: TransportSpec,
    /// Per-call timeout (capped at 600 s by the config layer).
    pub tool_timeout: Duration,
    /// The liveness probe: how often a silent server is pinged, and how many failed pings in
    /// a row make it unresponsive. Applies live (a reload changes it without a reconnect).
    pub ping: PingPolicy,
    /// Connect + initialize + tools/list timeout.
    pub handshake_timeout: Duration,
    /// Roots announced to the server.
    pub roots: Vec<Root>,
    /// Restart a call's timeout on each progress notification (capped at 600 s in total).
    pub reset_timeout_on_progress: bool,
    /// What logs and introspection show of the target: the config's unexpanded form
    /// (`${API_KEY}`, not its value), masked. `None` (a spec built in code) shows the
    /// transport's own values, masked the same way.
    pub shown: Option<Shown>,
    /// OAuth for a Streamable HTTP server ([`crate::oauth`]): `None` sends no token (a stdio
    /// server, or one whose `Authorization` header is configured).
    pub oauth: Option<crate::oauth::OAuthSpec>,
}

impl ServerSpec {
    /// The target as logs and introspection show it (see [`ServerSpec::shown`](Self::shown)).
    pub fn shown(&self) -> Shown {
        self.shown.clone().unwrap_or_else(|| self.transport.shown())
    }
}

/// The longest a ping may take to be answered, whatever the interval.
pub const MAX_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// How a connection probes its server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PingPolicy {
    /// A server not heard from for this long is pinged; zero turns the probe off.
    pub interval: Duration,
    /// Failed pings in a row that make the server unresponsive; zero turns the probe off.
    pub failures: u32,
}

impl PingPolicy {
    /// No probe.
    pub const OFF: Self = Self {
        interval: Duration::ZERO,
        failures: 0,
    };

    /// The defaults of `[supervisor]`: every 30 s, unresponsive after 3 failed pings.
    pub const fn standard() -> Self {
        Self {
            interval: Duration::from_secs(30),
            failures: 3,
        }
    }

    /// Whether the probe is off.
    pub fn is_off(&self) -> bool {
        self.interval.is_zero() || self.failures == 0
    }

    /// How long one ping may wait for its answer: the interval, at most [`MAX_PING_TIMEOUT`].
    pub fn timeout(&self) -> Duration {
        self.interval.min(MAX_PING_TIMEOUT)
    }
}
