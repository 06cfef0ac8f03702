//! The `revka doctor` check that every program the daemon spawns resolves under the `PATH` the
//! service runs with.
//!
//! A service manager does not run the daemon with your shell's `PATH`: launchd's is
//! `/usr/bin:/bin:/usr/sbin:/sbin`, a systemd user manager's its own, and neither finds
//! `npx`, `uvx` or a version manager's `node`. `revka service install` records the installing
//! shell's `PATH` in the unit (`Environment="PATH=…"`) or the plist (`EnvironmentVariables`).
//! This check reads it back from the installed file (and, for systemd, its drop-ins in
//! `revka.service.d/`, the last assignment winning), or, with no service installed, takes this
//! shell's; then it looks up each stdio server's `command` (under the server's own `env.PATH`
//! when it sets one), the operator's Python and the session manager's program. Each one not
//! found is a warning that says where your shell finds it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Check;
use crate::cli::service::{Host, Platform, service_path};
use crate::config::{Config, EnvLookup, Transport};

/// systemd's default `PATH` for services (a unit without `Environment=PATH=`).
const SYSTEMD_DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// launchd's default `PATH` for agents.
const LAUNCHD_DEFAULT_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// The `PATH` a service runs with, and where it comes from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePath {
    /// The colon-separated directories.
    pub path: String,
    /// Where it was read, e.g. `/home/u/.config/systemd/user/revka.service`.
    pub source: String,
}

/// The checks: one `ok` when every command resolves, else one `warn` per command that does not.
pub fn checks(config: &Config, env: EnvLookup<'_>) -> Vec<Check> {
    let uid = nix::unistd::getuid().as_raw();
    let service_file = Host::detect(Platform::current(), env, uid)
        .ok()
        .map(|host| host.service_file);
    let shell = env("PATH");
    let Some(service) = installed_path(Platform::current(), service_file.as_deref())
        .or_else(|| shell_path(shell.as_deref()))
    else {
        return vec![Check::skip(
            "service PATH",
            "no service installed and no PATH in this environment",
        )];
    };
    check_commands(config, &service, shell.as_deref())
}

/// The `PATH` of the installed unit or plist at `file`; `None` when none is installed.
pub fn installed_path(platform: Platform, file: Option<&Path>) -> Option<ServicePath> {
    let file = file?;
    let text = std::fs::read_to_string(file).ok()?;
    let mut source = file.display().to_string();
    let found = match platform {
        Platform::Systemd => {
            let mut path = unit_path(&text);
            for dropin in dropins(file) {
                if let Some(p) = std::fs::read_to_string(&dropin)
                    .ok()
                    .and_then(|t| unit_path(&t))
                {
                    path = Some(p);
                    source = dropin.display().to_string();
                }
            }
            path
        }
        Platform::Launchd => plist_path(&text),
    };
    Some(match found {
        Some(path) => ServicePath { path, source },
        None => {
            let default = match platform {
                Platform::Systemd => SYSTEMD_DEFAULT_PATH,
                Platform::Launchd => LAUNCHD_DEFAULT_PATH,
            };
            ServicePath {
                path: default.to_owned(),
                source: format!(
                    "{source} sets none, so the service manager's default applies \
                     (`revka service install --force` records your shell's)"
                ),
            }
        }
    })
}

/// This shell's `PATH` (cleaned as `revka service install` would record it).
fn shell_path(shell: Option<&str>) -> Option<ServicePath> {
    let shell = shell.filter(|p| !p.is_empty())?;
    Some(ServicePath {
        path: service_path(Some(shell)).0,
        source: "this shell (no service installed)".to_owned(),
    })
}

/// `revka.service.d/*.conf` next to the unit, in the order systemd applies them.
fn dropins(unit: &Path) -> Vec<PathBuf> {
    let Some(name) = unit.file_name() else {
        return Vec::new();
    };
    let dir = unit.with_file_name(format!("{}.d", name.to_string_lossy()));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The last `Environment=` assignment of `PATH` in a unit's text (quoted or not).
pub fn unit_path(text: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let Some(value) = line.trim().strip_prefix("Environment=") else {
            continue;
        };
        for word in environment_words(value) {
            if let Some(path) = word.strip_prefix("PATH=") {
                found = Some(path.to_owned());
            }
        }
    }
    found
}

/// The assignments of one `Environment=` line: space-separated words, each optionally in
/// double quotes (with `\"` and `\\` escapes); `%%` is a literal `%`.
fn environment_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return words;
        };
        let mut word = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => word.extend(chars.next()),
                    c => word.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        words.push(word.replace("%%", "%"));
    }
}

/// `EnvironmentVariables` → `PATH` of a plist written by `revka service install`.
pub fn plist_path(text: &str) -> Option<String> {
    let after = &text[text.find("<key>PATH</key>")? + "<key>PATH</key>".len()..];
    let start = after.trim_start().strip_prefix("<string>")?;
    let value = &start[..start.find("</string>")?];
    Some(
        value
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Where `program` is found in `path`: itself if it names a file (has a `/`), else the first
/// executable regular file named so in one of the directories.
pub fn resolve(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Every program the daemon spawns: (who, program, the `PATH` it is looked up in when the
/// entry sets its own).
fn programs(config: &Config) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    if config.mcp.enabled {
        for server in &config.mcp.servers {
            if let (Some(Transport::Stdio), Some(command)) =
                (server.transport.known(), &server.command)
            {
                out.push((
                    format!("server `{}`", server.name),
                    command.clone(),
                    server.env.get("PATH").cloned(),
                ));
            }
        }
    }
    if config.operator.enabled {
        out.push((
            "the operator".to_owned(),
            config.operator.python.clone(),
            None,
        ));
    }
    let sm = &config.session_manager;
    if let (true, Some(program)) = (sm.enabled, sm.command.first()) {
        out.push(("the session manager".to_owned(), program.clone(), None));
    }
    out
}

/// Looks every program up in `service.path`; `shell` says where the user's shell finds the
/// missing ones.
pub fn check_commands(config: &Config, service: &ServicePath, shell: Option<&str>) -> Vec<Check> {
    let programs = programs(config);
    let mut checks = Vec::new();
    for (who, program, own_path) in &programs {
        let path = own_path.as_deref().unwrap_or(&service.path);
        if resolve(program, path).is_some() {
            continue;
        }
        let which = if own_path.is_some() {
            format!("its own env PATH={path}")
        } else {
            format!("the service's PATH={path} (from {})", service.source)
        };
        let in_shell = match shell.and_then(|s| resolve(program, s)) {
            Some(found) => format!("; found at {} in your shell", found.display()),
            None => "; not found in your shell either".to_owned(),
        };
        checks.push(Check::warn(
            format!("service PATH: {who}"),
            format!("`{program}` not found on {which}{in_shell}"),
            "set an absolute `command`, or re-run `revka service install --force` from a shell \
             whose PATH finds it (or add its directory with `systemctl --user edit revka`)",
        ));
    }
    if checks.is_empty() {
        checks.push(Check::ok(
            "service PATH",
            format!(
                "{} command(s) resolve under PATH={} (from {})",
                programs.len(),
                service.path,
                service.source
            ),
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::McpServerConfig;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn stdio(name: &str, command: &str) -> McpServerConfig {
        McpServerConfig {
            name: name.to_owned(),
            command: Some(command.to_owned()),
            ..McpServerConfig::default()
        }
    }

    #[test]
    fn a_command_found_only_in_the_shell_is_a_precise_warning() {
        let root = tempfile::tempdir().unwrap();
        let (svc, nvm) = (root.path().join("svc"), root.path().join("nvm/bin"));
        executable(&svc, "uvx");
        let npx = executable(&nvm, "npx");
        let absolute = executable(&root.path().join("opt"), "server");
        let mut config = Config::default_in(root.path());
        config.mcp.enabled = true;
        config.operator.enabled = false;
        config.mcp.servers = vec![
            stdio("fs", "npx"),
            stdio("time", "uvx"),
            stdio("abs", &absolute.display().to_string()),
            stdio("gone", "no-such-program"),
        ];
        let mut own = stdio("own", "npx");
        own.env.insert("PATH".into(), nvm.display().to_string());
        config.mcp.servers.push(own);
        let service = ServicePath {
            path: svc.display().to_string(),
            source: "the unit".into(),
        };
        let shell = format!("{}:{}", nvm.display(), svc.display());
        let checks = check_commands(&config, &service, Some(&shell));
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["service PATH: server `fs`", "service PATH: server `gone`"],
            "{checks:#?}"
        );
        assert_eq!(
            checks[0].detail,
            format!(
                "`npx` not found on the service's PATH={} (from the unit); found at {} in \
                 your shell",
                svc.display(),
                npx.display()
            )
        );
        assert!(checks[1].detail.ends_with("not found in your shell either"));
        assert!(
            checks
                .iter()
                .all(|c| c.status == super::super::Status::Warn)
        );

        config
            .mcp
            .servers
            .retain(|s| s.name != "fs" && s.name != "gone");
        let ok = check_commands(&config, &service, Some(&shell));
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].status, super::super::Status::Ok, "{ok:#?}");
    }

    #[test]
    fn the_unit_its_dropins_and_the_plist_are_read_back() {
        let root = tempfile::tempdir().unwrap();
        let unit = root.path().join("revka.service");
        std::fs::write(
            &unit,
            "[Service]\nEnvironment=\"REVKA_HOME=/h\"\nEnvironment=\"PATH=/a/50%% \\\"b\\\":/usr/bin\"\n",
        )
        .unwrap();
        let found = installed_path(Platform::Systemd, Some(&unit)).unwrap();
        assert_eq!(found.path, "/a/50% \"b\":/usr/bin");
        assert_eq!(found.source, unit.display().to_string());

        let dropins = root.path().join("revka.service.d");
        std::fs::create_dir_all(&dropins).unwrap();
        std::fs::write(
            dropins.join("override.conf"),
            "[Service]\nEnvironment=FOO=1 PATH=/override/bin\n",
        )
        .unwrap();
        let found = installed_path(Platform::Systemd, Some(&unit)).unwrap();
        assert_eq!(found.path, "/override/bin", "a drop-in wins");
        assert!(found.source.ends_with("override.conf"));

        std::fs::write(&unit, "[Service]\nExecStart=/bin/revka daemon\n").unwrap();
        std::fs::remove_dir_all(&dropins).unwrap();
        let found = installed_path(Platform::Systemd, Some(&unit)).unwrap();
        assert_eq!(found.path, SYSTEMD_DEFAULT_PATH);
        assert!(found.source.contains("sets none"), "{}", found.source);

        let plist = root.path().join("com.revka.daemon.plist");
        std::fs::write(
            &plist,
            "<dict>\n\t<key>PATH</key>\n\t<string>/opt/homebrew/bin:/a&amp;b</string>\n</dict>",
        )
        .unwrap();
        let found = installed_path(Platform::Launchd, Some(&plist)).unwrap();
        assert_eq!(found.path, "/opt/homebrew/bin:/a&b");

        assert_eq!(
            installed_path(Platform::Systemd, Some(&root.path().join("none"))),
            None
        );
        assert_eq!(installed_path(Platform::Systemd, None), None);
    }

    #[test]
    fn what_install_renders_is_what_doctor_reads() {
        use crate::cli::service::{ReloadMode, ServiceParams, render_plist, render_unit};
        let params = ServiceParams {
            binary: "/opt/revka/bin/revka".into(),
            revka_home: "/home/a/.revka".into(),
            config: None,
            grace_secs: 30,
            path: "/home/a/50% \"x\" & <y>/bin:/usr/bin".into(),
            reload: ReloadMode::NotifyReload,
        };
        assert_eq!(
            unit_path(&render_unit(&params).unwrap()).as_deref(),
            Some(params.path.as_str())
        );
        assert_eq!(
            plist_path(&render_plist(&params).unwrap()).as_deref(),
            Some(params.path.as_str())
        );
    }
}
