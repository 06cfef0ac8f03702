//! Reading a client's config file, backing it up, and replacing it.
//!
//! Part of `revka client` ([`super`]). The file belongs to another program and its user, so:
//!
//! - **Links are followed.** A config file kept in a dotfiles repository and linked into
//!   place stays linked: the edit replaces the link's final target (atomically, in the
//!   target's directory), not the link. A dangling link is refused.
//! - **Only a plain file of this user's is edited**: not a directory or device, not a file
//!   owned by someone else, not one with other hard links (an atomic replace would split
//!   them), not one over [`MAX_BYTES`], and only UTF-8 text.
//! - **A backup comes first**: `<file>.revka-backup-<UTC time>` beside the path the client
//!   reads, owner-only; the newest [`KEEP_BACKUPS`] are kept, older ones of that file removed.
//! - **The write is atomic and keeps the mode** ([`revka_actors::fs::write_atomic`]); a new
//!   file is owner-only (a project file, meant to be committed, is `0644`). Just before
//!   writing, the file is read again: if it changed since it was read (the client saving its
//!   own state), nothing is written and the user is asked to run the command again.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Files larger than this are not edited (Claude Code's `~/.claude.json`, which keeps its
/// history, is the largest such file in practice, and stays well under it).
pub(super) const MAX_BYTES: u64 = 64 << 20;

/// How many backups of one file are kept.
pub(super) const KEEP_BACKUPS: usize = 3;

/// What comes between a file's name and the time in its backups' names.
const BACKUP_INFIX: &str = ".revka-backup-";

/// Why a config file cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// An I/O operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file is something Revka does not edit.
    #[error("{} {why}; not editing it", path.display())]
    Refused {
        /// The path.
        path: PathBuf,
        /// What is wrong (`is a directory`, `is owned by uid 0`, ...).
        why: String,
    },
    /// The file changed between reading and writing it.
    #[error("{} changed while it was being edited (is the client running and saving it?); nothing was written, run the command again", path.display())]
    Changed {
        /// The path.
        path: PathBuf,
    },
}

/// A client's config file as read.
#[derive(Debug)]
pub(super) struct ClientFile {
    /// The path the client reads (perhaps a link).
    pub(super) path: PathBuf,
    /// Where its bytes are: the link's final target, or `path`.
    pub(super) target: PathBuf,
    /// The contents; `None` when there is no file.
    pub(super) text: Option<String>,
    /// The permission bits to write with.
    mode: u32,
}

impl ClientFile {
    /// Reads `path`. A missing file is not an error; `new_mode` is the mode a new one gets.
    pub(super) fn read(path: &Path, new_mode: u32) -> Result<Self, FileError> {
        let io = |action, source| FileError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        let refused = |why: String| FileError::Refused {
            path: path.to_owned(),
            why,
        };
        let link = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta.file_type().is_symlink(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: path.to_owned(),
                    target: path.to_owned(),
                    text: None,
                    mode: new_mode,
                });
            }
            Err(e) => return Err(io("inspect", e)),
        };
        let target = if link {
            std::fs::canonicalize(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => {
                    refused("is a link to a file that does not exist".into())
                }
                _ => io("follow the link", e),
            })?
        } else {
            path.to_owned()
        };
        let meta = std::fs::metadata(&target).map_err(|e| io("inspect", e))?;
        if !meta.is_file() {
            return Err(refused("is not a regular file".into()));
        }
        let uid = revka_actors::fs::current_uid();
        if meta.uid() != uid {
            return Err(refused(format!(
                "is owned by uid {}, not by this user (uid {uid})",
                meta.uid()
            )));
        }
        if meta.nlink() > 1 {
            return Err(refused(format!(
                "has {} hard links (replacing it would split them)",
                meta.nlink()
            )));
        }
        if meta.len() > MAX_BYTES {
            return Err(refused(format!(
                "is {} bytes, over the {} MiB Revka edits",
                meta.len(),
                MAX_BYTES >> 20
            )));
        }
        let bytes = std::fs::read(&target).map_err(|e| io("read", e))?;
        let text = String::from_utf8(bytes).map_err(|_| refused("is not UTF-8 text".to_owned()))?;
        Ok(Self {
            path: path.to_owned(),
            target,
            text: Some(text),
            mode: meta.mode() & 0o7777,
        })
    }

    /// Copies the file to a new backup beside [`Self::path`] and prunes the old ones;
    /// `None` when there is no file to back up.
    pub(super) fn backup(&self) -> Result<Option<PathBuf>, FileError> {
        let Some(text) = &self.text else {
            return Ok(None);
        };
        let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let base = format!("{}{BACKUP_INFIX}{stamp}", self.file_name());
        let dir = self.dir();
        let mut backup = dir.join(&base);
        let mut n = 1;
        while std::fs::symlink_metadata(&backup).is_ok() {
            backup = dir.join(format!("{base}.{n}"));
            n += 1;
        }
        revka_actors::fs::write_atomic(&backup, text.as_bytes(), revka_actors::fs::PRIVATE_FILE)
            .map_err(|e| FileError::Io {
                action: "back up to",
                path: backup.clone(),
                source: e.into_io(),
            })?;
        self.prune();
        Ok(Some(backup))
    }

    /// Removes all but the newest [`KEEP_BACKUPS`] backups of this file (best effort: a
    /// backup that cannot be removed is let be).
    fn prune(&self) {
        let prefix = format!("{}{BACKUP_INFIX}", self.file_name());
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return;
        };
        let mut backups: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .filter_map(|e| {
                let meta = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
                Some((meta.modified().ok()?, e.path()))
            })
            .collect();
        backups.sort();
        let excess = backups.len().saturating_sub(KEEP_BACKUPS);
        for (_, old) in backups.into_iter().take(excess) {
            let _ = std::fs::remove_file(old);
        }
    }

    /// Replaces the file with `text`, after checking it did not change since it was read.
    /// `create_dirs`: make the missing directories of a new file (mode 0700).
    pub(super) fn write(&self, text: &str, create_dirs: bool) -> Result<(), FileError> {
        let io = |action, source| FileError::Io {
            action,
            path: self.target.clone(),
            source,
        };
        let now = match std::fs::read(&self.target) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", e)),
        };
        if now.as_deref() != self.text.as_ref().map(String::as_bytes) {
            return Err(FileError::Changed {
                path: self.path.clone(),
            });
        }
        if self.text.is_none() && create_dirs {
            let dir = self.target.parent().unwrap_or(Path::new("."));
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io("create the directory of", e))?;
        }
        revka_actors::fs::write_atomic(&self.target, text.as_bytes(), self.mode)
            .map_err(|e| io("write", e.into_io()))
    }

    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map_or_else(|| "config".to_owned(), |n| n.to_string_lossy().into_owned())
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::{ClientFile, FileError, KEEP_BACKUPS};

    #[test]
    fn a_linked_file_is_edited_where_it_lives_and_the_link_stays() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/settings.json");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "{}").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("settings.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        let file = ClientFile::read(&link, 0o600).unwrap();
        assert_eq!(file.target, real.canonicalize().unwrap());
        let backup = file.backup().unwrap().unwrap();
        assert_eq!(
            backup.parent(),
            Some(dir.path()),
            "beside the path the client reads"
        );
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "{}");
        assert_eq!(
            std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
        file.write("{\"a\": 1}", false).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "{\"a\": 1}");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the mode is kept");
    }

    #[test]
    fn files_revka_should_not_edit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |path: &std::path::Path| match ClientFile::read(path, 0o600) {
            Err(FileError::Refused { why, .. }) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(dir.path()), "is not a regular file");
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink(dir.path().join("gone"), &dangling).unwrap();
        assert!(refused(&dangling).contains("does not exist"));
        let a = dir.path().join("a.json");
        std::fs::write(&a, "{}").unwrap();
        std::fs::hard_link(&a, dir.path().join("b.json")).unwrap();
        assert!(refused(&a).contains("2 hard links"));
        let binary = dir.path().join("c.json");
        std::fs::write(&binary, [0xff, 0xfe]).unwrap();
        assert_eq!(refused(&binary), "is not UTF-8 text");
        let missing = ClientFile::read(&dir.path().join("none.json"), 0o600).unwrap();
        assert!(missing.text.is_none());
        assert!(missing.backup().unwrap().is_none(), "nothing to back up");
    }

    #[test]
    fn a_file_changed_since_it_was_read_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcp.json");
        std::fs::write(&path, "{}").unwrap();
        let file = ClientFile::read(&path, 0o600).unwrap();
        std::fs::write(&path, "{\"client\": \"saved\"}").unwrap();
        assert!(matches!(
            file.write("{\"a\": 1}", false),
            Err(FileError::Changed { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"client\": \"saved\"}"
        );
    }

    #[test]
    fn only_the_newest_backups_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        let unrelated = dir.path().join("config.toml.bak");
        std::fs::write(&unrelated, "").unwrap();
        let file = ClientFile::read(&path, 0o600).unwrap();
        let made: Vec<_> = (0..KEEP_BACKUPS + 2)
            .map(|_| file.backup().unwrap().unwrap())
            .collect();
        let backups = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_str()
                    .unwrap()
                    .starts_with("config.toml.revka-backup-")
            })
            .count();
        assert_eq!(backups, KEEP_BACKUPS, "{made:?}");
        assert!(made.last().unwrap().exists(), "the newest stays");
        assert!(unrelated.exists(), "other files are not backups");
    }

    #[test]
    fn a_new_file_gets_its_directories_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app/sub/mcp.json");
        let file = ClientFile::read(&path, 0o600).unwrap();
        assert!(
            file.write("{}\n", false).is_err(),
            "no directory, not asked to make one"
        );
        file.write("{}\n", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
