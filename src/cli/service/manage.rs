//! The `revka service` actions against one [`Host`]: install, uninstall, start/stop/restart/
//! status, logs.
//!
//! Part of `revka service`. [`Service`] decides what to write and which commands to run, runs
//! them through a [`Runner`] (printing each one first), and writes its own messages to the
//! stdout and stderr it is given, so tests drive it with recorded commands and buffers.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::exec::{Cmd, Runner};
use super::platform::{Host, Platform, Step, Verb};
use super::render::{ServiceParams, render_plist, render_unit};
use super::{EXIT_UNAVAILABLE, ServiceError};

/// The service commands against one [`Host`], running external commands through a
/// [`Runner`] and writing to the given stdout and stderr.
pub struct Service<'a> {
    host: &'a Host,
    runner: &'a mut dyn Runner,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl<'a> Service<'a> {
    /// A service manager front end for `host`.
    pub fn new(
        host: &'a Host,
        runner: &'a mut dyn Runner,
        out: &'a mut dyn Write,
        err: &'a mut dyn Write,
    ) -> Self {
        Self {
            host,
            runner,
            out,
            err,
        }
    }

    /// `revka service install`: a no-op when the same file is installed (unless `force`); a
    /// different existing file is only replaced with `force`.
    pub fn install(
        &mut self,
        params: &ServiceParams,
        dry_run: bool,
        force: bool,
    ) -> Result<(), ServiceError> {
        let content = match self.host.platform {
            Platform::Systemd => render_unit(params),
            Platform::Launchd => render_plist(params),
        }
        .map_err(|e| ServiceError::new(1, e.to_string()))?;
        let path = &self.host.service_file;
        let existing = match fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(ServiceError::io("read", path, &e)),
        };
        let same = existing.as_deref() == Some(content.as_str());
        let differs = existing.is_some() && !same;
        let steps = self.host.install_steps(existing.is_some());
        let logs = params.logs_dir();
        if dry_run {
            self.say(format_args!("would write {}:", path.display()));
            let _ = self.out.write_all(content.as_bytes());
            let _ = self.out.flush();
            if same {
                self.say("note: the installed file is identical; install would do nothing");
            } else if differs {
                self.say("note: a different file is installed; install would need --force");
            }
            self.describe(params);
            self.say(format_args!("would create {} (mode 0700)", logs.display()));
            for step in &steps {
                self.say(format_args!("would run: $ {}", step.cmd));
            }
            return Ok(());
        }
        if same && !force {
            self.say(format_args!(
                "{} is up to date: nothing to do (--force re-runs the install steps)",
                path.display()
            ));
            return Ok(());
        }
        if differs && !force {
            return Err(ServiceError::new(
                1,
                format!(
                    "{} exists and differs from what would be installed; not overwritten \
                     (compare with `revka service install --dry-run`, then pass --force)",
                    path.display()
                ),
            ));
        }
        self.preflight()?;
        crate::daemon::create_private_dir(&logs)
            .map_err(|e| ServiceError::new(1, e.to_string()))?;
        write_file(path, &content)?;
        self.say(format_args!("wrote {}", path.display()));
        self.describe(params);
        self.steps(&steps)?;
        let name = self.host.platform.service_name();
        match (self.host.platform, existing.is_some()) {
            (Platform::Systemd, false) => self.say(format_args!(
                "installed {name}; start it with `revka service start` (it also starts at login)"
            )),
            (Platform::Systemd, true) => self.say(format_args!(
                "reinstalled {name}; if it is running, `revka service restart` applies the change"
            )),
            (Platform::Launchd, _) => self.say(format_args!(
                "loaded {name}; it runs now and at every login"
            )),
        }
        Ok(())
    }

    /// What the file sets that the user should know about: the `PATH` and, for systemd, how
    /// reloads work.
    fn describe(&mut self, params: &ServiceParams) {
        self.say(format_args!(
            "the service's PATH (this shell's): {}",
            params.path
        ));
        if self.host.platform == Platform::Systemd {
            self.say(format_args!("reload: {}", params.reload.describe()));
        }
    }

    /// `revka service uninstall`: stop, unregister, remove the file. Nothing to do when it is
    /// not installed.
    pub fn uninstall(&mut self, dry_run: bool) -> Result<(), ServiceError> {
        let path = &self.host.service_file;
        if fs::symlink_metadata(path).is_err() {
            self.say(format_args!(
                "{} is not installed ({} does not exist): nothing to do",
                self.host.platform.service_name(),
                path.display()
            ));
            return Ok(());
        }
        let (before, after) = self.host.uninstall_steps();
        if dry_run {
            for step in &before {
                self.say(format_args!("would run: $ {}", step.cmd));
            }
            self.say(format_args!("would remove {}", path.display()));
            for step in &after {
                self.say(format_args!("would run: $ {}", step.cmd));
            }
            return Ok(());
        }
        self.preflight()?;
        self.steps(&before)?;
        fs::remove_file(path).map_err(|e| ServiceError::io("remove", path, &e))?;
        self.say(format_args!("removed {}", path.display()));
        self.steps(&after)
    }

    /// `revka service start | stop | restart | status`. `status` passes the manager's exit
    /// code through without a message of its own.
    pub fn control(&mut self, verb: Verb) -> Result<(), ServiceError> {
        self.preflight()?;
        let result = self.exec(&self.host.control(verb));
        let installed = fs::symlink_metadata(&self.host.service_file).is_ok();
        result.map_err(|mut e| {
            if verb == Verb::Status {
                e.message = None;
            }
            if !installed {
                self.say(format_args!(
                    "hint: {} is not installed; run `revka service install` first",
                    self.host.platform.service_name()
                ));
            }
            e
        })
    }

    /// `revka service logs [-f] [-n N]`.
    pub fn logs(&mut self, follow: bool, lines: u32) -> Result<(), ServiceError> {
        let files: Vec<PathBuf> = match self.host.platform {
            Platform::Systemd => Vec::new(),
            Platform::Launchd => {
                let all = self.host.log_files();
                let existing: Vec<PathBuf> = all.iter().filter(|f| f.exists()).cloned().collect();
                if existing.is_empty() {
                    return Err(ServiceError::new(
                        1,
                        format!(
                            "no logs yet: neither {} nor {} exists (has the agent run?)",
                            all[0].display(),
                            all[1].display()
                        ),
                    ));
                }
                existing
            }
        };
        self.exec(&self.host.logs(follow, lines, &files))
    }

    /// Fails with a clear message when the service manager cannot be reached.
    fn preflight(&mut self) -> Result<(), ServiceError> {
        let probe = self.host.probe();
        match self.runner.capture(&probe) {
            Ok(captured) if captured.success() => Ok(()),
            Ok(captured) => {
                let said = captured.output.lines().find(|l| !l.trim().is_empty());
                let mut message = self.host.unavailable();
                if let Some(said) = said {
                    message.push_str(&format!("\n  `{probe}` said: {}", said.trim()));
                }
                Err(ServiceError::new(EXIT_UNAVAILABLE, message))
            }
            Err(e) => Err(spawn_error(&probe, &e)),
        }
    }

    /// Runs `steps` in order; a failing step stops the rest unless it may fail.
    fn steps(&mut self, steps: &[Step]) -> Result<(), ServiceError> {
        for step in steps {
            match self.exec(&step.cmd) {
                Err(e) if step.may_fail && e.code != EXIT_UNAVAILABLE => {
                    self.say(format_args!(
                        "(ignored: `{}` failed; not loaded?)",
                        step.cmd
                    ));
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Prints `$ <cmd>` and runs it with its output passed through.
    fn exec(&mut self, cmd: &Cmd) -> Result<(), ServiceError> {
        self.say(format_args!("$ {cmd}"));
        let _ = self.out.flush();
        match self.runner.run(cmd) {
            Ok(Some(0)) => Ok(()),
            Ok(code) => {
                let (exit, how) = match code {
                    Some(c) => (
                        u8::try_from(c).ok().filter(|&c| c != 0).unwrap_or(1),
                        format!("exit status {c}"),
                    ),
                    None => (1, "killed by a signal".to_owned()),
                };
                Err(ServiceError::new(exit, format!("`{cmd}` failed ({how})")))
            }
            Err(e) => Err(spawn_error(cmd, &e)),
        }
    }

    /// A line on stderr.
    fn say(&mut self, line: impl std::fmt::Display) {
        let _ = writeln!(self.err, "{line}");
    }
}

/// The error for a command that could not be started; a missing program means the service
/// manager is not available here.
fn spawn_error(cmd: &Cmd, e: &io::Error) -> ServiceError {
    if e.kind() != io::ErrorKind::NotFound {
        return ServiceError::new(1, format!("cannot run `{cmd}`: {e}"));
    }
    let why = match cmd.program.as_str() {
        "systemctl" => {
            "systemd user services are not available here: run `revka daemon` under your own \
             supervisor"
        }
        "journalctl" => "the systemd journal is not available here",
        "launchctl" => {
            "launchd agents are only available on macOS: run `revka daemon` under your own \
             supervisor"
        }
        _ => "it is needed for this command",
    };
    ServiceError::new(
        EXIT_UNAVAILABLE,
        format!("`{}` not found: {why}", cmd.program),
    )
}

/// Writes `content` to `path` atomically ([`revka_actors::fs::write_atomic`]), mode 0644,
/// creating the parent directories.
fn write_file(path: &Path, content: &str) -> Result<(), ServiceError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| ServiceError::io("create", parent, &e))?;
    }
    revka_actors::fs::write_atomic(path, content.as_bytes(), 0o644)
        .map_err(|e| ServiceError::io("write", path, &e.into_io()))
}
