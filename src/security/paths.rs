//! Path rules of the security policy: workspace containment (`workspace_only`) and
//! `forbidden_paths`, checked on canonical paths, and opening the checked path without
//! following a link swapped in after the check.
//!
//! Part of [`crate::security::Policy`] (`policy.paths`), used by every built-in tool that
//! takes a path: the file tools (`src/tools/builtin/files.rs`) and the exec group (a command's
//! cwd and its path-like arguments). Two steps:
//!
//! 1. [`PathRules::resolve`] turns the caller's string into a canonical absolute path (every
//!    symlink of the existing part resolved, `.`/`..` applied, `~` expanded to the daemon
//!    user's home) and refuses it with a rule name:
//!    - `path`: empty, a NUL byte, longer than [`MAX_PATH_BYTES`], a symlink loop, or (for a
//!      write) a path whose last component is a symlink, even one leading inside: writes
//!      never go through a link;
//!    - `workspace_only`: outside the workspace (the session's cwd) after resolution, whether
//!      it got there by `..`, an absolute path, `~`, or a symlink (to a file or a parent
//!      directory). Percent-encoded forms are **not** decoded: `%2e%2e%2f` is a file name
//!      like any other, which stays inside the workspace;
//!    - `forbidden_paths`: inside a forbidden path, also when that is inside the workspace.
//!      `$REVKA_HOME` is always forbidden, so a session whose workspace is under
//!      `$REVKA_HOME` can touch no path at all (the daemon's tokens, config and logs live
//!      there: start such sessions elsewhere).
//!
//!    `workspace_only = false` lifts containment, never the forbidden paths.
//! 2. [`PathRules::open_read`], [`PathRules::open_dir`] and [`PathRules::write_atomic`] open
//!    the checked path component by component from `/` with `O_NOFOLLOW` (`openat`), so a
//!    symlink swapped in anywhere along it between the check and the use is refused, not
//!    followed. A regular file with more than one hard link is refused for reads and writes:
//!    the other name may be outside the workspace or forbidden, and nothing on the path tells
//!    (rule `workspace_only`, or `forbidden_paths` when containment is lifted). Writes go to a
//!    temporary file in the same directory renamed over the target, so the target is never
//!    written through (a symlink planted at the target is replaced, not followed).
//!
//! Walkers (`glob_search`, `content_search`) prune what [`PathRules::is_forbidden`] names and
//! read files through [`PathRules::open_read`].

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::Refusal;
use crate::config::SecurityConfig;

/// The longest path string accepted.
pub const MAX_PATH_BYTES: usize = 4096;

/// Symlinks followed while resolving one path before it counts as a loop.
const MAX_LINKS: usize = 40;

/// What a caller means to do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read a file.
    Read,
    /// Create or replace a file (missing parents are created inside the workspace).
    Write,
    /// List or walk a directory (or use it as a working directory).
    List,
}

/// Why a checked path could not be used: a refusal, or the file system's error.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The policy refused it (a symlink or a hard link met at use time).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The file system failed (`path` is the absolute path).
    #[error("{}: {source}", path.display())]
    Io {
        /// The path it failed on.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl PathError {
    fn io(path: &Path, source: impl Into<io::Error>) -> Self {
        Self::Io {
            path: path.to_owned(),
            source: source.into(),
        }
    }
}

/// One segment of a forbidden path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Exactly this name.
    Literal(OsString),
    /// A name matching this pattern, where `*` matches any run of characters (not `/`).
    Wild(Vec<u8>),
}

impl Segment {
    fn matches(&self, name: &OsStr) -> bool {
        match self {
            Self::Literal(lit) => lit == name,
            Self::Wild(pattern) => wildcard(pattern, name.as_bytes()),
        }
    }
}

/// `*`-only wildcard match of a whole name.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A compiled forbidden path: its segments from `/`, and how it was written.
#[derive(Debug, Clone)]
struct Forbidden {
    segments: Vec<Segment>,
    shown: String,
}

impl Forbidden {
    /// Whether `path` (absolute) is this path or inside it.
    fn contains(&self, path: &Path) -> bool {
        let mut names = path.components().filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        });
        self.segments
            .iter()
            .all(|seg| names.next().is_some_and(|name| seg.matches(name)))
    }
}

/// Compiled path rules (no `Default`: rules that forbid nothing must not be built by accident).
#[derive(Debug)]
pub struct PathRules {
    workspace_only: bool,
    forbidden: Vec<Forbidden>,
    /// The daemon user's home, for `~`.
    user_home: Option<PathBuf>,
}

/// The daemon user's home directory: `$HOME`, else the password database's.
fn user_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
}

impl PathRules {
    /// Compiles the rules of `config`, with `home` as `$REVKA_HOME`. `Err` names a forbidden
    /// path that cannot be used (not absolute, nor under `~` or `$REVKA_HOME`).
    pub fn new(config: &SecurityConfig, home: &Path) -> Result<Self, String> {
        Self::with_user_home(config, home, user_home())
    }

    fn with_user_home(
        config: &SecurityConfig,
        home: &Path,
        user_home: Option<PathBuf>,
    ) -> Result<Self, String> {
        let mut rules = Self {
            workspace_only: config.workspace_only,
            forbidden: Vec::new(),
            user_home,
        };
        let mut patterns: Vec<&str> = config.forbidden_paths.iter().map(String::as_str).collect();
        patterns.push("$REVKA_HOME");
        for raw in patterns {
            let expanded = if let Some(rest) = strip_var(raw, "$REVKA_HOME") {
                home.join(rest)
            } else if let Some(rest) = strip_var(raw, "~") {
                match &rules.user_home {
                    Some(h) => h.join(rest),
                    // No home directory: nothing can be under it.
                    None => continue,
                }
            } else if raw.starts_with('/') {
                PathBuf::from(raw)
            } else {
                return Err(format!(
                    "[security] forbidden_paths: {raw:?} is not absolute (write /…, ~/… or \
                     $REVKA_HOME/…)"
                ));
            };
            rules.add_forbidden(&expanded, raw);
        }
        Ok(rules)
    }

    /// Adds `path` and, where its literal prefix exists, its canonical form.
    fn add_forbidden(&mut self, path: &Path, shown: &str) {
        let segments: Vec<Segment> = lexical(path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) if name.as_bytes().contains(&b'*') => {
                    Some(Segment::Wild(name.as_bytes().to_vec()))
                }
                Component::Normal(name) => Some(Segment::Literal(name.to_owned())),
                _ => None,
            })
            .collect();
        let literal_len = segments
            .iter()
            .position(|s| matches!(s, Segment::Wild(_)))
            .unwrap_or(segments.len());
        let prefix: PathBuf = std::iter::once(OsStr::new("/"))
            .chain(segments[..literal_len].iter().filter_map(|s| match s {
                Segment::Literal(name) => Some(name.as_os_str()),
                Segment::Wild(_) => None,
            }))
            .collect();
        self.forbidden.push(Forbidden {
            segments: segments.clone(),
            shown: shown.to_owned(),
        });
        if let Ok(canonical) = std::fs::canonicalize(&prefix)
            && canonical != prefix
        {
            let mut canonical_segments: Vec<Segment> = canonical
                .components()
                .filter_map(|c| match c {
                    Component::Normal(name) => Some(Segment::Literal(name.to_owned())),
                    _ => None,
                })
                .collect();
            canonical_segments.extend(segments[literal_len..].iter().cloned());
            self.forbidden.push(Forbidden {
                segments: canonical_segments,
                shown: shown.to_owned(),
            });
        }
    }

    /// Whether containment in the workspace is enforced.
    pub fn workspace_only(&self) -> bool {
        self.workspace_only
    }

    /// The rule that refuses what would leave the workspace unseen (a hard link, a symlink
    /// swapped in): `workspace_only`, or `forbidden_paths` when containment is lifted.
    fn containment_rule(&self) -> &'static str {
        if self.workspace_only {
            "workspace_only"
        } else {
            "forbidden_paths"
        }
    }

    /// The forbidden path (as configured) that `path` (absolute, canonical) is inside.
    pub fn forbidden_by(&self, path: &Path) -> Option<&str> {
        self.forbidden
            .iter()
            .find(|f| f.contains(path))
            .map(|f| f.shown.as_str())
    }

    /// Whether `path` (absolute, canonical) is inside a forbidden path.
    pub fn is_forbidden(&self, path: &Path) -> bool {
        self.forbidden_by(path).is_some()
    }

    /// Resolves `raw` (relative to `workspace`, absolute, or `~/…`) to a canonical absolute
    /// path and checks it: see the module doc for the rules. `workspace` must be canonical.
    /// The path need not exist; its existing part is resolved, the rest taken as written.
    pub fn resolve(&self, workspace: &Path, raw: &str, access: Access) -> Result<PathBuf, Refusal> {
        if raw.is_empty() {
            return Err(Refusal::new("path", "the path is empty"));
        }
        if raw.contains('\0') {
            return Err(Refusal::new("path", "the path contains a NUL byte"));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(Refusal::new(
                "path",
                format!(
                    "the path is {} bytes long, over the limit of {MAX_PATH_BYTES}",
                    raw.len()
                ),
            ));
        }
        let expanded = if raw == "~" || raw.starts_with("~/") {
            match &self.user_home {
                Some(home) => home.join(raw[1..].trim_start_matches('/')),
                None => {
                    return Err(Refusal::new(
                        "path",
                        "`~` has no meaning here: the daemon user has no home directory",
                    ));
                }
            }
        } else {
            workspace.join(raw)
        };
        let resolved = canonical(&expanded)?;
        self.check(workspace, &resolved, access, raw)?;
        // A repository's own files run programs: `.git/config` (`core.fsmonitor`, `diff.external`,
        // filters, aliases) and `.git/hooks/*` run at the next git command, the user's too.
        if access == Access::Write && resolved.components().any(|c| c.as_os_str() == ".git") {
            return Err(Refusal::new(
                "git_dir",
                format!(
                    "`{raw}` is inside a repository's .git directory, whose config and hooks run                      programs: file tools do not write there (use git_operations)"
                ),
            ));
        }
        if access == Access::Write
            && std::fs::symlink_metadata(&expanded).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(Refusal::new(
                "path",
                format!(
                    "`{raw}` is a symbolic link (to {}); file tools do not write through links: \
                     write to the target itself",
                    display(workspace, &resolved)
                ),
            ));
        }
        Ok(resolved)
    }

    /// Checks an already canonical absolute `path` (a walker's entry, a resolved path):
    /// containment, then the forbidden paths. `shown` is how the caller wrote it.
    pub fn check(
        &self,
        workspace: &Path,
        path: &Path,
        access: Access,
        shown: &str,
    ) -> Result<(), Refusal> {
        if self.workspace_only && !path.starts_with(workspace) {
            return Err(Refusal::new(
                "workspace_only",
                format!(
                    "`{shown}` resolves to {}, outside the workspace {} (symlinks, `..`, `~` \
                     and absolute paths are resolved before the check)",
                    path.display(),
                    workspace.display()
                ),
            ));
        }
        if let Some(pattern) = self.forbidden_by(path) {
            let what = match access {
                Access::Read => "read",
                Access::Write => "written",
                Access::List => "listed",
            };
            let message = if pattern == "$REVKA_HOME" {
                format!(
                    "`{shown}` is inside $REVKA_HOME, the daemon's own directory (tokens, \
                     config, logs), which no built-in tool reads, writes or lists"
                )
            } else {
                format!("`{shown}` is inside the forbidden path {pattern} and cannot be {what}")
            };
            return Err(Refusal::new("forbidden_paths", message));
        }
        Ok(())
    }

    /// Opens the checked file `path` for reading without following any symlink on the way:
    /// a symlink met (swapped in after the check) or a file with several hard links is
    /// refused; a directory or a special file is an I/O error (`InvalidInput`).
    pub fn open_read(&self, path: &Path) -> Result<File, PathError> {
        let (parent, name) = split(path)?;
        let dir = self.walk(parent, None)?;
        let fd = openat_nofollow(
            &dir,
            path,
            name,
            OFlags::RDONLY | OFlags::NONBLOCK,
            self.containment_rule(),
        )?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| PathError::io(path, e))?;
        if meta.is_dir() {
            return Err(PathError::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "is a directory, not a file"),
            ));
        }
        if !meta.is_file() {
            return Err(PathError::io(
                path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is not a regular file (a device, socket or pipe)",
                ),
            ));
        }
        self.check_links(path, meta.nlink())?;
        Ok(file)
    }

    /// Opens the checked directory `path` without following any symlink on the way.
    pub fn open_dir(&self, path: &Path) -> Result<File, PathError> {
        Ok(File::from(self.walk(path, None)?))
    }

    /// Replaces (or creates) the checked file `path` with `contents`, atomically: a temporary
    /// file in the same directory, renamed over the target. Missing parent directories are
    /// created when they are inside `workspace`. An existing target keeps its permission
    /// bits; a symlink or a file with several hard links there is refused. Answers whether
    /// the file was created.
    pub fn write_atomic(
        &self,
        workspace: &Path,
        path: &Path,
        contents: &[u8],
    ) -> Result<bool, PathError> {
        let (parent, name) = split(path)?;
        let dir = self.walk(parent, Some(workspace))?;
        let mut keep_mode = None;
        match rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let meta = File::from(fd)
                    .metadata()
                    .map_err(|e| PathError::io(path, e))?;
                if !meta.is_file() {
                    return Err(PathError::io(
                        path,
                        io::Error::new(io::ErrorKind::InvalidInput, "exists and is not a file"),
                    ));
                }
                self.check_links(path, meta.nlink())?;
                keep_mode = Some(meta.permissions().mode() & 0o7777);
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(self.nofollow_error(&dir, path, name, e)),
        }
        let tmp_name = format!(
            ".{}.revka-tmp-{:016x}",
            name.to_string_lossy().chars().take(64).collect::<String>(),
            fastrand::u64(..)
        );
        let tmp = rustix::fs::openat(
            &dir,
            tmp_name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            // A new file gets 0666 less the umask, as with any program; an existing file's
            // bits are set below.
            Mode::RUSR | Mode::WUSR | Mode::RGRP | Mode::WGRP | Mode::ROTH | Mode::WOTH,
        )
        .map_err(|e| PathError::io(&parent.join(&tmp_name), e))?;
        let mut file = File::from(tmp);
        let written = (|| {
            file.write_all(contents)?;
            if let Some(mode) = keep_mode {
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            file.sync_all()?;
            rustix::fs::renameat(&dir, tmp_name.as_str(), &dir, name)?;
            Ok::<(), io::Error>(())
        })();
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&dir, tmp_name.as_str(), AtFlags::empty());
            return Err(PathError::io(path, e));
        }
        let _ = rustix::fs::fsync(&dir);
        Ok(keep_mode.is_none())
    }

    fn check_links(&self, path: &Path, nlink: u64) -> Result<(), Refusal> {
        if nlink > 1 {
            return Err(Refusal::new(
                self.containment_rule(),
                format!(
                    "{} has {nlink} hard links: another name of the same file may be outside \
                     the workspace or in a forbidden path, so built-in tools neither read nor \
                     write files with more than one link",
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    /// Opens the directory `path` (absolute, canonical) from `/`, one component at a time
    /// with `O_NOFOLLOW`. With `create_in`, missing components inside that directory are
    /// created.
    fn walk(&self, path: &Path, create_in: Option<&Path>) -> Result<OwnedFd, PathError> {
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut dir = rustix::fs::openat(rustix::fs::CWD, "/", dir_flags, Mode::empty())
            .map_err(|e| PathError::io(Path::new("/"), e))?;
        let mut at = PathBuf::from("/");
        for component in path.components() {
            let name = match component {
                Component::RootDir => continue,
                Component::Normal(name) => name,
                _ => {
                    return Err(PathError::io(
                        path,
                        io::Error::new(io::ErrorKind::InvalidInput, "the path is not canonical"),
                    ));
                }
            };
            at.push(name);
            let rule = self.containment_rule();
            let next = match openat_nofollow(&dir, &at, name, dir_flags, rule) {
                Err(PathError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound
                        && create_in.is_some_and(|ws| at.starts_with(ws)) =>
                {
                    match rustix::fs::mkdirat(&dir, name, Mode::RWXU | Mode::RWXG | Mode::RWXO) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(PathError::io(&at, e)),
                    }
                    openat_nofollow(&dir, &at, name, dir_flags, rule)?
                }
                other => other?,
            };
            dir = next;
        }
        Ok(dir)
    }

    /// The error of an `O_NOFOLLOW` open of `name` in `dir` that failed with `e`.
    fn nofollow_error(&self, dir: &OwnedFd, path: &Path, name: &OsStr, e: Errno) -> PathError {
        nofollow_error(dir, path, name, e, self.containment_rule())
    }
}

/// Opens `name` in `dir` with `flags | O_NOFOLLOW | O_CLOEXEC`; a symlink there is refused by
/// `rule`.
fn openat_nofollow(
    dir: &OwnedFd,
    path: &Path,
    name: &OsStr,
    flags: OFlags,
    rule: &'static str,
) -> Result<OwnedFd, PathError> {
    rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| nofollow_error(dir, path, name, e, rule))
}

fn nofollow_error(
    dir: &OwnedFd,
    path: &Path,
    name: &OsStr,
    e: Errno,
    rule: &'static str,
) -> PathError {
    if matches!(e, Errno::LOOP | Errno::NOTDIR | Errno::MLINK)
        && rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink())
    {
        return PathError::Refused(Refusal::new(
            rule,
            format!(
                "{} is a symbolic link at the time of use (it was not when the path was \
                 checked); it is not followed",
                path.display()
            ),
        ));
    }
    PathError::io(path, e)
}

/// `path`'s parent and file name; the root has none.
fn split(path: &Path) -> Result<(&Path, &OsStr), PathError> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(PathError::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "is a directory, not a file"),
        )),
    }
}

/// If `raw` is `var` or starts with `var/`, the rest after the separator.
fn strip_var<'a>(raw: &'a str, var: &str) -> Option<&'a str> {
    let rest = raw.strip_prefix(var)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/').map(|r| r.trim_start_matches('/'))
    }
}

/// `path` with `.` and `..` applied lexically (for patterns, which are not resolved).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            _ => {}
        }
    }
    out
}

/// The canonical form of the absolute `path`: each existing component's symlinks resolved,
/// `.`/`..` applied; the part past the first missing component is taken as written.
fn canonical(path: &Path) -> Result<PathBuf, Refusal> {
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut out = PathBuf::from("/");
    // How many trailing components of `out` do not exist.
    let mut missing = 0usize;
    let mut links = 0usize;
    while let Some(name) = pending.pop() {
        if name == ".." {
            out.pop();
            missing = missing.saturating_sub(1);
            continue;
        }
        let candidate = out.join(&name);
        if missing > 0 {
            out = candidate;
            missing += 1;
            continue;
        }
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Refusal::new(
                        "path",
                        format!(
                            "more than {MAX_LINKS} symbolic links on the way to {} (a loop?)",
                            path.display()
                        ),
                    ));
                }
                let target = std::fs::read_link(&candidate).map_err(|e| {
                    Refusal::new(
                        "path",
                        format!("cannot read the link {}: {e}", candidate.display()),
                    )
                })?;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                push_components(&mut pending, &target);
            }
            Ok(_) => out = candidate,
            Err(_) => {
                out = candidate;
                missing = 1;
            }
        }
    }
    Ok(out)
}

/// Pushes `path`'s components onto `stack` so that popping yields them in order (`.` dropped,
/// `..` kept as a name to apply in turn).
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    stack.extend(names.into_iter().rev());
}

/// How `path` is shown to a caller: relative to `workspace` when inside it (`.` for the
/// workspace itself), else absolute.
pub fn display(workspace: &Path, path: &Path) -> String {
    match path.strip_prefix(workspace) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests;
