//! `[security]` and `[tools]`: the checks of the built-in tools' policy settings.
//!
//! Part of the config layer's validation step. Limits must be usable (a zero timeout or output
//! cap would refuse every call), host and path lists must not hold empty entries, and a
//! `[tools.<name>]` switch must name a built-in tool (a typo would leave a tool on that the
//! operator meant to turn off). Patterns themselves are compiled by `crate::security::Policy`
//! at boot, which names the key of one that does not parse.

use crate::config::ConfigError;
use crate::config::error::Site;
use crate::config::keypath::KeyPath;
use crate::config::schema::Config;

/// The largest `command_timeout_secs`.
const MAX_COMMAND_TIMEOUT_SECS: u64 = 3600;
/// The smallest output and file caps (a zero cap would refuse or empty every result).
const MIN_BYTES: u64 = 1;

/// The built-in tools a `[tools.<name>]` switch may name (`weather` and `web_search_tool` are
/// switched by `enabled` in their provider tables, `[tools.weather]` and `[tools.web_search]`).
pub(crate) const SWITCHABLE_TOOLS: [&str; 23] = [
    "shell",
    "file_read",
    "file_write",
    "file_edit",
    "glob_search",
    "content_search",
    "calculator",
    "git_operations",
    "http_request",
    "web_fetch",
    "pdf_read",
    "screenshot",
    "image_info",
    "browser_open",
    "cron_add",
    "cron_list",
    "cron_remove",
    "cron_update",
    "cron_run",
    "cron_runs",
    "sessions_list",
    "sessions_history",
    "sessions_send",
];

/// Checks `[security]` and `[tools]`.
pub(super) fn check_security(config: &Config, site: Site<'_>) -> Result<(), ConfigError> {
    let k = KeyPath::keys;
    let s = &config.security;
    if !(1..=MAX_COMMAND_TIMEOUT_SECS).contains(&s.command_timeout_secs) {
        return Err(site.invalid(
            &k(&["security", "command_timeout_secs"]),
            format!("must be between 1 and {MAX_COMMAND_TIMEOUT_SECS}"),
        ));
    }
    for (key, value) in [
        ("max_output_bytes", s.max_output_bytes),
        ("max_file_bytes", s.max_file_bytes),
    ] {
        if value < MIN_BYTES {
            return Err(site.invalid(
                &k(&["security", key]),
                format!("must be at least {MIN_BYTES}"),
            ));
        }
    }
    for (key, list) in [
        ("forbidden_paths", &s.forbidden_paths),
        ("allowed_commands", &s.allowed_commands),
        ("allowed_hosts", &s.allowed_hosts),
        ("blocked_hosts", &s.blocked_hosts),
    ] {
        if let Some(i) = list.iter().position(|v| v.trim().is_empty()) {
            return Err(site.invalid(&k(&["security", key]).index(i), "must not be empty"));
        }
    }
    if let Some(i) = s
        .allowed_commands
        .iter()
        .position(|c| c != "*" && (c.contains('/') || c.contains(char::is_whitespace)))
    {
        return Err(site.invalid(
            &k(&["security", "allowed_commands"]).index(i),
            "must be a bare program name (no path, no arguments) or \"*\"",
        ));
    }
    for name in config.tools.switches.keys() {
        if !SWITCHABLE_TOOLS.contains(&name.as_str()) {
            return Err(site.invalid(
                &k(&["tools", name]),
                format!(
                    "is not a built-in tool; the switchable ones are {}",
                    SWITCHABLE_TOOLS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
