//! A pseudo-terminal and the process that runs on it, for one `root/terminals/term:<id>`.
//!
//! [`Pty::open`] makes the pair with `posix_openpt` (`O_CLOEXEC | O_NOCTTY`, so no other
//! child the daemon spawns meanwhile inherits either end), sets its size (`TIOCSWINSZ`) and
//! makes the master non-blocking for tokio's [`AsyncFd`]: reads and writes wait on readiness,
//! never on a runtime thread. [`spawn`] starts the command with the slave as stdin, stdout and
//! stderr; in the child, before `exec`, it calls `setsid` (a session and process group of its
//! own, led by the child) and `TIOCSCTTY` (the slave becomes its controlling terminal, so the
//! shell's job control and `SIGHUP` on hangup work), and on Linux `PR_SET_PDEATHSIG(SIGKILL)`.
//!
//! The master reads `EIO` once every process has closed the slave: that is the end of output.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The master side of a pseudo-terminal.
#[derive(Debug)]
pub(crate) struct Pty {
    master: AsyncFd<OwnedFd>,
}

impl Pty {
    /// A new pseudo-terminal of `cols` × `rows`: the master, and the slave to hand the child.
    #[allow(unsafe_code)]
    pub(crate) fn open(cols: u16, rows: u16) -> io::Result<(Self, OwnedFd)> {
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        let name = rustix::pty::ptsname(&master, Vec::new())?;
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::termios::tcsetwinsize(&master, winsize(cols, rows))?;
        rustix::io::ioctl_fionbio(&master, true)?;
        // SAFETY: `register_with_interest` needs the descriptor to stay open and the same while
        // registered; the `OwnedFd` owns it, is never replaced, and is closed only when the
        // `AsyncFd` (which deregisters it first) is dropped.
        let master = unsafe {
            AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE)?
        };
        Ok((Self { master }, slave))
    }

    /// Reads what the terminal's processes wrote; `Ok(0)` once none holds the slave any more.
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut *buf).map_err(Into::into)) {
                Ok(Ok(n)) => return Ok(n),
                // Linux answers EIO when the last slave descriptor is closed.
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return Ok(0);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` to the terminal's input, waiting while the line discipline's
    /// buffer is full (the process is not reading).
    pub(crate) async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(Into::into)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Sets the terminal's size; the kernel sends `SIGWINCH` to its foreground process group.
    pub(crate) fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        rustix::termios::tcsetwinsize(self.master.get_ref(), winsize(cols, rows))?;
        Ok(())
    }
}

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// What to run on the terminal.
#[derive(Debug, Clone)]
pub(crate) struct Command<'a> {
    /// The program (looked up in the `PATH` of `env` when it has no slash).
    pub(crate) program: &'a str,
    /// Its arguments.
    pub(crate) args: &'a [String],
    /// Its whole environment (nothing of the daemon's is inherited beyond it).
    pub(crate) env: &'a [(String, String)],
    /// Its working directory.
    pub(crate) cwd: &'a Path,
}

/// Starts `command` on the terminal whose slave is `slave`, as the leader of a new session
/// whose controlling terminal it is. The slave is consumed: once the child has it, the daemon
/// keeps no descriptor of it, so the master reads EOF when the terminal's processes are gone.
pub(crate) fn spawn(command: &Command<'_>, slave: OwnedFd) -> io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(command.program);
    cmd.args(command.args)
        .env_clear()
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .current_dir(command.cwd)
        .stdin(std::process::Stdio::from(slave.try_clone()?))
        .stdout(std::process::Stdio::from(slave.try_clone()?))
        .stderr(std::process::Stdio::from(slave))
        .kill_on_drop(false);
    become_session_leader(&mut cmd);
    let child = cmd.spawn();
    // The command holds the slave's descriptors until it is dropped.
    drop(cmd);
    child
}

/// In the child, before `exec`: a new session, the terminal (its stdin) as its controlling
/// terminal, and on Linux SIGKILL when the daemon dies.
#[allow(unsafe_code)]
fn become_session_leader(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only makes system calls
    // that are async-signal-safe (setsid, ioctl, prctl, getppid) through rustix, which neither
    // allocates nor takes a lock; an error is returned as a raw OS error. Descriptor 0 is the
    // slave, which std has just dup2'ed onto it, and lives until exec.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setsid()?;
            let stdin = std::os::fd::BorrowedFd::borrow_raw(0);
            rustix::process::ioctl_tiocsctty(stdin.as_fd())?;
            #[cfg(target_os = "linux")]
            {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                // The daemon may have died between fork and prctl: nobody would signal us.
                if rustix::process::getppid() != Some(parent) {
                    return Err(io::Error::other("parent exited during spawn"));
                }
            }
            Ok(())
        });
    }
}
