//! The built-in tools that run programs or compute (`src/tools/builtin`'s `exec` group):
//! `shell`, `git_operations`, `calculator`, `screenshot` and `browser_open`.
//!
//! Programs run through [`process`] (own process group, fresh environment from
//! [`crate::security::command::CommandRules::environment`], capped output, killed with their
//! group at the timeout or on cancel); command lines are checked by the policy's
//! [`crate::security::command::CommandRules`]; path-like operands by `check_operand`.

mod calc;
mod desktop;
mod git;
pub mod process;
mod shell;

use std::path::Path;
use std::time::Duration;

use super::Registrar;
use crate::security::paths::Access;
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

/// Checks a path-like operand of a command (absolute, `~`, containing `..`, or naming
/// something that exists) with the path rules ([`crate::security::paths::PathRules::resolve`]):
/// every symlink resolved, inside the workspace when `workspace_only`, never at or under
/// `$REVKA_HOME` or a `forbidden_paths` entry. A plain word that names nothing (a pattern, a
/// name to create) passes: nothing outside is named.
pub(crate) fn check_operand(policy: &Policy, workspace: &Path, raw: &str) -> Result<(), Refusal> {
    let path_like =
        raw.starts_with('/') || raw.starts_with('~') || raw.split('/').any(|s| s == "..");
    // A shell (`autonomy = "full"`) expands `~user`; the path rules would take it as a name.
    if let Some(rest) = raw.strip_prefix('~')
        && !(rest.is_empty() || rest.starts_with('/'))
    {
        return Err(Refusal::new(
            "path",
            format!("`{}`: `~user` paths are refused", shown(raw)),
        ));
    }
    if !path_like && std::fs::symlink_metadata(workspace.join(raw)).is_err() {
        return Ok(());
    }
    policy.paths.resolve(workspace, raw, Access::List).map(drop)
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
