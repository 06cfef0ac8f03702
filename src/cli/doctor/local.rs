//! The checks of `revka doctor` that need no running daemon: `REVKA_HOME` and its secrets,
//! the interpreters, and the operator's installation.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use revka_actors::fs::{self, DirProblem};

use super::Check;
use crate::cli::install::{Layout, Sources};
use crate::cli::toolchain::{self, MIN_NODE, MIN_PYTHON};
use crate::config::Config;

/// Files in `REVKA_HOME` that hold secrets (or name the daemon's endpoints) and must be 0600.
pub const SECRET_FILES: [&str; 3] = ["gateway.token", "gateway_tokens.json", "mcp.json"];

const INSTALL_HINT: &str = "run: revka install --sidecars-only";

/// `REVKA_HOME` exists, is owned by this user and is not group/world-writable (the rule the
/// daemon enforces); its secret files are owner-only.
pub fn home(home: &Path) -> Vec<Check> {
    let shown = home.display();
    let meta = match std::fs::metadata(home) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Check::warn(
                "REVKA_HOME",
                format!("{shown} does not exist"),
                "`revka install --sidecars-only` or the daemon creates it",
            )];
        }
        Err(e) => {
            return vec![Check::fail(
                "REVKA_HOME",
                format!("cannot inspect {shown}: {e}"),
                "check the path and its permissions",
            )];
        }
    };
    let mode = meta.permissions().mode() & 0o7777;
    let mut checks = vec![if !meta.is_dir() {
        Check::fail(
            "REVKA_HOME",
            format!("{shown} is not a directory"),
            "point REVKA_HOME at a directory",
        )
    } else {
        // The daemon's own rule ([`fs::check_private_dir`]), reported instead of refused.
        let (owner, uid) = (meta.uid(), fs::current_uid());
        match fs::dir_problem(owner, mode, uid) {
            None => Check::ok("REVKA_HOME", format!("{shown} (mode {mode:04o})")),
            Some(problem) => {
                let what = match problem {
                    DirProblem::Writable => format!("group/world-writable (mode {mode:04o})"),
                    _ => format!("owned by uid {owner}, not by you (uid {uid}; mode {mode:04o})"),
                };
                let fix = match problem {
                    DirProblem::Writable => format!("chmod 700 {shown}"),
                    _ => format!("sudo chown {uid} {shown} && chmod 700 {shown}"),
                };
                Check::fail(
                    "REVKA_HOME",
                    format!(
                        "{shown} is {what}: others could replace its config, tokens or \
                         sidecars; the daemon refuses it"
                    ),
                    fix,
                )
            }
        }
    }];
    for name in SECRET_FILES {
        let path = home.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        checks.push(if mode & 0o077 != 0 {
            Check::fail(
                format!("file {name}"),
                format!(
                    "{} is accessible to others (mode {mode:04o})",
                    path.display()
                ),
                format!("chmod 600 {}", path.display()),
            )
        } else {
            Check::ok(format!("file {name}"), format!("mode {mode:04o}"))
        });
    }
    checks
}

/// The interpreters and the operator's installation; whether the operator is installed well
/// enough to try a handshake.
pub fn operator(config: &Config, home: &Path, checks: &mut Vec<Check>) -> bool {
    let op = &config.operator;
    let python = op.python.as_str();
    checks.push(
        match toolchain::python_version(python)
            .and_then(|v| toolchain::require("Python", python, v, MIN_PYTHON).map(|()| v))
        {
            Ok(v) => Check::ok("python", format!("`{python}` is Python {v}")),
            Err(e) if op.enabled => Check::fail(
                "python",
                e,
                "install Python 3.11 or newer, or set [operator] python to one",
            ),
            Err(e) => Check::warn("python", e, "needed only with [operator] enabled = true"),
        },
    );
    checks.push(node(config));
    if !op.enabled {
        checks.push(Check::skip(
            "operator",
            "disabled ([operator] enabled = false)",
        ));
        return false;
    }
    let layout = Layout::new(home);
    let venv = layout.venv_python.exists();
    checks.push(if venv {
        Check::ok("operator venv", layout.venv.display().to_string())
    } else {
        Check::fail(
            "operator venv",
            format!("no venv at {}", layout.venv.display()),
            INSTALL_HINT,
        )
    });
    let launcher = op.mcp_path.is_file();
    checks.push(if launcher {
        Check::ok("operator launcher", op.mcp_path.display().to_string())
    } else {
        Check::fail(
            "operator launcher",
            format!(
                "no launcher at {} ([operator] mcp_path)",
                op.mcp_path.display()
            ),
            INSTALL_HINT,
        )
    });
    if !venv {
        checks.push(Check::skip("operator package", "no venv"));
        return false;
    }
    let shipped = Sources::embedded().operator_version().unwrap_or_default();
    let package = toolchain::installed_operator(&layout.venv_python);
    checks.push(match &package {
        Ok(v) if *v == shipped => {
            Check::ok("operator package", format!("revka-operator {v} imports"))
        }
        Ok(v) => Check::warn(
            "operator package",
            format!("revka-operator {v} is installed; this revka ships {shipped}"),
            INSTALL_HINT,
        ),
        Err(e) => Check::fail("operator package", e.clone(), INSTALL_HINT),
    });
    launcher && package.is_ok()
}

/// Node for the session manager: required (FAIL) only when the session manager is enabled.
fn node(config: &Config) -> Check {
    let sm = &config.session_manager;
    let program = sm
        .command
        .first()
        .filter(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("node"))
        })
        .map_or("node", String::as_str);
    let version = toolchain::node_version(program)
        .and_then(|v| toolchain::require("Node.js", program, v, MIN_NODE).map(|()| v));
    match version {
        Ok(v) => Check::ok("node", format!("`{program}` is Node.js {v}")),
        Err(e) if sm.enabled => Check::fail(
            "node",
            e,
            "install Node.js 18 or newer (the session manager needs it)",
        ),
        Err(e) => Check::warn(
            "node",
            e,
            "needed only with [session_manager] enabled = true",
        ),
    }
}
