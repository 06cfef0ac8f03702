//! The built-in tools that run programs or compute (`src/tools/builtin`'s `exec` group):
//! `shell`, `git_operations`, `calculator`, `screenshot` and `browser_open`.
//!
//! Programs run through [`process`] (own process group, fresh environment from
//! [`crate::security::command::CommandRules::environment`], capped output, killed with their
//! group at the timeout or on cancel); command lines are checked by the policy's
//! [`crate::security::command::CommandRules`]; path-like operands by [`check_operand`].

mod calc;
mod desktop;
mod git;
pub mod process;
mod shell;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::Registrar;
use crate::security::{Policy, Refusal};

/// Registers this group's tools.
pub(super) fn register(r: &mut Registrar<'_>) {
    r.add(shell::Shell);
    r.add(git::GitOperations);
    r.add(calc::Calculator);
    desktop::register(r);
}

/// The timeout of one call: `[security] command_timeout_secs`, or the call's `timeout_secs`
/// when that is lower (it can only shorten it).
fn timeout(policy: &Policy, asked: Option<u64>) -> Result<Duration, crate::tools::BuiltinError> {
    let limit = policy.config().command_timeout();
    match asked {
        None => Ok(limit),
        Some(0) => Err(crate::tools::BuiltinError::Arguments(
            "`timeout_secs` must be at least 1".to_owned(),
        )),
        Some(secs) => Ok(limit.min(Duration::from_secs(secs))),
    }
}

/// Checks a path-like operand of a command (`raw`, as the program will see it, relative to
/// the workspace): absolute, `~`, with a `..` segment, or naming an existing entry (so a
/// symlink that leads out is followed). Its canonical form (every symlink resolved, the part
/// that does not exist yet normalised) must be inside the workspace when `workspace_only`,
/// and never at or under `$REVKA_HOME` or a `forbidden_paths` entry.
///
/// (Until the merge with the path rules: the lead switches this to `PathRules::resolve`.)
pub(crate) fn check_operand(policy: &Policy, workspace: &Path, raw: &str) -> Result<(), Refusal> {
    let path_like =
        raw.starts_with('/') || raw.starts_with('~') || raw.split('/').any(|s| s == "..");
    let candidate = if let Some(rest) = raw.strip_prefix('~') {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(Refusal::new(
                "path",
                format!("`{}`: `~user` paths are refused", shown(raw)),
            ));
        }
        let Some(home) = real_home() else {
            return Err(Refusal::new("path", "`~` has no home directory to name"));
        };
        home.join(rest.trim_start_matches('/'))
    } else if raw.starts_with('/') {
        PathBuf::from(raw)
    } else {
        workspace.join(raw)
    };
    if !path_like && std::fs::symlink_metadata(&candidate).is_err() {
        // A plain word (a pattern, a name to create): nothing outside is named.
        return Ok(());
    }
    let resolved = resolve(&candidate);
    if policy.config().workspace_only && !resolved.starts_with(workspace) {
        return Err(Refusal::new(
            "workspace_only",
            format!(
                "`{}` resolves outside the workspace {}",
                shown(raw),
                workspace.display()
            ),
        ));
    }
    if forbidden(policy, &resolved) {
        return Err(Refusal::new(
            "forbidden_paths",
            format!("`{}` is a forbidden path", shown(raw)),
        ));
    }
    Ok(())
}

/// `path` with its longest existing prefix canonicalised and the rest normalised lexically.
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    let base = loop {
        if let Ok(canonical) = existing.canonicalize() {
            break canonical;
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => {
                // `..` as the last component, or the root: normalise what is left lexically.
                let mut out = PathBuf::from("/");
                for c in existing.components() {
                    match c {
                        Component::ParentDir => {
                            out.pop();
                        }
                        Component::Normal(n) => out.push(n),
                        _ => {}
                    }
                }
                break out;
            }
        }
    };
    let mut out = base;
    for name in rest.iter().rev() {
        if name == ".." {
            out.pop();
        } else if name != "." {
            out.push(name);
        }
    }
    out
}

/// Whether `resolved` is `$REVKA_HOME`, a `forbidden_paths` entry, or under one (`*` matches
/// one segment).
fn forbidden(policy: &Policy, resolved: &Path) -> bool {
    let home = real_home();
    let revka_home = policy
        .home()
        .canonicalize()
        .unwrap_or(policy.home().to_owned());
    if resolved.starts_with(&revka_home) {
        return true;
    }
    policy.config().forbidden_paths.iter().any(|pattern| {
        let expanded = if let Some(rest) = pattern.strip_prefix("$REVKA_HOME") {
            PathBuf::from(format!("{}{rest}", revka_home.display()))
        } else if let Some(rest) = pattern.strip_prefix('~') {
            match &home {
                Some(h) => h.join(rest.trim_start_matches('/')),
                None => return false,
            }
        } else {
            PathBuf::from(pattern)
        };
        let expanded = if pattern.contains('*') {
            expanded
        } else {
            expanded.canonicalize().unwrap_or(expanded)
        };
        let want: Vec<_> = expanded.components().collect();
        let have: Vec<_> = resolved.components().collect();
        want.len() <= have.len()
            && want.iter().zip(&have).all(|(w, h)| match (w, h) {
                (Component::Normal(w), Component::Normal(h)) => w == &"*" || w == h,
                (w, h) => w == h,
            })
    })
}

/// The daemon user's home directory (`$HOME`, else the password database's).
fn real_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
}

/// A caller's string for a message: at most 80 characters.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecurityConfig;

    #[test]
    fn operands_stay_in_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap().join("ws");
        std::fs::create_dir(&ws).unwrap();
        std::fs::write(ws.join("a.txt"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", ws.join("out")).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let policy = Policy::new(&SecurityConfig::default(), &home).unwrap();
        let check = |raw: &str| check_operand(&policy, &ws, raw);
        check("a.txt").unwrap();
        check("pattern").unwrap();
        check("new/file").unwrap();
        check("./a.txt").unwrap();
        check(&ws.join("a.txt").display().to_string()).unwrap();
        for raw in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "out",
            "out/passwd",
            "~/.ssh",
            "/",
        ] {
            assert_eq!(check(raw).unwrap_err().rule, "workspace_only", "{raw}");
        }
        assert_eq!(check("~root/x").unwrap_err().rule, "path");
        // $REVKA_HOME inside the workspace is still forbidden.
        let inner = Policy::new(&SecurityConfig::default(), &ws).unwrap();
        assert_eq!(
            check_operand(&inner, &ws, "a.txt").unwrap_err().rule,
            "forbidden_paths"
        );
    }
}
