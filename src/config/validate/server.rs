//! Checks of one `[[mcp.servers]]` entry (from TOML or an imported JSON file): name, transport
//! keys, URL, headers, environment, tool timeout, tool filter patterns and restart override.
//!
//! Part of the config layer's validation step (`validate.rs` runs it per server, then checks
//! names for duplicates). URLs and header names are checked by hand to the rules the HTTP
//! transports will enforce, so a typo fails at load time, not at the first request.

use std::collections::HashMap;

use revka_actors::mcp::hub::ToolFilter;
use revka_actors::supervisor::RestartPolicy;

use super::{cap_tool_timeout, check_override, describe};
use crate::config::ConfigError;
use crate::config::error::Site;
use crate::config::import::ServerSource;
use crate::config::keypath::KeyPath;
use crate::config::schema::McpServerConfig;

/// Checks one server entry.
pub(super) fn check_server(
    server: &mut McpServerConfig,
    site: Site<'_>,
    source: &ServerSource,
    base_policy: RestartPolicy,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let at = |keys: &[&str]| source.path(&KeyPath::keys(keys));
    check_name(&server.name).map_err(|m| site.invalid(&at(&["name"]), m))?;
    crate::config::plan::check_oauth(server).map_err(|(key, m)| {
        let keys: &[&str] = if key == "oauth" {
            &["oauth"]
        } else {
            &["oauth", key]
        };
        site.invalid(&at(keys), m)
    })?;
    let Some(transport) = server.transport.known() else {
        return Err(site.invalid(
            &at(&["transport"]),
            "unknown transport; expected one of \"stdio\", \"http\", \"sse\", \"url\"",
        ));
    };
    let mut ignored = |key: &str| {
        let where_ = describe(site, source, &at(&[key]));
        warnings.push(format!(
            "{where_}: ignored for transport {:?}",
            transport.as_str()
        ));
    };
    if transport.is_remote() {
        let url = server.url.as_deref().unwrap_or("");
        if url.trim().is_empty() {
            return Err(site.invalid(
                &at(&["url"]),
                format!("required for transport {:?}", transport.as_str()),
            ));
        }
        // Named as written (`${VAR}` unexpanded) and masked: the message reaches logs and
        // `/api/health` (an invalid entry's failure reason).
        check_url(url).map_err(|m| {
            let shown = server.shown();
            let shown = shown.as_url().unwrap_or_default();
            site.invalid(&at(&["url"]), format!("invalid URL {shown:?}: {m}"))
        })?;
        for (key, set) in [
            ("command", server.command.is_some()),
            ("args", !server.args.is_empty()),
            ("env", !server.env.is_empty()),
        ] {
            if set {
                ignored(key);
            }
        }
    } else {
        if server
            .command
            .as_deref()
            .is_none_or(|c| c.trim().is_empty())
        {
            return Err(site.invalid(&at(&["command"]), "required for transport \"stdio\""));
        }
        for (key, set) in [
            ("url", server.url.is_some()),
            ("headers", !server.headers.is_empty()),
        ] {
            if set {
                ignored(key);
            }
        }
    }
    let nul = |s: &str| s.contains('\0');
    if server.command.as_deref().is_some_and(nul) {
        return Err(site.invalid(&at(&["command"]), "must not contain a NUL character"));
    }
    if let Some(i) = server.args.iter().position(|a| nul(a)) {
        return Err(site.invalid(
            &source.path(&KeyPath::keys(&["args"]).index(i)),
            "must not contain a NUL character",
        ));
    }
    for (name, value) in &server.env {
        if name.is_empty() || name.contains('=') || nul(name) || nul(value) {
            return Err(site.invalid(
                &at(&["env", name]),
                "invalid environment variable (the name must be non-empty without `=`; no NUL \
                 characters)",
            ));
        }
    }
    let mut lower: HashMap<String, &str> = HashMap::new();
    for (name, value) in &server.headers {
        let path = at(&["headers", name]);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(site.invalid(&path, format!("invalid HTTP header name {name:?}")));
        }
        if !value
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(site.invalid(
                &path,
                "invalid HTTP header value: only visible ASCII, spaces and tabs are allowed \
                 (no CR/LF)",
            ));
        }
        if let Some(other) = lower.insert(name.to_ascii_lowercase(), name) {
            return Err(site.invalid(
                &path,
                format!("duplicate HTTP header (also set as {other:?})"),
            ));
        }
    }
    if server.tool_timeout_secs == 0 {
        return Err(site.invalid(&at(&["tool_timeout_secs"]), "must be greater than 0"));
    }
    let key = describe(site, source, &at(&["tool_timeout_secs"]));
    cap_tool_timeout(&mut server.tool_timeout_secs, &key, warnings);
    if let Some((key, i, message)) = tool_filter_problem(&server.tool_filter()) {
        return Err(site.invalid(&source.path(&KeyPath::keys(&[key]).index(i)), message));
    }
    if server.allowed_tools.as_ref().is_some_and(Vec::is_empty) {
        let where_ = describe(site, source, &at(&["allowed_tools"]));
        warnings.push(format!(
            "{where_}: empty, so none of this server's tools is registered"
        ));
    }
    check_override(&server.restart, base_policy, site, |key| {
        source.path(&KeyPath::keys(&["restart", key]))
    })
}

/// The first invalid pattern of a tool filter: its key (`allowed_tools` or `denied_tools`),
/// its index, and what is wrong. Shared by the config and the gateway's server test.
pub(crate) fn tool_filter_problem(filter: &ToolFilter) -> Option<(&'static str, usize, String)> {
    let allowed = filter.allowed.as_deref().unwrap_or_default();
    [("allowed_tools", allowed), ("denied_tools", &filter.denied)]
        .into_iter()
        .flat_map(|(key, patterns)| patterns.iter().enumerate().map(move |(i, p)| (key, i, p)))
        .find_map(|(key, i, pattern)| check_tool_pattern(pattern).err().map(|m| (key, i, m)))
}

/// A pattern of `allowed_tools` / `denied_tools`: a tool name, or a prefix ending in `*`.
fn check_tool_pattern(pattern: &str) -> Result<(), String> {
    revka_actors::mcp::hub::check_pattern(pattern).map_err(|e| e.to_string())
}

/// Server names become tool-name prefixes (`<server>__<tool>`).
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "invalid server name {name:?}: {c:?} is not allowed (use ASCII letters, digits, `_`, \
             `-` and `.`)"
        ));
    }
    if name.contains("__") {
        return Err(format!(
            "invalid server name {name:?}: `__` is reserved as the separator in tool names \
             (<server>__<tool>)"
        ));
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An absolute `http`/`https` URL with a non-empty host and a valid port, if any.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".to_owned());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected an absolute URL (http://host/… or https://host/…)")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("unterminated `[` in the host")?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("[{host}] is not an IPv6 address"));
            }
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or("junk after `]`")?)),
            }
        }
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    if !host_port.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%'))
    {
        return Err(format!("invalid host {host:?}"));
    }
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        port.parse::<u16>()
            .map_err(|_| format!("invalid port {port:?}"))?;
    }
    Ok(())
}
