//! Files the daemon writes in `$REVKA_HOME`, and the one way to write them.
//!
//! Shared by both crates: the JSON-lines [`Journal`] (the retry queue's here, the cron
//! scheduler's in the daemon crate), and the daemon crate's lock file,
//! run log, discovery files, token files, sidecar install and service unit. Two kinds of file,
//! two rules, neither of which ever follows a symbolic link planted at the file's path:
//!
//! - **Replaced whole** ([`write_atomic`], [`write_atomic_with`]): the contents go to a fresh
//!   temporary file in the same directory, created with `O_CREAT | O_EXCL | O_NOFOLLOW` and
//!   the wanted mode (set exactly, whatever the umask), synced, renamed over the target, and
//!   the directory synced. A reader sees the old file or the new one, never a partial one; a
//!   crash leaves one of the two; a link at the target is replaced by the file (`rename` acts
//!   on the link, not on what it points at) and its target is untouched.
//! - **Opened in place** ([`open_in_place`]: the lock file, append-only logs and journals;
//!   [`read_in_place`]: files read back as authoritative, such as the token store): opened
//!   with `O_NOFOLLOW`, so a link there is refused with [`FsError::Symlink`]; the file must
//!   then be a regular file without other hard links, owned by this user, and (when written)
//!   its mode is narrowed to the wanted one. Such files are never opened with `O_TRUNC`: a
//!   caller that rewrites one (the lock's pid) truncates it only after these checks.
//!
//! - **Journals** ([`Journal`]): JSON-lines files opened in place and appended to, replayed at
//!   open by [`replay_jsonl`] (corrupt lines skipped, a torn tail cut), a failed append cut
//!   back, syncs run off the runtime's worker ([`off_worker`]), compacted by an atomic write
//!   of the live records when they are outnumbered four to one (or the file doubled past
//!   8 MiB).
//!
//! Directories Revka keeps private (the home and the directories it creates in it) are made
//! by [`ensure_private_dir`] and checked by [`check_private_dir`]: owned by this user and not
//! writable by its group or others ([`dir_problem`] is the rule, as a pure function). That
//! check is what makes the two rules above sufficient: only the owner can plant anything in
//! such a directory.

mod journal;
#[cfg(test)]
mod tests;

pub use journal::{Journal, JournalStats, off_worker};

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

/// The mode of a file only its owner may read and write.
pub const PRIVATE_FILE: u32 = 0o600;
/// The mode of a directory only its owner may enter, list and change.
pub const PRIVATE_DIR: u32 = 0o700;

/// Why a file or directory could not be written, opened or trusted. Every message names the
/// path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// An I/O operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `write`, `replace`, `open`, `sync`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A symbolic link where Revka opens a file in place.
    #[error(
        "{} is a symbolic link; Revka does not follow links to the files it writes: remove it",
        path.display()
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Something other than a regular file with a single link, owned by this user.
    #[error("{} is not a file Revka can trust: {why}; remove it", path.display())]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong (`a directory`, `2 hard links`, `owned by uid 1001`, ...).
        why: String,
    },
    /// A private directory others can change.
    #[error("{}", UnsafeDirMessage(path, *owner, *mode, *uid))]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// This process's effective uid.
        uid: u32,
    },
}

impl FsError {
    /// The I/O error alone, for a caller whose own error already names the file: the bare
    /// error of [`FsError::Io`] (whose path may be the temporary file's), else the whole
    /// message as an [`io::Error`].
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Io { source, .. } => source,
            other => other.into(),
        }
    }

    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// Callers that speak `io::Result` keep the error kind and get the whole message.
impl From<FsError> for io::Error {
    fn from(e: FsError) -> Self {
        let kind = match &e {
            FsError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}

/// What is wrong with a private directory, by [`dir_problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirProblem {
    /// Owned by another user.
    NotOwned,
    /// Writable by its group or by others.
    Writable,
    /// Both.
    NotOwnedAndWritable,
}

/// The rule for a private directory, from its metadata: owned by `uid` (this process's
/// effective uid) and without the group- and world-write bits. `None` when it holds.
pub fn dir_problem(owner: u32, mode: u32, uid: u32) -> Option<DirProblem> {
    match (owner != uid, mode & 0o022 != 0) {
        (false, false) => None,
        (true, false) => Some(DirProblem::NotOwned),
        (false, true) => Some(DirProblem::Writable),
        (true, true) => Some(DirProblem::NotOwnedAndWritable),
    }
}

/// The message of [`FsError::UnsafeDir`]: what is wrong, the figures, and the command that
/// fixes it.
struct UnsafeDirMessage<'a>(&'a Path, u32, u32, u32);

impl fmt::Display for UnsafeDirMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(path, owner, mode, uid) = *self;
        let shown = path.display();
        let problem = dir_problem(owner, mode, uid);
        let what = match problem {
            Some(DirProblem::NotOwned) => "it is owned by another user",
            Some(DirProblem::Writable) => "it is writable by its group or others",
            Some(DirProblem::NotOwnedAndWritable) => {
                "it is owned by another user and writable by its group or others"
            }
            None => "it changed while being checked",
        };
        write!(
            f,
            "refusing to use {shown}: {what} (owner uid {owner}, mode {mode:04o}; this user is \
             uid {uid}), so others could replace the files Revka keeps there. Fix: "
        )?;
        match problem {
            Some(DirProblem::Writable) => write!(f, "`chmod 700 '{shown}'`"),
            _ => write!(
                f,
                "`sudo chown {uid} '{shown}' && chmod 700 '{shown}'`, or point REVKA_HOME at a \
                 directory of your own"
            ),
        }
    }
}

/// This process's effective uid: whose files and directories Revka trusts.
pub fn current_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Checks that `dir` is a directory owned by this user that its group and others cannot
/// write ([`dir_problem`]). A link to such a directory is fine: the rule applies to where it
/// leads.
pub fn check_private_dir(dir: &Path) -> Result<(), FsError> {
    let meta = std::fs::metadata(dir).map_err(|e| FsError::io("inspect", dir, e))?;
    if !meta.is_dir() {
        return Err(FsError::Untrusted {
            path: dir.to_owned(),
            why: "not a directory".to_owned(),
        });
    }
    let (owner, mode, uid) = (meta.uid(), meta.mode() & 0o7777, current_uid());
    match dir_problem(owner, mode, uid) {
        None => Ok(()),
        Some(_) => Err(FsError::UnsafeDir {
            path: dir.to_owned(),
            owner,
            mode,
            uid,
        }),
    }
}

/// Creates `dir` and its missing parents with mode 0700 (the umask can only narrow it), then
/// [`check_private_dir`]s it.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
        .map_err(|e| FsError::io("create", dir, e))?;
    check_private_dir(dir)
}

/// Creates the fresh directory `parent/name` (0700; it must not exist yet), `parent` first
/// with [`ensure_private_dir`]: the per-item directories of the daemon (a terminal's, a CLI
/// agent's) in a private directory of the home.
pub fn create_private_subdir(parent: &Path, name: &str) -> Result<PathBuf, FsError> {
    ensure_private_dir(parent)?;
    let dir = parent.join(name);
    DirBuilder::new()
        .mode(PRIVATE_DIR)
        .create(&dir)
        .map_err(|e| FsError::io("create", &dir, e))?;
    Ok(dir)
}

/// Replaces `path` with `contents`, atomically, with `mode` (see the module documentation).
/// The directory must exist. On an error `path` is unchanged and no temporary file is left.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    write_atomic_with(path, mode, |file| file.write_all(contents))
}

/// [`write_atomic`] with the contents written by `write` (e.g. a stream of records), whose
/// value is returned once the file is in place.
pub fn write_atomic_with<T>(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> Result<T, FsError> {
    let tmp = temp_path(path)?;
    let mut file = create_new(&tmp, mode).map_err(|e| FsError::io("create", &tmp, e))?;
    let written = write(&mut file)
        .map_err(|e| FsError::io("write", &tmp, e))
        .and_then(|value| {
            file.sync_all().map_err(|e| FsError::io("sync", &tmp, e))?;
            drop(file);
            std::fs::rename(&tmp, path).map_err(|e| FsError::io("replace", path, e))?;
            Ok(value)
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let value = written?;
    sync_dir(parent(path))?;
    Ok(value)
}

/// Opens the file at `path` in place with `options` (read, append, create, ...; never
/// `truncate`), refusing a symbolic link there ([`FsError::Symlink`]) and anything but a
/// regular file of this user's without other hard links ([`FsError::Untrusted`]). A file it creates
/// gets `mode`; an existing one wider than `mode` is narrowed to it. Opening never blocks (a
/// FIFO planted there is refused, not waited on).
pub fn open_in_place(path: &Path, options: &OpenOptions, mode: u32) -> Result<File, FsError> {
    let mut options = options.clone();
    options.mode(mode);
    let file = open_checked(path, &options)?;
    let meta = file
        .metadata()
        .map_err(|e| FsError::io("inspect", path, e))?;
    if meta.mode() & 0o777 & !mode != 0 {
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| FsError::io("chmod", path, e))?;
    }
    Ok(file)
}

/// Reads a whole file Revka wrote (a token store, a token), with the checks of
/// [`open_in_place`] and without changing anything: a link planted at `path` is refused, not
/// read through, so nobody can substitute a file of their choosing.
pub fn read_in_place(path: &Path) -> Result<Vec<u8>, FsError> {
    let mut file = open_checked(path, OpenOptions::new().read(true))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| FsError::io("read", path, e))?;
    Ok(bytes)
}

/// Opens `path` with `options` plus `O_NOFOLLOW | O_NONBLOCK`, then checks that it is a regular
/// file of this user's without other hard links.
fn open_checked(path: &Path, options: &OpenOptions) -> Result<File, FsError> {
    let mut options = options.clone();
    options.custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits());
    let file = options.open(path).map_err(|e| {
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && e.kind() != io::ErrorKind::AlreadyExists {
            FsError::Symlink {
                path: path.to_owned(),
            }
        } else {
            FsError::io("open", path, e)
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| FsError::io("inspect", path, e))?;
    let untrusted = |why: String| FsError::Untrusted {
        path: path.to_owned(),
        why,
    };
    if !meta.is_file() {
        return Err(untrusted("not a regular file".to_owned()));
    }
    // Zero links is a file replaced since it was opened (a reader's old version): harmless.
    if meta.nlink() > 1 {
        return Err(untrusted(format!("{} hard links", meta.nlink())));
    }
    let uid = current_uid();
    if meta.uid() != uid {
        return Err(untrusted(format!(
            "owned by uid {}, not by this user (uid {uid})",
            meta.uid()
        )));
    }
    Ok(file)
}

/// Syncs a directory, so renames and creations in it survive a crash. File systems that
/// cannot sync a directory (`EINVAL`) are let be: the entries are already visible.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    let synced = File::open(dir).and_then(|d| d.sync_all());
    match synced {
        Err(e) if e.kind() != io::ErrorKind::InvalidInput => Err(FsError::io("sync", dir, e)),
        _ => Ok(()),
    }
}

/// The directory of `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A fresh temporary name next to `path`: `.<name>.<pid>.<random>.tmp`. Random, so another
/// writer (or a planted file) cannot make [`create_new`] fail but by chance.
fn temp_path(path: &Path) -> Result<PathBuf, FsError> {
    let name = path.file_name().ok_or_else(|| {
        FsError::io(
            "write",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
        )
    })?;
    let tmp = format!(
        ".{}.{}.{:016x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        fastrand::u64(..)
    );
    Ok(path.with_file_name(tmp))
}

/// Creates `tmp`, which must not exist (`O_EXCL`: not even as a link), with exactly `mode`.
fn create_new(tmp: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(tmp)?;
    // The umask may have narrowed the mode (or, for 0644 files, not): set it exactly.
    file.set_permissions(Permissions::from_mode(mode))?;
    Ok(file)
}

/// What [`replay_jsonl`] read from a JSON-lines journal.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Records read and applied.
    pub records: u64,
    /// Corrupt records skipped (a whole line that does not parse).
    pub skipped: u64,
    /// Whether a torn last record (a crash mid-write) was cut off.
    pub torn: bool,
    /// The journal's length after the replay (a torn tail cut, a lost last newline restored).
    pub bytes: u64,
}

/// Replays the JSON-lines journal `file` (opened for reading and appending; `path` and `what`
/// name it in warnings): each record that parses goes to `apply`; a corrupt line is skipped; a
/// torn last line (no newline, does not parse: a crash mid-write) is cut off the file; a whole
/// last record that lost only its newline gets it back. Shared by the retry queue's journal and
/// the scheduler's.
pub fn replay_jsonl<R: serde::de::DeserializeOwned>(
    file: &File,
    path: &Path,
    what: &str,
    mut apply: impl FnMut(R),
) -> io::Result<Replayed> {
    use std::io::BufRead;
    let mut report = Replayed::default();
    let mut reader = io::BufReader::new(file);
    let mut line = Vec::new();
    let mut lineno = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let complete = line.last() == Some(&b'\n');
        let text = line.trim_ascii();
        if text.is_empty() {
            report.bytes += n as u64;
            continue;
        }
        match serde_json::from_slice::<R>(text) {
            Ok(record) => {
                apply(record);
                report.records += 1;
                if !complete {
                    // Only the newline was lost: the record itself is whole.
                    let mut writer = file;
                    writer.write_all(b"\n")?;
                }
                report.bytes += n as u64 + u64::from(!complete);
            }
            Err(e) if !complete => {
                tracing::warn!(path = %path.display(), line = lineno, error = %e, "{what}: ignoring a torn last record (a crash mid-write)");
                report.torn = true;
                file.set_len(report.bytes)?;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), line = lineno, error = %e, "{what}: skipping a corrupt record");
                report.skipped += 1;
                report.bytes += n as u64;
            }
        }
    }
    Ok(report)
}
