//! Where the service lives on this machine and which commands manage it: a systemd user unit
//! (`systemctl --user`, `journalctl --user`) on Linux, a launchd agent (`launchctl`, `tail`)
//! on macOS.
//!
//! Part of `revka service`. Everything here is pure: [`Host::detect`] reads the environment
//! through a lookup function, and the command builders only build [`Cmd`]s.

use std::path::{Path, PathBuf};

use super::ServiceError;
use super::exec::Cmd;
use super::render::{LABEL, UNIT_NAME};
use crate::config::{self, EnvLookup};

/// The service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// systemd, user instance (Linux).
    Systemd,
    /// launchd, per-user agent (macOS).
    Launchd,
}

impl Platform {
    /// launchd on macOS, systemd everywhere else.
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Self::Launchd
        } else {
            Self::Systemd
        }
    }

    /// What the service file is called in messages.
    pub fn service_name(self) -> &'static str {
        match self {
            Self::Systemd => UNIT_NAME,
            Self::Launchd => LABEL,
        }
    }
}

/// `revka service start | stop | restart | status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Start the service.
    Start,
    /// Stop it (gracefully: SIGTERM, then the daemon's shutdown).
    Stop,
    /// Stop and start it again.
    Restart,
    /// Show what the service manager knows about it.
    Status,
}

/// One step of an install or uninstall: a command, and whether its failure is only a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The command.
    pub cmd: Cmd,
    /// A failure is expected in some states (e.g. unloading an agent that is not loaded).
    pub may_fail: bool,
}

impl Step {
    fn must(cmd: Cmd) -> Self {
        Self {
            cmd,
            may_fail: false,
        }
    }

    fn may_fail(cmd: Cmd) -> Self {
        Self {
            cmd,
            may_fail: true,
        }
    }
}

/// The machine's service set-up: manager, file location, `REVKA_HOME`, user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The service manager.
    pub platform: Platform,
    /// The unit or plist file.
    pub service_file: PathBuf,
    /// `REVKA_HOME` (absolute).
    pub revka_home: PathBuf,
    /// The user id (launchd's `gui/<uid>` domain).
    pub uid: u32,
}

impl Host {
    /// Finds the service file for `platform`: `$XDG_CONFIG_HOME/systemd/user/revka.service`
    /// (`XDG_CONFIG_HOME` defaults to `$HOME/.config`; a relative one is ignored, as the XDG
    /// spec says) or `$HOME/Library/LaunchAgents/com.revka.daemon.plist`. `REVKA_HOME` comes
    /// from `env` the way the daemon finds it.
    pub fn detect(platform: Platform, env: EnvLookup<'_>, uid: u32) -> Result<Self, ServiceError> {
        let home = env("HOME")
            .filter(|h| Path::new(h).is_absolute())
            .ok_or_else(|| ServiceError::new(1, "HOME is not set to an absolute path"))?;
        let home = Path::new(&home);
        let service_file = match platform {
            Platform::Systemd => env("XDG_CONFIG_HOME")
                .filter(|d| Path::new(d).is_absolute())
                .map_or_else(|| home.join(".config"), PathBuf::from)
                .join("systemd/user")
                .join(UNIT_NAME),
            Platform::Launchd => home
                .join("Library/LaunchAgents")
                .join(format!("{LABEL}.plist")),
        };
        let revka_home = std::path::absolute(config::revka_home_with(env))
            .map_err(|e| ServiceError::new(1, format!("cannot resolve REVKA_HOME: {e}")))?;
        Ok(Self {
            platform,
            service_file,
            revka_home,
            uid,
        })
    }

    /// launchd's domain of this user's agents.
    fn domain(&self) -> String {
        format!("gui/{}", self.uid)
    }

    /// launchd's name of the agent.
    fn target(&self) -> String {
        format!("gui/{}/{LABEL}", self.uid)
    }

    /// The launchd agent's log files.
    pub fn log_files(&self) -> [PathBuf; 2] {
        let logs = self.revka_home.join("logs");
        [logs.join("revka.out.log"), logs.join("revka.err.log")]
    }

    /// A cheap command that fails when the service manager cannot be reached.
    pub fn probe(&self) -> Cmd {
        match self.platform {
            Platform::Systemd => systemctl(&["show-environment"]),
            Platform::Launchd => Cmd::new("launchctl", ["print".to_owned(), self.domain()]),
        }
    }

    /// Why the probe failed, for people.
    pub fn unavailable(&self) -> String {
        match self.platform {
            Platform::Systemd => "systemd user services are not available here (no user bus): \
                run `revka daemon` under your own supervisor"
                .to_owned(),
            Platform::Launchd => format!(
                "launchd's {} domain is not available (no graphical login session?): \
                 run `revka daemon` under your own supervisor",
                self.domain()
            ),
        }
    }

    /// What `install` runs after writing the file. `replacing`: a file was there before.
    pub fn install_steps(&self, replacing: bool) -> Vec<Step> {
        match self.platform {
            Platform::Systemd => vec![
                Step::must(systemctl(&["daemon-reload"])),
                Step::must(systemctl(&["enable", UNIT_NAME])),
            ],
            Platform::Launchd => {
                let mut steps = Vec::new();
                if replacing {
                    steps.push(Step::may_fail(self.launchctl(&["bootout"])));
                }
                let plist = self.service_file.display().to_string();
                steps.push(Step::must(Cmd::new(
                    "launchctl",
                    ["bootstrap".to_owned(), self.domain(), plist],
                )));
                steps
            }
        }
    }

    /// What `uninstall` runs before and after removing the file.
    pub fn uninstall_steps(&self) -> (Vec<Step>, Vec<Step>) {
        match self.platform {
            Platform::Systemd => (
                vec![
                    Step::must(systemctl(&["stop", UNIT_NAME])),
                    Step::must(systemctl(&["disable", UNIT_NAME])),
                ],
                vec![Step::must(systemctl(&["daemon-reload"]))],
            ),
            Platform::Launchd => (
                vec![Step::may_fail(self.launchctl(&["bootout"]))],
                Vec::new(),
            ),
        }
    }

    /// `start`, `stop`, `restart` or `status`.
    pub fn control(&self, verb: Verb) -> Cmd {
        match (self.platform, verb) {
            (Platform::Systemd, Verb::Start) => systemctl(&["start", UNIT_NAME]),
            (Platform::Systemd, Verb::Stop) => systemctl(&["stop", UNIT_NAME]),
            (Platform::Systemd, Verb::Restart) => systemctl(&["restart", UNIT_NAME]),
            (Platform::Systemd, Verb::Status) => systemctl(&["status", UNIT_NAME]),
            (Platform::Launchd, Verb::Start) => self.launchctl(&["kickstart"]),
            (Platform::Launchd, Verb::Stop) => self.launchctl(&["kill", "SIGTERM"]),
            (Platform::Launchd, Verb::Restart) => self.launchctl(&["kickstart", "-k"]),
            (Platform::Launchd, Verb::Status) => self.launchctl(&["print"]),
        }
    }

    /// The last `lines` log lines, then new ones as they come with `follow`. On launchd, only
    /// the `files` given (those that exist).
    pub fn logs(&self, follow: bool, lines: u32, files: &[PathBuf]) -> Cmd {
        let mut args = Vec::new();
        let program = match self.platform {
            Platform::Systemd => {
                args.extend(["--user", "-u", UNIT_NAME, "-o", "cat"].map(str::to_owned));
                "journalctl"
            }
            Platform::Launchd => "tail",
        };
        args.extend(["-n".to_owned(), lines.to_string()]);
        if follow {
            args.push(
                if self.platform == Platform::Systemd {
                    "-f"
                } else {
                    "-F"
                }
                .to_owned(),
            );
        }
        args.extend(files.iter().map(|f| f.display().to_string()));
        Cmd::new(program, args)
    }

    /// `launchctl <words> gui/<uid>/com.revka.daemon`.
    fn launchctl(&self, words: &[&str]) -> Cmd {
        let mut args: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        args.push(self.target());
        Cmd::new("launchctl", args)
    }
}

/// `systemctl --version`, whose first line names the systemd version.
pub fn systemd_version_cmd() -> Cmd {
    Cmd::new("systemctl", ["--version"])
}

/// The version in `systemctl --version`'s output (`systemd 252 (252.38-1~deb12u1)` → 252).
pub fn parse_systemd_version(output: &str) -> Option<u32> {
    output.lines().find_map(|line| {
        let number = line.trim().strip_prefix("systemd ")?;
        let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// `systemctl --user <args>`.
fn systemctl(args: &[&str]) -> Cmd {
    Cmd::new(
        "systemctl",
        std::iter::once("--user").chain(args.iter().copied()),
    )
}
