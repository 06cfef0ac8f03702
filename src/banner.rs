//! The start-up banner: what a person needs to know once the daemon serves.
//!
//! [`Daemon::start`](crate::daemon::Daemon::start) logs it at `info` once the listeners are up,
//! one event per line (target `revka::banner`): the version, the config file it read (or the
//! embedded defaults), the MCP endpoint, the gateway and its pairing code, then one line per
//! optional part that is missing, each with the command that adds it, and one line counting
//! the tools that could not register (each is logged at `debug`, and the MCP endpoint's `GET /health` lists them
//! with the reason).
//!
//! [`lines`] is a pure function of [`Facts`], so the wording is tested without a daemon; the
//! first-run test runs the real binary on an empty home and compares the banner, its variable
//! parts masked, with `tests/golden/first-run-banner.txt`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::CONFIG_FILE_NAME;
use crate::tree::Services;

/// What the banner reports, gathered once the listeners are up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Revka's version.
    pub version: String,
    /// The daemon's pid.
    pub pid: u32,
    /// `$REVKA_HOME`.
    pub home: PathBuf,
    /// The config file read; `None` when none exists and the embedded defaults apply.
    pub config: Option<PathBuf>,
    /// The MCP endpoint's URL; `None` when it is not serving (yet).
    pub mcp_url: Option<String>,
    /// The gateway.
    pub gateway: Gateway,
    /// The start-up pairing code and how long it is valid.
    pub pairing: Option<(String, Duration)>,
    /// `[[mcp.servers]]` entries that will start (valid ones).
    pub servers: usize,
    /// Entries that failed validation.
    pub invalid_servers: usize,
    /// `[mcp] enabled`.
    pub mcp_client: bool,
    /// The operator sidecar.
    pub operator: Operator,
    /// `[session_manager] enabled`.
    pub session_manager: bool,
    /// Built-in tools that could not register.
    pub unregistered_tools: usize,
}

/// The gateway as the banner shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gateway {
    /// `[gateway] enabled = false`.
    Disabled,
    /// Serving at this base URL.
    Serving(String),
    /// Enabled but not serving (yet): `revka status` says why.
    NotServing,
}

/// The operator sidecar as the banner shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `[operator] enabled = false`.
    Disabled,
    /// Enabled and its launcher exists.
    Installed,
    /// Enabled but its launcher is missing.
    NotInstalled,
}

/// The banner's lines, in order.
pub fn lines(f: &Facts) -> Vec<String> {
    let home = f.home.display();
    let mut out = vec![format!(
        "revka {} ready: pid {}, home {home}",
        f.version, f.pid
    )];
    out.push(match &f.config {
        Some(path) => format!("config: {}", path.display()),
        None => format!(
            "config: embedded defaults (no {}; `revka mcp add` creates it)",
            f.home.join(CONFIG_FILE_NAME).display()
        ),
    });
    out.push(match &f.mcp_url {
        Some(url) => format!("MCP endpoint: {url} (clients find it in {home}/mcp.json)"),
        None => "MCP endpoint: not serving yet (`revka status` shows why)".to_owned(),
    });
    out.push(match &f.gateway {
        Gateway::Serving(url) => format!("gateway: {url}"),
        Gateway::Disabled => "gateway: disabled ([gateway] enabled = false)".to_owned(),
        Gateway::NotServing => "gateway: not serving yet".to_owned(),
    });
    if let (Some((code, ttl)), Gateway::Serving(url)) = (&f.pairing, &f.gateway) {
        out.push(format!(
            "pairing code: {code} (a viewer token; valid for {}, once): POST {url}/pair with \
             header X-Pairing-Code, or `revka pair --role operator|owner` for a code of more rights",
            humantime::format_duration(*ttl)
        ));
    }
    if f.servers + f.invalid_servers == 0 {
        out.push(
            "no MCP servers configured: `revka mcp add NAME -- COMMAND [ARGS...]`, or `revka mcp \
             import claude-desktop|cursor|vscode`"
                .to_owned(),
        );
    } else if !f.mcp_client {
        out.push(format!(
            "MCP client off ([mcp] enabled = false): the {} configured server(s) will not \
             connect",
            f.servers + f.invalid_servers
        ));
    }
    if f.invalid_servers > 0 {
        out.push(format!(
            "{} invalid MCP server entr{}: `revka config check` says why",
            f.invalid_servers,
            if f.invalid_servers == 1 { "y" } else { "ies" }
        ));
    }
    if f.operator == Operator::NotInstalled {
        out.push("operator not installed: `revka install --sidecars-only`".to_owned());
    }
    if !f.session_manager {
        out.push(
            "session manager off (no agent or chat tools): `revka install --sidecars-only \
             --with-session-manager --enable`"
                .to_owned(),
        );
    }
    if f.unregistered_tools > 0 {
        out.push(format!(
            "{} built-in tool(s) not registered: GET /health of the MCP endpoint lists them with the reason \
             (--log-level debug logs each)",
            f.unregistered_tools
        ));
    }
    out
}

/// Logs the banner at `info`, one event per line.
pub fn log(facts: &Facts) {
    for line in lines(facts) {
        tracing::info!(target: "revka::banner", "{line}");
    }
}

/// The facts of a daemon whose listeners are up. `config_path` is the `--config` path, if
/// any; `pairing` the start-up code.
pub fn facts(
    services: &Services,
    home: &Path,
    config_path: Option<&Path>,
    pairing: Option<(String, Duration)>,
) -> Facts {
    let config = services.config.get();
    let default_path = home.join(CONFIG_FILE_NAME);
    let source = match config_path {
        Some(p) => Some(p.to_path_buf()),
        None => default_path.exists().then_some(default_path),
    };
    let gateway = if !config.gateway.enabled {
        Gateway::Disabled
    } else {
        match crate::cli::remote::read_gateway_file(home) {
            Ok(d) => Gateway::Serving(d.url),
            Err(_) => Gateway::NotServing,
        }
    };
    let operator = if !config.operator.enabled {
        Operator::Disabled
    } else if config.operator.mcp_path.exists() {
        Operator::Installed
    } else {
        Operator::NotInstalled
    };
    Facts {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        home: home.to_path_buf(),
        config: source,
        mcp_url: services
            .mcp_bound
            .borrow()
            .map(|a| format!("http://{a}/mcp")),
        gateway,
        pairing,
        servers: config.mcp.servers.len(),
        invalid_servers: config.mcp.invalid_servers.len(),
        mcp_client: config.mcp.enabled,
        operator,
        session_manager: config.session_manager.enabled,
        // The runtime-tier tools Revka does not provide by design are not a problem to report.
        unregistered_tools: services
            .tools
            .unregistered()
            .iter()
            .filter(|(name, _)| {
                !crate::tools::builtin::NOT_PROVIDED
                    .iter()
                    .any(|(n, _)| n == name)
            })
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::{Facts, Gateway, Operator, lines};

    fn configured() -> Facts {
        Facts {
            version: "1.2.3".to_owned(),
            pid: 42,
            home: PathBuf::from("/home/u/.revka"),
            config: Some(PathBuf::from("/home/u/.revka/config.toml")),
            mcp_url: Some("http://127.0.0.1:4000/mcp".to_owned()),
            gateway: Gateway::Serving("http://127.0.0.1:4001".to_owned()),
            pairing: Some(("ABCD-EFGH".to_owned(), Duration::from_secs(600))),
            servers: 2,
            invalid_servers: 0,
            mcp_client: true,
            operator: Operator::Installed,
            session_manager: true,
            unregistered_tools: 0,
        }
    }

    #[test]
    fn a_complete_install_gets_four_lines_and_no_advice() {
        assert_eq!(
            lines(&configured()),
            [
                "revka 1.2.3 ready: pid 42, home /home/u/.revka",
                "config: /home/u/.revka/config.toml",
                "MCP endpoint: http://127.0.0.1:4000/mcp (clients find it in /home/u/.revka/mcp.json)",
                "gateway: http://127.0.0.1:4001",
                "pairing code: ABCD-EFGH (a viewer token; valid for 10m, once): POST \
                 http://127.0.0.1:4001/pair with header X-Pairing-Code, or `revka pair --role \
                 operator|owner` for a code of more rights",
            ]
        );
    }

    #[test]
    fn each_missing_part_gets_one_line_with_its_command() {
        let f = Facts {
            config: None,
            mcp_url: None,
            gateway: Gateway::Disabled,
            servers: 0,
            mcp_client: false,
            operator: Operator::NotInstalled,
            session_manager: false,
            unregistered_tools: 13,
            ..configured()
        };
        let lines = lines(&f);
        assert_eq!(
            &lines[1..],
            [
                "config: embedded defaults (no /home/u/.revka/config.toml; `revka mcp add` creates it)",
                "MCP endpoint: not serving yet (`revka status` shows why)",
                "gateway: disabled ([gateway] enabled = false)",
                "no MCP servers configured: `revka mcp add NAME -- COMMAND [ARGS...]`, or `revka \
                 mcp import claude-desktop|cursor|vscode`",
                "operator not installed: `revka install --sidecars-only`",
                "session manager off (no agent or chat tools): `revka install --sidecars-only \
                 --with-session-manager --enable`",
                "13 built-in tool(s) not registered: GET /health of the MCP endpoint lists them with the reason \
                 (--log-level debug logs each)",
            ],
            "no pairing line without a gateway"
        );
    }

    #[test]
    fn servers_that_will_not_connect_are_pointed_out() {
        let f = Facts {
            mcp_client: false,
            invalid_servers: 1,
            ..configured()
        };
        let lines = lines(&f);
        assert!(lines.contains(
            &"MCP client off ([mcp] enabled = false): the 3 configured server(s) will not connect"
                .to_owned()
        ));
        assert!(
            lines.contains(&"1 invalid MCP server entry: `revka config check` says why".to_owned())
        );
    }
}
