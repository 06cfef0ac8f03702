//! The environment as the config layer sees it: `REVKA_HOME`, `~` and `${VAR}` expansion.
//!
//! Part of the config layer. Nothing here reads the process environment directly except
//! [`process_env`]; every other function takes the lookup as a parameter, so tests pass a map
//! and never call `std::env::set_var`.

use std::path::{Path, PathBuf};

/// Looks up an environment variable; `None` when unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment (non-Unicode values count as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A variable's value, treating an empty value as unset.
fn non_empty(env: EnvLookup<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// Revka's home directory from the process environment: `$REVKA_HOME`, else `$HOME/.revka`.
pub fn revka_home() -> PathBuf {
    revka_home_with(&process_env)
}

/// Revka's home directory from `env`: `$REVKA_HOME` (a leading `~/` expanded), else
/// `$HOME/.revka`, else `.revka` in the working directory when `HOME` is unset too.
pub fn revka_home_with(env: EnvLookup<'_>) -> PathBuf {
    let home = non_empty(env, "HOME");
    match non_empty(env, "REVKA_HOME") {
        Some(dir) => expand_tilde(Path::new(&dir), home.as_deref()).unwrap_or_else(|_| dir.into()),
        None => home.map_or_else(|| PathBuf::from(".revka"), |h| Path::new(&h).join(".revka")),
    }
}

/// `$REVKA_HOME/config.toml` from the process environment.
pub fn default_config_path() -> PathBuf {
    revka_home().join(super::CONFIG_FILE_NAME)
}

/// Expands a leading `~` or `~/` to `home`. Other paths (including `~user/…`) are unchanged.
/// Fails when the path needs `home` and there is none.
pub(crate) fn expand_tilde(path: &Path, home: Option<&str>) -> Result<PathBuf, String> {
    let Ok(rest) = path.strip_prefix("~") else {
        return Ok(path.to_path_buf());
    };
    match home {
        Some(home) => Ok(Path::new(home).join(rest)),
        None => Err(format!(
            "cannot expand `~` in {}: HOME is not set",
            path.display()
        )),
    }
}

/// Makes a config path usable: `~` expanded, then a relative path joined to `base` (the
/// directory of the file it was written in).
pub(crate) fn resolve_path(
    path: &Path,
    home: Option<&str>,
    base: &Path,
) -> Result<PathBuf, String> {
    let expanded = expand_tilde(path, home)?;
    if expanded.as_os_str().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(if expanded.is_relative() {
        base.join(expanded)
    } else {
        expanded
    })
}

/// Why `${VAR}` expansion failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VarError {
    /// The variable is not set.
    Missing(String),
    /// A `${` without its `}`.
    Unterminated,
    /// `${…}` with something that is not a variable name inside.
    BadName(String),
}

impl VarError {
    /// The message for a config error (the missing case has its own error variant).
    pub(crate) fn message(&self) -> String {
        match self {
            Self::Missing(var) => format!("environment variable {var} is not set"),
            Self::Unterminated => "unterminated `${` (write `$${` for a literal `${`)".to_owned(),
            Self::BadName(name) => format!(
                "`${{{name}}}` is not a valid variable reference (names are letters, digits and \
                 `_`, not starting with a digit; write `$${{` for a literal `${{`)"
            ),
        }
    }
}

/// Expands every `${VAR}` in `input` from `env`; `$${` stands for a literal `${`. A `$` not
/// followed by `{` is kept as is.
pub(crate) fn expand_vars(input: &str, env: EnvLookup<'_>) -> Result<String, VarError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(VarError::Unterminated)?;
            let name = &after[..end];
            if !is_var_name(name) {
                return Err(VarError::BadName(name.to_owned()));
            }
            out.push_str(&env(name).ok_or_else(|| VarError::Missing(name.to_owned()))?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `[A-Za-z_][A-Za-z0-9_]*`: the names `${VAR}` accepts.
pub(crate) fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
