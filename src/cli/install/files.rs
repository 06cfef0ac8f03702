//! Filesystem helpers of `revka install`: owner-only directories, files rewritten only when
//! their contents or mode differ (atomically, by [`revka_actors::fs::write_atomic`]: a link
//! planted at their path is replaced, never written through), and stale files pruned from the
//! package directories.

use std::collections::BTreeSet;
use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::SourceFile;

/// Extensions of files that are pruned from a package directory when no longer shipped.
const PRUNED: [&str; 2] = [".py", ".js"];

/// What a directory looks like compared with what it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirState {
    /// Present with the right mode.
    Ok,
    /// Absent.
    Missing,
    /// Present with another mode (the one found).
    Mode(u32),
}

/// Inspects `path`, which should be a directory with `mode`.
pub(super) fn dir_state(path: &Path, mode: u32) -> Result<DirState, String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let found = meta.permissions().mode() & 0o7777;
            Ok(if found == mode {
                DirState::Ok
            } else {
                DirState::Mode(found)
            })
        }
        Ok(_) => Err(format!("{} exists but is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DirState::Missing),
        Err(e) => Err(format!("cannot inspect {}: {e}", path.display())),
    }
}

/// Creates `path` (and missing parents) with `mode`.
pub(super) fn create_dir(path: &Path, mode: u32) -> Result<(), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    // The umask may have narrowed the mode; set it exactly.
    chmod(path, mode)
}

/// Sets `path`'s mode.
pub(super) fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

/// Writes `path` atomically with `mode` ([`revka_actors::fs::write_atomic`]).
pub(super) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    revka_actors::fs::write_atomic(path, contents, mode).map_err(|e| e.to_string())
}

/// What [`sync_files`] changes (or would).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SyncPlan {
    /// Files written: new, changed, or with the wrong mode.
    pub written: Vec<String>,
    /// Stale files removed.
    pub removed: Vec<String>,
}

impl SyncPlan {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }

    /// `2 files: a.py, b.py; remove old.py`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} file{}: {}",
            self.written.len(),
            if self.written.len() == 1 { "" } else { "s" },
            self.written.join(", ")
        );
        if !self.removed.is_empty() {
            text.push_str(&format!("; remove {}", self.removed.join(", ")));
        }
        text
    }
}

/// How [`sync_files`] treats a directory.
#[derive(Debug, Clone, Copy)]
pub(super) struct SyncOptions<'a> {
    /// Files written 0700 (the rest 0600).
    pub exec: &'a [&'a str],
    /// Remove the `.py`/`.js` files `files` does not list from the directories it has such
    /// files in (only for directories the installer owns).
    pub prune: bool,
    /// Only say what would change.
    pub check_only: bool,
}

/// Brings `dir` in line with `files`: writes those whose contents or mode differ, and prunes
/// stale files if asked.
pub(super) fn sync_files(
    dir: &Path,
    files: &[SourceFile],
    opts: SyncOptions<'_>,
) -> Result<SyncPlan, String> {
    let SyncOptions {
        exec,
        prune,
        check_only,
    } = opts;
    let mut plan = SyncPlan::default();
    for file in files {
        let dest = dir.join(&file.path);
        let mode = if exec.contains(&file.path.as_str()) {
            0o700
        } else {
            0o600
        };
        let same = std::fs::read(&dest).is_ok_and(|c| c == file.contents)
            && std::fs::metadata(&dest).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
        if same {
            continue;
        }
        plan.written.push(file.path.clone());
        if !check_only {
            if let Some(parent) = dest.parent().filter(|p| !p.is_dir()) {
                create_dir(parent, 0o700)?;
            }
            write_file(&dest, &file.contents, mode)?;
        }
    }
    let stale = if prune {
        stale_files(dir, files)
    } else {
        Vec::new()
    };
    for stale in stale {
        plan.removed.push(stale.to_string_lossy().into_owned());
        if !check_only {
            let path = dir.join(&stale);
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
    }
    Ok(plan)
}

/// Files in the directories of `files` with a pruned extension that `files` does not list.
fn stale_files(dir: &Path, files: &[SourceFile]) -> Vec<PathBuf> {
    let listed: BTreeSet<PathBuf> = files.iter().map(|f| PathBuf::from(&f.path)).collect();
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter(|f| PRUNED.iter().any(|ext| f.path.ends_with(ext)))
        .map(|f| {
            Path::new(&f.path)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
        .collect();
    let mut stale = Vec::new();
    for sub in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(&sub)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = sub.join(&name);
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file && PRUNED.iter().any(|ext| name.ends_with(ext)) && !listed.contains(&rel) {
                stale.push(rel);
            }
        }
    }
    stale.sort();
    stale
}

/// Removes what setuptools leaves in the package source (`build/`, `*.egg-info/`).
pub(super) fn remove_build_artifacts(src: &Path) {
    let _ = std::fs::remove_dir_all(src.join("build"));
    if let Ok(entries) = std::fs::read_dir(src) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().ends_with(".egg-info") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
