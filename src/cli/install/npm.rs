//! The session manager's npm dependencies: `npm ci --omit=dev` in
//! `operator_mcp/session-manager/` (the Claude Agent SDK, pinned by the shipped
//! `package-lock.json`).
//!
//! Part of `revka install --with-session-manager`. npm runs with the caller's environment
//! untouched (`npm_config_registry`, `npm_config_cache`, `npm_config_offline` and the like work);
//! its output is captured and only its tail is shown when it fails. After a successful run a
//! marker (`node_modules/.revka-npm-installed`, the digest of `package.json` and
//! `package-lock.json`) records what was installed, so a later install runs npm only when the
//! manifest changed or the dependencies are gone.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{SourceFile, files};
use crate::cli::toolchain;

/// When npm fails, this many of its last output lines are shown.
const TAIL_LINES: usize = 25;

/// A file of the SDK package that must exist after `npm ci`.
const SDK_MANIFEST: &str = "node_modules/@anthropic-ai/claude-agent-sdk/package.json";

/// The marker of a finished `npm ci`, under the session manager's directory.
pub(super) fn marker(dir: &Path) -> PathBuf {
    dir.join("node_modules").join(".revka-npm-installed")
}

/// The digest of the npm manifest (`package.json`, `package-lock.json`) among `files`.
pub(super) fn manifest_digest(files: &[SourceFile]) -> String {
    let mut hash = Sha256::new();
    for file in files
        .iter()
        .filter(|f| f.path == "package.json" || f.path == "package-lock.json")
    {
        hash.update((file.path.len() as u64).to_le_bytes());
        hash.update(file.path.as_bytes());
        hash.update((file.contents.len() as u64).to_le_bytes());
        hash.update(&file.contents);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the dependencies installed in `dir` are the ones `digest` names.
pub(super) fn installed(dir: &Path, digest: &str) -> bool {
    std::fs::read_to_string(marker(dir)).is_ok_and(|m| m.trim() == digest)
        && dir.join(SDK_MANIFEST).is_file()
}

/// `npm ci --omit=dev` in `dir` with the program `npm`, then records `digest` in the marker.
pub(super) fn ci(npm: &str, dir: &Path, digest: &str) -> Result<(), String> {
    let shown = dir.display();
    let _ = std::fs::remove_file(marker(dir));
    let output = Command::new(npm)
        .args(["ci", "--omit=dev", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "the session manager's dependencies (the Claude Agent SDK) are installed with \
                     npm, and `{npm}` was not found: install npm (it comes with Node.js; on \
                     Debian/Ubuntu the npm package) or pass --npm PATH"
                )
            } else {
                format!("cannot run `{npm} ci` in {shown}: {e}")
            }
        })?;
    toolchain::succeeded(
        &output,
        &format!("`{npm} ci --omit=dev` in {shown}"),
        TAIL_LINES,
    )?;
    if !dir.join(SDK_MANIFEST).is_file() {
        return Err(format!(
            "`{npm} ci --omit=dev` in {shown} succeeded but {SDK_MANIFEST} is missing"
        ));
    }
    files::write_file(&marker(dir), format!("{digest}\n").as_bytes(), 0o600)
}
