//! `[mcp_server]`: where Revka's own MCP endpoint listens and whether its standard Streamable
//! HTTP path needs a client token.
//!
//! Part of the config layer: plain serde types with documented defaults, checked by
//! `validate` (a public bind needs `allow_public_bind`; `require_token = false` needs a
//! loopback bind). The MCP server's listener (`root/mcp_http`) reads it at start; a reload
//! reports a change as needing a restart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// `[mcp_server]`: Revka's own MCP endpoint (`/mcp`, `/session`, `/health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, expecting = "an [mcp_server] table")]
pub struct McpEndpointConfig {
    /// Address to bind: an IP address or `localhost`. Anything but a loopback address needs
    /// `allow_public_bind`. Default `"127.0.0.1"`.
    pub host: String,
    /// Port to bind; `0` (the default) picks a free one at each start. A fixed port lets a
    /// client be configured once with the URL; `mcp.json` is written either way.
    pub port: u16,
    /// Allow binding a non-loopback address (exposes every tool to the network, behind the
    /// tokens). Default `false`.
    pub allow_public_bind: bool,
    /// Whether the standard Streamable HTTP path (`initialize` without `X-Revka-Session`) needs
    /// a client token in `Authorization: Bearer`. Default `true`. `false` is accepted only on a
    /// loopback bind: then any local process can call every tool, as with a stdio server.
    /// `POST /session` sessions always need their session token.
    pub require_token: bool,
}

impl Default for McpEndpointConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 0,
            allow_public_bind: false,
            require_token: true,
        }
    }
}

impl McpEndpointConfig {
    /// The address to bind: `host` (an IP address, `[v6]`, or `localhost`) and `port`. `Err`
    /// names what is wrong with `host`.
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse::<IpAddr>()
                .map_err(|_| format!("{:?} is not an IP address (or localhost)", self.host))?
        };
        Ok(SocketAddr::new(ip, self.port))
    }
}
