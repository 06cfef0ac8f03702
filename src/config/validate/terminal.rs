//! `[terminal]` and `[[terminal.launchers]]`: the checks of the Code tab's settings.
//!
//! Part of the config layer's validation step. A launcher needs a valid, unique name and a
//! command, and its `args` and `env` values may hold only the placeholders the terminal
//! supervisor (`root/terminals`, `src/terminal/launcher.rs`) replaces; anything else in braces
//! that looks like one (`{mcp_uri}`) is a typo the file is refused for, not text passed on.

use std::collections::HashSet;

use crate::config::ConfigError;
use crate::config::error::Site;
use crate::config::keypath::KeyPath;
use crate::config::schema::{Config, LAUNCHER_PLACEHOLDERS};

/// The largest `max_terminals`.
const MAX_TERMINALS: u32 = 1024;
/// The largest `stop_grace_ms`.
const MAX_STOP_GRACE_MS: u64 = 60_000;

/// Checks `[terminal]`.
pub(super) fn check_terminal(config: &Config, site: Site<'_>) -> Result<(), ConfigError> {
    let k = KeyPath::keys;
    let t = &config.terminal;
    if !(1..=MAX_TERMINALS).contains(&t.max_terminals) {
        return Err(site.invalid(
            &k(&["terminal", "max_terminals"]),
            format!("must be between 1 and {MAX_TERMINALS}"),
        ));
    }
    if t.stop_grace_ms > MAX_STOP_GRACE_MS {
        return Err(site.invalid(
            &k(&["terminal", "stop_grace_ms"]),
            format!("must be at most {MAX_STOP_GRACE_MS}"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, launcher) in t.launchers.iter().enumerate() {
        let at = k(&["terminal", "launchers"]).index(i);
        if let Err(message) = check_name(&launcher.name) {
            return Err(site.invalid(&at.key("name"), message));
        }
        if !seen.insert(launcher.name.as_str()) {
            return Err(site.invalid(
                &at.key("name"),
                format!("duplicate launcher name {:?}", launcher.name),
            ));
        }
        if launcher.command.trim().is_empty() {
            return Err(site.invalid(&at.key("command"), "must not be empty"));
        }
        for (j, arg) in launcher.args.iter().enumerate() {
            if let Err(message) = check_placeholders(arg) {
                return Err(site.invalid(&at.key("args").index(j), message));
            }
        }
        for (name, value) in &launcher.env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(site.invalid(
                    &at.key("env"),
                    format!("invalid environment variable name {name:?}"),
                ));
            }
            if let Err(message) = check_placeholders(value) {
                return Err(site.invalid(&at.key("env").key(name), message));
            }
        }
    }
    Ok(())
}

/// A launcher name: 1-64 ASCII letters, digits, `_`, `-`, `.`.
fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid launcher name {name:?}: 1-64 ASCII letters, digits, \"_\", \"-\", \".\""
        ))
    }
}

/// Every `{word}` in `value` (a word: ASCII letters, digits, `_`), in order. Braces around
/// anything else (JSON, `${VAR}` already expanded) are plain text.
pub(crate) fn placeholders(value: &str) -> impl Iterator<Item = (usize, &str)> {
    value.match_indices('{').filter_map(move |(at, _)| {
        let rest = &value[at + 1..];
        let end = rest.find('}')?;
        let word = &rest[..end];
        (!word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then_some((at, word))
    })
}

/// Refuses a `{word}` that is no known placeholder.
fn check_placeholders(value: &str) -> Result<(), String> {
    match placeholders(value).find(|(_, w)| !LAUNCHER_PLACEHOLDERS.contains(w)) {
        Some((_, word)) => Err(format!(
            "unknown placeholder {{{word}}} (known: {})",
            LAUNCHER_PLACEHOLDERS
                .iter()
                .map(|p| format!("{{{p}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        let env = |name: &str| (name == "HOME").then(|| "/home/u".to_owned());
        match crate::config::parse(text, std::path::Path::new("/h/config.toml"), &env) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_launchers_are_config_errors_at_their_key() {
        let launcher = |rest: &str| format!("[[terminal.launchers]]\nname = \"x\"\n{rest}");
        assert_eq!(
            error_of(&launcher(
                "command = \"x\"\nargs = [\"--url\", \"{mcp_uri}\"]\n"
            )),
            "/h/config.toml:4:18: terminal.launchers[0].args[1]: unknown placeholder {mcp_uri} \
             (known: {mcp_url}, {session_id}, {token}, {mcp_config})"
        );
        assert!(
            error_of(&launcher("command = \"x\"\nenv = { A = \"{nope}\" }\n"))
                .contains("terminal.launchers[0].env.A: unknown placeholder {nope}")
        );
        assert!(error_of(&launcher("command = \" \"\n")).contains("command: must not be empty"));
        assert!(
            error_of("[[terminal.launchers]]\nname = \"a b\"\ncommand = \"x\"\n")
                .contains("invalid launcher name")
        );
        let twice = "[[terminal.launchers]]\nname = \"x\"\ncommand = \"x\"\n".repeat(2);
        assert!(error_of(&twice).contains("duplicate launcher name"));
        assert!(error_of("[terminal]\nmax_terminals = 0\n").contains("terminal.max_terminals"));
        let ok = "[terminal]\nmax_terminals = 4\n[[terminal.launchers]]\nname = \"j\"\n\
                  command = \"j\"\nargs = [\"{\\\"a\\\":1}\", \"{token}\"]\n";
        let env = |_: &str| None;
        crate::config::parse(ok, std::path::Path::new("/h/config.toml"), &env).unwrap();
    }

    #[test]
    fn placeholders_are_words_in_braces() {
        let found: Vec<&str> = placeholders(r#"--x={mcp_url}&{"a":1}{token}{}{a b}"#)
            .map(|(_, w)| w)
            .collect();
        assert_eq!(found, ["mcp_url", "token"]);
        assert!(check_placeholders("{mcp_config}").is_ok());
        let e = check_placeholders("--url={mcp_uri}").unwrap_err();
        assert!(e.contains("unknown placeholder {mcp_uri}"), "{e}");
    }
}
