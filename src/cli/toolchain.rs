//! The interpreters the sidecars need, as `revka install` and `revka doctor` check them:
//! Python ≥ 3.11 for the operator, Node ≥ 18 for the session manager.
//!
//! Each check runs the interpreter once with a deadline ([`VERSION_TIMEOUT`]) and parses the
//! version it prints; every failure is a message that says what was run and what went wrong.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long an interpreter may take to print its version.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The oldest Python the operator supports.
pub const MIN_PYTHON: Version = Version(3, 11, 0);

/// The oldest Node the session manager supports.
pub const MIN_NODE: Version = Version(18, 0, 0);

/// A `major.minor.patch` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Parses `3.11.7`, `v20.1.0`, `Python 3.12.1` or `3.13.0rc1` (missing parts are 0).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.rsplit(' ').next().unwrap_or(text);
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut parts = text.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self(major, minor, patch))
    }

    /// `major.minor`, the part that has to match between a venv and its interpreter.
    pub fn minor(self) -> (u32, u32) {
        (self.0, self.1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The version of the Python interpreter `python` (a name on `PATH` or a path).
pub fn python_version(python: &str) -> Result<Version, String> {
    let mut cmd = Command::new(python);
    cmd.args([
        "-I",
        "-c",
        "import sys; print('%d.%d.%d' % sys.version_info[:3])",
    ]);
    version_of(python, &mut cmd)
}

/// The version of the Node interpreter `node` (a name on `PATH` or a path).
pub fn node_version(node: &str) -> Result<Version, String> {
    let mut cmd = Command::new(node);
    cmd.arg("--version");
    version_of(node, &mut cmd)
}

/// Checks that `found` is at least `min`, naming the interpreter otherwise.
pub fn require(what: &str, program: &str, found: Version, min: Version) -> Result<(), String> {
    if found >= min {
        Ok(())
    } else {
        Err(format!(
            "{what} {found} at `{program}` is too old; {}.{} or newer is required",
            min.0, min.1
        ))
    }
}

fn version_of(program: &str, cmd: &mut Command) -> Result<Version, String> {
    let output = run_with_timeout(cmd, VERSION_TIMEOUT)
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if !output.success {
        return Err(format!(
            "`{program}` failed ({}): {}",
            output.status,
            last_line(&output.stderr)
        ));
    }
    Version::parse(&output.stdout)
        .ok_or_else(|| format!("`{program}` printed no version: {:?}", output.stdout.trim()))
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Whether it exited 0.
    pub success: bool,
    /// How it ended (`exit status: 1`, `signal: 9`).
    pub status: String,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `cmd` with stdin closed and its output captured; kills it after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Captured, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Readers on their own threads, so a chatty child never blocks on a full pipe.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            text
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", timeout.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    Ok(Captured {
        success: status.success(),
        status: status.to_string(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// The last non-empty line of `text` (or `(no output)`).
pub fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no output)")
}

/// The last `n` lines of `text`, for showing why a tool failed.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `Ok` when a program that ran (`what`, as the error names it) succeeded; else
/// "`what` failed (status); its last lines:" and the last `n` lines of its stdout and stderr.
pub fn succeeded(output: &std::process::Output, what: &str, n: usize) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Err(format!(
        "{what} failed ({}); its last lines:\n{}",
        output.status,
        tail(&text, n)
    ))
}

/// The operator package's version installed in the venv whose interpreter is `venv_python`
/// (`import revka_operator` must work too).
pub fn installed_operator(venv_python: &Path) -> Result<String, String> {
    const SCRIPT: &str = "import importlib.metadata as m, revka_operator; \
                          print(m.version('revka-operator'))";
    let mut cmd = Command::new(venv_python);
    // -I: neither the working directory nor PYTHONPATH can shadow the installed package.
    cmd.args(["-I", "-c", SCRIPT]);
    let shown = venv_python.display().to_string();
    let output = run_with_timeout(&mut cmd, Duration::from_secs(30))
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if output.success {
        Ok(output.stdout.trim().to_owned())
    } else {
        Err(format!(
            "`import revka_operator` fails in {shown}: {}",
            last_line(&output.stderr)
        ))
    }
}
