//! The operator's venv: creating it with the chosen Python and `pip install`ing the package.
//!
//! Part of `revka install`. pip runs with the caller's environment untouched, so `PIP_INDEX_URL`,
//! `PIP_FIND_LINKS`, `PIP_NO_INDEX` and the like make an offline install work; its output is
//! captured and only its tail is shown when it fails.

use std::path::Path;
use std::process::Command;

use super::{Layout, files};
use crate::cli::toolchain;

/// When a tool fails, this many of its last output lines are shown.
const TAIL_LINES: usize = 25;

/// `python -m venv <venv>`, after removing whatever is at `venv`.
pub(super) fn create(python: &str, venv: &Path) -> Result<(), String> {
    let shown = venv.display();
    if venv.exists() {
        std::fs::remove_dir_all(venv)
            .map_err(|e| format!("cannot remove the old venv {shown}: {e}"))?;
    }
    let output = Command::new(python)
        .args(["-m", "venv"])
        .arg(venv)
        .output()
        .map_err(|e| format!("cannot run `{python} -m venv`: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "`{python} -m venv {shown}` failed ({}); on Debian/Ubuntu install the python3-venv \
             package:\n{}",
            output.status,
            toolchain::tail(&err, TAIL_LINES)
        ))
    }
}

/// `venv/bin/python -m pip install <src>`, then records what was installed in the marker.
pub(super) fn pip_install(layout: &Layout, digest: &str) -> Result<(), String> {
    // setuptools builds in the source tree; a stale build/ could leak old modules.
    files::remove_build_artifacts(&layout.src);
    let _ = std::fs::remove_file(&layout.marker);
    let output = Command::new(&layout.venv_python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .arg(&layout.src)
        .output()
        .map_err(|e| format!("cannot run pip in {}: {e}", layout.venv.display()))?;
    files::remove_build_artifacts(&layout.src);
    toolchain::succeeded(&output, "pip install", TAIL_LINES)?;
    toolchain::installed_operator(&layout.venv_python)?;
    files::write_file(&layout.marker, format!("{digest}\n").as_bytes(), 0o600)
}
