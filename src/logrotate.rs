//! Size rotation of the daemon's own stdout and stderr when they are the launchd agent's log
//! files.
//!
//! launchd opens the plist's `StandardOutPath` and `StandardErrorPath` once, when it starts the
//! job, and never rotates them. `newsyslog` could move them aside, but its configuration lives
//! in the root-owned `/etc/newsyslog.d`, and a moved file is still the one launchd's
//! descriptors write to: without the writer reopening it, rotation frees nothing. So the
//! daemon rotates its own. [`spawn`] (called by [`crate::daemon::run`]) looks at descriptors 1
//! and 2: each that is the regular file `$REVKA_HOME/logs/revka.out.log` or `revka.err.log`
//! (the paths `revka service install` writes into the plist) is checked every
//! [`CHECK_EVERY`]; past [`ROTATE_BYTES`] it becomes `revka.err.log.1` (older ones shift up to
//! `.`[`KEEP`], the oldest is dropped), a fresh file (0600) takes its name, and the descriptor
//! is pointed at it with `dup2`. A line is written either before the swap (into `.1`) or after
//! it (into the new file), never lost or split. Under systemd (the journal) or a terminal,
//! nothing is rotated.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

/// Size past which a log file is rotated.
pub const ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept (`.1` … `.KEEP`).
pub const KEEP: u32 = 5;
/// How often the sizes are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// The launchd agent's log files in `home` (`StandardOutPath`, `StandardErrorPath`).
pub fn log_files(home: &Path) -> [PathBuf; 2] {
    let logs = home.join("logs");
    [logs.join("revka.out.log"), logs.join("revka.err.log")]
}

/// Which descriptor a rotated log is written through.
#[derive(Debug)]
enum Target {
    /// Descriptor 1.
    Stdout,
    /// Descriptor 2.
    Stderr,
    /// Any other descriptor (tests, which must not touch their own stdout).
    #[cfg(test)]
    Owned(std::os::fd::OwnedFd),
}

impl Target {
    /// Points the descriptor at `file`.
    fn redirect(&mut self, file: &File) -> io::Result<()> {
        match self {
            Self::Stdout => nix::unistd::dup2_stdout(file)?,
            Self::Stderr => nix::unistd::dup2_stderr(file)?,
            #[cfg(test)]
            Self::Owned(fd) => nix::unistd::dup2(file, fd)?,
        }
        Ok(())
    }

    /// Whether the descriptor currently writes to the file at `path` (same device and inode).
    fn writes_to(&self, path: &Path) -> bool {
        let stat = match self {
            Self::Stdout => nix::sys::stat::fstat(io::stdout().as_fd()),
            Self::Stderr => nix::sys::stat::fstat(io::stderr().as_fd()),
            #[cfg(test)]
            Self::Owned(fd) => nix::sys::stat::fstat(fd.as_fd()),
        };
        let (Ok(stat), Ok(meta)) = (stat, std::fs::metadata(path)) else {
            return false;
        };
        // `st_dev` is an `i32` on macOS.
        #[allow(clippy::unnecessary_cast)]
        let same = stat.st_dev as u64 == meta.dev() && stat.st_ino as u64 == meta.ino();
        meta.is_file() && same
    }
}

/// One log file the daemon writes through a descriptor, rotated by size.
#[derive(Debug)]
struct RotatedLog {
    path: PathBuf,
    target: Target,
}

impl RotatedLog {
    /// Rotates the file if it is larger than `limit`; returns whether it did.
    fn rotate_if_larger(&mut self, limit: u64) -> io::Result<bool> {
        let size = std::fs::metadata(&self.path).map(|m| m.len())?;
        if size <= limit {
            return Ok(false);
        }
        crate::runlog::shift_numbered(&self.path, KEEP)?;
        let fresh = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.target.redirect(&fresh)?;
        Ok(true)
    }
}

/// Starts rotating whichever of stdout and stderr is one of `home`'s launchd log files; `None`
/// when neither is (under systemd, on a terminal).
pub fn spawn(home: &Path) -> Option<JoinHandle<()>> {
    let [out, err] = log_files(home);
    let mut logs = Vec::new();
    for target in [Target::Stdout, Target::Stderr] {
        if let Some(path) = [&out, &err].into_iter().find(|p| target.writes_to(p)) {
            logs.push(RotatedLog {
                path: path.clone(),
                target,
            });
        }
    }
    if logs.is_empty() {
        return None;
    }
    let paths: Vec<String> = logs.iter().map(|l| l.path.display().to_string()).collect();
    tracing::info!(files = ?paths, rotate_bytes = ROTATE_BYTES, keep = KEEP, "rotating the daemon's log files by size");
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(CHECK_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            rotate_all(&mut logs, ROTATE_BYTES);
        }
    }))
}

/// One round of checks. Two descriptors on one file rotate it once (the second finds it fresh
/// and only follows it).
fn rotate_all(logs: &mut [RotatedLog], limit: u64) {
    let mut rotated: Option<(PathBuf, File)> = None;
    for log in logs.iter_mut() {
        if let Some((path, file)) = &rotated
            && *path == log.path
        {
            if let Err(e) = log.target.redirect(file) {
                tracing::warn!(path = %log.path.display(), error = %e, "cannot follow the rotated log file");
            }
            continue;
        }
        match log.rotate_if_larger(limit) {
            Ok(true) => {
                tracing::info!(path = %log.path.display(), "log file rotated");
                if let Ok(file) = OpenOptions::new().append(true).open(&log.path) {
                    rotated = Some((log.path.clone(), file));
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(path = %log.path.display(), error = %e, "cannot rotate the log file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::OwnedFd;

    use super::*;

    /// A log file written through a descriptor of our own, as launchd's would be.
    fn opened(path: &Path) -> RotatedLog {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        RotatedLog {
            path: path.to_owned(),
            target: Target::Owned(OwnedFd::from(file)),
        }
    }

    fn write(log: &RotatedLog, text: &str) {
        let Target::Owned(fd) = &log.target else {
            unreachable!()
        };
        let mut file = File::from(fd.try_clone().unwrap());
        file.write_all(text.as_bytes()).unwrap();
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn rotates_past_the_limit_and_the_descriptor_follows_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let [_, err] = log_files(dir.path());
        std::fs::create_dir_all(err.parent().unwrap()).unwrap();
        let mut log = opened(&err);
        assert!(log.target.writes_to(&err));

        write(&log, "first\n");
        assert!(!log.rotate_if_larger(100).unwrap(), "small: left alone");
        write(&log, &"x".repeat(100));
        write(&log, "\n");
        assert!(log.rotate_if_larger(100).unwrap());
        write(&log, "after\n");

        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", err.display()));
        assert!(read(numbered(1)).starts_with("first\nxxx"));
        assert_eq!(read(err.clone()), "after\n", "new lines go to a fresh file");
        assert!(log.target.writes_to(&err));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&err).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Older files shift up; only KEEP are kept.
        for round in 0..KEEP + 2 {
            write(&log, &format!("round {round} {}\n", "y".repeat(100)));
            assert!(log.rotate_if_larger(100).unwrap());
        }
        assert!(read(numbered(1)).starts_with(&format!("round {}", KEEP + 1)));
        assert!(read(numbered(KEEP)).starts_with("round 2"));
        assert!(!numbered(KEEP + 1).exists());
    }

    #[test]
    fn two_descriptors_on_one_file_rotate_it_once_and_both_follow() {
        let dir = tempfile::tempdir().unwrap();
        let [out, _] = log_files(dir.path());
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let mut logs = [opened(&out), opened(&out)];
        write(&logs[0], &"o".repeat(200));
        write(&logs[1], "\n");
        rotate_all(&mut logs, 100);
        let numbered = PathBuf::from(format!("{}.1", out.display()));
        assert!(numbered.exists());
        assert!(
            !PathBuf::from(format!("{}.2", out.display())).exists(),
            "rotated once"
        );
        write(&logs[0], "out\n");
        write(&logs[1], "err\n");
        assert_eq!(read(out.clone()), "out\nerr\n");
        assert!(logs.iter().all(|l| l.target.writes_to(&out)));
    }

    #[test]
    fn the_test_process_streams_are_not_log_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(spawn(dir.path()).is_none());
    }
}
