//! The service files, rendered from the templates in `config/` (`revka.service`,
//! `com.revka.daemon.plist`), embedded with `include_str!`.
//!
//! Both files carry the installing shell's `PATH` ([`service_path`]) and the unit its
//! hardening; the unit's `Type=` and reload command depend on the systemd version
//! ([`ReloadMode`]).
//!
//! Part of `revka service`. Substitution is tiny and strict ([`substitute`]): every
//! `{{name}}` in a template must have a value, every value must be used, and values are
//! inserted verbatim (never re-scanned). Values are escaped for where they land: systemd
//! quoting for the unit (`%` → `%%`, `$` → `$$` in arguments, `\` and `"` escaped inside
//! double quotes), XML escaping for the plist. Control characters cannot be represented in
//! either file and are an error.

use std::path::{Path, PathBuf};

/// The systemd unit template.
pub const UNIT_TEMPLATE: &str = include_str!("../../../config/revka.service");

/// The launchd agent template.
pub const PLIST_TEMPLATE: &str = include_str!("../../../config/com.revka.daemon.plist");

/// The systemd unit's name.
pub const UNIT_NAME: &str = "revka.service";

/// The launchd agent's label (and, with `.plist`, its file name).
pub const LABEL: &str = "com.revka.daemon";

/// How much longer than the daemon's shutdown grace the service manager waits before it kills
/// what is left (`TimeoutStopSec`, `ExitTimeOut`).
pub const STOP_MARGIN_SECS: u64 = 15;

/// The first systemd with `Type=notify-reload`.
pub const NOTIFY_RELOAD_SINCE: u32 = 253;

/// How `systemctl --user reload revka` reaches the daemon and learns that it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadMode {
    /// `Type=notify-reload` (systemd 253+): systemd sends SIGHUP and waits for the daemon's
    /// `RELOADING=1` … `READY=1`.
    NotifyReload,
    /// `Type=notify` with `ExecReload=revka reload`: the command asks the daemon through its
    /// gateway and returns when the reload is done, failing on a rejected config.
    ExecReload,
    /// `Type=notify` with `ExecReload=/bin/kill -HUP $MAINPID`, when the gateway is disabled:
    /// the reload's outcome is only in the log.
    Signal,
}

impl ReloadMode {
    /// The mode for a systemd of `version` (`None`: unknown, assume old), with or without
    /// the gateway that `revka reload` talks to.
    pub fn for_systemd(version: Option<u32>, gateway_enabled: bool) -> Self {
        match version {
            Some(v) if v >= NOTIFY_RELOAD_SINCE => Self::NotifyReload,
            _ if gateway_enabled => Self::ExecReload,
            _ => Self::Signal,
        }
    }

    /// A line for people: what `systemctl --user reload revka` will do.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotifyReload => {
                "Type=notify-reload: `systemctl --user reload revka` signals the daemon and \
                 waits until its reload is done"
            }
            Self::ExecReload => {
                "Type=notify with ExecReload=revka reload (this systemd has no \
                 Type=notify-reload): `systemctl --user reload revka` waits until the reload is \
                 done and fails on a rejected config"
            }
            Self::Signal => {
                "Type=notify with ExecReload=kill -HUP (no Type=notify-reload, and the gateway \
                 that `revka reload` needs is disabled): a reload's outcome is only in the log"
            }
        }
    }
}

/// What a service file says about this installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceParams {
    /// The `revka` binary (absolute).
    pub binary: PathBuf,
    /// `REVKA_HOME` (absolute).
    pub revka_home: PathBuf,
    /// The config file passed as `--config`, when one was given (absolute).
    pub config: Option<PathBuf>,
    /// `[supervisor] shutdown_grace_secs`.
    pub grace_secs: u64,
    /// The `PATH` the service runs with (see [`service_path`]): the service manager's own is
    /// minimal, and the servers' commands are looked up in it.
    pub path: String,
    /// How the unit reloads the daemon (systemd only).
    pub reload: ReloadMode,
}

/// Used when the installing shell has no usable `PATH`.
pub const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// The `PATH` to record in a service file, from the installing shell's `PATH`: its absolute
/// entries in order, without duplicates. Returns it with the entries that were dropped (empty
/// and relative ones mean "the current directory", which a service does not have; one with a
/// control character cannot be written into the file). [`FALLBACK_PATH`] when nothing is
/// left.
pub fn service_path(shell_path: Option<&str>) -> (String, Vec<String>) {
    let mut kept: Vec<&str> = Vec::new();
    let mut dropped = Vec::new();
    for entry in shell_path.unwrap_or_default().split(':') {
        if !entry.starts_with('/') || entry.chars().any(char::is_control) {
            dropped.push(entry.to_owned());
        } else if !kept.contains(&entry) {
            kept.push(entry);
        }
    }
    if shell_path.is_none_or(str::is_empty) {
        dropped.clear();
    }
    if kept.is_empty() {
        return (FALLBACK_PATH.to_owned(), dropped);
    }
    (kept.join(":"), dropped)
}

impl ServiceParams {
    /// The daemon's command line: `<binary> daemon [--config <path>]`.
    pub fn argv(&self) -> Result<Vec<String>, RenderError> {
        let mut argv = vec![text(&self.binary, "the binary path")?, "daemon".to_owned()];
        if let Some(config) = &self.config {
            argv.push("--config".to_owned());
            argv.push(text(config, "the config path")?);
        }
        Ok(argv)
    }

    /// `TimeoutStopSec` / `ExitTimeOut`: the grace period plus [`STOP_MARGIN_SECS`].
    pub fn stop_timeout_secs(&self) -> u64 {
        self.grace_secs.saturating_add(STOP_MARGIN_SECS)
    }

    /// `$REVKA_HOME/logs`, where the launchd agent's output goes.
    pub fn logs_dir(&self) -> PathBuf {
        self.revka_home.join("logs")
    }
}

/// Why a service file could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template has a placeholder nobody supplies.
    #[error("template placeholder `{{{{{0}}}}}` has no value")]
    Unknown(String),
    /// A value was supplied for a placeholder the template lacks.
    #[error("template has no placeholder `{{{{{0}}}}}`")]
    Unused(String),
    /// A `{{` without its `}}`, or an empty or malformed name.
    #[error("malformed template placeholder at byte {0}")]
    Malformed(usize),
    /// A path that is not UTF-8 or holds a control character.
    #[error("{0}")]
    Unrepresentable(String),
}

/// Replaces every `{{name}}` in `template` with its value from `values`. Fails on a
/// placeholder without a value, a value without a placeholder, or a malformed placeholder.
pub fn substitute(template: &str, values: &[(&str, String)]) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut used = vec![false; values.len()];
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let offset = template.len() - rest.len() + start;
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(RenderError::Malformed(offset))?;
        let name = &after[..end];
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(RenderError::Malformed(offset));
        }
        let index = values
            .iter()
            .position(|(n, _)| *n == name)
            .ok_or_else(|| RenderError::Unknown(name.to_owned()))?;
        out.push_str(&values[index].1);
        used[index] = true;
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    match used.iter().position(|u| !u) {
        Some(i) => Err(RenderError::Unused(values[i].0.to_owned())),
        None => Ok(out),
    }
}

/// The systemd user unit for `params`.
pub fn render_unit(params: &ServiceParams) -> Result<String, RenderError> {
    let argv = params.argv()?;
    let mut exec_start = Vec::with_capacity(argv.len());
    for (i, arg) in argv.iter().enumerate() {
        exec_start.push(systemd_word(arg, i == 0)?);
    }
    let home = text(&params.revka_home, "REVKA_HOME")?;
    let (service_type, reload) = match params.reload {
        ReloadMode::NotifyReload => (
            "notify-reload",
            "# `systemctl --user reload revka` sends SIGHUP and returns once the daemon has \
             re-read its\n# config (RELOADING=1 … READY=1). A rejected config leaves the running \
             one in place:\n# `systemctl --user status revka` shows it, `revka reload` exits 1 \
             with the reason."
                .to_owned(),
        ),
        ReloadMode::ExecReload => (
            "notify",
            format!(
                "# This systemd has no Type=notify-reload: `revka reload` asks the daemon \
                 (gateway, owner\n# token) and returns once the reload is done, failing on a \
                 rejected config.\nExecReload={} reload",
                systemd_word(&text(&params.binary, "the binary path")?, true)?
            ),
        ),
        ReloadMode::Signal => (
            "notify",
            "# The daemon re-reads its config on SIGHUP; with the gateway disabled, the \
             outcome is only\n# in the log (`journalctl --user -u revka`).\n\
             ExecReload=/bin/kill -HUP $MAINPID"
                .to_owned(),
        ),
    };
    substitute(
        UNIT_TEMPLATE,
        &[
            ("service_type", service_type.to_owned()),
            ("exec_start", exec_start.join(" ")),
            ("reload", reload),
            ("revka_home", systemd_quoted(&home)?),
            ("path", systemd_quoted(&params.path)?),
            ("grace_secs", params.grace_secs.to_string()),
            ("timeout_stop_secs", params.stop_timeout_secs().to_string()),
        ],
    )
}

/// The launchd agent for `params`.
pub fn render_plist(params: &ServiceParams) -> Result<String, RenderError> {
    let mut program_arguments = Vec::new();
    for arg in params.argv()? {
        program_arguments.push(format!("\t\t<string>{}</string>", xml_escape(&arg)?));
    }
    let home = text(&params.revka_home, "REVKA_HOME")?;
    substitute(
        PLIST_TEMPLATE,
        &[
            ("program_arguments", program_arguments.join("\n")),
            ("revka_home", xml_escape(&home)?),
            ("path", xml_escape(&params.path)?),
            ("grace_secs", params.grace_secs.to_string()),
            ("exit_timeout_secs", params.stop_timeout_secs().to_string()),
            (
                "rotate_mib",
                (crate::logrotate::ROTATE_BYTES / (1024 * 1024)).to_string(),
            ),
            ("rotate_keep", crate::logrotate::KEEP.to_string()),
        ],
    )
}

/// A path as text; service files are UTF-8.
fn text(path: &Path, what: &str) -> Result<String, RenderError> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        RenderError::Unrepresentable(format!("{what} is not valid UTF-8: {}", path.display()))
    })
}

/// Fails when `value` holds a control character (a newline would end the unit's line).
fn no_controls(value: &str) -> Result<(), RenderError> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(RenderError::Unrepresentable(format!(
            "{value:?} contains the control character {c:?}, which a service file cannot hold"
        ))),
        None => Ok(()),
    }
}

/// `value` escaped for the inside of a double-quoted systemd string: `\` and `"` are
/// backslash-escaped, `%` (a specifier) is doubled.
fn systemd_quoted(value: &str) -> Result<String, RenderError> {
    no_controls(value)?;
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// One word of an `Exec*=` command line: specifiers (`%`) escaped; in arguments, but not in
/// the executable's path, `$` doubled (systemd expands `$VAR` there); double-quoted when it
/// holds anything but plain path characters.
fn systemd_word(word: &str, executable: bool) -> Result<String, RenderError> {
    let mut escaped = systemd_quoted(word)?;
    if !executable {
        escaped = escaped.replace('$', "$$");
    }
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@=".contains(c));
    Ok(if plain {
        escaped
    } else {
        format!("\"{escaped}\"")
    })
}

/// `value` escaped for XML text.
fn xml_escape(value: &str) -> Result<String, RenderError> {
    no_controls(value)?;
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Ok(out)
}
