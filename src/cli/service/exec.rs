//! External commands of `revka service` (`systemctl`, `journalctl`, `launchctl`, `tail`)
//! behind the [`Runner`] trait, so tests record them instead of running them.
//!
//! Part of `revka service`. [`SystemRunner`] runs them with [`std::process::Command`]: the
//! commands the user asked for with stdio passed through, probes silently with their output
//! captured.

use std::fmt;
use std::io;
use std::process::{Command, Stdio};

/// One external command: a program and its arguments (no shell involved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The program, looked up in `PATH`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Cmd {
    /// `program` with `args`.
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// The command line as a shell would take it (words quoted only when needed).
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_word(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", shell_word(arg))?;
        }
        Ok(())
    }
}

/// `word` single-quoted for a POSIX shell unless it is made of safe characters only.
fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@=%".contains(c));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What a silent probe printed, and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard error, then standard output, as text.
    pub output: String,
}

impl Captured {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs external commands.
pub trait Runner {
    /// Runs `cmd` with stdin, stdout and stderr passed through and waits for it. Returns its
    /// exit code (`None` when killed by a signal); an error when it cannot be started
    /// ([`io::ErrorKind::NotFound`] when the program does not exist).
    fn run(&mut self, cmd: &Cmd) -> io::Result<Option<i32>>;

    /// Runs `cmd` silently (no stdin, output captured) and waits for it.
    fn capture(&mut self, cmd: &Cmd) -> io::Result<Captured>;
}

/// Runs commands for real with [`std::process::Command`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&mut self, cmd: &Cmd) -> io::Result<Option<i32>> {
        let status = Command::new(&cmd.program).args(&cmd.args).status()?;
        Ok(status.code())
    }

    fn capture(&mut self, cmd: &Cmd) -> io::Result<Captured> {
        let output = Command::new(&cmd.program)
            .args(&cmd.args)
            .stdin(Stdio::null())
            .output()?;
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        Ok(Captured {
            code: output.status.code(),
            output: text,
        })
    }
}
