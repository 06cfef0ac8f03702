//! The service files, rendered from the templates in `config/` (`revka.service`,
//! `com.revka.daemon.plist`), embedded with `include_str!`.
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
    substitute(
        UNIT_TEMPLATE,
        &[
            ("exec_start", exec_start.join(" ")),
            ("revka_home", systemd_quoted(&home)?),
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
            ("grace_secs", params.grace_secs.to_string()),
            ("exit_timeout_secs", params.stop_timeout_secs().to_string()),
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
