//! `revka service`: rendered files against golden files, escaping, `systemd-analyze verify`,
//! plist structure, and install/uninstall/control/logs with recorded commands.
//!
//! Set `REVKA_UPDATE_GOLDEN=1` to rewrite `tests/golden/*` from the current templates.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

mod hardening;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A fake machine: a temporary `HOME`, the host derived from it, and fixed service params.
struct Fixture {
    _dir: tempfile::TempDir,
    home: PathBuf,
    host: Host,
    params: ServiceParams,
}

fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<&str, String> = pairs.into_iter().collect();
    move |k| map.get(k).cloned()
}

fn fixture(platform: Platform) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let env = env_of(vec![("HOME", home.display().to_string())]);
    let host = Host::detect(platform, &env, 501).unwrap();
    let params = ServiceParams {
        binary: "/opt/revka/bin/revka".into(),
        revka_home: host.revka_home.clone(),
        config: None,
        grace_secs: 30,
        path: "/usr/bin:/bin".into(),
        reload: ReloadMode::NotifyReload,
    };
    Fixture {
        _dir: dir,
        home,
        host,
        params,
    }
}

/// Records commands instead of running them.
#[derive(Debug, Default)]
struct Recorder {
    /// Commands run with their output passed through.
    ran: Vec<String>,
    /// Silent probes.
    probed: Vec<String>,
    /// Programs that are "not installed".
    missing: Vec<&'static str>,
    /// What the probe answers (default: success).
    probe: Option<Captured>,
    /// Exit codes of commands by their command line (default 0).
    codes: HashMap<String, i32>,
}

impl Runner for Recorder {
    fn run(&mut self, cmd: &Cmd) -> io::Result<Option<i32>> {
        if self.missing.contains(&cmd.program.as_str()) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let line = cmd.to_string();
        let code = self.codes.get(&line).copied().unwrap_or(0);
        self.ran.push(line);
        Ok(Some(code))
    }

    fn capture(&mut self, cmd: &Cmd) -> io::Result<Captured> {
        if self.missing.contains(&cmd.program.as_str()) {
            return Err(io::ErrorKind::NotFound.into());
        }
        self.probed.push(cmd.to_string());
        Ok(self.probe.clone().unwrap_or(Captured {
            code: Some(0),
            output: String::new(),
        }))
    }
}

/// What one command did.
struct Outcome {
    result: Result<(), ServiceError>,
    stdout: String,
    stderr: String,
}

fn with_service(
    host: &Host,
    runner: &mut Recorder,
    f: impl FnOnce(&mut Service<'_>) -> Result<(), ServiceError>,
) -> Outcome {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = f(&mut Service::new(host, runner, &mut out, &mut err));
    Outcome {
        result,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

fn install(f: &Fixture, runner: &mut Recorder, dry_run: bool, force: bool) -> Outcome {
    with_service(&f.host, runner, |s| s.install(&f.params, dry_run, force))
}

/// The `PATH` of the golden files: a version manager's Node first, as a real shell has it.
const GOLDEN_PATH: &str = "/home/alice/.nvm/versions/node/v20.11.0/bin:/home/alice/.local/bin:/usr/local/bin:/usr/bin:/bin";

fn golden_params() -> ServiceParams {
    ServiceParams {
        binary: "/opt/revka/bin/revka".into(),
        revka_home: "/home/alice/.revka".into(),
        config: None,
        grace_secs: 30,
        path: GOLDEN_PATH.into(),
        reload: ReloadMode::NotifyReload,
    }
}

/// Compares `actual` with `tests/golden/<name>` (or rewrites it with `REVKA_UPDATE_GOLDEN`).
fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("REVKA_UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).unwrap();
    }
    let expected =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        expected == actual,
        "{} differs from the rendered file (REVKA_UPDATE_GOLDEN=1 rewrites it):\n{actual}",
        path.display()
    );
}

// ---------------------------------------------------------------------------------------------
// Rendering

#[test]
fn unit_matches_golden() {
    let unit = render_unit(&golden_params()).unwrap();
    assert_golden("revka.service", &unit);
    for line in [
        "Type=notify-reload",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "ExecStart=/opt/revka/bin/revka daemon",
        "Environment=\"REVKA_HOME=/home/alice/.revka\"",
        "Environment=RUST_LOG=info",
        "Restart=on-failure",
        "RestartSec=2",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "KillMode=mixed",
        "TimeoutStopSec=45",
        "StandardOutput=journal",
        "StandardError=journal",
        "WantedBy=default.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing `{line}`");
    }
}

#[test]
fn plist_matches_golden() {
    let plist = render_plist(&golden_params()).unwrap();
    assert_golden("com.revka.daemon.plist", &plist);
}

#[test]
fn unit_with_config_matches_golden_and_follows_the_grace() {
    let params = ServiceParams {
        config: Some("/etc/revka/config.toml".into()),
        grace_secs: 120,
        ..golden_params()
    };
    let unit = render_unit(&params).unwrap();
    assert_golden("revka-config.service", &unit);
    assert!(
        unit.contains("\nExecStart=/opt/revka/bin/revka daemon --config /etc/revka/config.toml\n")
    );
    assert!(unit.contains("\nTimeoutStopSec=135\n"));
    let plist = render_plist(&params).unwrap();
    assert!(plist.contains(
        "\t\t<string>daemon</string>\n\t\t<string>--config</string>\n\
         \t\t<string>/etc/revka/config.toml</string>\n\t</array>"
    ));
    assert!(plist.contains("<key>ExitTimeOut</key>\n\t<integer>135</integer>"));
}

/// Paths with a space, `%`, `$`, quotes and XML specials.
fn awkward_params(root: &Path) -> ServiceParams {
    ServiceParams {
        binary: root.join("my apps/100% $revka/bin/revka"),
        revka_home: root.join("home dir/50% \"off\" & <more>"),
        config: Some(root.join("conf %d/$HOME's.toml")),
        grace_secs: 30,
        path: "/r/50% \"bin\"/$x & <y>:/usr/bin".into(),
        reload: ReloadMode::ExecReload,
    }
}

#[test]
fn unit_escapes_spaces_percent_dollar_and_quotes() {
    let unit = render_unit(&awkward_params(Path::new("/r"))).unwrap();
    assert_golden("revka-escaped.service", &unit);
    assert!(
        unit.contains(
            "\nExecStart=\"/r/my apps/100%% $revka/bin/revka\" daemon --config \
             \"/r/conf %%d/$$HOME's.toml\"\n"
        ),
        "{unit}"
    );
    assert!(
        unit.contains("\nEnvironment=\"REVKA_HOME=/r/home dir/50%% \\\"off\\\" & <more>\"\n"),
        "{unit}"
    );
    assert!(
        unit.contains("\nExecReload=\"/r/my apps/100%% $revka/bin/revka\" reload\n"),
        "{unit}"
    );
    assert!(
        unit.contains("\nEnvironment=\"PATH=/r/50%% \\\"bin\\\"/$x & <y>:/usr/bin\"\n"),
        "{unit}"
    );
}

#[test]
fn plist_escapes_xml() {
    let plist = render_plist(&awkward_params(Path::new("/r"))).unwrap();
    assert_golden("com.revka.daemon-escaped.plist", &plist);
    assert!(plist.contains("<string>/r/my apps/100% $revka/bin/revka</string>"));
    assert!(plist.contains("<string>/r/conf %d/$HOME&apos;s.toml</string>"));
    assert!(plist.contains(
        "<string>/r/home dir/50% &quot;off&quot; &amp; &lt;more&gt;/logs/revka.out.log</string>"
    ));
    assert!(plist.contains("<string>/r/50% &quot;bin&quot;/$x &amp; &lt;y&gt;:/usr/bin</string>"));
}

#[test]
fn control_characters_and_non_utf8_are_refused() {
    let mut params = golden_params();
    params.revka_home = "/home/alice/.revka\n[Service]\nExecStartPre=/bin/evil".into();
    assert!(matches!(
        render_unit(&params),
        Err(RenderError::Unrepresentable(_))
    ));
    assert!(matches!(
        render_plist(&params),
        Err(RenderError::Unrepresentable(_))
    ));
    use std::os::unix::ffi::OsStrExt;
    params.revka_home = std::ffi::OsStr::from_bytes(b"/home/\xff").into();
    let err = render_unit(&params).unwrap_err();
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
}

#[test]
fn substitution_is_strict() {
    let v = |n: &'static str| (n, "X".to_owned());
    assert_eq!(substitute("a {{x}} b {{x}}", &[v("x")]).unwrap(), "a X b X");
    assert_eq!(
        substitute("{{x}}", &[("x", "{{y}}".to_owned())]).unwrap(),
        "{{y}}",
        "values are not re-scanned"
    );
    assert_eq!(
        substitute("{{x}} {{y}}", &[v("x")]),
        Err(RenderError::Unknown("y".into()))
    );
    assert_eq!(
        substitute("{{x}}", &[v("x"), v("y")]),
        Err(RenderError::Unused("y".into()))
    );
    assert_eq!(
        substitute("ab {{x", &[v("x")]),
        Err(RenderError::Malformed(3))
    );
    assert_eq!(
        substitute("{{ x }}", &[v("x")]),
        Err(RenderError::Malformed(0))
    );
    assert_eq!(substitute("{{}}", &[]), Err(RenderError::Malformed(0)));
}

#[test]
fn templates_name_the_unit_and_label() {
    assert!(PLIST_TEMPLATE.contains(&format!("<string>{LABEL}</string>")));
    assert_eq!(UNIT_NAME, "revka.service");
    assert!(UNIT_TEMPLATE.contains("{{exec_start}}"));
}

// ---------------------------------------------------------------------------------------------
// systemd-analyze verify

/// Why `systemd-analyze` could not judge the unit here (no manager, no runtime directory).
fn environmental(stderr: &str) -> bool {
    [
        "Failed to initialize manager",
        "Failed to connect to bus",
        "RuntimeDirectory",
        "XDG_RUNTIME_DIR",
        "Failed to create directory",
        "Operation not permitted",
    ]
    .iter()
    .any(|s| stderr.contains(s))
}

/// Verifies `unit` as `<dir>/revka.service`: `Some(Ok)` clean, `Some(Err)` a verification
/// error, `None` when `systemd-analyze` cannot run here.
fn systemd_verify(dir: &Path, unit: &str) -> Option<Result<(), String>> {
    let file = dir.join(UNIT_NAME);
    fs::write(&file, unit).unwrap();
    let mut environmental_failure = None;
    for user in [true, false] {
        let mut cmd = Command::new("systemd-analyze");
        cmd.arg("verify");
        if user {
            cmd.arg("--user");
        }
        let output = match cmd.arg(&file).output() {
            Ok(o) => o,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => panic!("cannot run systemd-analyze: {e}"),
        };
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        // verify exits 0 even for unknown keys or bad values: any line about our unit counts.
        let about_unit: Vec<&str> = stderr.lines().filter(|l| l.contains(UNIT_NAME)).collect();
        if !about_unit.is_empty() {
            return Some(Err(about_unit.join("\n")));
        }
        if output.status.success() {
            eprintln!(
                "systemd-analyze verify{} {}: ok",
                if user { " --user" } else { "" },
                file.display()
            );
            return Some(Ok(()));
        }
        if !environmental(&stderr) {
            return Some(Err(stderr));
        }
        environmental_failure = Some(stderr);
    }
    eprintln!(
        "skipping: systemd-analyze verify is not available in this environment: {}",
        environmental_failure.unwrap_or_default().trim()
    );
    None
}

/// The reload mode `revka service install` would pick for the systemd installed here, so
/// `systemd-analyze verify` knows the unit's `Type=`.
fn local_reload_mode() -> ReloadMode {
    let version = Command::new("systemctl")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| parse_systemd_version(&String::from_utf8_lossy(&o.stdout)));
    ReloadMode::for_systemd(version, true)
}

fn fake_binary(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = ServiceParams {
        binary: dir.path().join("bin/revka"),
        revka_home: dir.path().join("home"),
        ..golden_params()
    };
    fake_binary(&params.binary);
    let local = local_reload_mode();
    for mode in [
        ReloadMode::NotifyReload,
        ReloadMode::ExecReload,
        ReloadMode::Signal,
    ] {
        if mode == ReloadMode::NotifyReload && local != mode {
            eprintln!("skipping Type=notify-reload: this systemd is older than 253");
            continue;
        }
        params.reload = mode;
        if let Some(verdict) = systemd_verify(dir.path(), &render_unit(&params).unwrap()) {
            verdict.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        }
    }
}

#[test]
fn systemd_analyze_finds_the_escaped_binary() {
    let dir = tempfile::tempdir().unwrap();
    let params = ServiceParams {
        reload: local_reload_mode(),
        ..awkward_params(dir.path())
    };
    fake_binary(&params.binary);
    let unit = render_unit(&params).unwrap();
    if let Some(verdict) = systemd_verify(dir.path(), &unit) {
        verdict.unwrap();
        // The check has teeth: a wrongly escaped path names a binary that does not exist.
        let wrong = unit.replace("100%% $revka", "100%% $$revka");
        let verdict = systemd_verify(dir.path(), &wrong).expect("it ran just now");
        assert!(verdict.is_err(), "a missing binary must fail verification");
    }
}

#[test]
fn systemd_analyze_rejects_a_bad_directive() {
    let dir = tempfile::tempdir().unwrap();
    let params = ServiceParams {
        binary: dir.path().join("revka"),
        reload: local_reload_mode(),
        ..golden_params()
    };
    fake_binary(&params.binary);
    let unit = render_unit(&params)
        .unwrap()
        .replace("KillMode=mixed", "KillMode=bogus");
    if let Some(verdict) = systemd_verify(dir.path(), &unit) {
        assert!(verdict.unwrap_err().contains("bogus"));
    }
}

// ---------------------------------------------------------------------------------------------
// The plist's structure

/// An XML element: its name, children and text (entities decoded).
#[derive(Debug)]
struct Element {
    name: String,
    children: Vec<Element>,
    text: String,
}

fn decode(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';').expect("unterminated entity") + i;
        out.push(match &rest[i + 1..end] {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            other => panic!("unknown entity &{other};"),
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A minimal XML parser: the prolog, doctype and comments are skipped; tags must balance.
fn parse_xml(xml: &str) -> Element {
    let mut stack = vec![Element {
        name: String::new(),
        children: Vec::new(),
        text: String::new(),
    }];
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        assert!(!text.contains('>'), "stray `>` in {text:?}");
        stack.last_mut().unwrap().text.push_str(&decode(text));
        rest = &rest[lt..];
        let close = if rest.starts_with("<!--") { "-->" } else { ">" };
        let end = rest.find(close).expect("unterminated markup") + close.len();
        let tag = &rest[..end];
        rest = &rest[end..];
        if tag.starts_with("<?") || tag.starts_with("<!") {
            assert!(
                !tag.starts_with("<!--") || !tag[4..tag.len() - 3].contains("--"),
                "`--` inside a comment"
            );
            continue;
        }
        if let Some(name) = tag.strip_prefix("</") {
            let element = stack.pop().unwrap();
            assert_eq!(element.name, name.trim_end_matches('>'), "unbalanced tags");
            stack.last_mut().unwrap().children.push(element);
        } else {
            let self_closing = tag.ends_with("/>");
            let inner = tag[1..tag.len() - if self_closing { 2 } else { 1 }].trim();
            let name = inner.split_whitespace().next().unwrap().to_owned();
            let element = Element {
                name,
                children: Vec::new(),
                text: String::new(),
            };
            if self_closing {
                stack.last_mut().unwrap().children.push(element);
            } else {
                stack.push(element);
            }
        }
    }
    assert!(rest.trim().is_empty(), "text after the root element");
    assert_eq!(stack.len(), 1, "unclosed tags");
    let mut document = stack.pop().unwrap();
    assert_eq!(document.children.len(), 1, "one root element");
    document.children.pop().unwrap()
}

/// A plist `<dict>` as key → value element; checks keys and values alternate.
fn dict(element: &Element) -> Vec<(String, &Element)> {
    assert_eq!(element.name, "dict");
    assert_eq!(element.children.len() % 2, 0, "a key without a value");
    element
        .children
        .chunks(2)
        .map(|pair| {
            assert_eq!(pair[0].name, "key");
            (pair[0].text.clone(), &pair[1])
        })
        .collect()
}

fn check_plist(plist: &str, params: &ServiceParams) {
    assert!(plist.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist"));
    let root = parse_xml(plist);
    assert_eq!(root.name, "plist");
    let top = dict(&root.children[0]);
    let keys: Vec<&str> = top.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "Label",
            "ProgramArguments",
            "EnvironmentVariables",
            "Umask",
            "RunAtLoad",
            "KeepAlive",
            "ThrottleInterval",
            "ExitTimeOut",
            "StandardOutPath",
            "StandardErrorPath",
        ]
    );
    let value = |key: &str| top.iter().find(|(k, _)| k == key).unwrap().1;
    assert_eq!(value("Label").text, LABEL);
    let args: Vec<&str> = value("ProgramArguments")
        .children
        .iter()
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(args, params.argv().unwrap());
    let env = dict(value("EnvironmentVariables"));
    assert_eq!(env[0].0, "REVKA_HOME");
    assert_eq!(Path::new(&env[0].1.text), params.revka_home);
    assert_eq!(env[1].0, "PATH");
    assert_eq!(env[1].1.text, params.path);
    let umask = value("Umask");
    assert_eq!(umask.name, "integer");
    assert_eq!(umask.text, 0o077.to_string(), "umask 0077, in decimal");
    assert_eq!(value("RunAtLoad").name, "true");
    let keep_alive = dict(value("KeepAlive"));
    assert_eq!(keep_alive[0].0, "SuccessfulExit");
    assert_eq!(keep_alive[0].1.name, "false");
    assert_eq!(value("ThrottleInterval").text, "10");
    assert_eq!(
        value("ExitTimeOut").text,
        (params.grace_secs + STOP_MARGIN_SECS).to_string()
    );
    let logs = params.revka_home.join("logs");
    assert_eq!(
        Path::new(&value("StandardOutPath").text),
        logs.join("revka.out.log")
    );
    assert_eq!(
        Path::new(&value("StandardErrorPath").text),
        logs.join("revka.err.log")
    );
}

#[test]
fn plist_is_well_formed_with_the_expected_keys() {
    for params in [golden_params(), awkward_params(Path::new("/r"))] {
        let plist = render_plist(&params).unwrap();
        check_plist(&plist, &params);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("com.revka.daemon.plist");
        fs::write(&file, &plist).unwrap();
        match Command::new("plutil").arg("-lint").arg(&file).output() {
            Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout)),
            Err(_) => eprintln!("plutil not available; the structural check stands alone"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host detection

#[test]
fn unit_goes_under_xdg_config_home_else_home_config() {
    let env = env_of(vec![("HOME", "/home/alice".into())]);
    let host = Host::detect(Platform::Systemd, &env, 1000).unwrap();
    assert_eq!(
        host.service_file,
        Path::new("/home/alice/.config/systemd/user/revka.service")
    );
    assert_eq!(host.revka_home, Path::new("/home/alice/.revka"));
    let env = env_of(vec![
        ("HOME", "/home/alice".into()),
        ("XDG_CONFIG_HOME", "/cfg".into()),
        ("REVKA_HOME", "/srv/revka".into()),
    ]);
    let host = Host::detect(Platform::Systemd, &env, 1000).unwrap();
    assert_eq!(
        host.service_file,
        Path::new("/cfg/systemd/user/revka.service")
    );
    assert_eq!(host.revka_home, Path::new("/srv/revka"));
    // The XDG spec says a relative XDG_CONFIG_HOME is to be ignored.
    let env = env_of(vec![
        ("HOME", "/home/alice".into()),
        ("XDG_CONFIG_HOME", "rel".into()),
    ]);
    let host = Host::detect(Platform::Systemd, &env, 1000).unwrap();
    assert_eq!(
        host.service_file,
        Path::new("/home/alice/.config/systemd/user/revka.service")
    );
}

#[test]
fn plist_goes_under_launch_agents_and_home_is_required() {
    let env = env_of(vec![("HOME", "/Users/alice".into())]);
    let host = Host::detect(Platform::Launchd, &env, 501).unwrap();
    assert_eq!(
        host.service_file,
        Path::new("/Users/alice/Library/LaunchAgents/com.revka.daemon.plist")
    );
    let err = Host::detect(Platform::Systemd, &env_of(vec![]), 501).unwrap_err();
    assert_eq!(err.code, 1);
    assert!(err.message.unwrap().contains("HOME"));
}

#[test]
fn command_lines_are_shell_quoted() {
    let cmd = Cmd::new("tail", ["-n", "5", "/a b/it's.log", ""]);
    assert_eq!(cmd.to_string(), r"tail -n 5 '/a b/it'\''s.log' ''");
}

// ---------------------------------------------------------------------------------------------
// install

#[test]
fn dry_run_prints_the_unit_and_commands_and_touches_nothing() {
    let f = fixture(Platform::Systemd);
    let mut runner = Recorder::default();
    let out = install(&f, &mut runner, true, false);
    out.result.unwrap();
    assert_eq!(out.stdout, render_unit(&f.params).unwrap());
    assert!(
        out.stderr
            .contains(&format!("would write {}:", f.host.service_file.display()))
    );
    assert!(
        out.stderr
            .contains("would run: $ systemctl --user daemon-reload\n")
    );
    assert!(
        out.stderr
            .contains("would run: $ systemctl --user enable revka.service\n")
    );
    assert!(
        runner.ran.is_empty() && runner.probed.is_empty(),
        "{runner:?}"
    );
    assert!(!f.host.service_file.exists());
    assert!(!f.params.revka_home.exists(), "no logs directory either");
}

#[test]
fn install_writes_the_unit_creates_logs_and_enables_it() {
    let f = fixture(Platform::Systemd);
    let mut runner = Recorder::default();
    let out = install(&f, &mut runner, false, false);
    out.result.unwrap();
    assert_eq!(
        fs::read_to_string(&f.host.service_file).unwrap(),
        render_unit(&f.params).unwrap()
    );
    assert!(
        f.host
            .service_file
            .starts_with(f.home.join(".config/systemd/user"))
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.host.service_file), 0o644);
    assert_eq!(mode(&f.params.revka_home.join("logs")), 0o700);
    assert_eq!(runner.probed, ["systemctl --user show-environment"]);
    assert_eq!(
        runner.ran,
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable revka.service"
        ]
    );
    assert!(
        out.stderr.contains("$ systemctl --user daemon-reload\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("$ systemctl --user enable revka.service\n")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_second_install_of_the_same_unit_is_a_no_op() {
    let f = fixture(Platform::Systemd);
    let mut runner = Recorder::default();
    install(&f, &mut runner, false, false).result.unwrap();
    let mut again = Recorder::default();
    let out = install(&f, &mut again, false, false);
    out.result.unwrap();
    assert!(out.stderr.contains("up to date"), "{}", out.stderr);
    assert!(again.ran.is_empty() && again.probed.is_empty(), "{again:?}");
    // --force redoes the steps.
    let mut forced = Recorder::default();
    install(&f, &mut forced, false, true).result.unwrap();
    assert_eq!(forced.ran.len(), 2);
}

#[test]
fn a_different_unit_is_replaced_only_with_force() {
    let mut f = fixture(Platform::Systemd);
    let mut runner = Recorder::default();
    install(&f, &mut runner, false, false).result.unwrap();
    let before = fs::read_to_string(&f.host.service_file).unwrap();
    f.params.grace_secs = 90;

    let mut refused = Recorder::default();
    let out = install(&f, &mut refused, false, false);
    let err = out.result.unwrap_err();
    assert_eq!(err.code, 1);
    assert!(err.message.unwrap().contains("--force"));
    assert!(refused.ran.is_empty());
    assert_eq!(fs::read_to_string(&f.host.service_file).unwrap(), before);

    let out = install(&f, &mut Recorder::default(), true, false);
    out.result.unwrap();
    assert!(out.stderr.contains("would need --force"), "{}", out.stderr);

    let mut forced = Recorder::default();
    let out = install(&f, &mut forced, false, true);
    out.result.unwrap();
    let after = fs::read_to_string(&f.host.service_file).unwrap();
    assert!(after.contains("TimeoutStopSec=105"));
    assert!(
        out.stderr.contains("revka service restart"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_systemctl_gives_a_clear_message_and_writes_nothing() {
    let f = fixture(Platform::Systemd);
    let mut runner = Recorder {
        missing: vec!["systemctl"],
        ..Recorder::default()
    };
    let err = install(&f, &mut runner, false, false).result.unwrap_err();
    assert_eq!(err.code, EXIT_UNAVAILABLE);
    let message = err.message.unwrap();
    assert!(message.contains("`systemctl` not found"), "{message}");
    assert!(message.contains("run `revka daemon` under your own supervisor"));
    assert!(!f.host.service_file.exists());
}

#[test]
fn no_user_bus_gives_a_clear_message() {
    let f = fixture(Platform::Systemd);
    let mut runner = Recorder {
        probe: Some(Captured {
            code: Some(1),
            output: "Failed to connect to bus: No medium found\n".into(),
        }),
        ..Recorder::default()
    };
    for out in [
        install(&f, &mut runner, false, false),
        with_service(&f.host, &mut runner, |s| s.control(Verb::Start)),
    ] {
        let err = out.result.unwrap_err();
        assert_eq!(err.code, EXIT_UNAVAILABLE);
        assert_eq!(
            err.message.unwrap(),
            "systemd user services are not available here (no user bus): run `revka daemon` \
             under your own supervisor\n  `systemctl --user show-environment` said: Failed to \
             connect to bus: No medium found"
        );
    }
    assert!(runner.ran.is_empty());
    assert!(!f.host.service_file.exists());
}

#[test]
fn a_failing_step_passes_its_exit_code_through() {
    let f = fixture(Platform::Systemd);
    let mut runner = Recorder::default();
    runner
        .codes
        .insert("systemctl --user enable revka.service".into(), 4);
    let err = install(&f, &mut runner, false, false).result.unwrap_err();
    assert_eq!(err.code, 4);
    assert!(err.message.unwrap().contains("exit status 4"));
}

// ---------------------------------------------------------------------------------------------
// uninstall, control, logs

#[test]
fn uninstall_stops_disables_removes_and_reloads() {
    let f = fixture(Platform::Systemd);
    install(&f, &mut Recorder::default(), false, false)
        .result
        .unwrap();

    let mut dry = Recorder::default();
    let out = with_service(&f.host, &mut dry, |s| s.uninstall(true));
    out.result.unwrap();
    assert!(out.stderr.contains("would remove"), "{}", out.stderr);
    assert!(dry.ran.is_empty() && f.host.service_file.exists());

    let mut runner = Recorder::default();
    let out = with_service(&f.host, &mut runner, |s| s.uninstall(false));
    out.result.unwrap();
    assert_eq!(
        runner.ran,
        [
            "systemctl --user stop revka.service",
            "systemctl --user disable revka.service",
            "systemctl --user daemon-reload",
        ]
    );
    assert!(!f.host.service_file.exists());
    assert!(
        f.params.revka_home.join("logs").exists(),
        "REVKA_HOME stays"
    );

    let mut again = Recorder::default();
    let out = with_service(&f.host, &mut again, |s| s.uninstall(false));
    out.result.unwrap();
    assert!(out.stderr.contains("not installed"));
    assert!(again.ran.is_empty());
}

#[test]
fn control_verbs_map_to_systemctl() {
    let f = fixture(Platform::Systemd);
    install(&f, &mut Recorder::default(), false, false)
        .result
        .unwrap();
    let mut runner = Recorder::default();
    for verb in [Verb::Start, Verb::Stop, Verb::Restart, Verb::Status] {
        with_service(&f.host, &mut runner, |s| s.control(verb))
            .result
            .unwrap();
    }
    assert_eq!(
        runner.ran,
        [
            "systemctl --user start revka.service",
            "systemctl --user stop revka.service",
            "systemctl --user restart revka.service",
            "systemctl --user status revka.service",
        ]
    );
}

#[test]
fn status_passes_the_exit_code_through_quietly() {
    let f = fixture(Platform::Systemd);
    let mut runner = Recorder::default();
    runner
        .codes
        .insert("systemctl --user status revka.service".into(), 3);
    let out = with_service(&f.host, &mut runner, |s| s.control(Verb::Status));
    assert_eq!(
        out.result.unwrap_err(),
        ServiceError {
            code: 3,
            message: None
        }
    );
    assert!(
        out.stderr.contains("run `revka service install` first"),
        "{}",
        out.stderr
    );
}

#[test]
fn logs_read_the_journal() {
    let f = fixture(Platform::Systemd);
    let mut runner = Recorder::default();
    with_service(&f.host, &mut runner, |s| s.logs(false, 100))
        .result
        .unwrap();
    with_service(&f.host, &mut runner, |s| s.logs(true, 20))
        .result
        .unwrap();
    assert_eq!(
        runner.ran,
        [
            "journalctl --user -u revka.service -o cat -n 100",
            "journalctl --user -u revka.service -o cat -n 20 -f",
        ]
    );
    assert!(runner.probed.is_empty());
    runner.missing.push("journalctl");
    let err = with_service(&f.host, &mut runner, |s| s.logs(false, 1))
        .result
        .unwrap_err();
    assert_eq!(err.code, EXIT_UNAVAILABLE);
    assert!(err.message.unwrap().contains("`journalctl` not found"));
}

#[test]
fn launchd_install_bootstraps_the_agent() {
    let f = fixture(Platform::Launchd);
    let mut runner = Recorder::default();
    let out = install(&f, &mut runner, false, false);
    out.result.unwrap();
    let plist = fs::read_to_string(&f.host.service_file).unwrap();
    check_plist(&plist, &f.params);
    assert!(f.params.revka_home.join("logs").is_dir());
    let file = f.host.service_file.display().to_string();
    assert_eq!(runner.probed, ["launchctl print gui/501"]);
    assert_eq!(runner.ran, [format!("launchctl bootstrap gui/501 {file}")]);

    // Replacing a changed plist unloads the old agent first; "not loaded" is no failure.
    let mut f = f;
    f.params.grace_secs = 60;
    let mut runner = Recorder::default();
    runner
        .codes
        .insert("launchctl bootout gui/501/com.revka.daemon".into(), 113);
    install(&f, &mut runner, false, true).result.unwrap();
    assert_eq!(
        runner.ran,
        [
            "launchctl bootout gui/501/com.revka.daemon".to_owned(),
            format!("launchctl bootstrap gui/501 {file}"),
        ]
    );

    let mut runner = Recorder::default();
    with_service(&f.host, &mut runner, |s| s.uninstall(false))
        .result
        .unwrap();
    assert_eq!(runner.ran, ["launchctl bootout gui/501/com.revka.daemon"]);
    assert!(!f.host.service_file.exists());
}

#[test]
fn launchd_control_and_logs() {
    let f = fixture(Platform::Launchd);
    let mut runner = Recorder::default();
    for verb in [Verb::Start, Verb::Stop, Verb::Restart, Verb::Status] {
        with_service(&f.host, &mut runner, |s| s.control(verb))
            .result
            .unwrap();
    }
    assert_eq!(
        runner.ran,
        [
            "launchctl kickstart gui/501/com.revka.daemon",
            "launchctl kill SIGTERM gui/501/com.revka.daemon",
            "launchctl kickstart -k gui/501/com.revka.daemon",
            "launchctl print gui/501/com.revka.daemon",
        ]
    );

    let err = with_service(&f.host, &mut runner, |s| s.logs(false, 10))
        .result
        .unwrap_err();
    assert!(err.message.unwrap().contains("no logs yet"));
    let [out_log, err_log] = f.host.log_files();
    fs::create_dir_all(out_log.parent().unwrap()).unwrap();
    fs::write(&out_log, "").unwrap();
    fs::write(&err_log, "").unwrap();
    runner.ran.clear();
    with_service(&f.host, &mut runner, |s| s.logs(true, 10))
        .result
        .unwrap();
    assert_eq!(
        runner.ran,
        [format!(
            "tail -n 10 -F {} {}",
            out_log.display(),
            err_log.display()
        )]
    );
}

#[test]
fn missing_launchctl_gives_a_clear_message() {
    let f = fixture(Platform::Launchd);
    let mut runner = Recorder {
        missing: vec!["launchctl"],
        ..Recorder::default()
    };
    let err = install(&f, &mut runner, false, false).result.unwrap_err();
    assert_eq!(err.code, EXIT_UNAVAILABLE);
    assert!(err.message.unwrap().contains("only available on macOS"));
    assert!(!f.host.service_file.exists());
}

#[test]
fn build_outputs_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("target-x/debug");
    fs::create_dir_all(profile.join(".fingerprint")).unwrap();
    assert!(looks_like_build_output(&profile.join("revka")));
    assert!(!looks_like_build_output(&dir.path().join("revka")));
}
